"""The curation report: `OUTPUT/report.html` and its figures in `OUTPUT/report/`, written at the end of every run
and by `python -m pipeline report OUTPUT`. A page that opens in a browser with no server and no network: the
funnel from records read to documents kept with every reason (the numbers of `stats.json`), the languages, document
lengths before and after the filters, the top domains, MinHash cluster sizes, and examples of kept documents and of
the documents each rule dropped (filters are tuned by reading what they drop), and what steps changed in the text
they kept (PII replacements, benchmark cuts).

Everything comes from the output's files: `stats.json` (counts, lengths, dropped examples), the shards' `language`
and `url` columns, the duplicates report's cluster sizes, and the first rows of the first shard.
"""

from __future__ import annotations

import collections
import html
import tomllib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pipeline.common import pages
from pipeline.common.remote import expand_glob
from pipeline.output import card, sinks
from pipeline.output.stats import Funnel, stage_of
from pipeline.recipe import RECIPE_FILE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
FIGURES_DIR = "report"
FIGURES = ("funnel", "languages", "lengths", "domains", "clusters")
TOP = 20
KEPT_EXAMPLES = 3
_NO_EXAMPLES = {  # why a reason has no examples: copies are in the duplicates report; others had no text yet
    True: "removed as a copy: every group is in the duplicates report",
    False: "no text to show: dropped while its record was read, or left empty by cleaning",
}


def _shards(output: str, pattern: str, suffixes: tuple[str, ...]) -> list[str]:
    """Finished files only: a write's temporary file (`….tmp-…`, left by a crash) does not end in a suffix."""
    try:
        return sorted(path for path in expand_glob(sinks.join(output, pattern)) if path.endswith(suffixes))
    except (OSError, ValueError):
        return []


def _sources(output: str) -> list[tuple[str, str]]:
    path = sinks.join(output, RECIPE_FILE)
    if not sinks.exists(path):
        return []
    with sinks.open_file(path) as stream:
        table = tomllib.loads(stream.read().decode("utf-8"))
    return [(name, settings.get("kind", name)) for name, settings in table.get("sources", {}).items()]


def funnel_rows(funnel: Funnel) -> list[tuple[str, str, int]]:
    """(kind, label, count) in the order of the funnel: every count of stats.json once."""
    rows = [("total", "records read", funnel.records_read)]
    rows += [("skipped", reason, count) for reason, count in sorted(funnel.records_skipped.items())]
    rows.append(("total", "documents in", funnel.records_in))
    rows += [
        ("dropped", reason, count) for reason, count in sorted(funnel.dropped.items(), key=lambda r: (-r[1], r[0]))
    ]
    rows.append(("total", "kept", funnel.kept))
    if funnel.renamed_ids:
        rows.append(("renamed", "kept under a new id", funnel.renamed_ids))
    return rows


class Collected:
    """What the report shows besides stats.json, read from the shards and the duplicates report."""

    def __init__(self, output: str):
        self.languages: collections.Counter = collections.Counter()
        self.domains: collections.Counter = collections.Counter()
        self.cluster_sizes: dict[str, collections.Counter] = {
            "near": collections.Counter(),
            "exact": collections.Counter(),
        }
        self.kept_examples: list[dict] = []
        for path in _shards(output, "part-*", (".parquet", ".arrow")):
            table = sinks.read_columns(path, ["id", "url", "language"])
            self.languages.update(language or "(none)" for language in table.column("language").to_pylist())
            self.domains.update(_domain(url) for url in table.column("url").to_pylist())
            if len(self.kept_examples) < KEPT_EXAMPLES and table.num_rows:
                rows = sinks.read_columns(path, ["id", "url", "text"]).slice(0, KEPT_EXAMPLES).to_pylist()
                self.kept_examples += rows[: KEPT_EXAMPLES - len(self.kept_examples)]
        for path in _shards(output, f"{card.REPORT_DIR}/part-*", (".report",)):
            table = sinks.read_columns(path, ["kind", "cluster_size"])
            for kind, size in zip(table.column("kind").to_pylist(), table.column("cluster_size").to_pylist()):
                self.cluster_sizes.setdefault(kind, collections.Counter())[size] += 1


def _domain(url: str | None) -> str:
    return (urlsplit(url).hostname or "(no host)") if url else "(no url)"


