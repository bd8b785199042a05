"""The inputs of each source a preset reads, as recipe options (`pipeline.cli.options`): each flag declares the
setting of `[sources.NAME]` it sets. A source is part of the run when one of its inputs is given (`SOURCE_INPUTS`).
"""

from __future__ import annotations

import argparse

from pipeline.cli.options import TEXT_SOURCE, csv_list, default_of, recipe_option
from pipeline.steps import html

# source name → (its kind, the settings of which one makes it part of the run); the text source's name is --source-name
SOURCE_INPUTS = {
    "commoncrawl": ("commoncrawl", ("crawl", "warc_paths", "warcs", "cc_index")),
    "wikipedia": ("wikipedia", ("dumps", "wikis")),
    TEXT_SOURCE: ("text", ("inputs",)),
    "shards": ("shards", ("inputs",)),
    "code": ("code", ("repos",)),
}


def add_commoncrawl_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from pipeline.sources import commoncrawl

    s = commoncrawl.Settings
    title = "Common Crawl input (one of)" if required else "Common Crawl input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    recipe_option(
        inputs,
        "--crawl",
        "sources.commoncrawl.crawl",
        metavar="CC-MAIN-YYYY-WW",
        help="read the crawl's warc.paths.gz from --cc-base-url",
    )
    recipe_option(
        inputs,
        "--warc-paths",
        "sources.commoncrawl.warc_paths",
        metavar="FILE_OR_URL",
        help="a paths listing like Common Crawl's (gzip or plain)",
    )
    recipe_option(
        inputs,
        "--warcs",
        "sources.commoncrawl.warcs",
        action="extend",
        nargs="+",
        metavar="GLOB",
        help="WARC files on any Beam filesystem; several globs or paths, repeatable",
    )
    recipe_option(
        inputs,
        "--cc-index",
        "sources.commoncrawl.cc_index",
        action="extend",
        nargs="+",
        metavar="GLOB",
        help="columnar index Parquet files (local, URLs, buckets): only the captures they select are fetched",
    )
    listing = parser.add_argument_group("Common Crawl listing and pages")
    recipe_option(
        listing,
        "--cc-base-url",
        "sources.commoncrawl.cc_base_url",
        help=f"where crawl-data/ lives; relative listing paths resolve against it "
        f"(default: {default_of(s, 'cc_base_url')})",
    )
    recipe_option(
        listing,
        "--max-warcs",
        "sources.commoncrawl.max_warcs",
        type=int,
        help="take at most this many WARCs from the listing",
    )
    recipe_option(
        listing,
        "--warc-offset",
        "sources.commoncrawl.warc_offset",
        type=int,
        help="skip this many listing entries first",
    )
    recipe_option(
        listing,
        "--max-html-bytes",
        "sources.commoncrawl.max_html_bytes",
        type=int,
        help=f"drop pages whose body, before or after decoding, is larger (default: {html.DEFAULT_MAX_HTML_BYTES})",
    )
    recipe_option(
        listing,
        "--extract-timeout",
        "sources.commoncrawl.extract_timeout",
        type=float,
        help=f"seconds the extractor may spend on one page (default: {default_of(s, 'extract_timeout')})",
    )
    recipe_option(
        listing,
        "--url-blocklist",
        "sources.commoncrawl.url_blocklist",
        metavar="FILE",
        help="domains or URLs to drop before extraction, one per line",
    )
    for flag, what in (
        ("--url-banned-words", "words any one of which among a URL's words drops the page"),
        (
            "--url-soft-banned-words",
            "words of which --url-soft-threshold (2) or more among a URL's words drop the page",
        ),
        ("--url-banned-subwords", "strings any one of which anywhere in a URL (punctuation removed) drops the page"),
    ):
        recipe_option(
            listing,
            flag,
            f"sources.commoncrawl.{flag[2:].replace('-', '_')}",
            metavar="FILE",
            help=f"FineWeb's URL filter: {what}; one per line (README: the public lists)",
        )
    recipe_option(
        listing,
        "--url-soft-threshold",
        "sources.commoncrawl.url_soft_threshold",
        type=int,
        help="soft banned words in a URL that drop its page (default: 2)",
    )
    recipe_option(
        listing,
        "--extractor",
        "sources.commoncrawl.extractor",
        choices=["trafilatura", "resiliparse"],
        help="main-text extractor: trafilatura (FineWeb's, the default) or resiliparse (DCLM's, about 10× faster, "
        "less precise)",
    )
    recipe_option(
        listing,
        "--no-prefilter",
        "sources.commoncrawl.prefilter",
        action="store_false",
        help="with --languages: extract every page with trafilatura, without the cheap language prefilter first",
    )
    recipe_option(
        listing,
        "--prefilter-threshold",
        "sources.commoncrawl.prefilter_threshold",
        type=float,
        help="set a page aside before trafilatura when its wanted languages have a lower probability on "
        f"the page's text without its navigation (default: {default_of(s, 'prefilter_threshold')})",
    )
    add_index_options(parser)


