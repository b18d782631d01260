"""The sequence reader: strips, decoding, likelihoods, weighing the digit network's answers, its
training and the weights that ship."""

import numpy as np
import pytest
import torch

from cnnlab.handwriting.segment import cut_at_columns
from cnnlab.handwriting.sequence import (
    BLANK,
    HEIGHT,
    best_reading,
    load_sequence_reader,
    log_likelihoods,
    read_strip,
    reading_cuts,
    strip_log_probs,
    to_strip,
    weighed_by_reading,
)
from cnnlab.training.train_sequence import compose, make_strips, train_sequence_reader, warped


def steps(labels: list[int], sure: float = 0.97) -> torch.Tensor:
    """Log-probabilities ``(T, 11)`` that read each step's label with probability ``sure``."""
    probs = torch.full((len(labels), BLANK + 1), (1 - sure) / BLANK)
    probs[torch.arange(len(labels)), torch.tensor(labels)] = sure
    return probs.log()


def test_a_strip_is_the_ink_24_pixels_tall_in_32():
    mask = np.zeros((200, 400), bool)
    mask[50:150, 100:300] = True  # ink 100 tall, 200 wide
    strip = to_strip(mask.astype(np.float32) * 0.5, mask)
    assert strip.shape == (HEIGHT, 48 + 8) and strip.dtype == np.uint8
    assert strip.max() == 255 and (strip[:4] == 0).all() and (strip[:, :4] == 0).all()
    long = np.ones((10, 2000), bool)  # wider than any strip may be
    assert to_strip(long.astype(np.float32), long).shape[1] == 320


def test_best_reading_drops_blanks_and_repeats_but_not_a_digit_written_twice():
    b = BLANK
    assert best_reading(steps([b, 1, 1, b, 1, 2, 2, b])) == [1, 1, 2]
    assert best_reading(steps([b, b])) == []


def test_reading_cuts_fall_between_the_digits_and_leave_each_one_ink():
    mask = np.zeros((24, 64), bool)
    mask[:, 10:50] = True  # ink 24 tall: a strip column is an image column, 4 to a step
    b = BLANK
    cuts = reading_cuts(steps([b, 1, 1, b, 7, 7, b, b, b, b, b]), mask)
    # halfway between the steps that read 1 and 7 (after step 2), less the strip's margin of 4
    assert cuts == [20, 50] and len(cut_at_columns(mask, cuts)) == 2
    crossing = reading_cuts(steps([1, 7, b, b, b, b, b, b, b, b, b]), mask)  # read in adjacent steps at the start
    assert crossing == [14, 50] and [p.any() for p in cut_at_columns(mask, crossing)] == [True, True]


def test_likelihoods_prefer_what_the_steps_say():
    b = BLANK
    log_probs = steps([b, 4, b, 7, 7, b])
    scores = log_likelihoods([log_probs], [[4, 7], [4, 1], [4], [4, 7, 7]])
    assert scores.argmax() == 0 and (scores <= 0).all()
    assert scores[0] > -0.5 and scores[2] < scores[0] - 2
    assert log_likelihoods([log_probs], [[1, 1, 1, 1, 1, 1, 1]])[0] == -np.inf  # longer than the strip allows


def test_weighing_turns_a_doubtful_digit_to_what_the_strip_reads():
    b = BLANK
    views = [steps([b, 4, b, 7, 7, b])]
    probabilities = np.full((2, 10), 0.01, np.float32)
    probabilities[0, 4] = 0.91  # sure of the 4
    probabilities[1, [1, 7]] = 0.50, 0.42  # a 1 or a 7: the network leans to 1, the strip reads 7
    weighed = weighed_by_reading(probabilities, views)
    assert weighed.shape == (2, 10) and weighed.dtype == np.float32
    assert np.allclose(weighed.sum(1), 1, atol=1e-5)
    assert weighed.argmax(1).tolist() == [4, 7] and weighed[0, 4] > 0.9
    alone = probabilities / probabilities.sum(1, keepdims=True)
    assert np.allclose(weighed_by_reading(probabilities, views, power=0, temperature=1), alone, atol=1e-6)
    softened = weighed_by_reading(probabilities, views, power=0, temperature=2)  # the network alone, less sure
    assert np.allclose(softened, alone**0.5 / (alone**0.5).sum(1, keepdims=True), atol=1e-6)
    assert (weighed_by_reading(probabilities, views).max(1) < weighed_by_reading(probabilities, views,
                                                                                   temperature=1).max(1)).all()
    too_many = np.full((7, 10), 0.1, np.float32)  # no reading of 7 digits fits 6 steps: left as it was
    assert np.array_equal(weighed_by_reading(too_many, views), too_many)


