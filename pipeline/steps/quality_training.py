"""Training and measuring a quality classifier (`python -m pipeline quality train`), and scoring a corpus with one
(`quality score`): what `pipeline.steps.quality` scores documents with in a run.

`train_classifier` fits fastText on word n-grams of normalised text, balanced classes and a seeded held-out split,
and writes `quality.json` beside the model: what it saw, how well it separates the held-out documents at fastText's
0.5 and at the held-out split's F1-best threshold (which a recipe's `min_quality` uses unless given), and warnings
when the model says nothing (one class predicted, or a ROC AUC near 0.5). `autotune` runs fastText's own search of
the training settings against the held-out split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from pipeline.common import corpus
from pipeline.common.schema import ReadError, Skipped
from pipeline.steps.quality import MODEL_FILE, NEGATIVE, POSITIVE, REPORT_FILE, REPORT_VERSION, QualityModel, normalise

log = logging.getLogger(__name__)

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


# Below this held-out ROC AUC a model tells the classes apart little better than a coin.
WEAK_AUC = 0.6


def best_threshold(positive: Sequence[float], negative: Sequence[float]) -> float:
    """The held-out score that, as a threshold (score ≥ it is positive), gives the best F1 of the positive class;
    of equal ones the highest, which keeps fewer documents for the same F1."""
    candidates = sorted(set(positive) | set(negative))
    if not candidates:
        return 0.5
    return max(candidates, key=lambda t: (classification(positive, negative, t)["f1"], t))


def warnings_of(positive: Sequence[float], negative: Sequence[float], threshold: float) -> list[str]:
    """What makes a model say nothing: one class for every held-out document at fastText's 0.5 or at the chosen
    threshold, or a ROC AUC near 0.5."""
    found = []
    for name, value in (("fastText's 0.5", 0.5), ("the chosen threshold", threshold)):
        above = sum(score >= value for score in [*positive, *negative])
        if above in (0, len(positive) + len(negative)):
            kind = "positive (keep)" if above else "negative (drop)"
            found.append(f"at {name} ({value:.4f}) every held-out document is called {kind}")
    auc = roc_auc(positive, negative)
    if auc is not None and auc < WEAK_AUC:
        found.append(f"held-out ROC AUC {auc:.3f}: the model barely tells the classes apart (0.5 is chance)")
    return found


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
    autotune: int = 0,
) -> dict:
    """Trains on the documents the `positive` and `negative` globs match and writes `output/model.bin` and
    `output/quality.json` (returned). Each class is sampled to at most `max_docs`, then the larger one to the
    smaller one's size; `heldout` of each class is set aside to measure the model. The seed fixes the sample, the
    split and fastText's initialisation; its threads update the weights without locks (Hogwild), so two trainings
    differ slightly. `autotune` > 0: fastText's autotune searches the settings for that many seconds, judged on the
    held-out split (whose measures are then optimistic: the split chose the settings). ValueError for a setting out of
    range or a class too small to train and measure."""
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
    validation_file = os.path.join(output, f".heldout-{os.getpid()}.txt")
    settings: dict = {"wordNgrams": ngrams, "epoch": epochs, "lr": lr, "dim": dim, "bucket": buckets}
    if autotune > 0:
        if not splits["positive"]["heldout"]:
            raise ValueError("--autotune needs a held-out split (--heldout above 0)")
        held = [f"{POSITIVE} {text}" for text in splits["positive"]["heldout"]]
        held += [f"{NEGATIVE} {text}" for text in splits["negative"]["heldout"]]
        with open(validation_file, "w", encoding="utf-8") as handle:
            handle.writelines(f"{line}\n" for line in held)
        # dim stays as given: fastText's own search reaches 1,000 dims × 10M buckets, 40 GB a trial, whose matrix is
        # filled before the time limit can stop it (a pinned bucket count crashes fastText 0.9.3's autotune: SIGFPE)
        settings = {"autotuneValidationFile": validation_file, "autotuneDuration": autotune, "dim": dim}
    try:
        with open(training_file, "w", encoding="utf-8") as handle:
            handle.writelines(f"{line}\n" for line in lines)
        model = fasttext.train_supervised(
            input=training_file, **settings, seed=seed, thread=threads, minCount=1, verbose=0
        )
    finally:
        for path in (training_file, validation_file):
            if os.path.exists(path):
                os.remove(path)
    model_path = os.path.join(output, MODEL_FILE)
    model.save_model(model_path)
    trained_seconds = time.time() - started
    used = model.f.getArgs()  # what fastText trained with (it drops the buckets of a 1-gram model)
    scorer = QualityModel(model_path)
    scores = {name: [scorer.score_normalised(text) for text in split["heldout"]] for name, split in splits.items()}
    threshold, warnings = None, []
    if splits["positive"]["heldout"]:
        best = best_threshold(scores["positive"], scores["negative"])
        threshold = {"value": best, "chosen_by": "F1 on the held-out split",
                     "metrics": classification(scores["positive"], scores["negative"], best)}  # fmt: skip
        warnings = warnings_of(scores["positive"], scores["negative"], best)
        for warning in warnings:
            log.warning("quality model %s: %s", output, warning)
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
            "autotune_seconds": autotune,
        },
        "data": data,
        "train": {name: len(split["train"]) for name, split in splits.items()},
        "heldout": {name: len(split["heldout"]) for name, split in splits.items()},
        "metrics": classification(scores["positive"], scores["negative"]) if splits["positive"]["heldout"] else None,
        "threshold": threshold,
        "warnings": warnings,
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
