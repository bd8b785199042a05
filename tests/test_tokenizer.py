"""The tokenizer stage: training, encoding (tiktoken checked against HF), the bin format and its reader,
parallel and resumed encoding, custom corpora. Real sentences in 14 languages from ../shared when present."""

import filecmp
import gzip
import json
import os
import shutil

import numpy as np
import pytest
import zstandard
from tokenizers import Tokenizer

from tests.textdata import corpus_texts, write_shards
from tokenizer import bins, cli, corpus, encode, train
from tokenizer.encoding import MAX_RUN, Encoder, split_pathological

SPECIAL = "<|endoftext|>"
HARD_TEXTS = [
    "Hello, world! It's 2026: prices rose 12.5% (from $1,234 to $1,388).",
    "Zürich, Kraków, İstanbul — naïve café, ﬁ ligature, e\u0301 combining.",
    "Привет, мир! Ελληνικά γράμματα. עברית וערבית: مرحبا بالعالم",
    "日本語の文章と中文句子，还有한국어 문장.",
    "emoji 🙂👍🏽 👨‍👩‍👧‍👦 flags 🇺🇦🇯🇵 and symbols ∑∫√∞",
    "control \x00\x01\x07\x1b[31m red \x7f tab\tcr\r\nlf\n\u2028\ufeff end",
    f"literal {SPECIAL} inside a page, and <|reserved_3|> too",
    "a" * (MAX_RUN * 2 + 17),
    " " * 30_000 + "x" + "\n" * 40_000,
    "x" * 1000 + " " + "🙂" * 3000,
    "",
]


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    paths = write_shards(folder / "shards", corpus_texts())
    train.train(corpus.CorpusSpec(paths), train.TrainConfig(vocab_size=1200), str(folder / "tok"))
    return str(folder / "tok")


def test_round_trip_and_special_tokens_never_parsed_from_text(tokdir):
    encoder = Encoder(tokdir)
    assert encoder.backend == "tiktoken"
    fast, reference = encoder.encode_fast(HARD_TEXTS), encoder.encode_hf(HARD_TEXTS)
    assert fast == reference
    for text, ids in zip(HARD_TEXTS, fast):
        assert encoder.decode(ids) == text
    literal = fast[HARD_TEXTS.index(f"literal {SPECIAL} inside a page, and <|reserved_3|> too")]
    assert encoder.end_of_text not in literal and 3 not in literal
    meta = json.load(open(os.path.join(tokdir, "meta.json")))
    assert meta["special_tokens"][SPECIAL] == 0 and meta["special_tokens"]["<|reserved_15|>"] == 15
    assert meta["vocab_size"] == 1200 and meta["sha256"] == train.sha256_of(os.path.join(tokdir, "tokenizer.json"))


def test_real_sentences_in_14_languages_round_trip(tokdir, shared_fixtures, summary):
    encoder = Encoder(tokdir)
    lines = []
    for folder in sorted((shared_fixtures / "langid").iterdir()):
        sentences = (folder / "sentences.txt").read_text(encoding="utf-8").splitlines()
        ids = encoder.encode(sentences)
        assert ids == encoder.encode_hf(sentences), folder.name
        assert [encoder.decode(i) for i in ids] == sentences, folder.name
        size = sum(len(s.encode()) for s in sentences)
        lines.append(f"{folder.name}: {size / sum(map(len, ids)):.2f} bytes/token")
    summary["tokenizer (1,200 ids, trained on en/de/fr/es): bytes per token on ../shared langid"] = lines