def add_index_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Common Crawl's columnar index",
        "With --from-index, only the captures the index selects are fetched, by byte range, instead of whole WARCs: "
        "status 200, HTML, and every rule given here; --languages select by the index's CLD2 labels first.",
    )
    recipe_option(
        group,
        "--from-index",
        "sources.commoncrawl.index",
        action="store_true",
        help="with --crawl: fetch only what the crawl's columnar index selects (its cc-index-table.paths.gz)",
    )
    recipe_option(
        group,
        "--index-languages",
        "sources.commoncrawl.index_language_mode",
        choices=["primary", "any"],
        help="--languages against the index's first CLD2 label (primary, the default) or any of its three",
    )
    recipe_option(
        group,
        "--index-hosts",
        "sources.commoncrawl.index_hosts",
        metavar="FILE",
        help="hosts or domains to fetch, one per line (a domain takes its subdomains)",
    )
    recipe_option(
        group,
        "--index-url-pattern",
        "sources.commoncrawl.index_url_patterns",
        action="append",
        metavar="REGEX",
        help="fetch URLs matching this RE2 pattern (any of them, when repeated)",
    )
    recipe_option(
        group,
        "--index-filter",
        "sources.commoncrawl.index_filter",
        metavar="SQL",
        help="a SQL expression over the index's columns, e.g. \"url_host_tld = 'is' AND url_path LIKE '%%/news/%%'\"",
    )


