"""The quality classifier: trained on real corpora from ../shared (Wikipedia articles and books to keep, crawl pages
and generated spam to drop), measured on held-out documents, and scored in real pipeline runs where `min_quality`
drops exactly the documents under the threshold and `quality_keep` keeps the asked fraction on 1 and 2 workers."""

import json
import random

import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.common import synthetic
from pipeline.output.stats import Funnel
from pipeline.sources import commoncrawl, wikipedia
from pipeline.steps import langid, process, quality, quality_training
from tests.conftest import SHARED_FIXTURES

BOOKS = ("gutenberg_en_alice.txt", "gutenberg_en_don_quixote.txt", "gutenberg_fr_alice.txt", "gutenberg_de_alice.txt")
needs_shared = pytest.mark.skipif(not SHARED_FIXTURES.is_dir(), reason="needs ../shared/fixtures")


def source_texts(source) -> list[str]:
    """The kept texts of a source, read by the unit processor without Beam."""
    processor = process.UnitProcessor(source)
    texts = []
    for source_input in source.inputs():
        for unit in source.plan(source_input):
            texts += [doc.text for doc in processor.process(unit, Funnel())]
    processor.close()
    return texts


def book_passages(path, rng: random.Random, per_book: int) -> list[str]:
    """Runs of paragraphs of about 1,500 characters from the body of a Project Gutenberg book (its licence cut)."""
    text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40]
    body = paragraphs[len(paragraphs) // 20 : -len(paragraphs) // 10]
    passages, current = [], []
    for paragraph in body:
        current.append(paragraph)
        if sum(map(len, current)) > 1500:
            passages.append("\n\n".join(current))
            current = []
    return rng.sample(passages, min(per_book, len(passages)))


def write_jsonl(path, texts, prefix) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for number, text in enumerate(texts):
            handle.write(json.dumps({"id": f"{prefix}-{number}", "text": text}, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Labelled corpora as JSON lines, and a mixed corpus of documents none of them has, for the pipeline runs."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("needs ../shared/fixtures")
    root = tmp_path_factory.mktemp("quality")
    rng = random.Random(0)
    articles = source_texts(
        wikipedia.Wikipedia(
            "wikipedia", wikipedia.Settings(dumps=[str(SHARED_FIXTURES / "wikipedia" / "ltgwiki-pages-articles.xml")])
        )
    )
    passages = [p for book in BOOKS for p in book_passages(SHARED_FIXTURES / "prose" / book, rng, 60)]
    pages = source_texts(
        commoncrawl.CommonCrawl(
            "commoncrawl",
            commoncrawl.Settings(warcs=[str(SHARED_FIXTURES / "warc" / "dolma-sample-0000.warc.gz")], filters=[]),
        )
    )
    spam = [synthetic.spam_document(rng) for _ in range(300)]
    (root / "positive").mkdir()
    (root / "negative").mkdir()
    write_jsonl(root / "positive" / "wikipedia.jsonl", articles[:200], "wiki")
    write_jsonl(root / "positive" / "books.jsonl", passages[:-20], "book")
    write_jsonl(root / "negative" / "crawl.jsonl", pages, "page")
    write_jsonl(root / "negative" / "spam.jsonl", spam[:-20], "spam")
    # documents of both kinds the classifier never saw: the last passages and spam, and new spam
    unseen = [*passages[-20:], *spam[-20:], *(synthetic.spam_document(random.Random(n)) for n in range(1000, 1020))]
    write_jsonl(root / "mixed.jsonl", unseen, "mixed")
    return root


def train(corpora, output) -> None:
    """`quality train` on the labelled corpora, seed 3."""
    arguments = [
        "quality", "train", "--positive", str(corpora / "positive" / "*.jsonl"),
        "--negative", str(corpora / "negative" / "*.jsonl"), "--output", str(output), "--seed", "3",
    ]  # fmt: skip
    assert cli.main(arguments) == 0


@pytest.fixture(scope="module")
def model(corpora):
    train(corpora, corpora / "model")
    return corpora / "model"


@needs_shared
def test_the_classifier_separates_held_out_documents_and_says_what_it_saw(corpora, model):
    report = json.loads((model / quality.REPORT_FILE).read_text())
    positive, negative = report["data"]["positive"], report["data"]["negative"]
    assert positive["documents"] == sum(positive["files"].values()) == 200 + 220
    assert negative["documents"] == sum(negative["files"].values())
    smaller = min(positive["documents"], negative["documents"])
    assert positive["used"] == negative["used"] == smaller  # balanced to the smaller class
    for name in ("positive", "negative"):
        assert report["train"][name] + report["heldout"][name] == smaller
        assert report["heldout"][name] == round(smaller * 0.1)
        assert report["scores"][name]["documents"] == report["heldout"][name]
    metrics = report["metrics"]
    assert metrics["f1"] >= 0.85 and metrics["roc_auc"] >= 0.9, metrics
    assert report["scores"]["positive"]["mean"] > report["scores"]["negative"]["mean"] + 0.3
    assert report["settings"]["seed"] == 3 and report["settings"]["ngrams"] == 2
    scorer = quality.QualityModel(str(model))
    assert scorer.score("Casino bonus click here now!!! BUY NOW, lowest price online") < 0.5
    assert scorer.score((corpora / "positive" / "books.jsonl").read_text().splitlines()[0]) > 0.5


@needs_shared
def test_the_same_seed_samples_and_splits_the_same_and_measures_alike(corpora, model, tmp_path):
    again = tmp_path / "again"
    train(corpora, again)
    first, second = (json.loads((folder / quality.REPORT_FILE).read_text()) for folder in (model, again))
    for key in ("data", "train", "heldout", "settings"):
        assert first[key] == second[key], key
    # Hogwild threads make the weights differ a little, not the measure
    assert abs(first["metrics"]["roc_auc"] - second["metrics"]["roc_auc"]) <= 0.05
    assert abs(first["scores"]["positive"]["mean"] - second["scores"]["positive"]["mean"]) <= 0.05


def test_the_split_is_balanced_and_fixed_by_the_seed():
    texts = {"positive": [f"p{n}" for n in range(50)], "negative": [f"n{n}" for n in range(20)]}
    split = quality_training.balanced_split(texts, 0.25, random.Random(1))
    assert {name: (len(s["train"]), len(s["heldout"])) for name, s in split.items()} == {
        "positive": (15, 5),
        "negative": (15, 5),
    }
    assert not set(split["positive"]["train"]) & set(split["positive"]["heldout"])
    assert quality_training.balanced_split(texts, 0.25, random.Random(1)) == split
    assert quality_training.balanced_split(texts, 0.25, random.Random(2)) != split
    with pytest.raises(ValueError, match="too few documents"):
        quality_training.balanced_split({"positive": ["a"], "negative": ["b", "c"]}, 0.1, random.Random(0))


def write_generated(folder, per_class: int, seed: int = 0) -> list[str]:
    """Generated articles to keep and generated spam to drop, as JSON lines; the train flags that read them."""
    rng = random.Random(seed)
    articles = ["\n\n".join(synthetic.article_paragraphs(rng, "en")) for _ in range(per_class)]
    spam = [synthetic.spam_document(rng) for _ in range(per_class)]
    write_jsonl(folder / "positive.jsonl", articles, "article")
    write_jsonl(folder / "negative.jsonl", spam, "spam")
    return ["--positive", str(folder / "positive.jsonl"), "--negative", str(folder / "negative.jsonl")]


@pytest.mark.parametrize("flags", [["--ngrams", "1"], ["--dim", "32", "--buckets", "1000"]])
def test_small_models_train_at_the_default_threads(tmp_path, flags):
    """With fewer than 11 threads fastText 0.9.3 started part of a model from uninitialised memory; a small model
    comes from reused heap, not fresh zeroed pages, and at one thread these stopped with 'Encountered NaN' in most
    runs. At the default threads every run trains."""
    data = write_generated(tmp_path, 24)
    for run in range(3):
        assert cli.main(["quality", "train", *data, *flags, "--output", str(tmp_path / f"m{run}")]) == 0
        report = json.loads((tmp_path / f"m{run}" / quality.REPORT_FILE).read_text())
        assert report["settings"]["threads"] == quality_training.DEFAULT_THREADS
        assert report["metrics"]["roc_auc"] >= 0.9  # articles and spam share little vocabulary


def input_rows(model_path) -> tuple[int, int, int]:
    """(rows, dim, words) of a saved fastText model's input matrix."""
    import fasttext
    import numpy as np

    loaded = fasttext.FastText._FastText(model_path=str(model_path)).f
    rows, dim = np.asarray(loaded.getInputMatrix()).shape
    return rows, dim, len(loaded.getVocab("__label__")[0])


def test_the_fasttext_options_reach_the_model(tmp_path):
    """--ngrams, --epochs, --lr, --dim, --buckets and --threads: in the args fastText trained with (quality.json
    reads them back from fastText) and in the saved model's matrices."""
    data = write_generated(tmp_path, 30)
    options = ["--ngrams", "3", "--epochs", "4", "--lr", "0.3", "--dim", "16", "--buckets", "5000", "--threads", "13"]
    assert cli.main(["quality", "train", *data, *options, "--output", str(tmp_path / "set")]) == 0
    assert cli.main(["quality", "train", *data, "--output", str(tmp_path / "default")]) == 0
    reports = {name: json.loads((tmp_path / name / quality.REPORT_FILE).read_text()) for name in ("set", "default")}
    chosen = {key: reports["set"]["settings"][key] for key in ("ngrams", "epochs", "lr", "dim", "buckets", "threads")}
    assert chosen == {"ngrams": 3, "epochs": 4, "lr": 0.3, "dim": 16, "buckets": 5000, "threads": 13}
    assert reports["default"]["settings"]["lr"] == quality_training.DEFAULT_LR
    rows, dim, words = input_rows(tmp_path / "set" / quality.MODEL_FILE)
    assert (rows, dim) == (words + 5000, 16)  # a row per word, then the hashed n-grams
    rows, dim, words = input_rows(tmp_path / "default" / quality.MODEL_FILE)
    assert (rows, dim) == (words + quality_training.DEFAULT_BUCKETS, quality_training.DEFAULT_DIM)
    assert reports["set"]["model_bytes"] < reports["default"]["model_bytes"] / 100
    # one-word features need no hashed rows: fastText drops them, and quality.json says so
    assert cli.main(["quality", "train", *data, "--ngrams", "1", "--output", str(tmp_path / "words")]) == 0
    assert json.loads((tmp_path / "words" / quality.REPORT_FILE).read_text())["settings"]["buckets"] == 0
    rows, _, words = input_rows(tmp_path / "words" / quality.MODEL_FILE)
    assert rows == words


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--threads", "4"], "--threads: at least 11: with 4, fastText 0.9.3 leaves part of the model uninitialised"),
        (["--buckets", "0"], "--buckets: at least 1 to hold 2-grams: 0"),
        (["--lr", "0"], "--lr: above 0"),
        (["--dim", "0"], "--dim: at least 1"),
        (["--epochs", "0"], "--epochs: at least 1"),
        (["--ngrams", "0"], "--ngrams: at least 1"),
        (["--max-docs", "0"], "--max-docs: at least 1"),
        (["--heldout", "1"], "--heldout: a fraction"),
    ],
)
def test_training_settings_out_of_range_are_one_line_naming_the_flag(tmp_path, capsys, flags, message):
    data = write_generated(tmp_path, 4)
    assert cli.main(["quality", "train", *data, *flags, "--output", str(tmp_path / "m")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before any work


@needs_shared
def test_score_gives_the_thresholds_that_keep_each_fraction(corpora, model, tmp_path, capsys):
    output = tmp_path / "scores.json"
    mixed = corpora / "mixed.jsonl"
    assert cli.main(["quality", "score", "--model", str(model), "--input", str(mixed), "--keep", "0.5", "--keep",
                     "0.25", "--output", str(output)]) == 0  # fmt: skip
    result = json.loads(output.read_text())
    scorer = quality.QualityModel(str(model))
    scores = [scorer.score(json.loads(line)["text"]) for line in mixed.read_text().splitlines()]
    assert result["scores"]["documents"] == len(scores) == 60
    for fraction in (0.5, 0.25):
        threshold = result["keep"][f"{fraction:g}"]
        kept = sum(score >= threshold for score in scores)
        assert kept >= fraction * len(scores) > sum(score > threshold for score in scores)
    assert "keep   0.5: min_quality" in capsys.readouterr().out


def mixed_scores(corpora, model) -> dict[str, float]:
    """The model's score of each document of the mixed corpus, by the id the text source gives it."""
    scorer = quality.QualityModel(str(model))
    lines = [json.loads(line) for line in (corpora / "mixed.jsonl").read_text().splitlines()]
    return {f"text/{line['id']}": scorer.score(line["text"]) for line in lines}


def curate_mixed(corpora, output, *flags, workers=1):
    arguments = [
        "text", "--input", str(corpora / "mixed.jsonl"), "--filters", "none", "--no-dedup",
        "--quality-model", str(corpora / "model"), *flags, "--output", str(output), f"--direct_num_workers={workers}",
    ]  # fmt: skip
    assert cli.main(arguments) == 0
    rows = pq.read_table(sorted(output.glob("part-*.parquet"))).to_pylist()
    return {row["id"]: row["quality"] for row in rows}, json.loads((output / "stats.json").read_text())


@needs_shared
def test_min_quality_drops_exactly_the_documents_under_it(corpora, model, tmp_path):
    scores = mixed_scores(corpora, model)
    kept, stats = curate_mixed(corpora, tmp_path / "out", "--min-quality", "0.5")
    assert set(kept) == {doc_id for doc_id, score in scores.items() if score >= 0.5}
    assert 0 < len(kept) < len(scores)
    assert stats["dropped"] == {"quality": len(scores) - len(kept)} and stats["kept"] == len(kept)
    assert all(kept[doc_id] == pytest.approx(scores[doc_id], abs=1e-6) for doc_id in kept)  # the column
    examples = stats["examples"]["quality"]
    assert examples and all(scores[example["id"]] < 0.5 for example in examples)
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'data-reason="quality"' in report and examples[0]["id"] in report  # the count, and its examples


@needs_shared
def test_quality_keep_keeps_the_asked_fraction_on_one_and_two_workers(corpora, model, tmp_path):
    runs = [curate_mixed(corpora, tmp_path / f"w{n}", "--quality-keep", "0.4", workers=n) for n in (1, 2)]
    (one, stats), (two, _) = runs
    assert set(one) == set(two)  # the threshold does not depend on how the work is split
    total = stats["kept"] + stats["dropped"]["quality"]
    assert total == 60 and abs(len(one) - 0.4 * total) <= 2
    dropped = [score for doc_id, score in mixed_scores(corpora, model).items() if doc_id not in one]
    assert min(one.values()) >= max(dropped)  # the best scored are kept


def test_roc_auc_counts_ties_as_half():
    assert quality_training.roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert quality_training.roc_auc([0.1], [0.9]) == 0.0
    assert quality_training.roc_auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((1 + 0.5 + 1 + 1) / 4)


def test_keep_threshold_reads_the_fraction_from_evenly_spaced_quantiles():
    quantiles = [i / 10 for i in range(11)]
    assert quality.keep_threshold(quantiles, 0.3) == 0.7
    assert quality.keep_threshold(quantiles, 1.0) == 0.0
    assert quality.keep_threshold([], 0.5) is None


@pytest.mark.parametrize(
    ("model", "min_quality", "keep", "message"),
    [
        ("", 0.5, 1.0, "need a quality_model"),
        ("", 0.0, 0.5, "need a quality_model"),
        ("m", 0.5, 0.5, "set one"),
        ("m", 1.5, 1.0, "min_quality: a probability"),
        ("m", 0.0, 0.0, "quality_keep: a fraction"),
        ("missing-model", 0.5, 1.0, "no model at missing-model"),
    ],
)
def test_quality_settings_are_checked_with_the_setting_named(model, min_quality, keep, message):
    with pytest.raises(ValueError, match=message):
        quality.check_settings(model, min_quality, keep, "sources.cc")


def test_normalisation_keeps_words_only():
    assert quality.normalise("Hello, World!\n\nIt's 2024 — ÉTÉ ﬁne.") == "hello world it s 0000 été fine"


@needs_shared
def test_the_data_options_reach_what_the_classifier_saw(corpora, tmp_path):
    """--text-column, --max-docs and --heldout, read back from quality.json (the other options: its settings)."""
    for name in ("positive", "negative"):  # the text under another field
        lines = [
            json.loads(line) for path in (corpora / name).glob("*.jsonl") for line in path.read_text().splitlines()
        ]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"content": r["text"]}) + "\n" for r in lines))
    arguments = ["quality", "train", "--positive", str(tmp_path / "positive.jsonl"), "--negative",
                 str(tmp_path / "negative.jsonl"), "--text-column", "content", "--max-docs", "250", "--heldout", "0.2",
                 "--seed", "3", "--output", str(tmp_path / "m")]  # fmt: skip
    assert cli.main(arguments) == 0
    report = json.loads((tmp_path / "m" / quality.REPORT_FILE).read_text())
    assert report["data"]["positive"]["documents"] == 420 and report["data"]["negative"]["documents"] == 302
    assert report["data"]["positive"]["used"] == report["data"]["negative"]["used"] == 250  # sampled, balanced
    assert report["heldout"] == {"positive": 50, "negative": 50} and report["settings"]["text_field"] == "content"


