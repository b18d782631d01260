"""The default model on MNIST test digits rendered as photos (tests/photolike.py): issue 4's acceptance."""

import numpy as np
import pytest
import torch

from cnnlab.evaluate import predict_logits, to_input
from cnnlab.predict import preprocess_source
from cnnlab.preprocess import digit_to_mnist, read_grey
from cnnlab.train import train
from tests.photolike import compose_number, number_written_differently, render_photo, uci_digits_as_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_model(mnist):
    run = train(dataset=mnist, seed=0, progress=False)  # the default settings: the fast preset
    return run.model, run.info


def labels_of(model, info, images: list[np.ndarray]) -> np.ndarray:
    return predict_logits(model, to_input(torch.from_numpy(np.stack(images)), info.mean, info.std)).argmax(1).numpy()


def test_single_photographed_digits(default_model, mnist):
    model, info = default_model
    rng = np.random.default_rng(2024)
    picks = rng.choice(len(mnist.test_images), 500, replace=False)
    images = [digit_to_mnist(read_grey(render_photo(mnist.test_images[i].numpy(), rng))) for i in picks]
    accuracy = (labels_of(model, info, images) == mnist.test_labels[picks].numpy()).mean()
    assert accuracy >= 0.985, accuracy


def test_photographed_numbers(default_model, mnist):
    model, info = default_model
    rng = np.random.default_rng(4096)
    right = 0
    for _ in range(100):
        picks = rng.choice(len(mnist.test_images), int(rng.integers(3, 7)), replace=False)
        number = compose_number([mnist.test_images[i].numpy() for i in picks], rng)
        photo = render_photo(number, rng, height=int(rng.integers(20, 301)))
        digits = preprocess_source(photo, info, number=True, model=model)  # as cnnlab predict --number
        truth = mnist.test_labels[picks].numpy()
        right += len(digits) == len(picks) and (labels_of(model, info, digits) == truth).all()
    assert right >= 90, right  # issue 4: whole numbers of 3-6 digits


def test_numbers_made_another_way(default_model, mnist):
    """Numbers from a second generator (per-digit tilt and size, wider gaps, ruled paper): the
    reader must not be fitted to the first one."""
    model, info = default_model
    rng = np.random.default_rng(1234)
    right = 0
    for _ in range(100):
        picks = rng.choice(len(mnist.test_images), int(rng.integers(3, 7)), replace=False)
        photo = number_written_differently([mnist.test_images[i].numpy() for i in picks], rng)
        digits = preprocess_source(photo, info, number=True, model=model)
        truth = mnist.test_labels[picks].numpy()
        right += len(digits) == len(picks) and (labels_of(model, info, digits) == truth).all()
    assert right >= 90, right  # issue 4: the bar holds here too (91 of these 100)


def test_a_second_handwriting_source(default_model):
    model, info = default_model
    photos, truth = uci_digits_as_photos(500, np.random.default_rng(8))
    images = [digit_to_mnist(read_grey(photo)) for photo in photos]
    accuracy = (labels_of(model, info, images) == truth).mean()
    assert accuracy >= 0.90, accuracy  # 8x8 originals blown up: far coarser than MNIST, so a lower bar
