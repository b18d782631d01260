import contextlib
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.data import describe, load_dataset
from cnnlab.data.download import ensure_files, md5_of, resolve_data_dir
from cnnlab.data.registry import DATASETS, FILES, DatasetSpec, get_spec
from cnnlab.errors import CnnlabError
from tests.conftest import make_blobs


def test_registry_lists_the_mnist_family_with_mirrors_checksums_and_names():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn"}
    for spec in (DATASETS[name] for name in ("mnist", "fashion-mnist", "kmnist")):
        assert len(spec.mirrors) >= 2
        assert set(spec.md5) == set(FILES) and all(len(v) == 32 for v in spec.md5.values())
        assert len(spec.class_names) == 10


def test_registry_checksums_match_the_real_files(mnist_dir):
    for name in ("mnist", "fashion-mnist"):
        folder = mnist_dir / name
        if not folder.is_dir():
            continue
        for file in FILES:
            assert md5_of(folder / file) == DATASETS[name].md5[file]


def test_unknown_dataset_names_the_choices():
    with pytest.raises(CnnlabError, match=r"unknown dataset 'nmist'.*mnist, fashion-mnist, kmnist"):
        load_dataset("nmist")


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("CNNLAB_DATA")
    assert resolve_data_dir().parts[-2:] == (".cache", "cnnlab")


def test_offline_without_files_names_the_four_files(tmp_path):
    with pytest.raises(CnnlabError) as info:
        load_dataset("mnist", data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in FILES)


def _mirror(tmp_path, name, arrays):
    from cnnlab.data.idx import write_idx

    folder = tmp_path / name
    folder.mkdir()
    for file, array in zip(FILES, arrays, strict=True):
        write_idx(folder / file, array)
    return folder


def test_download_falls_back_to_next_mirror_verifies_and_refetches_bad_cache(tmp_path):
    train_x, train_y = make_blobs(20)
    good = _mirror(tmp_path, "good", (train_x, train_y, train_x[:5], train_y[:5]))
    bad = _mirror(tmp_path, "bad", (train_x[:3], train_y[:3], train_x[:1], train_y[:1]))
    spec = DatasetSpec("toy", "toy", (bad.as_uri() + "/", good.as_uri() + "/"),
                       {f: md5_of(good / f) for f in FILES}, tuple("abc"))
    data_dir = tmp_path / "cache"
    folder = ensure_files(spec, data_dir, download=True)
    assert all(md5_of(folder / f) == spec.md5[f] for f in FILES)
    (folder / FILES[0]).write_bytes(b"broken")  # a cached file gone bad is fetched again
    ensure_files(spec, data_dir, download=True)
    assert md5_of(folder / FILES[0]) == spec.md5[FILES[0]]
    assert not list(folder.glob(".*part"))  # no temp files left behind