def _bars(title: str, labels: list[str], values: list[int], colors: list[str] | str = "#4477aa") -> Figure:
    """Horizontal bars, largest first as given, each with its count."""
    figure = pages.figure(height=max(2.0, 0.28 * len(labels) + 1.0))
    axes = figure.add_subplot()
    if not labels:
        axes.text(0.5, 0.5, "none", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    else:
        positions = list(range(len(labels)))
        axes.barh(positions, values, color=colors)
        axes.set_yticks(positions, labels, fontsize=8)
        axes.invert_yaxis()
        for position, value in zip(positions, values):
            axes.text(value, position, f" {value:,}", va="center", fontsize=7)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def _paired_bars(title: str, series, xlabel: str, ylabel: str, empty: str) -> Figure:
    """Two counts side by side for each key: `series` is two (label, Counter, colour)."""
    figure = pages.figure()
    axes = figure.add_subplot()
    keys = sorted(set().union(*(counts for _, counts, _ in series)))
    if not keys:
        axes.text(0.5, 0.5, empty, ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    else:
        positions = range(len(keys))
        for offset, (label, counts, color) in zip((-0.2, 0.2), series):
            heights = [counts.get(key, 0) for key in keys]
            axes.bar([p + offset for p in positions], heights, width=0.4, label=label, color=color)
        axes.set_xticks(list(positions), [f"{key:,}" for key in keys], fontsize=7, rotation=45)
        axes.set_xlabel(xlabel, fontsize=8)
        axes.set_ylabel(ylabel, fontsize=8)
        axes.legend(fontsize=8)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def funnel_figure(funnel: Funnel) -> Figure:
    rows = funnel_rows(funnel)
    colors = {"total": "#4477aa", "skipped": "#bbbbbb", "dropped": "#ee6677", "renamed": "#ccbb44"}
    labels = [label if kind == "total" else f"{kind}: {label}" for kind, label, _ in rows]
    counts = [count for _, _, count in rows]
    return _bars("From records read to documents kept", labels, counts, [colors[kind] for kind, _, _ in rows])


def lengths_figure(funnel: Funnel) -> Figure:
    return _paired_bars(
        "Document lengths, before and after the filters (before deduplication)",
        [
            ("before the filters", funnel.lengths_before_filters, "#bbbbbb"),
            ("kept by the filters", funnel.lengths_after_filters, "#4477aa"),
        ],
        "characters (at least)",
        "documents",
        "none (no source with filters)",
    )


def clusters_figure(collected: Collected) -> Figure:
    return _paired_bars(
        "Groups of copies by size",
        [
            ("exact copies", collected.cluster_sizes["exact"], "#bbbbbb"),
            ("MinHash near-duplicates", collected.cluster_sizes["near"], "#4477aa"),
        ],
        "documents in the group (the kept one included)",
        "groups",
        "no groups of copies",
    )


def _table(element_id: str, header: tuple[str, str], rows: list[tuple[str, int]]) -> str:
    body = "".join(
        f'<tr><td>{html.escape(label)}</td><td class="n" data-count="{count}">{count:,}</td></tr>'
        for label, count in rows
    )
    return (
        f'<table id="{element_id}"><tr><th>{html.escape(header[0])}</th><th>{html.escape(header[1])}</th></tr>'
        f"{body}</table>"
    )


def _example(example: dict) -> str:
    where = f" · {html.escape(example['url'])}" if example.get("url") else ""
    error = f'<p class="error">{html.escape(example["error"])}</p>' if example.get("error") else ""
    detail = f'<p class="detail">matched: {html.escape(example["detail"])}</p>' if example.get("detail") else ""
    return (
        f"<details><summary><code>{html.escape(example['id'])}</code>{where}</summary>"
        f"{error}{detail}<pre>{html.escape(example['text'])}</pre></details>"
    )


def _error_units(funnel: Funnel) -> str:
    """The units where a step raised (drop reasons `error.<step>.<exception>`), with their share of documents."""
    if not funnel.error_units:
        return ""
    rows = "".join(
        f"<li><code>{html.escape(unit['file'])}</code>: {unit['errors']:,} of {unit['documents']:,} documents</li>"
        for unit in sorted(funnel.error_units, key=lambda u: -u["errors"] / max(u["documents"], 1))[:TOP]
    )
    return f'<h3>Units where a step raised</h3><p class="note">error.* drop reasons below.</p><ul>{rows}</ul>'


def _index_section(funnel: Funnel) -> str:
    """What Common Crawl's columnar index saved: captures listed and fetched, bytes fetched against the records'."""
    if not funnel.index:
        return ""
    counts = funnel.index
    fetched, whole = counts.get("bytes_fetched", 0), counts.get("capture_bytes", 0)
    saved = f"{whole / fetched:,.1f}× fewer bytes than the listed captures' records" if fetched else "nothing fetched"
    return (
        "<h2>Common Crawl's columnar index</h2>"
        f"<p>{counts.get('selected', 0):,} of {counts.get('captures', 0):,} captures selected, "
        f"{counts.get('fetched', 0):,} fetched: {fetched:,} bytes against {whole:,} ({saved}), and "
        f"{counts.get('index_bytes_read', 0):,} bytes of index files read.</p>"
        + _table("index", ("count", "value"), sorted(counts.items()))
    )


def render(output: str, funnel: Funnel, collected: Collected, sources: list[tuple[str, str]]) -> str:
    figure = {name: pages.image(name, f"{FIGURES_DIR}/{name}.png") for name in FIGURES}
    funnel_body = "".join(
        f'<tr class="{kind}"><td>{html.escape(label if kind == "total" else f"{kind}: {label}")}</td>'
        f'<td class="n" data-kind="{kind}" data-reason="{html.escape(label)}" data-count="{count}">{count:,}</td></tr>'
        for kind, label, count in funnel_rows(funnel)
    )
    errors = "".join(
        f"<li><code>{html.escape(error['file'])}</code> @ {error['offset']}: {html.escape(error['error'])}</li>"
        for error in funnel.to_json()["errors"]
    )
    dropped_examples = []
    for kind, reason, _ in funnel_rows(funnel):
        if kind != "dropped":
            continue
        items = (
            "".join(map(_example, funnel.examples.get(reason, [])))
            or f'<p class="note">{_NO_EXAMPLES[stage_of(reason) == "dedup"]}</p>'
        )
        dropped_examples.append(f'<h3 id="dropped-{html.escape(reason)}">{html.escape(reason)}</h3>{items}')
    source_list = ", ".join(f"<code>{html.escape(name)}</code> ({html.escape(kind)})" for name, kind in sources)
    near_groups = sum(collected.cluster_sizes["near"].values())
    exact_groups = sum(collected.cluster_sizes["exact"].values())
    parts = [
        f"<h1>Curation report</h1><p><code>{html.escape(output)}</code>",
        f" · sources: {source_list}</p>" if source_list else "</p>",
        f"<p>{funnel.kept:,} documents kept of {funnel.records_in:,} ({funnel.records_read:,} records read from "
        f"{funnel.input_files:,} inputs; {len(funnel.errors)} input errors). Every number is that of "
        "<code>stats.json</code>.</p>",
        "<h2>Funnel</h2>",
        figure["funnel"],
        f'<table id="funnel"><tr><th>stage</th><th>count</th></tr>{funnel_body}</table>',
        f"<h3>Input errors</h3><ul>{errors}</ul>" if errors else "",
        _error_units(funnel),
        _index_section(funnel),
        "<h2>Changes to kept text</h2>",
        '<p class="note">What steps changed in the documents they passed on: PII replaced by placeholders, '
        "benchmark matches cut, boilerplate lines removed (with examples of the lines), documents with bad words kept "
        "by <code>badwords_keep</code>.</p>",
        _table("edits", ("change", "count"), sorted(funnel.edits.items()))
        if funnel.edits
        else '<p class="note">none</p>',
        *(
            f'<h3 id="edits-{html.escape(key)}">{html.escape(key)}</h3>{"".join(map(_example, funnel.examples[key]))}'
            for key in sorted(funnel.edits)
            if funnel.examples.get(key)
        ),
        "<h2>Languages of the kept documents</h2>",
        figure["languages"],
        _table("languages", ("language", "documents"), collected.languages.most_common(TOP)),
        "<h2>Document lengths</h2>",
        figure["lengths"],
        '<p class="note">Characters per document when language ID and the filters start, and of those they kept; '
        "sources without filters (shards read for deduplication) are not counted.</p>",
        "<h2>Top domains of the kept documents</h2>",
        figure["domains"],
        _table("domains", ("domain", "documents"), collected.domains.most_common(TOP)),
        "<h2>Groups of copies</h2>",
        figure["clusters"],
        f"<p>{exact_groups:,} groups of exact copies and {near_groups:,} MinHash clusters; every group is a row of "
        f"<code>{card.REPORT_SHARDS.format(fmt='…')}</code>.</p>",
        "<h2>Kept documents</h2>",
        "".join(map(_example, collected.kept_examples)) or '<p class="note">none</p>',
        "<h2>Dropped documents, by reason</h2>",
        '<p class="note">The documents with the smallest ids each reason dropped (the first characters).</p>',
        *dropped_examples,
    ]
    return pages.page(f"Curation report: {output}", parts)


def write(output: str) -> str:
    """Writes OUTPUT/report.html and its figures; returns the report's path."""
    funnel = Funnel.from_json(sinks.read_json(sinks.join(output, "stats.json")))
    collected = Collected(output)
    figures = {
        "funnel": funnel_figure(funnel),
        "languages": _bars("Languages", *_columns(collected.languages.most_common(TOP))),
        "lengths": lengths_figure(funnel),
        "domains": _bars("Top domains", *_columns(collected.domains.most_common(TOP))),
        "clusters": clusters_figure(collected),
    }
    for name, figure in figures.items():
        sinks.write_bytes(sinks.join(output, f"{FIGURES_DIR}/{name}.png"), pages.png(figure))
    path = sinks.join(output, REPORT_FILE)
    sinks.write_bytes(path, render(output, funnel, collected, _sources(output)).encode("utf-8"))
    return path


def _columns(pairs: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    return [label for label, _ in pairs], [count for _, count in pairs]
