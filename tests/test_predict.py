from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.handwriting.number import Reading
from cnnlab.models.files import load_model
from cnnlab.models.inference import predict_logits, shift_images, to_input
from cnnlab.training.loop import train
from cnnlab.using.predict import expand_inputs, predict_files
from cnnlab.using.reader import READER


@pytest.fixture
def toy_run(toy_dataset, tmp_path):
    train(model="cnn", epochs=3, batch_size=32, dataset=toy_dataset, out=str(tmp_path / "run"), progress=False)
    return tmp_path / "run"


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
    assert set(first) == {"path", "label", "confidence", "top", "uncertain"} and len(first["top"]) == 2
    assert first["top"][0][0] == first["label"] and 0 < first["confidence"] <= 1
    loaded = load_model(toy_run)  # a model loaded once answers as its run directory does
    assert [r.to_json() for r in predict_files(loaded, [folder, csv], top_k=2)] == [r.to_json() for r in results]


def test_missing_and_unreadable_inputs(toy_run, tmp_path):
    with pytest.raises(CnnlabError, match="no such file"):
        expand_inputs([tmp_path / "nope.png"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "blank.png")
    broken, blank = predict_files(toy_run, [tmp_path / "broken.png", tmp_path / "blank.png"])
    assert "not a readable image" in broken.error and broken.to_json() == {"path": broken.path, "error": broken.error}
    assert blank.error is None and blank.label  # the toy model is not a digit model: plain resize, no ink search


def test_min_confidence_marks_doubt_and_preprocessed_inputs_are_saved(toy_run, toy_dataset, tmp_path):
    Image.fromarray(toy_dataset.test_images[0].numpy()).save(tmp_path / "a.png")
    sure, = predict_files(toy_run, [tmp_path / "a.png"], min_confidence=0.0, save_preprocessed=tmp_path / "seen")
    doubtful, = predict_files(toy_run, [tmp_path / "a.png"], min_confidence=1.0)
    assert not sure.uncertain and doubtful.uncertain and "(uncertain)" in doubtful.to_text()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "seen" / "a.png")), toy_dataset.test_images[0].numpy())


def test_answers_average_the_image_and_its_one_pixel_shifts_unless_told_not_to(toy_run, toy_dataset, tmp_path):
    image = toy_dataset.test_images[1].numpy()
    Image.fromarray(image).save(tmp_path / "a.png")
    model, info = load_model(toy_run)
    inputs = to_input(torch.from_numpy(image[None]), info.mean, info.std)
    background = -info.mean / info.std
    moves = [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)]
    shifted = [shift_images(inputs, down, right, background) for down, right in moves]
    averaged = torch.stack([predict_logits(model, x).softmax(1)[0] for x in shifted]).mean(0)
    single = predict_logits(model, inputs).softmax(1)[0]
    assert not torch.allclose(averaged, single, atol=1e-4)  # the shifts change the answer: the check below can fail
    with_tta, = predict_files(toy_run, [tmp_path / "a.png"], top_k=3)
    without, = predict_files(toy_run, [tmp_path / "a.png"], top_k=3, tta=False)
    for answer, expected in ((with_tta, averaged), (without, single)):
        names = [label for label, _ in answer.top]
        got = torch.tensor([p for _, p in answer.top])
        assert torch.allclose(got, expected[[info.class_names.index(n) for n in names]], atol=1e-5)


def test_a_folder_with_other_files_answers_every_image_and_counts_the_rest(toy_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((28, 28), 60 * i, np.uint8)).save(folder / f"img{i}.png")
    (folder / "labels.csv").write_text("file,label\nimg0.png,a\nimg1.png,b\n")
    (folder / "notes.txt").write_text("taken on Monday")
    pixels = np.zeros((1, 28 * 28), np.int64)
    header = "label," + ",".join(f"pixel{i}" for i in range(28 * 28))
    np.savetxt(folder / "digits.csv", np.hstack([[[1]], pixels]), delimiter=",", header=header, comments="",
               fmt="%d")
    results = predict_files(toy_run, [folder])
    assert [Path(r.path).name for r in results] == ["digits.csv:1", "img0.png", "img1.png", "img2.png"]
    assert all(r.error is None for r in results)
    assert "note: skipped 2 files that are not images: labels.csv, notes.txt" in capsys.readouterr().err
    with pytest.raises(CnnlabError, match=r"not a pixel CSV|expected a header"):
        predict_files(toy_run, [folder / "labels.csv"])  # named directly, a CSV must be a pixel CSV