def test_a_learning_rate_that_diverges_is_one_line(tmp_path, capsys):
    rng = random.Random(4)
    for name, text in (("positive", "\n\n".join(synthetic.article_paragraphs(rng, "en"))), ("negative", "buy now")):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": text}) + "\n" for _ in range(10)))
    arguments = ["quality", "train", "--positive", str(tmp_path / "positive.jsonl"), "--negative",
                 str(tmp_path / "negative.jsonl"), "--lr", "1000", "--output", str(tmp_path / "m")]  # fmt: skip
    assert cli.main(arguments) == 2
    assert (
        "fastText stopped: Encountered NaN (the weights diverged: try a lower --lr, now 1000.0"
        in capsys.readouterr().err
    )


def test_the_threshold_is_the_f1_best_one_and_a_model_that_says_nothing_is_named():
    positive, negative = [0.9, 0.8, 0.7, 0.6], [0.65, 0.3, 0.2, 0.1]
    assert quality_training.best_threshold(positive, negative) == 0.6  # all four kept, one false: F1 0.889
    assert quality_training.warnings_of(positive, negative, 0.6) == []
    everything_positive = quality_training.warnings_of([0.9, 0.8], [0.7, 0.6], 0.6)
    assert any("fastText's 0.5" in w and "positive (keep)" in w for w in everything_positive)
    chance = quality_training.warnings_of([0.6, 0.4, 0.7], [0.6, 0.45, 0.65], 0.6)
    assert any("ROC AUC" in w for w in chance)


