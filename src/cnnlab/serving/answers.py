"""What the API answers, with the model it serves: each request prepared (cnnlab.using.predictor.Predictor.prepare),
answered in a forward pass shared with other requests (cnnlab.serving.batching), and bounded in
number before its body is read.

A worker process has one core's share of the machine (``cnnlab serve --workers``, one per core):
preparing and the forward passes run on its event loop, one after the other, with no thread's
hand-off and no contention for the GIL. Measured on 2 cores, a drawn digit took 2.7 ms of CPU this
way against 3.8 ms with a preparing thread and a forward thread (benchmarks/serve_load.py). The
requests that arrive meanwhile wait in the socket, and go together into the next pass. Explanations,
a hundred times the work, run in a thread of their own, so the loop goes on answering predictions.
Images decode one at a time per process, so any number of uploads at once takes no more memory
to decode than the largest one alone (cnnlab.data.images.MAX_IMAGE_MEMORY)."""

from __future__ import annotations

import asyncio
import copy
import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from cnnlab.models.attribution import METHODS, has_conv
from cnnlab.models.files import model_paths
from cnnlab.models.registry import count_parameters
from cnnlab.serving.api_error import ApiError
from cnnlab.serving.batching import Admission, Batcher, BatchLimits
from cnnlab.serving.explain_api import explain_json
from cnnlab.using.explanation import explain_image
from cnnlab.using.predictor import Predictor, Prepared, preprocessing

UPLOAD_NAME = "the image"  # how an upload is named in an error message


@dataclass(frozen=True)
class Served:
    """The model the app answers with, and its facts (``GET /api/model``). The Train tab replaces
    the whole of it when a training finishes; a request under way keeps the one it started with."""

    predictor: Predictor
    facts: dict[str, Any]
    # A copy for /api/explain: its layer hooks must see only its own passes, never the batched
    # passes that other requests make on ``predictor.model`` meanwhile.
    inspected: torch.nn.Module

    @classmethod
    def load(cls, model_path: str | Path) -> Served:
        predictor = Predictor.load(model_path)
        model, info = predictor.model, predictor.info
        facts = {"name": Path(model_path).resolve().name, "architecture": info.architecture,
                 "dataset": info.dataset, "classes": info.class_names, "image_size": info.image_size,
                 "test_accuracy": info.test_accuracy, "parameters": count_parameters(model),
                 "channels": info.in_channels, "drawing": predictor.digit_steps, "preprocessing": preprocessing(info),
                 "methods": [m for m in METHODS if m != "gradcam" or has_conv(model)],
                 "version": model_version(model_path)}
        return cls(predictor, facts, copy.deepcopy(model).eval())


def model_version(model_path: str | Path) -> str:
    """The first 12 hex digits of the weights file's SHA-256: which model is served, whatever its folder's name."""
    path = Path(model_path)
    weights = path if path.is_file() else model_paths(path)[0]
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12]


class Answers:
    """The API's predictions and explanations with the served model (which the Train tab may replace).

    At most ``limits.max_queue`` requests are held at once; ``on_pass`` is called with each
    forward pass's size (the metrics)."""

    def __init__(self, model_path: str | Path, limits: BatchLimits, on_pass=None) -> None:
        self.served = Served.load(model_path)
        self.admission = Admission(limits.max_queue)
        self.batcher = Batcher(limits, lambda: self.admission.under_way, on_pass)
        self.explaining = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-explain")

    def close(self) -> None:
        """Let the explaining thread go (the server is shutting down)."""
        self.explaining.shutdown(wait=False, cancel_futures=True)

    async def predict(self, data: bytes, number: bool) -> dict[str, Any]:
        """The JSON answer for one image's bytes; a number of several digits when ``number``."""
        served = self.served  # one model for the whole request, even if the Train tab replaces it meanwhile
        prepared = prepare_upload(served.predictor, data, number)
        return (await self.batcher.answer(served.predictor, prepared)).to_json()

    async def explain(self, data: bytes, method: str) -> dict[str, Any]:
        """The answer for one image, with the heatmap of ``method`` and every layer's activations."""
        served = self.served
        methods = served.facts["methods"]
        if method not in methods:
            raise ApiError(400, f"unknown method '{method}' for this model: use one of {', '.join(methods)}")
        prepared = prepare_upload(served.predictor, data, False)
        answer = await self.batcher.answer(served.predictor, prepared)  # as /api/predict gives it, shifts and all

        def explained() -> dict[str, Any]:
            info = served.predictor.info
            target = info.class_names.index(answer.label)  # the maps explain the answer's class
            why = explain_image(served.inspected, info, UPLOAD_NAME, prepared.images[0], (method,), target)
            return explain_json(answer, why, method, info.class_names)

        return await asyncio.get_running_loop().run_in_executor(self.explaining, explained)


def prepare_upload(predictor: Predictor, data: bytes, number: bool) -> Prepared:
    """An upload's image prepared (decoded, its ink found); named in error messages only, as an
    upload's answer has no path."""
    return replace(predictor.prepare(data, number, UPLOAD_NAME), name=None)
