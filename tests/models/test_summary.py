"""cnnlab summary (cnnlab.models.summary): the table of a network, its totals and memory."""

import json

import pytest
import torch

import cnnlab
from cnnlab.cli import main
from cnnlab.errors import CnnlabError
from cnnlab.models.files import ModelInfo, save_model
from cnnlab.models.registry import MODELS, build_model, count_parameters, flops_per_image


def test_the_articles_cnn_has_keras_count_and_its_layers_as_written():
    table = cnnlab.summary("seed-cnn")
    assert table.parameters == 805_066 and "Total: 805,066 parameters" in str(table)
    assert [r.layer for r in table.rows] == ["1 conv32k5-same", "2 maxpool", "3 dropout0.2", "  (flatten)",
                                            "4 dense128", "  (output) dense10"]
    assert [r.output for r in table.rows] == [(32, 28, 28), (32, 14, 14), (32, 14, 14), (6272,), (128,), (10,)]
    assert [r.receptive_field for r in table.rows] == [5, 6, 6, None, None, None]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registry_summary_totals_its_parameters_and_flops(name):
    table = cnnlab.summary(name)
    model = build_model(name)
    assert table.parameters == count_parameters(model) == sum(r.parameters for r in table.rows)
    assert table.mflops == pytest.approx(flops_per_image(model) / 1e6)


def test_receptive_field_through_strides_and_residual_blocks():
    fields = [r.receptive_field for r in cnnlab.summary("conv8k3s2 res8 maxpool3s1").rows]
    assert fields[:3] == [3, 3 + 2 * 2 + 2 * 2, 11 + 2 * 2]  # jump 2 after the stride


def test_a_module_of_your_own_and_a_run_directory(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 26 * 26, 10))
    table = cnnlab.summary(net)
    assert table.rows[0].layer == "0 Conv2d" and table.parameters == count_parameters(net)
    assert table.activation_bytes == 128 * 4 * (4 * 26 * 26 * 3 + 10)
    spec = "conv8k3 maxpool dense32"
    save_model(tmp_path, cnnlab.build(spec, num_classes=5), ModelInfo("spec", list("abcde"), spec=spec))
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 64}))
    table = cnnlab.summary(tmp_path)
    assert table.batch_size == 64 and table.rows[-1].output == (5,) and table.rows[0].layer == "1 conv8k3"


def test_the_command_prints_the_table_and_json(capsys):
    assert main(["summary", "seed-cnn"]) == 0
    assert "Total: 805,066 parameters, 2.86 MFLOPs an image" in capsys.readouterr().out
    assert main(["summary", "conv8 maxpool", "--image-size", "32", "--channels", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input"] == [3, 32, 32] and data["rows"][0]["output"] == [8, 30, 30]
    assert main(["summary", "conv8 blob"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_name_or_spec_is_described_without_allocating_its_network(monkeypatch):
    import cnnlab.models.summary as summary_module

    built, build = [], summary_module.build
    monkeypatch.setattr(summary_module, "build", lambda *args: built.append(build(*args)) or built[-1])
    table = cnnlab.summary("conv60000k1 maxpool conv8k3 dense10-relu")  # 54 GB of activations to train at batch 128
    assert table.activation_bytes == 54_191_864_832 and table.parameters == 4_451_648
    assert all(p.is_meta for p in built[-1].parameters())  # shapes without storage


def test_a_spec_too_long_to_be_a_path_and_a_damaged_run_config(tmp_path, capsys):
    assert main(["summary", "relu " * 60 + "dense16"]) == 0  # 307 characters: no file can have that name
    assert "(output) dense10" in capsys.readouterr().out
    spec = "conv8k3 maxpool dense32"
    save_model(tmp_path, cnnlab.build(spec), ModelInfo("spec", list("0123456789"), spec=spec))
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": "lots"}))
    with pytest.raises(CnnlabError, match=r"config\.json: batch_size should be a whole number .* got 'lots'"):
        cnnlab.summary(tmp_path)
    assert cnnlab.summary(tmp_path, batch_size=8).batch_size == 8
    assert main(["summary", "cnn", "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
