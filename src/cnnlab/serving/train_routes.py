"""The Train tab's API (cnnlab.serving.training_job runs the training):

    GET  /api/train/options  the presets and models to choose from
    POST /api/train          start one: JSON {"preset", "model", "epochs", "limit"}; 202, or 409 while one runs
    GET  /api/train          the current (or last) training's state and settings; 404 before the first
    GET  /api/train/events   its events as server-sent events, from the first: a late page sees the whole run
    POST /api/train/stop     stop it after the step under way, keeping its checkpoint; 409 when none runs;
                             JSON {}

A training that finishes replaces the model the app serves and explains. The POST routes change
the server's state: cnnlab.serving.access lets them through only with the token, from the
server's own page or a program, with a JSON body; they are also marked so in the OpenAPI page
(``Authorize`` there takes the token). A training only uses data already on this machine: the
Train tab never downloads a dataset (a missing one is a 409 that says how to get it).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette.sse import EventSourceResponse

from cnnlab.data.download import ensure_files, resolve_data_dir
from cnnlab.data.registry import DATASETS, dataset_kind
from cnnlab.errors import CnnlabError
from cnnlab.files import free_folder
from cnnlab.models.files import ModelInfo
from cnnlab.models.registry import MODELS
from cnnlab.serving.api_error import ApiError, where
from cnnlab.serving.bodies import Bodies
from cnnlab.serving.training_job import TrainingJob, TrainRequest, start_job
from cnnlab.training.presets import PRESETS

WAIT_SECONDS = 0.5  # how long one wait for the next event lasts; the stream then checks its client
# The token's place in the OpenAPI page, so that its Authorize button sends it; AccessMiddleware checks it.
TOKEN_SCHEME = HTTPBearer(auto_error=False, description="the token in the URL that cnnlab serve printed")


class TrainBody(BaseModel):
    """The Train tab's form: a preset, and optionally a model (a registry name or a layer spec),
    the epochs and a limit on the training images. Other fields are refused (a misspelt one would
    otherwise be dropped without a word), and so are values of another JSON type: strict, so that
    ``true`` or ``"3"`` is not taken for a number of epochs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    preset: str = "fast"
    model: str | None = None
    epochs: int | None = None
    limit: int | None = None


class StopBody(BaseModel):
    """Stop takes no settings: ``{}``."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class TrainPlace:
    """Where the Train tab's runs go (``runs``), and the reader of its request bodies, with their bounds."""

    runs: Path
    bodies: Bodies


async def read_model(request: Request, bodies: Bodies, model: type[BaseModel], example: str) -> Any:
    """The JSON body as ``model``, read within ``bodies``' bounds; 400 for a body that does not fit it."""
    try:
        return model.model_validate(await bodies.json(request, example))
    except ValidationError as exc:
        raise ApiError(400, f"bad request body: {where(exc.errors())}; send {example}") from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def data_on_disk(dataset: str) -> None:
    """Raise a 409 when ``dataset``'s files are not on this machine: the Train tab never downloads."""
    try:
        ensure_files(DATASETS[dataset], resolve_data_dir(), download=False)
    except CnnlabError as exc:
        raise ApiError(409, f"the Train tab trains only on data already on this machine, and {exc}") from None


def dataset_and_shape(info: ModelInfo) -> tuple[str, tuple[int, int, int]]:
    """What the Train tab trains on: the served model's dataset when it is a built-in one, else
    MNIST, with its (classes, channels, side)."""
    if info.dataset in DATASETS:
        return info.dataset, (len(info.class_names), info.in_channels, info.image_size)
    return "mnist", (10, 1, 28)