def test_a_plain_photo_is_inverted_only_for_light_on_dark_built_in_kinds(tmp_path):
    import numpy as np
    from PIL import Image

    from cnnlab.models.files import ModelInfo
    from cnnlab.using.predictor import plain_image

    pixels = np.full((40, 40), 230, dtype=np.uint8)
    pixels[10:30, 10:30] = 20  # a dark garment on a light table
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    folder_model = ModelInfo("cnn-small", ["a", "b"], 40, 0.3, 0.3, "/data/scans", kind="images")
    fashion_model = ModelInfo("cnn-small", ["a", "b"], 40, 0.29, 0.35, "fashion-mnist", kind="clothing")
    assert plain_image(tmp_path / "photo.png", folder_model)[0, 0] == 230  # as the folder's images were
    assert plain_image(tmp_path / "photo.png", fashion_model)[0, 0] == 25  # light on dark, as Fashion-MNIST


def test_an_older_model_json_without_a_kind_takes_its_dataset_s():
    from cnnlab.models.files import ModelInfo

    data = ModelInfo("cnn-small", ["a", "b"], 28, 0.29, 0.35, "fashion-mnist").to_json()
    del data["kind"]
    assert ModelInfo.from_json(data, "model.json").kind == "clothing"
    data["dataset"] = "mnist"
    assert ModelInfo.from_json(data, "model.json").kind == "digits"


def _steps(labels: list[int], sure: float = 0.97) -> torch.Tensor:
    """Sequence-reader log-probabilities ``(T, 11)`` that read each step's label (10: none) at ``sure``."""
    probs = torch.full((len(labels), 11), (1 - sure) / 10)
    probs[torch.arange(len(labels)), torch.tensor(labels)] = sure
    return probs.log()


def test_the_sequence_reader_settles_a_numbers_count_and_weighs_its_digits():
    images = [np.full((28, 28), k, np.uint8) for k in range(3)]
    probabilities = np.full((2, 10), 0.01, np.float32)
    probabilities[0, 4], probabilities[1, 1], probabilities[1, 7] = 0.91, 0.50, 0.42
    b = 10
    same_count = Reading(images[:2], [_steps([b, 4, b, 7, 7, b])])  # it reads 4 7: the 1 weighed to a 7
    kept, weighed = same_count.settled(probabilities)
    assert kept is same_count.digits and weighed.argmax(1).tolist() == [4, 7]
    recut = Reading(images[:2], [_steps([b, 4, b, 7, b, 1, b])], recut=images)  # it reads 4 7 1, far likelier
    answered, read = recut.settled(probabilities)
    assert answered is images and read.argmax(1).tolist() == [4, 7, 1] and np.allclose(read.sum(1), 1)
    doubtful = Reading(images[:2], [_steps([b, 4, b, 7, b, 1, b], sure=0.4)], recut=images)  # not surer by RECOUNT
    assert doubtful.settled(probabilities)[0] is doubtful.digits
    one = Reading(images[:1], [_steps([b, 3, b])])  # a single digit is left as the network read it
    assert np.array_equal(one.settled(probabilities[:1])[1], probabilities[:1])
    # one digit cut out, where the strip reads two far more surely (by over RECOUNT_ONE): its reading
    as_one = Reading(images[:1], [_steps([b, 6, b, b, 9, b], sure=0.999)], recut=images[1:])
    assert as_one.settled(probabilities[:1])[1].argmax(1).tolist() == [6, 9]
    unsure = Reading(images[:1], [_steps([b, 6, b, b, 9, b], sure=0.9)], recut=images[1:])  # surer, not by enough
    assert unsure.settled(probabilities[:1])[0] is unsure.digits
    plain = Reading(images[:2])  # not a photo read whole by the sequence reader: nothing to check
    assert plain.settled(probabilities) == (plain.digits, probabilities)


def test_a_16_bit_or_float_scan_of_a_digit_is_read_as_its_8_bit_scan(tmp_path, mnist):
    scan = Image.fromarray(255 - mnist.test_images[0].numpy()).resize((112, 112), Image.Resampling.BICUBIC)
    scan.save(tmp_path / "8-bit.png")
    Image.fromarray(np.asarray(scan).astype(np.uint16) * 257).save(tmp_path / "16-bit.png")  # was clipped: no ink
    Image.fromarray(np.asarray(scan).astype(np.float32) / 255).save(tmp_path / "float.tif")
    answers = predict_files(READER, [tmp_path / name for name in ("8-bit.png", "16-bit.png", "float.tif")])
    assert answers[0].label == str(int(mnist.test_labels[0])) and answers[0].error is None
    assert [{**a.to_json(), "path": ""} for a in answers[1:]] == [{**answers[0].to_json(), "path": ""}] * 2
