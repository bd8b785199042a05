"""What makes a curated dataset publishable and honest to evaluate on: PII anonymisation, benchmark decontamination
(the task registry, the n-gram index, the step), FineWeb's URL word rules and C4's bad words; each step alone, then
all of them through the Beam pipeline on real crawl pages (dolma's sample WARC) into which benchmark items are
quoted."""

import collections
import io
import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import cli
from pipeline.common import contamination, synthetic, tasks
from pipeline.common.schema import Document
from pipeline.output.stats import Funnel
from pipeline.sources import DocumentSettings
from pipeline.steps import decontam, filters, pii, wordlists
from pipeline.steps.process import FilterStep
from tests.conftest import FIXTURE_EVALS, SHARED_FIXTURES, fixture_eval_specs


def specs(names=tuple(FIXTURE_EVALS)) -> list[tasks.TaskSpec]:
    return [tasks.parse_spec(spec) for spec in fixture_eval_specs(names)]


# ---- PII ----

ANONYMISED = [
    ("Write to john.doe@gmail.com today.", "email", 1),
    ("mailto:jane@uni-bonn.de", "email", 1),
    ("contact: bob [at] example-mail [dot] org please", "email", 1),
    ("bob (at) host.co.uk", "email", 1),
    ("Server 8.8.8.8 answered.", "ip", 1),
    ("IP: 8.8.8.8.", "ip", 1),
    ("resolver 2001:4860:4860::8888 and mapped ::ffff:8.8.8.8 here", "ip", 2),
    ("full form 2607:f8b0:4005:0805:0000:0000:0000:200e end", "ip", 1),
]
UNTOUCHED = [
    "https://medium.com/@john.doe/post-1",  # a profile in a URL, not an address
    "user@localhost and a@b.1",  # no top-level domain
    "logo@2x.png",  # an image at double resolution
    "version 1.2.3.4 and v1.2.3.4 and build 8.8.8.8",  # version numbers
    "1.2.3.4.5 is longer than an address",
    "private 10.0.0.1, 192.168.1.1, loopback 127.0.0.1, documentation 192.0.2.1 and 2001:db8::1",
    "dated 12.10.2023 at 12:30:45; MAC 00:1a:2b:3c:4d:5e; std::vector and a::b",
    "we met at noon at the station",
    "already anonymised: email@example.com and 22.214.171.124",
]


@pytest.mark.parametrize(("text", "kind", "count"), ANONYMISED)
def test_addresses_are_replaced_and_counted(text, kind, count):
    anonymised, counts = pii.PiiStep().anonymise(text)
    assert counts == {kind: count}
    placeholders = pii.EMAIL_PLACEHOLDERS if kind == "email" else pii.IP_PLACEHOLDERS
    assert sum(anonymised.count(p) for p in placeholders) == count
    assert anonymised == pii.PiiStep().anonymise(text)[0]  # the placeholder is the text's, not a counter's


@pytest.mark.parametrize("text", UNTOUCHED)
def test_look_alikes_are_left_byte_for_byte(text):
    anonymised, counts = pii.PiiStep().anonymise(text)
    assert anonymised is text or anonymised == text
    assert counts == {}


def test_extra_patterns_come_from_a_file_and_a_bad_one_is_named(tmp_path):
    good = tmp_path / "pii.txt"
    good.write_text("# phone numbers\n\\+49 \\d{3} \\d{6}\n")
    step = pii.PiiStep(extra=pii.read_patterns(str(good)))
    assert step.anonymise("call +49 221 123456 now") == ("call <PII> now", {"extra": 1})
    bad = tmp_path / "bad.txt"
    bad.write_text("ok\n(unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.txt: '\(unclosed' is not a regular expression"):
        pii.read_patterns(str(bad))


# ---- word lists ----


def test_url_filter_rules_each_name_their_reason():
    url_filter = wordlists.UrlFilter(
        blocklist=["spam.example"],
        banned_words=["casino"],
        soft_banned_words=["hot", "girls", "# a comment"],
        banned_subwords=["pornhub"],
    )
    assert url_filter.rule("https://cdn.spam.example/x") == "url_blocklist"
    assert url_filter.rule("https://news.example/casino-night") == "url_banned_word"
    assert url_filter.rule("https://news.example/casinos") is None  # a word, not a part of one
    assert url_filter.rule("https://news.example/hot-girls") == "url_soft_banned_words"
    assert url_filter.rule("https://news.example/hot-weather") is None  # one soft word is not enough
    assert url_filter.rule("https://x.example/Porn_Hub-videos") == "url_banned_subword"  # punctuation removed
    assert url_filter.rule("https://news.example/weather") is None
    assert url_filter.rule(None) is None


