"""How handwriting asks a question it cannot answer alone, without calling anything.

Cutting a number into digits can use a classifier's confidence in each candidate piece, but
handwriting knows no model. Its readers are generators: each question is a batch of uint8
digit images ``(N, 28, 28)`` yielded to the caller, which sends back each one's top probability
``(N,)``; the generator's return value is the answer. The caller decides how a question is
answered: one forward pass, or one pass shared with other requests' questions
(cnnlab.serving batches them).

    steps = read_number(grey)                 # nothing runs yet
    reading = answered(steps, top_probability) # drives it, asking top_probability each question
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TypeVar

import numpy as np

T = TypeVar("T")
Asking = Generator[np.ndarray, np.ndarray, T]  # yields questions (N, 28, 28) uint8, is sent answers (N,)
Ask = Callable[[np.ndarray], np.ndarray]  # a question's answer: uint8 images (N, 28, 28) -> top probabilities (N,)


def answered(steps: Asking[T], ask: Ask | None) -> T:
    """Run ``steps`` to the end, answering each question with ``ask``; its result.

    Raises ValueError when ``steps`` asks a question and ``ask`` is None (a reader built to ask
    nothing that asked anyway is a bug, not bad input)."""
    try:
        question = next(steps)
        while True:
            if ask is None:
                raise ValueError("this reading asks a classifier, and none was given")
            question = steps.send(np.asarray(ask(question)))
    except StopIteration as done:
        return done.value


def asking_nothing(function: Callable[..., T] | None) -> Callable[..., Asking[T]] | None:
    """A plain function as a generator function that asks no question (for callers and tests that
    score with a function of their own)."""
    if function is None:
        return None

    def steps(*args) -> Asking[T]:
        return function(*args)
        yield  # never reached: makes this a generator

    return steps
