"""The Wikipedia, text and curate commands end to end on Beam's DirectRunner: generated dumps (multistream
with index, corrupt, truncated, over loopback HTTP), local corpora in every supported format, and one
curated set across sources. Real dumps and books from ../shared/fixtures when present."""

import bz2
import gzip
import json
import lzma
import random
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline import cli
from pipeline.common import corpus, synthetic
from pipeline.output import sinks
from pipeline.output.stats import Funnel
from pipeline.sources import localtext
from tests.test_pipeline_commoncrawl import read_shards
from tests.test_wikipedia import HEADER, REMNANTS, multistream, page_xml

ONE_WORKER = "--direct_num_workers=1"


def articles(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(title, wikitext) of English articles long enough for the minimum-length filter."""
    rng = random.Random(seed)
    found = []
    for number in range(1, count + 1):
        paragraphs = synthetic.article_paragraphs(rng, "en")
        title = f"Topic {number}"
        body = "\n\n".join(paragraphs)
        wikitext = (
            f"{{{{Infobox|name={title}}}}}\n'''{title}''' is described here.<ref>Source {number}</ref> "
            f"See [[Other topic|another topic]].\n\n== Overview ==\n{body}\n[[Category:Things]]"
        )
        found.append((title, wikitext))
    return found


def dump_pages(count: int, seed: int = 0) -> list[str]:
    """Articles, then a stub, a talk page and a redirect: count + 3 pages."""
    page_list = [page_xml(i, title, escape(text)) for i, (title, text) in enumerate(articles(count, seed), 1)]
    page_list.append(page_xml(count + 1, "Stub", "A stub."))
    page_list.append(page_xml(count + 2, "Talk:Topic 1", "Discussion.", ns=1))
    page_list.append(page_xml(count + 3, "Old name", "#REDIRECT [[Topic 1]]", redirect=True))
    return page_list


def stats_of(output) -> Funnel:
    funnel = Funnel.from_json(sinks.read_json(str(output / "stats.json")))
    assert funnel.problems() == []
    return funnel


def wikipedia_run(*arguments) -> int:
    return cli.main(["wikipedia", *map(str, arguments)])


def test_multistream_dump_read_through_the_index_in_parallel_equals_one_sequential_reader(tmp_path):
    dump, index, _ = multistream(tmp_path, dump_pages(12), per_stream=2)
    parallel, sequential = tmp_path / "parallel", tmp_path / "sequential"
    assert (
        wikipedia_run(
            "--dump",
            dump,
            "--index",
            index,
            "--streams-per-part",
            1,
            "--output",
            parallel,
            "--num-shards",
            2,
            "--direct_num_workers=2",
        )
        == 0
    )
    alone = tmp_path / "xxwiki-pages-articles.xml.bz2"  # without its index beside it, which would be found
    alone.write_bytes(open(dump, "rb").read())
    assert wikipedia_run("--dump", alone, "--output", sequential, "--num-shards", 2, ONE_WORKER) == 0
    rows = read_shards(parallel)
    assert rows == read_shards(sequential)
    assert len(rows) == 12
    first = next(row for row in rows if row["id"] == "wikipedia/xxwiki/1")
    assert first["title"] == "Topic 1" and first["url"] == "https://xx.wikipedia.org/wiki/Topic_1"
    assert first["source"] == "wikipedia" and first["date"].isoformat() == "2024-04-02T10:00:00+00:00"
    assert first["language"] == "xx" and first["language_label"] == "en" and first["language_score"] > 0.5
    assert first["text"].startswith("Topic 1 is described here. See another topic.\n\nOverview\n")
    for row in rows:
        assert not any(remnant in row["text"] for remnant in REMNANTS)
        assert "Source " not in row["text"] and "Things" not in row["text"] and "Infobox" not in row["text"]
    for output in (parallel, sequential):
        funnel = stats_of(output)
        assert (funnel.input_files, funnel.records_read, funnel.records_in, funnel.kept) == (1, 15, 13, 12)
        assert funnel.records_skipped == {"namespace": 1, "redirect": 1}
        assert funnel.dropped == {"min_length.too_few_words": 1}
    # the parallel run committed one unit per stream (8 streams of pages), the sequential run one
    assert len(list((parallel / "_work").glob("wikipedia-*/*.stats.json"))) == 8
    assert len(list((sequential / "_work").glob("wikipedia-*/*.arrow"))) == 1


def test_a_corrupt_stream_and_a_truncated_dump_are_reported_and_the_rest_kept(tmp_path):
    dump, index, offsets = multistream(tmp_path, dump_pages(9), per_stream=3, corrupt_stream=2)
    assert wikipedia_run("--dump", dump, "--index", index, "--output", tmp_path / "corrupt", ONE_WORKER) == 0
    funnel = stats_of(tmp_path / "corrupt")
    assert [(e["offset"], "bz2" in e["error"]) for e in funnel.errors] == [(offsets[2], True)]
    assert {row["id"] for row in read_shards(tmp_path / "corrupt")} == {
        f"wikipedia/xxwiki/{i}" for i in (1, 2, 3, 7, 8, 9)
    }

    whole = (HEADER + "".join(dump_pages(5)) + "</mediawiki>").encode()
    truncated = tmp_path / "xxwiki-truncated.xml.xz"
    truncated.write_bytes(lzma.compress(whole[: whole.index(b"<title>Topic 4</title>") + 30]))
    assert wikipedia_run("--dump", truncated, "--output", tmp_path / "truncated", ONE_WORKER) == 0
    funnel = stats_of(tmp_path / "truncated")
    assert funnel.kept == 3 and len(funnel.errors) == 1 and "ends or breaks" in funnel.errors[0]["error"]


def test_a_malformed_page_is_counted_and_skipped(tmp_path):
    page_list = dump_pages(3)
    page_list[1] = page_list[1].replace("<id>2</id>", "<id>two</id>", 1)
    path = tmp_path / "xxwiki.xml.bz2"
    path.write_bytes(bz2.compress((HEADER + "".join(page_list) + "</mediawiki>").encode()))
    assert wikipedia_run("--dump", path, "--output", tmp_path / "out", ONE_WORKER) == 0
    funnel = stats_of(tmp_path / "out")
    assert funnel.records_skipped["malformed"] == 1 and funnel.kept == 2 and not funnel.errors


def test_wiki_name_resolves_the_dump_on_a_mirror_read_by_byte_ranges(tmp_path, http_server):
    dump, index, _ = multistream(tmp_path, dump_pages(8), per_stream=2)
    stem = "/xxwiki/20260101/xxwiki-20260101-pages-articles-multistream"
    http_server.files[f"{stem}.xml.bz2"] = open(dump, "rb").read()
    http_server.files[f"{stem}-index.txt.bz2"] = open(index, "rb").read()
    output = tmp_path / "out"
    assert (
        wikipedia_run(
            "--wiki",
            "xxwiki",
            "--dump-date",
            "20260101",
            "--dumps-base-url",
            http_server.url,
            "--output",
            output,
            ONE_WORKER,
        )
        == 0
    )
    assert len(read_shards(output)) == 8
    ranges = [r for r in http_server.requests_for(f"{stem}.xml.bz2") if r]
    assert len(ranges) >= 4  # each part of the dump asked for its own streams only
    # a wiki the mirror does not have is the user's to fix: one line, exit 2
    assert wikipedia_run("--wiki", "yywiki", "--dumps-base-url", http_server.url, "--output", tmp_path / "x") == 2


def write_corpus(folder):
    """One collection in every supported format, with the bad records each format can have."""
    folder.mkdir()
    book = "\n".join(synthetic.article_paragraphs(random.Random(1), "en"))
    (folder / "book.txt").write_bytes(("\ufeff" + book.replace("\n", "\r\n")).encode("utf-8"))
    (folder / "latin1.txt").write_bytes("Caf\xe9 au lait, une histoire".encode("latin-1"))
    rng = random.Random(2)
    records = [
        {
            "id": "r1",
            "text": " ".join(synthetic.article_paragraphs(rng, "fr")),
            "title": "Un",
            "url": "https://a.example/1",
        },
        {"text": " ".join(synthetic.article_paragraphs(rng, "de"))},
        {"id": "r3", "content": "no text field"},
    ]
    lines = [json.dumps(record) for record in records] + ["{broken json"]
    with gzip.open(folder / "part.jsonl.gz", "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    (folder / "part.jsonl.zst").write_bytes(
        zstandard.ZstdCompressor().compress(
            (json.dumps({"text": " ".join(synthetic.article_paragraphs(rng, "es"))}) + "\n").encode()
        )
    )
    table = pa.table({"body": [" ".join(synthetic.article_paragraphs(rng, "en")), "Too short."]})
    pq.write_table(table, folder / "rows.parquet")


def test_text_command_reads_every_format_and_counts_every_bad_record(tmp_path):
    write_corpus(tmp_path / "corpus")
    output = tmp_path / "out"
    assert (
        cli.main(
            [
                "text",
                "--input",
                str(tmp_path / "corpus" / "*"),
                "--source-name",
                "books",
                "--output",
                str(output),
                "--text-field",
                "text",
                ONE_WORKER,
            ]
        )
        == 0
    )
    rows = {row["id"]: row for row in read_shards(output)}
    assert set(rows) == {"books/book.txt", "books/r1", "books/part.jsonl.gz/2", "books/part.jsonl.zst/1"}
    assert "\r" not in rows["books/book.txt"]["text"] and not rows["books/book.txt"]["text"].startswith("\ufeff")
    assert (rows["books/r1"]["title"], rows["books/r1"]["url"], rows["books/r1"]["language"]) == (
        "Un",
        "https://a.example/1",
        "fr",
    )
    funnel = stats_of(output)
    assert funnel.input_files == 5 and funnel.records_skipped == {"undecodable": 1, "no_text": 1, "malformed": 1}
    # the Parquet file has no `text` column: an error naming the file, the run goes on
    assert len(funnel.errors) == 1 and "no 'text' column" in funnel.errors[0]["error"]

    parquet_only = tmp_path / "parquet"
    assert (
        cli.main(
            [
                "text",
                "--input",
                str(tmp_path / "corpus" / "*.parquet"),
                "--text-field",
                "body",
                "--output",
                str(parquet_only),
                ONE_WORKER,
            ]
        )
        == 0
    )
    assert [row["id"] for row in read_shards(parquet_only)] == ["text/rows.parquet/0"]
    assert stats_of(parquet_only).dropped == {"min_length.too_few_words": 1}


GUTENBERG = (
    "The Project Gutenberg eBook of A Test\r\n\r\nTitle: A Test\r\n\r\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n{body}\r\n"
    "*** END OF THE PROJECT GUTENBERG EBOOK A TEST ***\r\n\r\nSection 1. General Terms of Use\r\n"
)


def test_gutenberg_header_and_footer_are_stripped():
    body = "Chapter 1\n\nIt was a test."
    assert localtext.strip_gutenberg(corpus.normalise_newlines(GUTENBERG.format(body=body))) == body
    assert localtext.strip_gutenberg("No markers here.\n") == "No markers here.\n"
    assert localtext.gutenberg_title(GUTENBERG) == "A Test" and localtext.gutenberg_title("Title: not a header") is None


def test_real_gutenberg_books_lose_their_licence_text(shared_fixtures):
    for path in sorted((shared_fixtures / "prose").glob("gutenberg_*.txt")):
        [record] = list(corpus.read_file(str(path), path.name))
        text = localtext.strip_gutenberg(record.text)
        assert "Project Gutenberg" in record.text and "PROJECT GUTENBERG" not in text
        assert "Gutenberg License" not in text and len(text) > 0.8 * len(record.text), path.name
        assert (
            "Alice" in localtext.gutenberg_title(record.text)
            or "Quixote" in localtext.gutenberg_title(record.text)
            or "Quijote" in localtext.gutenberg_title(record.text)
        )


def test_curate_deduplicates_across_sources_and_keeps_the_wikipedia_copy(tmp_path):
    pages = dump_pages(6)
    dump, index, _ = multistream(tmp_path, pages, per_stream=2)
    # the crawl republished article 2, a book quotes article 3 whole
    first_run = tmp_path / "wiki-only"
    assert wikipedia_run("--dump", dump, "--output", first_run, ONE_WORKER) == 0
    cleaned = {row["title"]: row["text"] for row in read_shards(first_run)}
    responses = synthetic.sample_responses(40, seed=3)
    responses.append(
        synthetic.Response(
            "https://copy.example.com/topic-2.html",
            body=synthetic.article_page("Topic 2", cleaned["Topic 2"].split("\n\n"), "en").encode(),
        )
    )
    warc = tmp_path / "crawl.warc.gz"
    with open(warc, "wb") as stream:
        synthetic.write_warc(stream, responses)
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "quote.txt").write_text(cleaned["Topic 3"])

    output = tmp_path / "mix"
    assert (
        cli.main(
            [
                "curate",
                "--warcs",
                str(warc),
                "--dump",
                dump,
                "--index",
                index,
                "--text",
                str(tmp_path / "books" / "*.txt"),
                "--source-name",
                "books",
                "--filters",
                "books=none",
                "--output",
                str(output),
                "--direct_num_workers=2",
            ]
        )
        == 0
    )
    rows = read_shards(output)
    by_id = {row["id"]: row for row in rows}
    assert {"wikipedia/xxwiki/2", "wikipedia/xxwiki/3"} <= set(by_id)
    assert "books/quote.txt" not in by_id
    assert not [row for row in rows if row["source"] == "commoncrawl" and row["title"] == "Topic 2"]
    assert {row["source"] for row in rows} == {"wikipedia", "commoncrawl"}
    report = pq.read_table(output / "duplicates").to_pylist()
    kept_wiki = {row["kept_id"]: row for row in report if row["kept_id"].startswith("wikipedia/")}
    assert set(kept_wiki) == {"wikipedia/xxwiki/2", "wikipedia/xxwiki/3"}
    assert kept_wiki["wikipedia/xxwiki/3"]["removed_ids"] == ["books/quote.txt"]
    assert kept_wiki["wikipedia/xxwiki/2"]["removed_ids"][0].startswith("commoncrawl/")
    funnel = stats_of(output)
    assert funnel.input_files == 3 and funnel.kept == len(rows)


def test_filters_are_chosen_per_source(tmp_path):
    parser = cli.build_parser()
    args, _ = parser.parse_known_args(
        [
            "curate",
            "--dump",
            "d",
            "--warcs",
            "w",
            "--text",
            "t",
            "--source-name",
            "books",
            "--output",
            "o",
            "--filters",
            "wikipedia=all",
            "--min-language-score",
            "0.3",
            "--languages",
            "commoncrawl=en,de",
        ]
    )
    recipe = cli.preset_recipe(args, [("sources.books.lines", True)])
    wiki, crawl, books = (recipe.sources[name] for name in ("wikipedia", "commoncrawl", "books"))
    assert wiki.filters == ["min_length", "gopher_repetition", "gopher_quality", "c4", "fineweb"]
    assert crawl.filters == ["gopher_repetition", "gopher_quality", "c4", "fineweb"] and books.filters == ["min_length"]
    assert wiki.min_language_score == crawl.min_language_score == 0.3
    assert crawl.languages == ["en", "de"] and wiki.languages == [] and books.lines is True
    (tmp_path / "f.toml").write_text("[min_length]\nmin_words = 50\n")
    args, _ = parser.parse_known_args(
        ["wikipedia", "--dump", "d", "--output", "o", "--filter-config", str(tmp_path / "f.toml")]
    )
    assert cli.preset_recipe(args, []).sources["wikipedia"].filter_settings == {"min_length": {"min_words": 50}}
    with pytest.raises(cli.UsageError, match="no source named 'wikipdia'"):
        args, _ = parser.parse_known_args(["wikipedia", "--dump", "d", "--output", "o", "--filters", "wikipdia=none"])
        cli.preset_recipe(args, [])


def test_real_latgalian_dump_through_the_pipeline(shared_fixtures, tmp_path):
    output = tmp_path / "ltg"
    assert (
        wikipedia_run(
            "--dump",
            shared_fixtures / "wikipedia" / "ltgwiki-pages-articles.xml",
            "--output",
            output,
            "--no-minhash",
            ONE_WORKER,
        )
        == 0
    )
    funnel = stats_of(output)
    assert funnel.records_in == 903 and funnel.records_read == 2004
    # the rest are stubs (under 25 words) and pages of only images and tables
    assert funnel.kept > 550 and set(funnel.dropped) <= {"min_length.too_few_words", "cleaned_empty", "duplicate"}
    rows = read_shards(output)
    assert all(row["language"] == "ltg" and row["url"].startswith("https://ltg.wikipedia.org/wiki/") for row in rows)
    assert not [row["id"] for row in rows if any(remnant in row["text"] for remnant in REMNANTS)]