def test_bad_words_by_language_with_a_seeded_share_kept(tmp_path):
    (tmp_path / "en.txt").write_text("darn\nheck\n")
    (tmp_path / "zh.txt").write_text("坏词\n")
    lists = {"en": str(tmp_path / "en.txt"), "zh": str(tmp_path / "zh.txt")}
    step = wordlists.BadWords(lists)

    def doc(text, language, number=0):
        return Document(id=f"d{number}", text=text, source="s", language=language)

    assert step(doc("Oh darn, it rained.", "en")) == "badwords"
    assert step(doc("The darning needle.", "en")) is None  # words stand alone
    assert step(doc("Oh darn, es regnet.", "de")) is None  # no list for German: kept
    assert step(doc("这是坏词的例子", "zh")) == "badwords"  # no word boundaries in Chinese
    share = wordlists.BadWords(lists, keep_fraction=0.3, seed=1)
    kept = [n for n in range(2000) if share(doc("darn", "en", n)) is None]
    assert 0.25 < len(kept) / 2000 < 0.35
    assert share.changes["badwords.kept_anyway"] == len(kept)
    again = wordlists.BadWords(lists, keep_fraction=0.3, seed=1)
    assert [n for n in range(2000) if again(doc("darn", "en", n)) is None] == kept  # the same documents


def test_a_word_list_that_is_not_utf8_is_named_with_its_line(tmp_path):
    (tmp_path / "en.txt").write_bytes(b"fine\nalso fine\n\xff\xfebad\n")
    with pytest.raises(ValueError, match=r"en\.txt, line 3: not UTF-8"):
        wordlists.BadWords({"en": str(tmp_path / "en.txt")})


# ---- the task registry ----


@pytest.mark.shared
@pytest.mark.parametrize("name", FIXTURE_EVALS)
def test_every_published_layout_reads(shared_fixtures, name):
    (spec,) = specs([name])
    items = tasks.read_task(spec)
    assert len(items) == 200
    for item in items:
        assert item.scorable and 0 <= item.gold < len(item.pairs())
        context, gold = item.pairs()[item.gold]
        assert gold.startswith(" ")
        if name != "boolq":  # a yes/no answer is not quoted
            assert gold.strip() in item.text  # the quoted text holds the right answer
    if name == "winogrande":  # partial scoring: one context per option, the shared continuation
        assert len(items[0].contexts) == 2 and len(items[0].choices) == 1
        assert items[0].pairs()[1] == (
            "Sarah was a much better surgeon than Maria so Maria",
            " always got the easier cases.",
        )


def test_bad_task_files_are_named(tmp_path):
    piqa = tmp_path / "valid.jsonl"
    piqa.write_text(json.dumps({"goal": "g", "sol1": "a", "sol2": "b"}) + "\n")
    with pytest.raises(tasks.TaskError, match=r"valid\.jsonl: no labels file beside it"):
        tasks.read_task(tasks.parse_spec(f"p=piqa:{piqa}"))
    (tmp_path / "valid-labels.lst").write_text("1\n")
    assert tasks.read_task(tasks.parse_spec(f"p=piqa:{piqa}"))[0].gold == 1
    with pytest.raises(tasks.TaskError, match=r"valid\.jsonl, line 1: no 'text' field"):
        tasks.read_task(tasks.parse_spec(f"p=lambada:{piqa}"))
    table = tmp_path / "q.parquet"
    pq.write_table(pa.table({"question": ["What is it?"]}), table)
    with pytest.raises(tasks.TaskError, match=r"q\.parquet: no column 'text' \(columns: question\)"):
        tasks.read_task(tasks.parse_spec(f"q=parquet:{table}"))
    assert tasks.read_task(tasks.parse_spec(f"q=parquet:{table}#question"))[0].text == "What is it?"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(tasks.TaskError, match="has no items"):
        tasks.read_task(tasks.parse_spec(f"e=jsonl:{empty}"))
    with pytest.raises(tasks.TaskError, match="unknown task format 'csv'"):
        tasks.parse_spec("x=csv:a.csv")
    with pytest.raises(tasks.TaskError, match="no tasks"):
        contamination.NgramIndex.build([])


