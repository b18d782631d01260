"""Requests that come together share one forward pass (cnnlab.serving.batching), and give the
answers they would have had alone; a bad input fails alone; past the queue's bound comes a 503."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cnnlab.handwriting.number import Reading
from cnnlab.serving.api_error import ApiError
from cnnlab.serving.batching import Admission, Batcher, BatchLimits
from cnnlab.using.prediction import png_bytes
from cnnlab.using.predictor import Predictor, Prepared
from tests.photolike import compose_number, render_photo


@pytest.fixture(scope="module")
def predictor(mnist_run):
    return Predictor.load(mnist_run)


@pytest.fixture(scope="module")
def prepared(predictor, mnist):
    """Drawn digits, photographed digits and a photographed number, as the server prepares them."""
    rng = np.random.default_rng(3)
    images = mnist.test_images[:12].numpy()
    drawn = [predictor.prepare(png_bytes(255 - image), name=None) for image in images[:6]]
    photos = [predictor.prepare(render_photo(image, rng, 120), name=None) for image in images[6:10]]
    number = predictor.prepare(render_photo(compose_number(list(images[:3]), rng), rng, 300), number=True)
    return [*drawn, *photos, number]


def batched(predictor: Predictor, prepared: list[Prepared], limits: BatchLimits, sizes: list[int]) -> list:
    """Every input's answer (or the exception it got), all asked at once of one Batcher."""
    async def together():
        batcher = Batcher(limits, lambda: len(prepared), sizes.append)
        return await asyncio.gather(*(batcher.answer(predictor, p) for p in prepared), return_exceptions=True)

    return asyncio.run(together())


def same(batched_answer, alone) -> bool:
    """The same JSON answer: labels, images and structure equal, and each probability equal but for
    the last bit of float32 (a pass over several images sums the same terms in another order: 1.2e-7
    at most, which can move the sixth decimal place)."""
    if isinstance(alone, dict):
        return batched_answer.keys() == alone.keys() and all(same(batched_answer[k], alone[k]) for k in alone)
    if isinstance(alone, list | tuple):
        return len(batched_answer) == len(alone) and all(map(same, batched_answer, alone))
    if isinstance(alone, float):
        return abs(batched_answer - alone) <= 1.5e-6
    return batched_answer == alone


def test_batched_answers_are_the_answers_alone(predictor, prepared):
    alone = [predictor.answer([p], details=True)[0].to_json() for p in prepared]
    sizes = []
    together = batched(predictor, prepared, BatchLimits(max_batch=4), sizes)
    assert all(same(answer.to_json(), one) for answer, one in zip(together, alone, strict=True))
    assert not same({"confidence": 0.5}, {"confidence": 0.50001})  # the comparison can fail
    assert sizes == [4, 4, 3]  # three passes of at most max_batch requests, not eleven
    assert together[-1].number is not None and len(together[-1].digits) == 3


def test_a_bad_input_fails_alone(predictor, prepared):
    broken = Prepared(None, Reading([np.zeros((27, 28), np.uint8)]))  # not the size the network takes
    asked = [*prepared[:3], broken, *prepared[3:5]]
    answers = batched(predictor, asked, BatchLimits(), [])
    assert isinstance(answers[3], Exception)
    good = [a for i, a in enumerate(answers) if i != 3]
    alone = [predictor.answer([p], details=True)[0].to_json() for p in (*prepared[:3], *prepared[3:5])]
    assert all(same(answer.to_json(), one) for answer, one in zip(good, alone, strict=True))


def test_past_the_bound_a_request_is_refused_with_retry_after():
    admission = Admission(2)
    with admission.held(), admission.held():
        with pytest.raises(ApiError) as refused, admission.held():
            pass
        assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
        assert "--max-queue" in refused.value.message
    assert admission.under_way == 0
    with admission.held():  # places are given back
        assert admission.under_way == 1
