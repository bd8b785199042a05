"""Model-based quality: a fastText classifier that tells text worth training on from the rest, as GPT-3's and
DCLM's filters do.

`train_classifier` fits one on any corpus the one reader reads (`python -m pipeline quality train`): word n-grams of
normalised text, balanced classes, a seeded held-out split, and `quality.json` beside the model with what it saw and
how well it separates the held-out documents. `QualityModel.score` is the probability of the positive label;
`QualityStep` runs it in a recipe after the heuristic filters, keeps the score in the `quality` column and drops a
document under `min_quality`. `keep_threshold` turns a run's score quantiles into the threshold that keeps a
fraction (`quality_keep`, applied on Beam after every unit is scored: `pipeline.beam.read`).

fastText is imported where a model is loaded or trained, so importing this module loads nothing heavy; its own
`predict` binding is called directly (the Python wrapper of fastText 0.9.3 breaks under numpy 2).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from pipeline.common import corpus
from pipeline.common.schema import Document, ReadError, Skipped

log = logging.getLogger(__name__)

MODEL_FILE = "model.bin"
REPORT_FILE = "quality.json"
REPORT_VERSION = 1
POSITIVE, NEGATIVE = "__label__keep", "__label__drop"
DROP_REASON = "quality"

# Training defaults: fastText's supervised ones, except a smaller hashed n-gram table (fastText's 2M buckets × 100
# dimensions make an 800 MB model).
DEFAULT_NGRAMS = 2
DEFAULT_EPOCHS = 10
DEFAULT_LR = 0.1
DEFAULT_DIM = 64
DEFAULT_BUCKETS = 200_000
DEFAULT_HELDOUT = 0.1
DEFAULT_THREADS = 12
# fastText 0.9.3 initialises its input matrix in ten blocks, one per training thread, on memory it does not clear:
# with fewer than 11 threads part of the model starts as whatever the allocator held, which ends in "Encountered NaN"
# or a model that depends on the process's history (facebookresearch/fastText#1061). Its Python wrapper defaults to
# one thread fewer than the cores, so a 2-core machine meets this with the defaults.
MIN_THREADS = 11
SCORE_QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
KEEP_FRACTIONS = (0.9, 0.75, 0.5, 0.25, 0.1)
HISTOGRAM_BINS = 10
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


def check_settings(model: str, min_quality: float, keep: float, where: str) -> None:
    """Raises ValueError naming the setting: a threshold or a fraction needs a model, and only one of the two.
    `min_quality` 0 and `quality_keep` 1 keep every document."""
    if not 0 <= min_quality <= 1:
        raise ValueError(f"{where}.min_quality: a probability from 0 to 1: {min_quality}")
    if not 0 < keep <= 1:
        raise ValueError(f"{where}.quality_keep: a fraction of the documents, above 0 and at most 1: {keep}")
    if min_quality > 0 and keep < 1:
        raise ValueError(f"{where}: min_quality and quality_keep are two ways to choose a threshold; set one")
    if (min_quality > 0 or keep < 1) and not model:
        raise ValueError(f"{where}: min_quality and quality_keep need a quality_model")
    if model and not os.path.isfile(model_file(model)):
        raise ValueError(f"{where}.quality_model: no model at {model_file(model)} (python -m pipeline quality train)")


# Reading a labelled corpus


def read_texts(patterns: Sequence[str], text_field: str, skipped: Counter) -> Iterator[tuple[str, str]]:
    """(file, normalised text) of every document in the files the globs match; records without text, files that
    cannot be read and texts with no word left are counted into `skipped`, each file's error logged."""
    for path in corpus.expand(patterns):
        for item in corpus.read_file(path, text_field=text_field, flag="--text-column"):
            if isinstance(item, Skipped):
                skipped[item.reason] += 1
            elif isinstance(item, ReadError):
                log.warning("%s: %s", path, item.error)
                skipped["unreadable_rest_of_file"] += 1
            else:
                line = normalise(item.text)
                if line:
                    yield path, line
                else:
                    skipped["no_words"] += 1


def _sample(texts: Iterable[tuple[str, str]], limit: int | None, rng: random.Random) -> tuple[list[str], int, dict]:
    """A uniform sample of at most `limit` texts (reservoir sampling: any corpus size in bounded memory); also the
    number read and the documents read per file."""
    chosen: list[str] = []
    per_file: Counter = Counter()
    seen = 0
    for path, text in texts:
        per_file[path] += 1
        seen += 1
        if limit is None or len(chosen) < limit:
            chosen.append(text)
        else:
            slot = rng.randrange(seen)
            if slot < limit:
                chosen[slot] = text
    return chosen, seen, dict(per_file)


