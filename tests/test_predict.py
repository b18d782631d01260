import numpy as np
import pytest
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.predict import expand_inputs, predict_files
from cnnlab.preprocess import to_mnist_polarity
from cnnlab.train import train


@pytest.fixture
def toy_run(toy_dataset, tmp_path):
    train(model="cnn", epochs=3, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "run"), progress=False)
    return tmp_path / "run"


def test_polarity_is_detected_from_the_border():
    dark_ink = np.full((28, 28), 240, np.uint8)
    dark_ink[10:18, 10:18] = 10
    flipped = to_mnist_polarity(dark_ink)
    assert flipped[0, 0] == 15 and flipped[12, 12] == 245
    assert np.array_equal(to_mnist_polarity(flipped), flipped)


def test_predict_files_folders_and_csv(toy_run, toy_dataset, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(toy_dataset.test_images[i].numpy()).resize((56, 56)).save(folder / f"{i}.png")
    csv = tmp_path / "rows.csv"
    rows = [",".join(map(str, toy_dataset.test_images[i].numpy().ravel())) for i in range(4)]
    csv.write_text(",".join(f"pixel{i}" for i in range(784)) + "\n" + "\n".join(rows) + "\n")
    results = predict_files(toy_run, [folder, csv], top_k=2)
    assert len(results) == 10 and results[-1].path.endswith("rows.csv:4")
    names = ["a", "b", "c"]
    truth = [names[int(toy_dataset.test_labels[i])] for i in [*range(6), *range(4)]]
    assert sum(r.label == t for r, t in zip(results, truth, strict=True)) >= 9
    first = results[0].to_json()
    assert set(first) == {"path", "label", "confidence", "top"} and len(first["top"]) == 2
    assert first["top"][0][0] == first["label"] and 0 < first["confidence"] <= 1


def test_missing_and_unreadable_inputs(toy_run, tmp_path):
    with pytest.raises(CnnlabError, match="no such file"):
        expand_inputs([tmp_path / "nope.png"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CnnlabError, match="cannot read this image"):
        predict_files(toy_run, [tmp_path / "broken.png"])
