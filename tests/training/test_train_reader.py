"""Training the bundled reader again: what goes into the package, and the run's settings."""

import json
import sys

import torch
from safetensors.torch import load_file, save_file

from cnnlab.models.files import MODEL_FILE, MODEL_META
from cnnlab.training import train_reader


def a_run(folder):
    folder.mkdir()
    weights = torch.rand(4, 1, 3, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1  # float16 keeps 1e-3
    save_file({"conv.weight": weights, "bn.num_batches_tracked": torch.tensor(7)}, folder / MODEL_FILE)
    (folder / MODEL_META).write_text('{"architecture": "cnn-wide-x3"}')
    (folder / "config.json").write_text(json.dumps({"epochs": 10, "data_dir": "/home/me/data", "out": str(folder)}))
    return folder


def test_pack_stores_float_weights_as_float16_and_forgets_this_machines_folders(tmp_path):
    run = a_run(tmp_path / "run")
    into = train_reader.pack(run, tmp_path / "reader")
    weights, trained = load_file(into / MODEL_FILE), load_file(run / MODEL_FILE)
    assert weights["conv.weight"].dtype == torch.float16
    assert torch.allclose(weights["conv.weight"].float(), trained["conv.weight"], atol=1e-3)
    assert weights["bn.num_batches_tracked"].dtype == torch.int64 and weights["bn.num_batches_tracked"] == 7
    assert (into / MODEL_META).read_bytes() == (run / MODEL_META).read_bytes()
    config = json.loads((into / "config.json").read_text())
    assert config == {"epochs": 10, "data_dir": None, "out": None}


def test_the_reader_is_trained_on_two_threads_into_a_new_run_folder(tmp_path, monkeypatch, capsys):
    asked = {}

    def fake_train(**options):
        asked.update(options)
        a_run(options["out"])

    monkeypatch.setattr(train_reader, "train", fake_train)
    earlier = a_run(tmp_path / "reader")  # a run trained before, with its model
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}
    monkeypatch.setattr(sys, "argv", ["train_reader", "--out", str(earlier), "--into", str(tmp_path / "packed")])
    train_reader.main()
    assert asked["preset"] == "reader" and asked["seed"] == 1
    assert asked["threads"] == 2  # another thread count learns other weights than the shipped ones
    assert asked["out"] == tmp_path / "reader-2"
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before  # the earlier run is kept
    assert (tmp_path / "packed" / MODEL_FILE).exists()
    assert "Wrote the reader to" in capsys.readouterr().out