# ---- the index and the step ----


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> str:
    """`decontam index` of every fixture benchmark."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not beside the repository")
    path = tmp_path_factory.mktemp("index") / "evals.npz"
    arguments = ["decontam", "index", "--output", str(path)]
    for spec in specs():
        arguments += ["--task", str(spec)]
    assert cli.main(arguments) == 0
    return str(path)


@pytest.mark.shared
def test_the_index_finds_every_quoted_item_and_nothing_else(shared_fixtures, index_path):
    index = contamination.NgramIndex.load(index_path)
    assert index.ngram == 13 and index.task_names == list(FIXTURE_EVALS)
    assert [task["items"] for task in index.meta["tasks"]] == [200] * len(FIXTURE_EVALS)
    prose = (shared_fixtures / "prose" / "gutenberg_en_alice.txt").read_text(encoding="utf-8-sig")[:20000]
    assert index.matches(prose) == []
    for spec in specs():
        for number, item in enumerate(tasks.read_task(spec)[:20]):
            found = index.matches(f"{prose[:3000]}\n{item.text}\n{prose[3000:6000]}")
            if len(item.text.split()) >= contamination.DEFAULT_MIN_NGRAM:
                assert (spec.name, number) in {(m.task, m.item) for m in found} or any(
                    m.task == spec.name for m in found
                ), (spec.name, number)


def test_a_short_segment_is_one_ngram_of_its_own_length(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "one two three four five six seven eight nine"}) + "\n")
    (spec,) = [tasks.parse_spec(f"t=jsonl:{path}")]
    index = contamination.NgramIndex.build([spec], ngram=13, min_ngram=8)
    assert index.lengths == [9, 13]
    assert index.matches("So: one two, three four five six seven eight nine!")
    assert not index.matches("one two three four five six seven eight")  # a part of it is not enough
    too_short = contamination.NgramIndex.build([spec], ngram=13, min_ngram=10)
    assert len(too_short) == 0


def test_an_index_of_other_ngrams_than_asked_stops_the_run(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": " ".join(f"w{i}" for i in range(30))}) + "\n")
    (tmp_path / "short.jsonl").write_text(json.dumps({"text": "a b c d e f g h i"}) + "\n")  # 9 words
    index = tmp_path / "i.npz"
    arguments = ["decontam", "index", "--task", f"t=jsonl:{path}", "--task", f"s=jsonl:{tmp_path / 'short.jsonl'}"]
    assert cli.main([*arguments, "--output", str(index), "--ngram", "10", "--min-ngram", "9"]) == 0
    built = contamination.NgramIndex.load(str(index))
    assert (built.ngram, built.min_ngram, built.lengths, len(built)) == (10, 9, [9, 10], 21 + 1)  # 21 windows
    assert cli.main([*arguments, "--output", str(tmp_path / "j.npz"), "--min-ngram", "10", "--ngram", "10"]) == 0
    assert contamination.NgramIndex.load(str(tmp_path / "j.npz")).task_names == ["t", "s"]
    assert len(contamination.NgramIndex.load(str(tmp_path / "j.npz"))) == 21  # the 9-word item is too short now
    settings = DocumentSettings(decontamination=str(index), decontamination_ngram=13)
    with pytest.raises(ValueError, match=r"built with 10-grams, not the 13-grams asked for"):
        settings.check_filters("sources.web")
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    with pytest.raises(ValueError, match=r"junk\.npz: not a decontamination index"):
        DocumentSettings(decontamination=str(tmp_path / "junk.npz")).check_filters("sources.web")


def _article(paragraphs: int, seed: int) -> str:
    sentences = synthetic.sentences("en")
    return "\n".join(
        " ".join(sentences[(seed * 7 + p * 5 + k) % len(sentences)] for k in range(5)) for p in range(paragraphs)
    )


@pytest.mark.shared
def test_cut_mode_removes_the_match_and_its_margin_and_keeps_the_rest(shared_fixtures, index_path):
    item = tasks.read_task(specs(["piqa"])[0])[0]
    before, after = _article(6, 1), _article(6, 2)
    text = f"{before}\n{item.text}\n{after}"
    doc = Document(id="d", text=text, source="web", language="en")
    step = decontam.DecontaminationStep(
        index_path, "cut", [FilterStep(f) for f in filters.build_filters(["min_length"])]
    )
    assert step(doc) is None
    assert item.text not in doc.text and "guinea pig" not in doc.text
    start = text.index(item.text)
    assert doc.text.startswith(before[: start - decontam.CUT_MARGIN].strip())
    assert doc.text.endswith(after[decontam.CUT_MARGIN + 2 :].strip()[-500:])
    removed = step.changes["decontamination.cut_chars"]
    assert removed == len(item.text.rstrip(".")) + 2 * decontam.CUT_MARGIN  # from its first to its last word
    assert step.changes["decontamination.cut_documents"] == 1
    # a document that is little more than the item is dropped: what remains fails the filters
    short = Document(id="e", text=f"Tip: {item.text}", source="web", language="en")
    assert step(short) == decontam.REASON
    assert "piqa item 0" in step.details[id(short)]


# ---- everything through the pipeline, on real pages ----


def _dolma_pages(shared_fixtures) -> list[tuple[str, bytes]]:
    from warcio.archiveiterator import ArchiveIterator

    pages = []
    with open(shared_fixtures / "warc" / "dolma-sample-0000.warc.gz", "rb") as stream:
        for record in ArchiveIterator(stream):
            content_type = record.http_headers.get_header("Content-Type") if record.http_headers else ""
            if record.rec_type == "response" and "html" in (content_type or ""):
                pages.append((record.rec_headers.get_header("WARC-Target-URI"), record.content_stream().read()))
    return pages


def _write_warc(path: pathlib.Path, pages: list[tuple[str, bytes]]) -> None:
    stream = io.BytesIO()
    synthetic.write_warc(stream, [synthetic.Response(url, body=body) for url, body in pages])
    path.write_bytes(stream.getvalue())


def _texts(output: pathlib.Path) -> dict[str, str]:
    rows = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["url", "text"]).to_pylist()
    return {row["url"]: row["text"] for row in rows}


def _quote(body: bytes, extracted: str, text: str) -> bytes | None:
    """The page with a paragraph quoting `text` after a paragraph its extraction kept (None: no such paragraph)."""
    for line in extracted.splitlines():
        at = body.find(line[:30].encode()) if len(line) > 80 else -1
        end = body.find(b"</p>", at)
        if at >= 0 and end >= 0:
            return body[: end + 4] + f"<p>{text}</p>".encode() + body[end + 4 :]
    return None


@pytest.mark.shared
def test_the_steps_reach_the_output_of_a_real_crawl(shared_fixtures, index_path, tmp_path):
    pages = _dolma_pages(shared_fixtures)
    _write_warc(tmp_path / "plain.warc.gz", pages)
    base = ["commoncrawl", "--no-dedup", "--direct_running_mode=in_memory"]
    assert (
        cli.main([*base, "--warcs", str(tmp_path / "plain.warc.gz"), "--output", str(tmp_path / "a"), "--pii", "off"])
        == 0
    )
    plain = _texts(tmp_path / "a")
    kept_urls = sorted(plain)
    assert len(kept_urls) >= 15

    items = [tasks.read_task(spec)[3] for spec in specs(["hellaswag", "piqa", "arc_challenge"])]
    by_url = dict(pages)
    quotable = [(url, body) for url in kept_urls if (body := _quote(by_url[url], plain[url], "QUOTE")) is not None]
    quoted = [(f"{url}?quoted", _quote(by_url[url], plain[url], item.text)) for (url, _), item in zip(quotable, items)]
    urls_of = {
        "banned": "https://casino.example/",
        "soft": "https://hot.example/girls/",
        "subword": "https://x.example/xxpornhubxx",
    }
    listed = [(url, by_url[kept_urls[n]]) for n, url in enumerate(urls_of.values())]
    _write_warc(tmp_path / "mixed.warc.gz", [*pages, *quoted, *listed])
    for name, words in {"banned": "casino", "soft": "hot\ngirls", "subwords": "pornhub", "bad": "zotero"}.items():
        (tmp_path / f"{name}.txt").write_text(words + "\n")
    (tmp_path / "pii.txt").write_text("Luca Soldaini\n")
    arguments = [
        *base, "--warcs", str(tmp_path / "mixed.warc.gz"), "--output", str(tmp_path / "b"),
        "--decontamination", index_path, "--pii-patterns", str(tmp_path / "pii.txt"),
        "--url-banned-words", str(tmp_path / "banned.txt"), "--url-soft-banned-words", str(tmp_path / "soft.txt"),
        "--url-banned-subwords", str(tmp_path / "subwords.txt"), "--badwords", f"en:{tmp_path / 'bad.txt'}",
    ]  # fmt: skip
    assert cli.main(arguments) == 0
    stats = json.loads((tmp_path / "b" / "stats.json").read_text())
    assert Funnel.from_json(stats).problems() == []
    dropped = stats["dropped"]
    assert dropped["decontaminated"] == 3
    assert dropped["url_banned_word"] == dropped["url_soft_banned_words"] == dropped["url_banned_subword"] == 1
    zotero = [url for url, text in plain.items() if "zotero" in text.lower()]
    assert zotero and dropped["badwords"] == len(zotero)
    details = [example["detail"] for example in stats["examples"]["decontaminated"]]
    assert {detail.split(" item ")[0] for detail in details} == {"hellaswag", "piqa", "arc_challenge"}

    texts = _texts(tmp_path / "b")
    assert not any(url.endswith("?quoted") for url in texts)
    assert set(texts) == set(plain) - set(zotero)  # every unrelated page is still there …
    step = pii.PiiStep(extra=pii.read_patterns(str(tmp_path / "pii.txt")))
    expected_counts: collections.Counter = collections.Counter()
    for url, text in texts.items():
        anonymised, counts = step.anonymise(plain[url])
        assert text == anonymised  # … with its PII replaced, and otherwise byte for byte
        expected_counts.update({f"pii.{kind}": n for kind, n in counts.items()})
    assert expected_counts["pii.email"] >= 2 and expected_counts["pii.extra"] >= 1
    assert {k: v for k, v in stats["edits"].items() if k.startswith("pii.")} == dict(expected_counts)
    report = (tmp_path / "b" / "report.html").read_text()
    assert "matched: " in report and 'id="edits"' in report

    # the same crawl, the benchmark matches cut instead, every bad-word page kept, three soft words needed
    other = ["--decontamination-mode", "cut", "--badwords-keep", "1", "--url-soft-threshold", "3"]
    assert cli.main([*arguments[:6], str(tmp_path / "c"), *arguments[7:], *other]) == 0
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    assert Funnel.from_json(stats).problems() == []
    cut_documents = stats["edits"]["decontamination.cut_documents"]
    assert cut_documents >= 2 and cut_documents + stats["dropped"].get("decontaminated", 0) == 3  # a short rest fails
    assert "badwords" not in stats["dropped"] and stats["edits"]["badwords.kept_anyway"] == len(zotero)
    assert "url_soft_banned_words" not in stats["dropped"] and stats["dropped"]["url_banned_word"] == 1
    cut = _texts(tmp_path / "c")
    kept_quoted = [(url, item) for (url, _), item in zip(quoted, items) if url in cut]
    assert len(kept_quoted) == cut_documents
    for url, item in kept_quoted:
        original = plain[url.removesuffix("?quoted")]
        assert item.text not in cut[url] and len(cut[url]) >= len(original) - 2 * decontam.CUT_MARGIN - 10


@pytest.mark.shared
def test_train_eval_reports_which_items_the_shards_hold(shared_fixtures, tmp_path, capsys):
    from train import eval as evaluation

    piqa, hellaswag = specs(["piqa", "hellaswag"])
    items = tasks.read_task(piqa)
    prose = _article(4, 3)
    documents = [{"text": f"{prose}\n{items[3].text}"}, {"text": prose}, {"text": f"Tips: {items[7].text} {prose}"}]
    shards = tmp_path / "docs.jsonl"
    shards.write_text("".join(json.dumps(d) + "\n" for d in documents))
    output = tmp_path / "contamination.json"
    arguments = ["--contamination", "--task", str(piqa), "--task", str(hellaswag), "--input", str(shards)]
    assert evaluation.main([*arguments, "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert result["tasks"]["piqa"] == {"items": 200, "contaminated": 2, "share": 0.01, "contaminated_items": [3, 7]}
    assert result["tasks"]["hellaswag"]["contaminated"] == 0
    assert result["documents"] == 3 and result["documents_matching"] == 2
    assert "piqa: 2 of 200 items (1.0%) share a 13-gram with the 3 documents" in capsys.readouterr().out
    assert evaluation.main(["--contamination", "--input", str(shards)]) == 2  # no task


def test_the_lookup_finds_what_a_plain_scan_of_every_window_finds(tmp_path):
    """The bitmap and the windows grown a word at a time change nothing: every window of every length that is in the
    index is found, and no other."""
    import numpy as np

    from pipeline.common.words import combine_shingles, word_hashes

    rng = np.random.default_rng(0)
    vocabulary = [f"w{n}" for n in range(50)]
    items = [" ".join(rng.choice(vocabulary, size=int(rng.integers(8, 20)))) for _ in range(300)]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"text": item}) + "\n" for item in items))
    index = contamination.NgramIndex.build([tasks.parse_spec(f"t=jsonl:{path}")])
    known = set(index.hashes.tolist())
    for number in range(20):
        noise = " ".join(rng.choice(vocabulary, size=400))
        hashes = word_hashes(f"{noise[:1000]} {items[number]} {noise[1000:]} {items[number + 1][:30]}")
        expected = {
            (start, length)
            for length in index.lengths
            for start, value in enumerate(combine_shingles(hashes, length).tolist())
            if value in known
        }
        assert expected and {(m.start, m.length) for m in index.matches_of_hashes(hashes)} == expected
