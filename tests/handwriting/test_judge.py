"""The segment judge: its training examples, its training, and the weights that ship."""

import numpy as np
import pytest

from cnnlab.handwriting.judge import load_judge, make_examples, one_digit_log_prob, train_judge


@pytest.fixture(scope="module")
def digits(mnist):
    return mnist.train_images[:600].numpy()


def test_examples_are_mnist_like_and_reproducible(digits):
    images, labels = make_examples(digits, 300, seed=3)
    assert images.shape == (300, 28, 28) and images.dtype == np.uint8
    assert set(np.unique(labels)) == {0.0, 1.0} and 0.3 < labels.mean() < 0.7
    assert (images.reshape(300, -1).max(1) == 255).all()  # every example holds ink, stretched as to_mnist does
    again, _ = make_examples(digits, 300, seed=3)
    assert np.array_equal(images, again)
    assert not np.array_equal(images, make_examples(digits, 300, seed=4)[0])


def test_training_learns_to_tell_pieces_from_digits(digits):
    images, labels = make_examples(digits, 3000, seed=0)
    network = train_judge(images[500:], labels[500:], epochs=5)
    right = (one_digit_log_prob(images[:500], network) > np.log(0.5)) == (labels[:500] > 0.5)
    assert right.mean() > 0.75, right.mean()  # always "one digit" would score about 0.5


def test_the_shipped_judge_on_examples_made_from_test_digits(mnist):
    images, labels = make_examples(mnist.test_images.numpy(), 2000, seed=1)  # digits it never saw
    log_p = one_digit_log_prob(images)
    assert log_p.shape == (2000,) and (log_p <= 0).all()
    right = (log_p > np.log(0.5)) == (labels > 0.5)
    assert right.mean() > 0.9, right.mean()
    assert load_judge() is load_judge()  # loaded once
