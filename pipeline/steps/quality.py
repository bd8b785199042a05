"""Model-based quality: a fastText classifier that tells text worth training on from the rest, as GPT-3's and
DCLM's filters do.

`pipeline.steps.quality_training` fits one (`python -m pipeline quality train`) and writes `quality.json` beside the
model. `QualityModel.score` is the probability of the positive label; `QualityStep` runs it in a recipe after the
heuristic filters, keeps the score in the `quality` column and drops a document under `min_quality`, which is, unless
the recipe gives one, the threshold the training chose on its held-out split (`recorded_threshold`). `keep_threshold` turns a run's score quantiles into the threshold that keeps a
fraction (`quality_keep`, applied on Beam after every unit is scored: `pipeline.beam.read`).

fastText is imported where a model is loaded or trained, so importing this module loads nothing heavy; its own
`predict` binding is called directly (the Python wrapper of fastText 0.9.3 breaks under numpy 2).
"""

from __future__ import annotations

import json
import logging
import os
import re
import unicodedata
from collections.abc import Sequence

from pipeline.common.schema import Document

log = logging.getLogger(__name__)

MODEL_FILE = "model.bin"
REPORT_FILE = "quality.json"
REPORT_VERSION = 2  # 2: the held-out threshold, warnings and autotune
POSITIVE, NEGATIVE = "__label__keep", "__label__drop"
DROP_REASON = "quality"

# `quality_keep` reads its threshold from this many evenly spaced quantiles of a run's scores (0.1% apart).
KEEP_QUANTILES = 1001

_WORD = re.compile(r"\w+")
_DIGIT = re.compile(r"\d")


def normalise(text: str) -> str:
    """What the model sees, in training and scoring alike: NFKC, lower case, words only (punctuation and markup
    go), every digit as 0, one line (fastText reads a document per line)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _DIGIT.sub("0", " ".join(_WORD.findall(text)))


def model_file(path: str) -> str:
    """The model file of a `quality train` folder, or a fastText `.bin` given as it is."""
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


class QualityModel:
    """`score(text)`: the model's probability that the text is of the positive class, from 0 to 1."""

    def __init__(self, path: str):
        import fasttext

        self.path = model_file(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(
                f"quality model not found: {self.path} (train one: python -m pipeline quality train)"
            )
        self._model = fasttext.FastText._FastText(model_path=self.path).f
        labels = set(self._model.getLabels("__label__")[0])
        if labels != {POSITIVE, NEGATIVE}:
            raise ValueError(f"{self.path}: labels {sorted(labels)}, expected {POSITIVE} and {NEGATIVE}")

    def score(self, text: str) -> float:
        return self.score_normalised(normalise(text))

    def score_normalised(self, line: str) -> float:
        for probability, label in self._model.predict(line, 2, 0.0, "replace"):
            if label == POSITIVE:
                return min(max(float(probability), 0.0), 1.0)
        return 0.0


class QualityStep:
    """Scores a document into `quality`; under `min_quality` it is dropped as `quality` (0: never)."""

    name = DROP_REASON

    def __init__(self, model: QualityModel, min_quality: float = 0.0):
        self.model = model
        self.min_quality = min_quality

    def __call__(self, doc: Document) -> str | None:
        doc.quality = self.model.score(doc.text)
        return DROP_REASON if doc.quality < self.min_quality else None


def keep_threshold(quantiles: Sequence[float], fraction: float) -> float | None:
    """The score at or above which `fraction` of the documents lie, from evenly spaced quantiles of their scores
    (the first the lowest, the last the highest); None when there were no scores."""
    if not quantiles:
        return None
    position = (1.0 - fraction) * (len(quantiles) - 1)
    return float(quantiles[min(len(quantiles) - 1, max(0, round(position)))])


# `min_quality` when a recipe gives none: the model's held-out F1-best threshold (0 keeps every document).
MODEL_THRESHOLD = -1.0


def recorded_threshold(path: str) -> float | None:
    """The threshold `quality train` chose on its held-out split (quality.json beside the model), or None for a
    model without one (a bare fastText .bin, or a report of an earlier version)."""
    report = os.path.join(os.path.dirname(model_file(path)), REPORT_FILE)
    try:
        with open(report, encoding="utf-8") as handle:
            chosen = (json.load(handle).get("threshold") or {}).get("value")
    except (OSError, ValueError):
        return None
    return float(chosen) if chosen is not None else None


def resolved_min_quality(model: str, min_quality: float, keep: float) -> float:
    """The threshold a run drops under: the recipe's, else (no `quality_keep` either) the model's recorded one."""
    if min_quality != MODEL_THRESHOLD:
        return min_quality
    if keep < 1:
        return 0.0
    chosen = recorded_threshold(model)
    if chosen is None:
        log.info("%s has no recorded threshold (quality.json): documents are scored, none dropped", model)
        return 0.0
    return chosen


def check_settings(model: str, min_quality: float, keep: float, where: str) -> None:
    """Raises ValueError naming the setting: a threshold or a fraction needs a model, and only one of the two.
    `min_quality` 0 and `quality_keep` 1 keep every document; `min_quality` -1 (the default) is the model's
    held-out threshold."""
    if not (0 <= min_quality <= 1 or min_quality == MODEL_THRESHOLD):
        raise ValueError(f"{where}.min_quality: a probability from 0 to 1 (or -1: the model's): {min_quality}")
    if not 0 < keep <= 1:
        raise ValueError(f"{where}.quality_keep: a fraction of the documents, above 0 and at most 1: {keep}")
    if min_quality > 0 and keep < 1:
        raise ValueError(f"{where}: min_quality and quality_keep are two ways to choose a threshold; set one")
    if (min_quality > 0 or keep < 1) and not model:
        raise ValueError(f"{where}: min_quality and quality_keep need a quality_model")
    if model and not os.path.isfile(model_file(model)):
        raise ValueError(f"{where}.quality_model: no model at {model_file(model)} (python -m pipeline quality train)")