def test_the_file_loads_in_tokenizers_and_transformers(tokdir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    text = "Loaded as-is: ünïcode 🙂 <|endoftext|> Ελληνικά 中文"
    ids = Encoder(tokdir).encode([text])[0]
    raw = Tokenizer.from_file(os.path.join(tokdir, "tokenizer.json"))
    raw.encode_special_tokens = True  # as lmforge's encoder sets it: the file alone parses special tokens
    assert raw.encode(text, add_special_tokens=False).ids == ids
    hf = PreTrainedTokenizerFast(tokenizer_file=os.path.join(tokdir, "tokenizer.json"), split_special_tokens=True)
    assert hf(text, add_special_tokens=False)["input_ids"] == ids and hf.decode(ids) == text
    # the folder itself loads in AutoTokenizer: <|endoftext|> first (as documents start in the bins), the literal
    # <|endoftext|> inside the text encoded as text, bos = eos = pad, a context length
    auto = AutoTokenizer.from_pretrained(tokdir)
    assert (
        auto(text)["input_ids"] == [0, *ids] and auto.decode(auto(text)["input_ids"], skip_special_tokens=True) == text
    )
    assert (auto.bos_token_id, auto.eos_token_id, auto.pad_token_id, auto.model_max_length) == (0, 0, 0, 1024)


def test_pathological_runs_are_cut_like_llama3():
    assert split_pathological("short text") == ["short text"]
    pieces = split_pathological("ab " + "x" * (2 * MAX_RUN + 5) + " cd")
    assert "".join(pieces) == "ab " + "x" * (2 * MAX_RUN + 5) + " cd"
    assert [len(p) for p in pieces] == [3 + MAX_RUN, MAX_RUN, 5 + 3]


def test_a_vocabulary_past_65536_ids_writes_uint32(tmp_path):
    paths = write_shards(tmp_path / "shards", corpus_texts(40), shards=1)
    extra = tuple(f"<|extra_{i}|>" for i in range(65_600))
    train.train(
        corpus.CorpusSpec(paths),
        train.TrainConfig(vocab_size=65_600 + 16 + 400, extra_special_tokens=extra),
        str(tmp_path / "tok"),
    )
    meta = encode.encode_corpus(
        str(tmp_path / "tok"), corpus.CorpusSpec(paths), str(tmp_path / "bins"), encode.EncodeConfig(workers=1)
    )
    assert meta["dtype"] == "uint32" and meta["vocab_size"] > 65_536
    reader = bins.BinReader(str(tmp_path / "bins"))
    assert reader.tokens(0, reader.num_tokens).max() >= 65_536
    assert bins.dtype_for(65_536) == np.uint16 and bins.dtype_for(65_537) == np.uint32


def test_bins_hold_exactly_the_encoded_documents_whatever_the_worker_count(tokdir, tmp_path):
    texts = corpus_texts(200, seed=3) + ["short " + SPECIAL, "z" * (MAX_RUN + 10)]
    paths = write_shards(tmp_path / "shards", texts, shards=4)
    spec = corpus.CorpusSpec(paths)
    one = encode.encode_corpus(
        tokdir, spec, str(tmp_path / "one"), encode.EncodeConfig(workers=1, val_fraction=0.1, batch_chars=20_000)
    )
    two = encode.encode_corpus(
        tokdir, spec, str(tmp_path / "two"), encode.EncodeConfig(workers=2, val_fraction=0.1, batch_chars=20_000)
    )
    assert one == two
    for split in bins.SPLITS:
        comparison = filecmp.dircmp(tmp_path / "one" / split, tmp_path / "two" / split)
        assert not comparison.diff_files and not comparison.left_only and len(comparison.same_files) == 12

    encoder = Encoder(tokdir)
    expected = {"train": [], "val": []}
    for path in paths:
        for record in corpus.iter_records(corpus.CorpusSpec([path])):
            expected["val" if bins.is_validation(record.key, 0.1) else "train"].append(
                encoder.encode_hf([record.text])[0]
            )
    assert 5 <= len(expected["val"]) <= 40
    for split, documents in expected.items():
        reader = bins.BinReader(str(tmp_path / "one"), split)
        assert reader.num_documents == len(documents)
        assert [reader.document(i).tolist() for i in range(reader.num_documents)] == documents
        assert reader.num_tokens == sum(len(d) + 1 for d in documents) == one["splits"][split]["tokens"]
        starts = reader.document_starts
        assert all(reader.tokens(int(s), 1)[0] == encoder.end_of_text for s in starts)
        # a window across the boundary of two shards is the two shards' tokens in order
        whole = np.concatenate([[encoder.end_of_text, *d] for d in documents])
        assert reader.tokens(5, reader.num_tokens - 10).tolist() == whole[5:-5].tolist()
        assert reader.tokens(0, 0).size == 0 and reader.tokens(reader.num_tokens, 0).size == 0
        with pytest.raises(IndexError):
            reader.tokens(3, -1)


def test_a_shard_where_tiktoken_disagrees_with_hf_is_encoded_by_hf(tokdir, tmp_path):
    # a fast encoder built with another split pattern than HF's disagrees as soon as punctuation appears
    broken = tmp_path / "tok"
    shutil.copytree(tokdir, broken)
    meta = json.loads((broken / "meta.json").read_text())
    (broken / "meta.json").write_text(json.dumps({**meta, "regex": r"\S+|\s+"}))
    encoder = Encoder(str(broken))
    texts = [HARD_TEXTS[0], *corpus_texts(20, seed=5)]
    assert not encoder.agrees(texts[:1])
    paths = write_shards(tmp_path / "shards", texts, shards=1)
    expected = [encoder.encode_hf([r.text])[0] for r in corpus.iter_records(corpus.CorpusSpec(paths[:1]))]
    for workers in (1, 2):
        out = tmp_path / f"bins-{workers}"
        encode.encode_corpus(
            str(broken),
            corpus.CorpusSpec(paths),
            str(out),
            encode.EncodeConfig(workers=workers, val_fraction=0, batch_chars=2_000),
        )
        assert json.loads((out / "train" / "part-00000.json").read_text())["encoder"] == "hf"
        reader = bins.BinReader(str(out))
        assert [reader.document(i).tolist() for i in range(reader.num_documents)] == expected, workers


def test_meta_json_is_replaced_whole_or_not_at_all(tokdir, tmp_path, monkeypatch):
    folder = tmp_path / "tok"
    shutil.copytree(tokdir, folder)
    before = (folder / "meta.json").read_text()

    def torn(data, handle, **options):  # the disk fills up half-way through the file
        handle.write(before[:40])
        raise OSError("No space left on device")

    monkeypatch.setattr(json, "dump", torn)
    with pytest.raises(OSError, match="No space left"):
        train.train(
            corpus.CorpusSpec(write_shards(tmp_path / "shards", corpus_texts(30))),
            train.TrainConfig(vocab_size=600),
            str(folder),
        )
    assert (folder / "meta.json").read_text() == before and sorted(os.listdir(folder)) == [
        "meta.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]


def test_an_interrupted_run_resumes_to_identical_files(tokdir, tmp_path):
    paths = write_shards(tmp_path / "shards", corpus_texts(120, seed=4), shards=3)
    spec = corpus.CorpusSpec(paths)
    config = encode.EncodeConfig(workers=1)
    encode.encode_corpus(tokdir, spec, str(tmp_path / "whole"), config)

    calls = []

    def interrupt_after_first_shard(_):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        encode.encode_corpus(tokdir, spec, str(tmp_path / "resumed"), config, interrupt_after_first_shard)
    assert not (tmp_path / "resumed" / "meta.json").exists()
    # a crash in the middle of a shard leaves its files unfinished: they never count as complete
    (tmp_path / "resumed" / "train" / "part-00002.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "resumed" / "train" / "part-00002.json").write_text('{"tokens": 999, "dtype": "uint16"}')
    first = (tmp_path / "resumed" / "train" / "part-00000.bin").stat().st_mtime_ns
    encode.encode_corpus(tokdir, spec, str(tmp_path / "resumed"), config)
    assert (tmp_path / "resumed" / "train" / "part-00000.bin").stat().st_mtime_ns == first  # skipped
    for split in bins.SPLITS:
        for name in os.listdir(tmp_path / "whole" / split):
            assert filecmp.cmp(tmp_path / "whole" / split / name, tmp_path / "resumed" / split / name, shallow=False), (
                name
            )
    assert not [n for n in os.listdir(tmp_path / "resumed" / "train") if ".tmp-" in n]


def test_an_input_rewritten_under_the_same_name_is_encoded_again(tokdir, tmp_path):
    paths = write_shards(tmp_path / "shards", corpus_texts(20, seed=8), shards=2)
    config = encode.EncodeConfig(workers=1, val_fraction=0)
    first = encode.encode_corpus(tokdir, corpus.CorpusSpec(paths), str(tmp_path / "bins"), config)
    write_shards(tmp_path / "shards", corpus_texts(30, seed=9), shards=2)  # curated again: same names
    os.utime(paths[0], ns=(1, 1))  # even with a size that happened to match, the time differs
    again = encode.encode_corpus(tokdir, corpus.CorpusSpec(paths), str(tmp_path / "bins"), config)
    assert again["splits"]["train"]["documents"] == 30 != first["splits"]["train"]["documents"]
    encoder = Encoder(tokdir)
    expected = sum(len(ids) + 1 for ids in encoder.encode(corpus_texts(30, seed=9)))
    assert again["splits"]["train"]["tokens"] == expected


def test_training_on_no_readable_document_is_an_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text('{"text": ""}\n{"other": "field"}\n')
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    arguments = ["train", "--input", str(tmp_path / "empty.jsonl"), str(tmp_path / "broken.parquet")]
    assert cli.main([*arguments, "--vocab-size", "300", "--output", str(tmp_path / "tok")]) == 2
    error = capsys.readouterr().err
    assert "no readable document in 2 input file(s)" in error and "broken.parquet" in error
    assert not (tmp_path / "tok").exists()


def test_custom_corpora_and_a_seeded_bounded_sample(tmp_path):
    texts = corpus_texts(30, seed=5)
    (tmp_path / "c").mkdir()
    with gzip.open(tmp_path / "c" / "a.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps({"body": t, "id": f"j{i}"}) + "\n" for i, t in enumerate(texts[:10]))
    (tmp_path / "c" / "b.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress("".join(json.dumps({"body": t}) + "\n" for t in texts[10:20]).encode())
    )
    (tmp_path / "c" / "c.txt").write_text("\n".join(t.replace("\n", " ") for t in texts[20:]))
    spec = corpus.CorpusSpec(corpus.expand([str(tmp_path / "c" / "*.jsonl.*")]), text_column="body")
    records = list(corpus.iter_records(spec))
    assert [r.text for r in records] == texts[:20] and records[0].key == "j0"
    lines = list(corpus.iter_records(corpus.CorpusSpec([str(tmp_path / "c" / "c.txt")], lines=True)))
    assert len(lines) == 10
    sample = corpus.seeded_sample(texts, 8_000, seed=1)
    assert sum(len(t.encode()) for t in sample) <= 8_000 and len(sample) >= 3
    assert sorted(sample) == sorted(corpus.seeded_sample(reversed(texts), 8_000, seed=1))
    assert sorted(sample) != sorted(corpus.seeded_sample(texts, 8_000, seed=2))


def test_command_line_train_and_encode(tmp_path, capsys):
    paths = write_shards(tmp_path / "shards", corpus_texts(60, seed=6), shards=2)
    pattern = str(tmp_path / "shards" / "*.parquet")
    assert (
        cli.main(
            [
                "train",
                "--input",
                pattern,
                "--vocab-size",
                "600",
                "--pattern",
                "llama3",
                "--max-bytes",
                "50e3",
                "--special-tokens",
                "<|user|>",
                "--output",
                str(tmp_path / "tok"),
            ]
        )
        == 0
    )
    meta = json.load(open(tmp_path / "tok" / "meta.json"))
    assert meta["pattern"] == "llama3" and meta["special_tokens"]["<|user|>"] == 16
    assert meta["sample"]["bytes"] <= 50_000 and meta["corpus"]["files"] == len(paths)
    assert (
        cli.main(
            [
                "encode",
                "--tokenizer",
                str(tmp_path / "tok"),
                "--input",  # the files, as the shell expands an unquoted glob
                *map(str, paths),
                "--output",
                str(tmp_path / "bins"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert "train:" in capsys.readouterr().out
    assert (
        bins.BinReader(str(tmp_path / "bins")).num_documents
        + bins.BinReader(str(tmp_path / "bins"), "val").num_documents
        == 60
    )
    assert (
        cli.main(["encode", "--tokenizer", str(tmp_path / "nope"), "--input", pattern, "--output", str(tmp_path / "b")])
        == 2
    )
    assert cli.main(["train", "--input", str(tmp_path / "none*.parquet"), "--output", str(tmp_path / "t")]) == 2
    assert "no file matches" in capsys.readouterr().err
    assert cli.main(["train", "--input", pattern, "--pattern", "[unclosed", "--output", str(tmp_path / "t")]) == 2
    assert "nor a valid regex" in capsys.readouterr().err


def test_the_beam_transform_writes_the_same_bins(tokdir, tmp_path):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from tokenizer.beam import EncodeToBins

    paths = write_shards(tmp_path / "shards", corpus_texts(90, seed=7), shards=3)
    spec = corpus.CorpusSpec(paths)
    config = encode.EncodeConfig(workers=1, val_fraction=0.1)
    expected = encode.encode_corpus(tokdir, spec, str(tmp_path / "direct"), config)
    groups = encode.plan_shards(paths, 1)
    options = PipelineOptions(
        ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    )
    with beam.Pipeline(options=options) as p:
        _ = (
            p
            | beam.Create(list(enumerate(groups)))
            | EncodeToBins(tokdir, str(tmp_path / "beam"), spec, groups, config)
        )
    assert json.load(open(tmp_path / "beam" / "meta.json")) == expected
    for split in bins.SPLITS:
        for name in os.listdir(tmp_path / "direct" / split):
            assert filecmp.cmp(tmp_path / "direct" / split / name, tmp_path / "beam" / split / name, shallow=False)

    # the module's own example runs as written
    import tokenizer.beam

    example = [line.strip() for line in tokenizer.beam.__doc__.splitlines() if line.startswith("    ")]
    with beam.Pipeline(options=options) as p:
        exec(
            "\n".join(example),
            {
                "p": p,
                "beam": beam,
                "plan_shards": encode.plan_shards,
                "EncodeToBins": EncodeToBins,
                "CorpusSpec": corpus.CorpusSpec,
                "paths": paths,
                "tokenizer_dir": tokdir,
                "bin_dir": str(tmp_path / "example"),
            },
        )
    written = json.load(open(tmp_path / "example" / "meta.json"))["splits"]  # the default validation share
    assert sum(s["tokens"] for s in written.values()) == sum(s["tokens"] for s in expected["splits"].values())


def test_progress_counts_the_bytes_of_the_files_read(tmp_path):
    texts = corpus_texts(40, seed=8)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    (tmp_path / "b.txt").write_text("\n".join(t.replace("\n", " ") for t in texts))
    paths = [str(tmp_path / "a.jsonl.gz"), str(tmp_path / "b.txt")]
    shards = write_shards(tmp_path / "shards", texts, shards=2)
    for spec in (corpus.CorpusSpec(paths, lines=True), corpus.CorpusSpec(shards)):
        counted = sum(record.source_bytes for record in corpus.iter_records(spec))
        total = sum(corpus.file_size(p) for p in spec.paths)
        assert 0.9 * total <= counted <= total, (spec.paths, counted, total)


def test_a_corrupt_parquet_file_is_counted_named_and_skipped_while_the_rest_is_encoded(tokdir, tmp_path, capsys):
    paths = write_shards(tmp_path / "shards", corpus_texts(40, seed=9), shards=2)
    corrupt = tmp_path / "shards" / "part-broken.parquet"
    corrupt.write_bytes(open(paths[0], "rb").read()[:2000])  # cut short: no footer
    assert (
        cli.main(
            [
                "encode",
                "--tokenizer",
                tokdir,
                "--input",
                str(tmp_path / "shards" / "*.parquet"),
                "--inputs-per-shard",
                "3",
                "--output",
                str(tmp_path / "bins"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"unreadable, skipped: {corrupt}" in out
    meta = json.loads((tmp_path / "bins" / "meta.json").read_text())
    assert [error["file"] for error in meta["read"]["errors"]] == [str(corrupt)]
    whole = sum(1 for path in paths for _ in corpus.iter_records(corpus.CorpusSpec([path])))
    assert meta["splits"]["train"]["documents"] + meta["splits"]["val"]["documents"] == whole == 40