def test_the_recorded_threshold_is_min_quality_unless_the_recipe_gives_one(tmp_path, capsys):
    data = write_generated(tmp_path, 30)
    assert cli.main(["quality", "train", *data, "--output", str(tmp_path / "m")]) == 0
    report = json.loads((tmp_path / "m" / quality.REPORT_FILE).read_text())
    chosen = report["threshold"]["value"]
    assert report["threshold"]["metrics"]["f1"] >= report["metrics"]["f1"]  # the chosen one is at least 0.5's
    assert f"threshold {chosen:.4f} (F1-best" in capsys.readouterr().out

    def step_threshold(**settings) -> float:
        source = commoncrawl.Settings(warcs=["x"], quality_model=str(tmp_path / "m"), **settings)
        steps = process.document_steps(source, langid.LanguageIdentifier())
        return next(step for step in steps if isinstance(step, quality.QualityStep)).min_quality

    assert step_threshold() == chosen
    assert step_threshold(min_quality=0.3) == 0.3
    assert step_threshold(min_quality=0.0) == 0.0  # scores only
    assert step_threshold(quality_keep=0.5) == 0.0  # the run's own fraction instead
    bare = tmp_path / "bare.bin"
    bare.write_bytes((tmp_path / "m" / quality.MODEL_FILE).read_bytes())
    assert quality.resolved_min_quality(str(bare), quality.MODEL_THRESHOLD, 1.0) == 0.0  # no quality.json


