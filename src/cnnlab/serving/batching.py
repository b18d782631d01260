"""Requests that come together share one forward pass, and a bounded number wait at all.

Each request's image is prepared on its own (decoded, its ink found), then handed to the
:class:`Batcher`. The first to arrive at an idle batcher waits ``wait_seconds`` (about 2 ms) for
company, unless no other request is under way to come: meanwhile the event loop reads and prepares
the others. A pass takes at most ``max_batch`` requests and runs on the event loop (a worker
process has one core: see cnnlab.serving.answers); those that arrive while it runs go together in
the next one. A pass that fails is run again one request at a time, so that one bad input fails
alone.

:class:`Admission` bounds the requests a process holds at once (``--max-queue``): past it a
request is refused at once with 503 and ``Retry-After``, before its body is read, so the wait
never grows without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cnnlab.serving.api_error import ApiError
from cnnlab.using.prediction import Prediction
from cnnlab.using.predictor import Predictor, Prepared


@dataclass(frozen=True)
class BatchLimits:
    """How requests are gathered: at most ``max_batch`` in one pass, the first waiting at most
    ``wait_seconds`` for others; at most ``max_queue`` held by the process at once."""

    max_batch: int = 64
    wait_seconds: float = 0.002
    max_queue: int = 128


class Admission:
    """Counts the requests under way in this process and refuses those past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.under_way = limit, 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """One request's place, for as long as it is answered; a 503 with ``Retry-After`` when full."""
        if self.under_way >= self.limit:
            raise ApiError(503, f"the server is answering {self.limit} requests already (--max-queue); "
                           "try again in a second", headers={"Retry-After": "1"})
        self.under_way += 1
        try:
            yield
        finally:
            self.under_way -= 1


@dataclass
class _Waiting:
    predictor: Predictor
    prepared: Prepared
    answer: asyncio.Future


class Batcher:
    """Gathers prepared requests into forward passes (see the module's docstring).

    ``others_under_way``: how many requests this process holds besides those waiting here (whether
    waiting for company can pay); ``on_pass``: called with each pass's size (the metrics)."""

    def __init__(self, limits: BatchLimits, others_under_way: Callable[[], int] = lambda: 0,
                 on_pass: Callable[[int], None] | None = None) -> None:
        self.limits, self.others_under_way, self.on_pass = limits, others_under_way, on_pass
        self.waiting: list[_Waiting] = []
        self.running = False

    @property
    def depth(self) -> int:
        """Requests waiting for a pass."""
        return len(self.waiting)

    async def answer(self, predictor: Predictor, prepared: Prepared) -> Prediction:
        """``prepared``'s answer from ``predictor`` with every class's probability and the images the
        network saw, computed in a pass shared with other requests."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(_Waiting(predictor, prepared, future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            if self.others_under_way() > len(self.waiting) and len(self.waiting) < self.limits.max_batch:
                await asyncio.sleep(self.limits.wait_seconds)  # company is coming: let it join
            while self.waiting:
                batch, self.waiting = self.waiting[: self.limits.max_batch], self.waiting[self.limits.max_batch :]
                self._pass(batch)
        finally:
            self.running = False

    def _pass(self, batch: list[_Waiting]) -> None:
        if self.on_pass is not None:
            self.on_pass(len(batch))
        # Requests for another model (the Train tab replaced it meanwhile) go in a pass of their own.
        for predictor in dict.fromkeys(w.predictor for w in batch):
            group = [w for w in batch if w.predictor is predictor]
            try:
                answers = answer_all(predictor, group)
            except Exception:  # one input spoils the pass: each is answered alone, and only it fails
                for waiting in group:
                    try:
                        [answer] = answer_all(predictor, [waiting])
                        _settle(waiting.answer, answer)
                    except Exception as exc:
                        if not waiting.answer.done():
                            waiting.answer.set_exception(exc)
                continue
            for waiting, answer in zip(group, answers, strict=True):
                _settle(waiting.answer, answer)


def answer_all(predictor: Predictor, group: list[_Waiting]) -> list[Prediction]:
    """One forward pass for the group's prepared inputs, with details."""
    return predictor.answer([w.prepared for w in group], details=True)


def _settle(future: asyncio.Future, answer: Prediction) -> None:
    if not future.done():  # a client that went away cancelled its wait
        future.set_result(answer)