@pytest.fixture(scope="module")
def test_digits(mnist):
    return mnist.test_images.numpy(), mnist.test_labels.numpy()


def test_the_shipped_reader_reads_numbers_of_test_digits(test_digits):
    strips, texts = make_strips(*test_digits, 300, seed=5)  # digits it never saw
    right = sum(best_reading(strip_log_probs(s)) == t.tolist() for s, t in zip(strips, texts, strict=True))
    assert right / len(texts) > 0.88, right
    assert load_sequence_reader() is load_sequence_reader()


def test_numbers_for_training_are_reproducible(test_digits):
    strips, texts = make_strips(*test_digits, 50, seed=1)
    assert len(strips) == 50 and all(s.shape[0] == HEIGHT and s.dtype == np.uint8 for s in strips)
    assert all(1 <= len(t) <= 6 for t in texts)
    again, _ = make_strips(*test_digits, 50, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(strips, again, strict=True))
    ink = compose(list(test_digits[0][:3]), np.random.default_rng(0))
    assert ink.dtype == np.float32 and ink.min() >= 0 and ink.max() <= 1


def test_a_share_of_the_digits_is_bent_by_an_elastic_field(test_digits):
    images = test_digits[0][:400]
    assert warped(images, 0.0, seed=3) is images
    bent = warped(images, 0.5, seed=3)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(images, bent, strict=True)])
    assert 0.35 < changed.mean() < 0.65, changed.mean()
    assert np.array_equal(bent, warped(images, 0.5, seed=3))  # the same seed bends the same digits
    ink, bent_ink = images[changed].astype(float).sum((1, 2)), bent[changed].astype(float).sum((1, 2))
    assert np.all((bent_ink / ink > 0.5) & (bent_ink / ink < 2)), bent_ink / ink  # bent, not erased or smeared
    strips, texts = make_strips(*test_digits, 20, seed=1, warp=0.5)
    plain, same_texts = make_strips(*test_digits, 20, seed=1)
    assert [t.tolist() for t in texts] == [t.tolist() for t in same_texts]
    assert any(not np.array_equal(a, b) for a, b in zip(strips, plain, strict=True))


@pytest.mark.slow
def test_training_learns_to_read_in_stages(test_digits):
    images, labels = test_digits
    ones = labels < 2  # 0s and 1s only, so that a minute of training learns something
    fixed = make_strips(images[ones], labels[ones], 1500, seed=2)
    lines = []
    asked = []

    def make(epoch, warp):
        asked.append((epoch, warp))
        return fixed

    network = train_sequence_reader(make, 1500, stages=((2, 0.003, 0.3, 0.0), (1, 0.001, 0.3, 0.5)),
                                    log=lines.append)
    assert asked == [(0, 0.0), (1, 0.0), (2, 0.5)]  # each stage asks for its own share of bent digits
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    losses = [float(line.split("CTC loss ")[1].split(",")[0]) for line in lines]
    assert losses[-1] < losses[0] / 2, losses
    assert not network.training


def test_a_strip_is_read_in_four_views_whose_likelihoods_are_averaged():
    b = BLANK
    mask = np.zeros((60, 150), bool)
    mask[10:50, 10:140] = True
    strip = to_strip(mask.astype(np.float32), mask)
    views = read_strip(strip)
    widths = [v.shape[0] for v in views]  # steps: as it is, 2 columns later, narrower, wider
    assert len(views) == 4 and widths[2] < widths[0] < widths[3] and all(v.shape[1] == BLANK + 1 for v in views)
    sure, unsure = steps([b, 4, b, 7, b]), steps([b, 4, b, 7, b], sure=0.5)
    one, other = log_likelihoods([sure], [[4, 7]]), log_likelihoods([unsure], [[4, 7]])
    assert log_likelihoods([sure, unsure], [[4, 7]]) == pytest.approx((one + other) / 2)