def _namespaces(value: str) -> list[int]:
    try:
        return [int(item) for item in csv_list(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"namespaces are numbers (0 = articles): {value!r}")


def add_wikipedia_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from pipeline.sources import wikipedia

    title = "Wikipedia input (one of)" if required else "Wikipedia input (at most one of)"
    inputs = parser.add_argument_group(title).add_mutually_exclusive_group(required=required)
    recipe_option(
        inputs,
        "--dump",
        "sources.wikipedia.dumps",
        action="append",
        metavar="PATH_OR_URL",
        help="a MediaWiki XML export: .xml, .xml.bz2 (single or multistream) or .xml.xz; repeatable",
    )
    recipe_option(
        inputs,
        "--wiki",
        "sources.wikipedia.wikis",
        type=csv_list,
        metavar="enwiki,…",
        help="the pages-articles-multistream dump and index of these wikis from --dumps-base-url",
    )
    wiki = parser.add_argument_group("Wikipedia dumps")
    recipe_option(
        wiki,
        "--index",
        "sources.wikipedia.indexes",
        action="append",
        metavar="PATH_OR_URL",
        help="the multistream index of the --dump in the same position (offset:page_id:title lines); "
        "with it the dump is read in parallel. A local dump's index beside it, named as "
        "Wikimedia names it, is found without this",
    )
    recipe_option(
        wiki,
        "--dump-date",
        "sources.wikipedia.dump_date",
        metavar="latest|YYYYMMDD",
        help="with --wiki (default: latest)",
    )
    recipe_option(
        wiki,
        "--dumps-base-url",
        "sources.wikipedia.dumps_base_url",
        help=f"a Wikimedia dump server or mirror (default: {wikipedia.DEFAULT_DUMPS_BASE_URL})",
    )
    recipe_option(
        wiki,
        "--namespaces",
        "sources.wikipedia.namespaces",
        type=_namespaces,
        metavar="0,…",
        help="page namespaces to keep (default: 0, articles)",
    )
    recipe_option(
        wiki,
        "--keep-tables",
        "sources.wikipedia.keep_tables",
        action="store_true",
        help="keep the text of wikitext tables (default: removed)",
    )
    recipe_option(
        wiki,
        "--streams-per-part",
        "sources.wikipedia.streams_per_part",
        type=int,
        metavar="N",
        help="bz2 streams (100 pages each) per unit of work (default: up to 100, at least 64 units)",
    )


def add_text_inputs(parser: argparse.ArgumentParser, flag: str, required: bool = True) -> None:
    group = parser.add_argument_group("local text corpus")
    recipe_option(
        group,
        flag,
        f"sources.{TEXT_SOURCE}.inputs",
        action="extend",
        nargs="+",
        required=required,
        metavar="GLOB",
        help="plain text (.txt, one document per file), JSON lines (.jsonl, .json) or Parquet/Arrow "
        "files; text and JSON lines may be .gz, .bz2, .xz or .zst; any Beam filesystem; several globs, repeatable",
    )
    group.add_argument(
        "--source-name",
        default="text",
        metavar="NAME",
        help="the documents' source (and id prefix), e.g. books (default: %(default)s)",
    )
    recipe_option(
        group,
        "--text-field",
        f"sources.{TEXT_SOURCE}.text_field",
        help="JSON field or column holding the text (default: text)",
    )
    recipe_option(
        group,
        "--lines",
        f"sources.{TEXT_SOURCE}.lines",
        action="store_true",
        help="plain text: one document per line instead of per file",
    )
    recipe_option(
        group,
        "--strip-gutenberg",
        f"sources.{TEXT_SOURCE}.strip_gutenberg",
        action="store_true",
        help="remove Project Gutenberg's licence header and footer",
    )
    recipe_option(
        group,
        "--language",
        f"sources.{TEXT_SOURCE}.language",
        metavar="CODE",
        help="the corpus's own language, stored as `language` (fastText's label is kept beside it)",
    )


def add_code_inputs(parser: argparse.ArgumentParser, required: bool = True) -> None:
    from pipeline.sources import code

    group = parser.add_argument_group("code repositories")
    recipe_option(
        group,
        "--repos",
        "sources.code.repos",
        action="extend",
        nargs="+",
        required=required,
        metavar="GLOB",
        help="repository archives (.tar.gz, .tgz, .tar, .tar.bz2, .tar.xz, .zip; local, URLs or buckets), checkouts "
        "or bare git repositories; several globs, repeatable",
    )
    recipe_option(
        group,
        "--revision",
        "sources.code.revision",
        help="the branch, tag or commit a bare repository is read at (default: HEAD)",
    )
    recipe_option(
        group,
        "--licenses",
        "sources.code.licenses",
        type=csv_list,
        metavar="permissive|any|none|SPDX,…",
        help="licences a repository's licence files must all name: permissive (The Stack's list, the default), "
        "SPDX ids, none (repositories without a licence file), any (every repository)",
    )
    recipe_option(
        group,
        "--max-file-bytes",
        "sources.code.max_file_bytes",
        type=int,
        help=f"skip larger files unread (default: {default_of(code.Settings, 'max_file_bytes')})",
    )
    recipe_option(
        group,
        "--no-secrets",
        "sources.code.secrets",
        action="store_false",
        help="keep keys and tokens as they are (default: replaced by <SECRET>)",
    )


def add_shards_inputs(parser: argparse.ArgumentParser) -> None:
    recipe_option(
        parser,
        "--input",
        "sources.shards.inputs",
        action="extend",
        nargs="+",
        required=True,
        metavar="GLOB",
        help="shards on any Beam filesystem; several globs, repeatable",
    )
