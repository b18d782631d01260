"""Reproducing the beginner's article: its MLP and CNN with its exact training settings.

The article trains with Keras: Adam (lr 0.001), categorical cross-entropy, 10 epochs,
batch 200, pixels scaled to 0-1, no validation split. It reports 1.72% test error for the
MLP and 3.41% for the CNN. Its printed CNN code runs a stride-5 conv over a 1x28 image of 28
channels (see :class:`cnnlab.models.registry.SeedCnnAsPrinted`); the CNN its text describes does far
better.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data import load_dataset
from cnnlab.training.config import TrainConfig
from cnnlab.training.loop import train

# Test errors (fractions) as printed in the article; None where it has no such model.
ARTICLE_ERRORS = {"mlp": 0.0172, "seed-cnn-as-printed": 0.0341, "seed-cnn": None}
# Acceptance band for our reproduction of each model (fractions).
TARGETS = {"mlp": (0.0, 0.020), "seed-cnn": (0.0, 0.013), "seed-cnn-as-printed": (0.030, 0.040)}
ARTICLE_SETTINGS = dict(epochs=10, batch_size=200, optimizer="adam", lr=1e-3, schedule="constant",
                        label_smoothing=0.0, augment="none", val_split=0.0, normalize=False)


@dataclass
class ReproductionRow:
    model: str
    article_error: float | None
    error: float
    seconds: float
    target: tuple[float, float]

    @property
    def meets_target(self) -> bool:
        return self.target[0] <= self.error <= self.target[1]

    def to_json(self) -> dict:
        return {"model": self.model, "article_error": self.article_error, "error": self.error,
                "seconds": self.seconds, "target": list(self.target), "meets_target": self.meets_target}


def reproduce_article(data_dir: str | Path | None = None, epochs: int | None = None, seed: int = 0,
                      out: str | Path | None = None, models: list[str] | None = None) -> list[ReproductionRow]:
    """Train the article's models with its settings; one :class:`ReproductionRow` each.

    Args:
        data_dir: where MNIST lives.
        epochs: override the article's 10 epochs (quick checks only; targets assume 10).
        seed: the random seed of every run.
        out: if given, each model's run directory is written under it.
        models: a subset of the article's models (default: all three).
    """
    dataset = load_dataset("mnist", data_dir=data_dir)
    rows = []
    for name in models or list(TARGETS):
        settings = {**ARTICLE_SETTINGS, "epochs": epochs or ARTICLE_SETTINGS["epochs"]}
        config = TrainConfig(model=name, seed=seed, out=str(Path(out) / name) if out else None, **settings)
        started = time.perf_counter()
        result = train(config, dataset=dataset)
        rows.append(ReproductionRow(name, ARTICLE_ERRORS[name], result.metrics["test_error"],
                                    time.perf_counter() - started, TARGETS[name]))
    return rows


def format_table(rows: list[ReproductionRow]) -> str:
    """The reproduction as a plain-text table."""
    lines = [f"{'model':<22}{'article error':>14}{'our error':>11}{'target':>14}{'seconds':>9}  ok"]
    for row in rows:
        article = f"{100 * row.article_error:.2f}%" if row.article_error is not None else "-"
        target = f"{100 * row.target[0]:.1f}-{100 * row.target[1]:.1f}%"
        lines.append(f"{row.model:<22}{article:>14}{100 * row.error:>10.2f}%{target:>14}{row.seconds:>9.1f}  "
                     f"{'yes' if row.meets_target else 'NO'}")
    return "\n".join(lines)