# Measures of a classifier on held-out documents


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """The probability that a positive document scores above a negative one (ties count half): the area under
    the ROC curve, by the Mann-Whitney rank statistic."""
    if not positive or not negative:
        return None
    ranked = sorted([(s, 1) for s in positive] + [(s, 0) for s in negative])
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end + 1 < len(ranked) and ranked[end + 1][0] == ranked[index][0]:
            end += 1
        average_rank = (index + end) / 2 + 1
        rank_sum += average_rank * sum(label for _, label in ranked[index : end + 1])
        index = end + 1
    n_pos, n_neg = len(positive), len(negative)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def distribution(scores: Sequence[float]) -> dict:
    """Documents, mean, quantiles (numpy's linear interpolation) and a 10-bin histogram of scores from 0 to 1."""
    import numpy as np

    values = np.asarray(scores, dtype=np.float64)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    quantiles: list[float] = list(np.quantile(values, SCORE_QUANTILES)) if values.size else []
    return {
        "documents": int(values.size),
        "mean": round(float(values.mean()), 6) if values.size else None,
        "quantiles": {f"{q:g}": round(float(v), 6) for q, v in zip(SCORE_QUANTILES, quantiles)},
        "histogram": {f"{low:.1f}-{high:.1f}": int(n) for low, high, n in zip(edges, edges[1:], counts)},
    }


def threshold_keeping(scores: Sequence[float], fraction: float) -> float | None:
    """The highest threshold that keeps at least `fraction` of the documents (score ≥ threshold)."""
    if not scores:
        return None
    ordered = sorted(scores, reverse=True)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def classification(positive: Sequence[float], negative: Sequence[float], threshold: float = 0.5) -> dict:
    """Precision, recall and F1 of the positive class at `threshold`, accuracy, and ROC AUC."""
    true_positive = sum(score >= threshold for score in positive)
    false_positive = sum(score >= threshold for score in negative)
    precision = true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
    recall = true_positive / len(positive) if positive else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    correct = true_positive + sum(score < threshold for score in negative)
    auc = roc_auc(positive, negative)
    return {
        "threshold": threshold,
        "precision": round(precision, 6),
        "recall": round(recall, 6),
        "f1": round(f1, 6),
        "accuracy": round(correct / (len(positive) + len(negative)), 6),
        "roc_auc": None if auc is None else round(auc, 6),
    }


# Training


def check_training(
    max_docs: int | None, ngrams: int, epochs: int, lr: float, dim: int, buckets: int, heldout: float, threads: int
) -> None:
    """Raises ValueError naming the flag of a setting fastText would crash on or train wrongly with."""
    if max_docs is not None and max_docs < 1:
        raise ValueError(f"--max-docs: at least 1 document a class: {max_docs}")
    if not 0 <= heldout < 1:
        raise ValueError(f"--heldout: a fraction from 0 to below 1: {heldout}")
    for flag, value in (("--ngrams", ngrams), ("--epochs", epochs), ("--dim", dim)):
        if value < 1:
            raise ValueError(f"{flag}: at least 1: {value}")
    if not lr > 0:
        raise ValueError(f"--lr: above 0: {lr}")
    if ngrams > 1 and buckets < 1:  # fastText hashes n-grams into the buckets: 0 is a division by zero
        raise ValueError(f"--buckets: at least 1 to hold {ngrams}-grams: {buckets}")
    if threads < MIN_THREADS:
        raise ValueError(
            f"--threads: at least {MIN_THREADS}: with {threads}, fastText 0.9.3 leaves part of the model "
            "uninitialised (it fills a tenth per thread: facebookresearch/fastText#1061)"
        )