def test_a_useless_model_warns_loudly_and_autotune_tunes_on_the_held_out_split(tmp_path, capsys):
    rng = random.Random(5)
    texts = ["\n\n".join(synthetic.article_paragraphs(rng, "en")) for _ in range(80)]
    write_jsonl(tmp_path / "a.jsonl", texts[::2], "a")  # the same kind of text on both sides
    write_jsonl(tmp_path / "b.jsonl", texts[1::2], "b")
    sides = ["--positive", str(tmp_path / "a.jsonl"), "--negative", str(tmp_path / "b.jsonl"), "--heldout", "0.25"]
    assert cli.main(["quality", "train", *sides, "--output", str(tmp_path / "useless")]) == 0
    report = json.loads((tmp_path / "useless" / quality.REPORT_FILE).read_text())
    assert report["warnings"] and "WARNING: this model says little" in capsys.readouterr().out
    data = write_generated(tmp_path, 40)
    assert cli.main(["quality", "train", *data, "--autotune", "3", "--output", str(tmp_path / "tuned")]) == 0
    tuned = json.loads((tmp_path / "tuned" / quality.REPORT_FILE).read_text())
    assert tuned["settings"]["autotune_seconds"] == 3 and tuned["warnings"] == []
    assert tuned["metrics"]["roc_auc"] >= 0.9
    rows, dim, words = input_rows(tmp_path / "tuned" / quality.MODEL_FILE)
    assert dim == quality_training.DEFAULT_DIM  # the search kept its matrices bounded