class PageTrainings:
    """The page's trainings: the current (or last) one, one started at a time, into ``runs``; a
    finished run's model is passed to ``serve_new_model``."""

    def __init__(self, runs: Path, serve_new_model: Callable[[Path], None]) -> None:
        self.runs, self.serve_new_model = runs, serve_new_model
        self.current: TrainingJob | None = None
        self.starting = threading.Lock()

    def job(self) -> TrainingJob:
        if self.current is None:
            raise ApiError(404, "no training has been started here; start one with POST /api/train")
        return self.current

    def start(self, body: TrainBody, info: ModelInfo) -> dict[str, Any]:
        with self.starting:
            if self.current is not None and self.current.state == "running":
                raise ApiError(409, f"a training is already running ({self.current.out.name}); stop it or wait "
                                    "for it to finish")
            dataset, shape = dataset_and_shape(info)
            settings = TrainRequest(**body.model_dump()).settings(dataset, shape)
            data_on_disk(dataset)
            out = free_folder(self.runs / f"page-{settings['preset']}-{dataset}")
            self.current = start_job(settings, out, lambda finished: self.serve_new_model(finished.out))
            return self.current.to_json()

    def end(self) -> None:
        """The server is shutting down: no training outlives it."""
        if self.current is not None:
            self.current.end()


def add_train_routes(app: FastAPI, place: TrainPlace, served_info: Callable[[], ModelInfo],
                     serve_new_model: Callable[[Path], None]) -> None:
    """Add the Train tab's routes to ``app``: runs go under ``place.runs``, on the served model's
    dataset when it is a built-in one (else MNIST); a finished run's model is passed to ``serve_new_model``."""
    trainings = PageTrainings(place.runs, serve_new_model)
    owner = APIRouter(dependencies=[Depends(TOKEN_SCHEME)])  # routes that change the server: see the docstring

    @owner.post("/api/train", status_code=202, openapi_extra=body_schema(TrainBody))
    async def start_training(request: Request) -> dict[str, Any]:
        """Start a training (one at a time): the page's Train tab. Needs the token."""
        body = await read_model(request, place.bodies, TrainBody, '{"preset": "fast", "epochs": 1}')
        return await asyncio.to_thread(trainings.start, body, served_info())

    @app.get("/api/train/options")
    def training_options() -> dict[str, Any]:
        """What the Train tab offers: the presets (with what each trains here) and the registry's models,
        and ``current``: the current or last training, as ``GET /api/train`` gives it (null when none)."""
        current = trainings.current.to_json() if trainings.current is not None else None
        return {**options_for(dataset_and_shape(served_info())[0]), "current": current}

    @app.get("/api/train")
    def training_state() -> dict[str, Any]:
        """The current or last training: ``state`` (running, done, stopped, failed), settings, run directory."""
        return trainings.job().to_json()

    @owner.post("/api/train/stop", openapi_extra=body_schema(StopBody))
    async def stop_training(request: Request) -> dict[str, Any]:
        """Stop the training after the step under way; its checkpoint is kept (``cnnlab train --resume``).
        Needs the token, and a JSON body: ``{}``."""
        await read_model(request, place.bodies, StopBody, "{}")
        running = trainings.job()
        if running.state != "running":
            raise ApiError(409, f"no training is running; the last one is {running.state}")
        running.stop()
        return running.to_json()

    @app.get("/api/train/events")
    async def training_events() -> EventSourceResponse:
        """The training's events (text/event-stream), each a JSON object with a ``type``: line, point,
        epoch, then done, stopped or failed, which ends the stream."""
        return EventSourceResponse(event_stream(trainings.job()), ping=10)

    app.include_router(owner)
    app.router.on_shutdown.append(trainings.end)


def options_for(dataset: str) -> dict[str, Any]:
    """The presets, with what each trains on ``dataset``, and the registry's models."""
    kind = dataset_kind(dataset)
    return {"dataset": dataset,
            "presets": [{"name": p.name, "description": p.description_for(kind)} for p in PRESETS.values()],
            "models": [{"name": m.name, "description": m.description} for m in MODELS.values()]}


async def event_stream(job: TrainingJob):
    """``job``'s events from the first, each with its index as the event id, until it has ended.
    A client that reconnects gets the whole run again (the page starts its picture afresh then)."""
    seen = 0
    while True:
        events = await asyncio.to_thread(job.wait, seen, WAIT_SECONDS)
        for offset, event in enumerate(events):
            yield {"id": str(seen + offset), "data": json.dumps(event)}
        seen += len(events)
        if job.state != "running" and seen >= len(job.events):
            return
