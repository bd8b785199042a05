"""The curation report: written at the end of a run, every figure present, the funnel's numbers those of
stats.json, examples of what each rule dropped; it renders in a headless browser without console errors."""

import html.parser
import json
import re

import pyarrow.parquet as pq
import pytest

from pipeline import cli, recipe as recipes
from pipeline.beam import curate
from pipeline.common import synthetic
from pipeline.output import report
from tests.browser import needs_chromium, screenshot

ONE_WORKER = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    sample = synthetic.write_sample(str(folder / "sample"), pages=80, articles=12, seed=3)
    recipe = recipes.load(
        "configs/curate-sample.toml",
        [
            ("output.dir", str(folder / "curated")),
            ("sources.commoncrawl.warcs", [sample.warc]),
            ("sources.wikipedia.dumps", [sample.dump]),
            ("sources.wikipedia.indexes", [sample.index]),
        ],
    )
    curate.run(recipe, ONE_WORKER)
    return folder / "curated"


class Page(html.parser.HTMLParser):
    """The report's images, tables (as rows of cells with their attributes) and example ids."""

    def __init__(self):
        super().__init__()
        self.images, self.tables, self.examples = [], {}, []
        self._table, self._cell, self._in_code = None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "td" and "data-count" in attrs and self._table is not None:
            self._table.append(attrs)
        elif tag == "code":
            self._in_code = True

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "code":
            self._in_code = False

    def handle_data(self, data):
        if self._in_code and re.fullmatch(r"[\w-]+/[\w/.-]+", data):
            self.examples.append(data)


def parse(output):
    page = Page()
    page.feed((output / report.REPORT_FILE).read_text())
    return page


def test_every_figure_is_written_and_linked(output):
    page = parse(output)
    assert sorted(page.images) == sorted(f"{report.FIGURES_DIR}/{name}.png" for name in report.FIGURES)
    for source in page.images:
        data = (output / source).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_the_funnel_is_stats_json(output):
    stats = json.loads((output / "stats.json").read_text())
    cells = parse(output).tables["funnel"]
    counts = {(cell["data-kind"], cell["data-reason"]): int(cell["data-count"]) for cell in cells}
    expected = {("total", "records read"): stats["records_read"], ("total", "documents in"): stats["records_in"]}
    expected[("total", "kept")] = stats["kept"]
    expected.update({("skipped", reason): count for reason, count in stats["records_skipped"].items()})
    expected.update({("dropped", reason): count for reason, count in stats["dropped"].items()})
    assert counts == expected and len(cells) == len(expected)
    skipped = sum(v for (kind, _), v in counts.items() if kind == "skipped")
    dropped = sum(v for (kind, _), v in counts.items() if kind == "dropped")
    assert counts[("total", "records read")] == counts[("total", "documents in")] + skipped
    assert counts[("total", "documents in")] == counts[("total", "kept")] + dropped


def test_languages_domains_and_copies_are_those_of_the_shards(output):
    page = parse(output)
    rows = pq.read_table(sorted(output.glob("part-*.parquet")), columns=["language", "url"]).to_pylist()
    assert sum(int(cell["data-count"]) for cell in page.tables["languages"]) == len(rows)
    text = (output / report.REPORT_FILE).read_text()
    assert "en.wikipedia.org" in text and "news.example.com" in text
    copies = pq.read_table(output / "duplicates").to_pylist()
    exact = sum(row["kind"] == "exact" for row in copies)
    near = sum(row["kind"] == "near" for row in copies)
    assert f"{exact:,} groups of exact copies and {near:,} MinHash clusters" in text and near > 0


def test_each_rule_shows_what_it_dropped(output):
    stats = json.loads((output / "stats.json").read_text())
    shown = set(parse(output).examples)
    filter_rules = [reason for reason in stats["dropped"] if "." in reason]
    assert filter_rules
    for reason in filter_rules:
        examples = stats["examples"][reason]
        assert examples and {example["id"] for example in examples} <= shown
    assert sum(stats["lengths"]["after_filters"].values()) <= sum(stats["lengths"]["before_filters"].values())
    page = (output / report.REPORT_FILE).read_text()
    section = page.split('id="dropped-near_duplicate"')[1].split("<h3")[0]
    assert "every group is in the duplicates report" in section  # copies are not examples: the report has them


def test_the_report_command_writes_it_again(output, capsys):
    (output / report.REPORT_FILE).unlink()
    assert cli.main(["report", str(output)]) == 0
    assert (output / report.REPORT_FILE).exists() and "report.html" in capsys.readouterr().out
    assert cli.main(["report", str(output / "sample-nowhere")]) == 2


@needs_chromium
def test_the_report_renders_in_a_browser_without_console_errors(output, tmp_path):
    console = screenshot(output / report.REPORT_FILE, tmp_path / "report.png")
    assert console == []
    assert (tmp_path / "report.png").read_bytes().startswith(PNG) and (tmp_path / "report.png").stat().st_size > 50_000


@needs_chromium
def test_the_console_check_sees_an_error(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("broken")</script></body></html>')
    assert any("broken" in line for line in screenshot(page, tmp_path / "bad.png", height=200))
