"""The colour datasets' readers (cnnlab.data.archives), on small files made here in exactly the
original formats: CIFAR's binary tarballs and SVHN's .mat files. The real files were never read on
this project's machines, which cannot download them."""

import io
import tarfile

import numpy as np
import pytest
from scipy.io import savemat

from cnnlab.data.archives import read_cifar, read_svhn
from cnnlab.errors import CnnlabError


def cifar_record(labels: list[int], red: int, green: int, blue: int) -> bytes:
    planes = [np.full((32, 32), value, np.uint8) for value in (red, green, blue)]
    planes[0][3, 5] = 255  # one bright red pixel at row 3, column 5
    return bytes(labels) + b"".join(plane.tobytes() for plane in planes)


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_cifar10(folder, per_batch: int = 2, test_records: int = 1):
    """``folder/cifar-10-binary.tar.gz`` in CIFAR-10's binary format: ``per_batch`` records in each of
    the 5 training batches (batch i labelled i), ``test_records`` in the test batch (labelled 9)."""
    folder.mkdir(parents=True, exist_ok=True)
    members = {f"cifar-10-batches-bin/data_batch_{i}.bin": cifar_record([i], 10, 20, 30) * per_batch
               for i in range(1, 6)}
    members["cifar-10-batches-bin/test_batch.bin"] = cifar_record([9], 1, 2, 3) * test_records
    members["cifar-10-batches-bin/batches.meta.txt"] = "\n".join(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck", "", ""]).encode()
    write_tar(folder / "cifar-10-binary.tar.gz", members)
    return folder / "cifar-10-binary.tar.gz"


@pytest.fixture
def cifar10(tmp_path):
    return make_cifar10(tmp_path)


def test_cifar10_records_become_height_width_rgb_images(cifar10):
    train_x, train_y, test_x, test_y, names = read_cifar(cifar10)
    assert train_x.shape == (10, 32, 32, 3) and train_x.dtype == np.uint8 and test_x.shape == (1, 32, 32, 3)
    assert train_y.tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] and test_y.tolist() == [9]
    assert tuple(train_x[0, 0, 0]) == (10, 20, 30) and tuple(train_x[0, 3, 5]) == (255, 20, 30)
    assert names[0] == "airplane" and len(names) == 10


def test_cifar100_takes_the_fine_label(tmp_path):
    names = "\n".join(f"class{i}" for i in range(100)).encode()
    write_tar(tmp_path / "c100.tar.gz", {"cifar-100-binary/train.bin": cifar_record([7, 42], 0, 0, 0),
                                         "cifar-100-binary/test.bin": cifar_record([1, 99], 0, 0, 0),
                                         "cifar-100-binary/fine_label_names.txt": names})
    _, train_y, _, test_y, class_names = read_cifar(tmp_path / "c100.tar.gz", hundred=True)
    assert train_y.tolist() == [42] and test_y.tolist() == [99] and class_names[42] == "class42"


def test_a_truncated_or_wrong_cifar_file_says_so(cifar10, tmp_path):
    data = cifar10.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CnnlabError, match="truncated or not a CIFAR binary tarball"):
        read_cifar(tmp_path / "cut.tar.gz")
    write_tar(tmp_path / "short.tar.gz", {"cifar-10-batches-bin/data_batch_1.bin": b"\x00" * 100})
    with pytest.raises(CnnlabError, match="not a whole number of 3073-byte records"):
        read_cifar(tmp_path / "short.tar.gz")
    with pytest.raises(CnnlabError, match=r"has no cifar-100-binary/train\.bin"):
        read_cifar(cifar10, hundred=True)


def test_svhn_mat_files_with_zero_labelled_ten(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    for split in ("train", "test"):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": images, "y": np.array([[10], [1], [5], [9]], np.uint8)})
    train_x, train_y, _, _, names = read_svhn(tmp_path)
    assert train_x.shape == (4, 32, 32, 3) and np.array_equal(train_x[2], images[:, :, :, 2])
    assert train_y.tolist() == [0, 1, 5, 9] and names == [str(d) for d in range(10)]
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but cut")
    with pytest.raises(CnnlabError, match=r"not SVHN.s \.mat file"):
        read_svhn(tmp_path)
