"""One answer, as every way in gives it: :class:`Prediction`, with one ``to_json`` for ``--json``
and the API, and one ``to_text`` for the terminal."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 image ``(H, W)`` or ``(H, W, 3)`` encoded as a PNG file's bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def png_base64(image: np.ndarray) -> str:
    """A uint8 image as base64 PNG, for JSON."""
    return base64.b64encode(png_bytes(image)).decode("ascii")


@dataclass(frozen=True)
class Asked:
    """What an answer lists: ``top_k`` candidates, uncertain under ``min_confidence``, every
    class's probability (``details``), the images the network saw (``images``)."""

    top_k: int = 3
    min_confidence: float = 0.0
    details: bool = False
    images: bool = False


@dataclass
class Prediction:
    """One image's answer.

    ``label``/``confidence``/``top``: the class, its probability, and the ``top`` (label,
    probability) list; for a number, ``number`` is the digits' labels joined, ``confidence``
    their product, and ``digits`` one ``{label, confidence, top}`` per digit. ``uncertain`` is set
    when a confidence is below the asked minimum; ``error`` says why an image got no answer (no
    ink, too many marks, unreadable), and then the rest is empty. ``path`` names the image (None
    for an upload). With details (:meth:`cnnlab.using.predictor.Predictor.answer`),
    ``probabilities`` holds every class's probability (a number: each digit's, under ``digits``)
    and ``images`` the uint8 inputs the network saw.
    """

    path: str | None
    label: str = ""
    confidence: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)
    number: str | None = None
    digits: list[dict] | None = None
    uncertain: bool = False
    error: str | None = None
    probabilities: dict[str, float] | None = None
    images: list[np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def of(cls, path: str | None, images: list[np.ndarray], probabilities: np.ndarray, classes: list[str],
           number: bool, asked: Asked | None = None) -> Prediction:
        """The answer for ``images`` (one, or a number's digits) given their ``probabilities``
        ``(N, classes)``."""
        asked = asked or Asked()
        details = asked.details
        values, indices = torch.from_numpy(probabilities).topk(min(asked.top_k, len(classes)), dim=1)
        tops = [[(classes[i], round(v, 6)) for v, i in zip(vs, ix, strict=True)]
                for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)]
        every = [{c: round(p, 6) for c, p in zip(classes, row, strict=True)} for row in probabilities.tolist()]
        uncertain = any(top[0][1] < asked.min_confidence for top in tops)
        kept = list(images) if asked.images else None
        if not number:
            label, confidence = tops[0][0]
            return cls(path, label, confidence, tops[0], uncertain=uncertain,
                       probabilities=every[0] if details else None, images=kept)
        digits = [{"label": t[0][0], "confidence": t[0][1], "top": [[label, p] for label, p in t],
                   **({"probabilities": p} if details else {})} for t, p in zip(tops, every, strict=True)]
        confidence = round(float(np.prod([t[0][1] for t in tops])), 6)
        return cls(path, confidence=confidence, number="".join(d["label"] for d in digits), digits=digits,
                   uncertain=uncertain, images=kept)

    def to_json(self) -> dict:
        """The answer as JSON: what ``--json`` prints and the API returns. ``path`` is left out for
        an upload; with details, ``probabilities`` and ``preprocessed`` (the network's input as
        base64 PNG; a number's digits side by side, and each under ``digits``) are added."""
        named = {"path": self.path} if self.path is not None else {}
        if self.error:
            return {**named, "error": self.error}
        shown = {"preprocessed": png_base64(np.concatenate(self.images, axis=1))} if self.images else {}
        if self.number is not None:
            digits = self.digits
            if self.images:
                digits = [{**d, "preprocessed": png_base64(image)}
                          for d, image in zip(digits, self.images, strict=True)]
            return {**named, "number": self.number, "confidence": self.confidence, "digits": digits,
                    "uncertain": self.uncertain, **shown}
        every = {"probabilities": self.probabilities} if self.probabilities is not None else {}
        return {**named, "label": self.label, "confidence": self.confidence,
                "top": [[label, p] for label, p in self.top], **every, "uncertain": self.uncertain, **shown}

    def to_text(self) -> str:
        """One line: the answer, then the runners-up (or each digit's confidence)."""
        if self.error:
            return f"{self.path}: no answer: {self.error}"
        doubt = "  (uncertain)" if self.uncertain else ""
        if self.number is not None:
            digits = ", ".join(f"{d['label']} {100 * d['confidence']:.1f}%" for d in self.digits or [])
            return f"{self.path}: {self.number}  [{digits}]{doubt}"
        others = ", ".join(f"{label} {100 * p:.1f}%" for label, p in self.top[1:])
        then = f"  [then {others}]" if others else ""
        return f"{self.path}: {self.label} ({100 * self.confidence:.1f}%){then}{doubt}"