def test_corrupt_cached_file_offline_says_so(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in FILES:
        (folder / name).write_bytes(b"\x1f\x8b not really")
    with pytest.raises(CnnlabError, match="wrong checksum"):
        load_dataset("mnist", data_dir=tmp_path)


def test_mnist_sizes_and_class_counts(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    facts = describe(mnist)
    assert list(facts["splits"]["train"]["class_counts"].values())[:3] == [5923, 6742, 5958]
    assert abs(facts["splits"]["train"]["pixel_mean"] - 0.1307) < 1e-3


def test_val_split_and_limit(mnist_dir):
    ds = load_dataset("mnist", data_dir=mnist_dir, val_split=0.1, limit=500, seed=3)
    assert (len(ds.train_labels), len(ds.val_labels), len(ds.test_labels)) == (500, 500, 500)
    full = load_dataset("mnist", data_dir=mnist_dir, val_split=0.1, seed=3)
    assert len(full.train_labels) == 54000 and len(full.val_labels) == 6000
    with pytest.raises(CnnlabError, match="val-split"):
        load_dataset("mnist", data_dir=mnist_dir, val_split=1.5)


def test_idx_folder_dataset(idx_folder):
    ds = load_dataset(idx_folder)
    assert ds.train_images.shape == (120, 28, 28) and ds.class_names == ["0", "1", "2"]


def test_image_folder_dataset_any_format_and_size(tmp_path):
    images, labels = make_blobs(30)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "shapes" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = [".png", ".jpg", ".bmp", ".gif", ".tiff", ".webp"][i % 6]
        Image.fromarray(image).resize((40 + i, 50)).convert("RGB").save(folder / f"{i}{suffix}")
    ds = load_dataset(tmp_path / "shapes")
    assert ds.class_names == ["class0", "class1", "class2"]
    # grey saved as RGB stays grey; the size is the median longer side (54 of 50..69)
    assert len(ds.train_labels) + len(ds.test_labels) == 30 and ds.train_images.shape[1:] == (54, 54)
    assert load_dataset(tmp_path / "shapes", image_size=28).train_images.shape[1:] == (28, 28)


def test_an_unreadable_image_in_a_folder_is_reported_and_skipped(tmp_path, capsys):
    images, labels = make_blobs(12)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = tmp_path / "shapes" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    (tmp_path / "shapes" / "class1" / "broken.jpg").write_bytes(b"not a JPEG at all")
    ds = load_dataset(tmp_path / "shapes")
    assert len(ds.train_labels) + len(ds.test_labels) == 12  # the 12 good ones, labels still aligned
    assert (ds.train_labels.bincount(minlength=3) + ds.test_labels.bincount(minlength=3)).tolist() == [4, 4, 4]
    warning = capsys.readouterr().err
    assert "skipped 1 of 13 images" in warning and "broken.jpg" in warning


def test_a_folder_of_only_unreadable_images_is_an_error(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "bad" / label).mkdir(parents=True)
        (tmp_path / "bad" / label / "x.png").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match="none of its 2 images could be read"):
        load_dataset(tmp_path / "bad")


def test_image_folder_with_train_and_test_parts(tmp_path):
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            folder = tmp_path / "pets" / split / label
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("L", (10, 10), 50 * i).save(folder / f"{i}.png")
    ds = load_dataset(tmp_path / "pets")
    assert ds.class_names == ["cat", "dog"] and len(ds.test_labels) == 6


def test_kaggle_csv(tmp_path):
    images, labels = make_blobs(10)
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    rows = [",".join(map(str, [label, *image.ravel()])) for image, label in zip(images, labels, strict=True)]
    (tmp_path / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    ds = load_dataset(tmp_path / "train.csv")
    assert len(ds.train_labels) == 8 and len(ds.test_labels) == 2
    test_header = ",".join(f"pixel{i}" for i in range(784))
    (tmp_path / "test.csv").write_text(test_header + "\n" + "\n".join(r.split(",", 1)[1] for r in rows))
    with pytest.raises(CnnlabError, match="no 'label' column"):
        load_dataset(tmp_path / "test.csv")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CnnlabError, match="expected a header"):
        load_dataset(tmp_path / "bad.csv")


def test_get_spec():
    assert get_spec("kmnist").class_names[0] == "o"
    assert np.isclose(len(get_spec("fashion-mnist").class_names), 10)


@given(text=st.text(alphabet="0123456789,-.e \nlabpix", max_size=400),
       header=st.sampled_from(["", "label,pixel0,pixel1,pixel2,pixel3\n", "pixel0,pixel1,pixel2,pixel3\n"]))
@example(text="label", header="")  # found by this test: a header with no pixel columns
@settings(max_examples=200, deadline=None)
def test_pixel_csv_fuzz_gives_arrays_or_clean_errors(text, header):
    from cnnlab.data.user import read_pixel_csv

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_text(header + text)
        try:
            images, labels = read_pixel_csv(path)
        except CnnlabError:
            return
        assert images.dtype == np.uint8 and images.shape[1] == images.shape[2]
        assert labels is None or len(labels) == len(images)


@given(data=st.binary(max_size=300))
@settings(max_examples=100, deadline=None)
def test_pixel_csv_random_bytes_give_clean_errors(data):
    from cnnlab.data.user import read_pixel_csv

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(data)
        with contextlib.suppress(CnnlabError):
            read_pixel_csv(path)
