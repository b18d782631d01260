"""A user's folder of images (cnnlab.data.user): colour kept, sizes chosen, odd files reported."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from cnnlab.data import DATASETS, load_dataset
from cnnlab.data.user import read_image_folder
from cnnlab.errors import CnnlabError
from tests.conftest import make_colour_folder


def test_a_colour_folder_keeps_its_colour_and_its_size(tmp_path):
    make_colour_folder(tmp_path / "colours", per_class=4, size=48)
    ds = load_dataset(tmp_path / "colours")
    assert ds.channels == 3 and ds.image_size == 48 and ds.train_images.shape[1:] == (48, 48, 3)
    assert ds.source == str((tmp_path / "colours").resolve()) and ds.kind == "images"
    grey = load_dataset(tmp_path / "colours", channels=1, image_size=16)
    assert grey.channels == 1 and grey.train_images.shape[1:] == (16, 16)


def test_grey_images_among_colour_ones_are_converted_and_that_is_said(tmp_path, capsys):
    make_colour_folder(tmp_path / "mixed", per_class=3, size=32)
    Image.fromarray(np.full((32, 32), 128, dtype=np.uint8)).save(tmp_path / "mixed" / "red" / "grey.png")
    found = read_image_folder(tmp_path / "mixed")
    assert found.images.shape == (10, 32, 32, 3) and found.channels == 3
    assert "1 of 10 images are grey; converted to RGB" in capsys.readouterr().err


def test_a_folder_of_large_images_is_capped_at_64_and_says_so(tmp_path, capsys):
    make_colour_folder(tmp_path / "big", per_class=2, size=100)
    assert read_image_folder(tmp_path / "big").side == 64
    assert "resized to 64x64, the cap for a folder" in capsys.readouterr().err
    assert read_image_folder(tmp_path / "big", size=100).side == 100


def test_a_folder_takes_its_images_median_size(tmp_path):
    for i, side in enumerate((20, 30, 40)):
        (tmp_path / "f" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.new("L", (side, side), 200).save(tmp_path / "f" / "ab"[i % 2] / f"{i}.png")
    assert read_image_folder(tmp_path / "f").side == 30


def test_a_folder_with_one_class_is_refused_before_its_images_are_read(tmp_path):
    (tmp_path / "cats" / "cat").mkdir(parents=True)
    Image.new("L", (16, 16), 200).save(tmp_path / "cats" / "cat" / "0.png")
    with pytest.raises(CnnlabError) as info:
        load_dataset(tmp_path / "cats")
    assert str(info.value) == (f"{tmp_path / 'cats'} has one class folder (cat); a classifier needs at least two: "
                               "add a subfolder of images for each other class")


def test_a_folder_whose_other_classes_have_no_images_is_refused(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
    for i in range(3):
        Image.new("L", (16, 16), 50 * i).save(tmp_path / "pets" / "cat" / f"{i}.png")
    with pytest.raises(CnnlabError, match=r"^pets: all its training images are of one class \(cat\); a classifier "
                       "needs images of at least two classes$"):
        load_dataset(tmp_path / "pets")


def test_a_dataset_made_in_python_needs_two_classes():
    import torch

    from cnnlab.data import Dataset

    images, labels = torch.zeros(4, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    for names in ([], ["only"]):
        with pytest.raises(CnnlabError, match=r"a classifier needs at least two: give images of two or more classes$"):
            Dataset("mine", names, images, labels, images, labels)
    assert Dataset("mine", ["a", "b"], images, labels, images, labels).num_classes == 2


def test_a_too_small_image_is_skipped_and_the_rest_are_read(tmp_path, capsys):
    make_colour_folder(tmp_path / "c", per_class=2, size=16)
    Image.new("RGB", (1, 1)).save(tmp_path / "c" / "red" / "dot.png")
    found = read_image_folder(tmp_path / "c")
    assert len(found.labels) == 6
    assert "skipped 1 of 7 images" in capsys.readouterr().err


@pytest.mark.parametrize("size", [0, 7, 10_000])
def test_image_size_out_of_range_is_one_line(idx_folder, size):
    with pytest.raises(CnnlabError, match=rf"--image-size must be 8 to 512 pixels, got {size}$"):
        load_dataset(idx_folder, image_size=size)


def test_built_in_sized_data_is_resized_and_made_rgb_on_request(idx_folder):
    ds = load_dataset(idx_folder, image_size=32, channels=3)
    assert ds.train_images.shape[1:] == (32, 32, 3)
    assert np.array_equal(ds.train_images[..., 0], ds.train_images[..., 2])


def test_the_colour_datasets_are_registered_with_checksums_and_their_kinds():
    for name, kind in (("cifar10", "natural"), ("cifar100", "natural"), ("svhn", "photo-digits")):
        spec = DATASETS[name]
        assert spec.kind == kind and spec.mirrors and all(len(md5) == 32 for md5 in spec.md5.values())


def test_cifar10_loads_from_its_tarball_through_the_registry(tmp_path, monkeypatch):
    from cnnlab.data.download import md5_of
    from tests.data.test_archives import make_cifar10  # the binary format, generated

    archive = make_cifar10(tmp_path / "data" / "cifar10", per_batch=4, test_records=4)
    spec = dataclasses.replace(DATASETS["cifar10"], md5={archive.name: md5_of(archive)})
    monkeypatch.setitem(DATASETS, "cifar10", spec)
    ds = load_dataset("cifar10", data_dir=tmp_path / "data", val_split=0.2)
    assert ds.channels == 3 and ds.image_size == 32 and ds.kind == "natural" and len(ds.class_names) == 10
    assert len(ds.train_labels) + len(ds.val_labels) == 20 and len(ds.test_labels) == 4


def test_a_cifar_tarball_with_a_wrong_checksum_is_named_with_the_fix(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar-10-binary.tar.gz").write_bytes(b"not the real tarball")
    with pytest.raises(CnnlabError) as info:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    message = str(info.value)
    assert "cifar-10-binary.tar.gz has the wrong checksum" in message and "--data-dir" in message
    assert "\n" not in message


def test_a_dataset_made_in_python_is_reshaped_as_loading_does(toy_dataset):
    from cnnlab.data import reshape_images

    colour = reshape_images(toy_dataset, 16, 3)
    assert colour.train_images.shape[1:] == (16, 16, 3) and colour.test_images.shape[1:] == (16, 16, 3)
    assert colour.channels == 3 and colour.image_size == 16 and reshape_images(toy_dataset) is toy_dataset
    with pytest.raises(CnnlabError, match="--image-size must be 8 to 512"):
        reshape_images(toy_dataset, 4)


def test_the_median_size_leaves_out_images_too_small_to_use(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "f" / name).mkdir(parents=True)
    for i in range(6):
        Image.new("L", (5, 5), 200).save(tmp_path / "f" / "a" / f"tiny{i}.png")
    for i in range(4):
        Image.new("L", (40, 40), 200).save(tmp_path / "f" / "ab"[i % 2] / f"big{i}.png")
    found = read_image_folder(tmp_path / "f")
    assert found.side == 40 and len(found.labels) == 4
    images, labels, names = found  # unpacks as the 3-tuple it used to be
    assert images.shape == (4, 40, 40) and len(labels) == 4 and names == ["a", "b"]


def test_channels_first_images_made_in_python_are_refused_with_the_fix():
    import torch

    from cnnlab.data import Dataset

    with pytest.raises(CnnlabError, match=r"permute\(0, 2, 3, 1\)"):
        Dataset("mine", ["a", "b"], torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64),
                torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    colour = Dataset("mine", ["a", "b"], torch.zeros(4, 32, 32, 3, dtype=torch.uint8),
                     torch.zeros(4, dtype=torch.int64), torch.zeros(2, 32, 32, 3, dtype=torch.uint8),
                     torch.zeros(2, dtype=torch.int64))
    assert colour.val_images.shape == (0, 32, 32, 3)  # the empty validation split is shaped as the rest


def test_limit_comes_before_the_resize(idx_folder):
    ds = load_dataset(idx_folder, limit=5, image_size=16, channels=3)
    assert ds.train_images.shape == (5, 16, 16, 3) and ds.test_images.shape == (5, 16, 16, 3)