def balanced_split(texts: dict[str, list[str]], heldout: float, rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """Each class cut to the smaller one's size by a seeded shuffle, then `heldout` of it set aside:
    {class: {"train": [...], "heldout": [...]}}. ValueError when a class is too small to train and measure."""
    size = min(len(found) for found in texts.values())
    held = max(1, round(size * heldout)) if heldout > 0 else 0
    if size - held < 1 or (heldout > 0 and size < 2):
        counts = ", ".join(f"{name} {len(found)}" for name, found in texts.items())
        raise ValueError(f"too few documents to train and measure a classifier ({counts}); each class needs two")
    splits = {}
    for name, found in texts.items():
        balanced = rng.sample(found, size)
        splits[name] = {"heldout": balanced[:held], "train": balanced[held:]}
    return splits


def train_classifier(
    positive: Sequence[str],
    negative: Sequence[str],
    output: str,
    text_field: str = corpus.DEFAULT_TEXT_FIELD,
    max_docs: int | None = None,
    ngrams: int = DEFAULT_NGRAMS,
    epochs: int = DEFAULT_EPOCHS,
    lr: float = DEFAULT_LR,
    dim: int = DEFAULT_DIM,
    buckets: int = DEFAULT_BUCKETS,
    heldout: float = DEFAULT_HELDOUT,
    seed: int = 0,
    threads: int = DEFAULT_THREADS,
) -> dict:
    """Trains on the documents the `positive` and `negative` globs match and writes `output/model.bin` and
    `output/quality.json` (returned). Each class is sampled to at most `max_docs`, then the larger one to the
    smaller one's size; `heldout` of each class is set aside to measure the model. The seed fixes the sample, the
    split and fastText's initialisation; its threads update the weights without locks (Hogwild), so two trainings
    differ slightly. ValueError for a setting out of range or a class too small to train and measure."""
    import fasttext

    check_training(max_docs, ngrams, epochs, lr, dim, buckets, heldout, threads)
    started = time.time()
    rng = random.Random(seed)
    data: dict[str, dict] = {}
    texts: dict[str, list[str]] = {}
    for name, patterns in (("positive", positive), ("negative", negative)):
        skipped: Counter = Counter()
        chosen, read, per_file = _sample(read_texts(patterns, text_field, skipped), max_docs, rng)
        texts[name] = chosen
        data[name] = {"patterns": list(patterns), "files": per_file, "documents": read, "skipped": dict(skipped)}
    splits = balanced_split(texts, heldout, rng)
    for name, split in splits.items():
        data[name]["used"] = len(split["train"]) + len(split["heldout"])
    lines = [f"{POSITIVE} {text}" for text in splits["positive"]["train"]]
    lines += [f"{NEGATIVE} {text}" for text in splits["negative"]["train"]]
    rng.shuffle(lines)
    os.makedirs(output, exist_ok=True)
    training_file = os.path.join(output, f".train-{os.getpid()}.txt")
    try:
        with open(training_file, "w", encoding="utf-8") as handle:
            handle.writelines(f"{line}\n" for line in lines)
        model = fasttext.train_supervised(
            input=training_file,
            wordNgrams=ngrams,
            epoch=epochs,
            lr=lr,
            dim=dim,
            bucket=buckets,
            seed=seed,
            thread=threads,
            minCount=1,
            verbose=0,
        )
    finally:
        os.remove(training_file)
    model_path = os.path.join(output, MODEL_FILE)
    model.save_model(model_path)
    trained_seconds = time.time() - started
    used = model.f.getArgs()  # what fastText trained with (it drops the buckets of a 1-gram model)
    scorer = QualityModel(model_path)
    scores = {name: [scorer.score_normalised(text) for text in split["heldout"]] for name, split in splits.items()}
    report = {
        "version": REPORT_VERSION,
        "model": MODEL_FILE,
        "labels": {"positive": POSITIVE, "negative": NEGATIVE},
        "normalisation": "NFKC, lower case, words only, digits as 0",
        "settings": {
            "text_field": text_field,
            "max_docs": max_docs,
            "ngrams": used.wordNgrams,
            "epochs": used.epoch,
            "lr": round(used.lr, 6),
            "dim": used.dim,
            "buckets": used.bucket,
            "heldout": heldout,
            "seed": seed,
            "threads": used.thread,
        },
        "data": data,
        "train": {name: len(split["train"]) for name, split in splits.items()},
        "heldout": {name: len(split["heldout"]) for name, split in splits.items()},
        "metrics": classification(scores["positive"], scores["negative"]) if splits["positive"]["heldout"] else None,
        "scores": {name: distribution(found) for name, found in scores.items()},
        "seconds": {"train": round(trained_seconds, 2), "total": round(time.time() - started, 2)},
        "model_bytes": os.path.getsize(model_path),
    }
    with open(os.path.join(output, REPORT_FILE), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    return report


def score_files(
    model_path: str,
    patterns: Sequence[str],
    text_field: str = corpus.DEFAULT_TEXT_FIELD,
    keep: Sequence[float] = KEEP_FRACTIONS,
) -> dict:
    """The score distribution of a corpus and, for each fraction in `keep`, the threshold that keeps it."""
    started = time.time()
    model = QualityModel(model_path)
    skipped: Counter = Counter()
    per_file: Counter = Counter()
    scores = []
    for path, line in read_texts(patterns, text_field, skipped):
        per_file[path] += 1
        scores.append(model.score_normalised(line))
    seconds = time.time() - started
    return {
        "version": REPORT_VERSION,
        "model": model.path,
        "files": dict(per_file),
        "skipped": dict(skipped),
        "scores": distribution(scores),
        "keep": {f"{fraction:g}": threshold_keeping(scores, fraction) for fraction in keep},
        "seconds": round(seconds, 2),
        "documents_per_second": round(len(scores) / seconds, 1) if seconds > 0 else None,
    }
