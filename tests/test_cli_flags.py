"""Every flag of every curation preset reaches the recipe it builds (a flag that only parses is a defect: `--no-dedup`
once did not). A new flag without a row here fails the coverage test."""

import json
import re

import pytest

from pipeline import cli
from pipeline.cli import filtering

# flag → (its values, the recipe key it sets ({s}: the preset's source), the value the key must then have)
FLAGS = {
    "--crawl": (["CC-MAIN-2024-10"], "sources.commoncrawl.crawl", "CC-MAIN-2024-10"),
    "--warc-paths": (["paths.gz"], "sources.commoncrawl.warc_paths", "paths.gz"),
    "--warcs": (["a.warc.gz", "b.warc.gz"], "sources.commoncrawl.warcs", ["a.warc.gz", "b.warc.gz"]),
    "--cc-base-url": (["http://mirror.example/"], "sources.commoncrawl.cc_base_url", "http://mirror.example/"),
    "--max-warcs": (["3"], "sources.commoncrawl.max_warcs", 3),
    "--warc-offset": (["2"], "sources.commoncrawl.warc_offset", 2),
    "--max-html-bytes": (["1000"], "sources.commoncrawl.max_html_bytes", 1000),
    "--extract-timeout": (["1.5"], "sources.commoncrawl.extract_timeout", 1.5),
    "--url-blocklist": (["block.txt"], "sources.commoncrawl.url_blocklist", "block.txt"),
    "--url-banned-words": (["words.txt"], "sources.commoncrawl.url_banned_words", "words.txt"),
    "--url-soft-banned-words": (["soft.txt"], "sources.commoncrawl.url_soft_banned_words", "soft.txt"),
    "--url-banned-subwords": (["sub.txt"], "sources.commoncrawl.url_banned_subwords", "sub.txt"),
    "--url-soft-threshold": (["3"], "sources.commoncrawl.url_soft_threshold", 3),
    "--extractor": (["resiliparse"], "sources.commoncrawl.extractor", "resiliparse"),
    "--no-prefilter": ([], "sources.commoncrawl.prefilter", False),
    "--prefilter-threshold": (["0.2"], "sources.commoncrawl.prefilter_threshold", 0.2),
    "--dump": (["a.xml"], "sources.wikipedia.dumps", ["a.xml"]),
    "--wiki": (["ltgwiki,fowiki"], "sources.wikipedia.wikis", ["ltgwiki", "fowiki"]),
    "--index": (["a-index.txt.bz2"], "sources.wikipedia.indexes", ["a-index.txt.bz2"]),
    "--dump-date": (["20240601"], "sources.wikipedia.dump_date", "20240601"),
    "--dumps-base-url": (["http://m.example/"], "sources.wikipedia.dumps_base_url", "http://m.example/"),
    "--namespaces": (["0,14"], "sources.wikipedia.namespaces", [0, 14]),
    "--keep-tables": ([], "sources.wikipedia.keep_tables", True),
    "--streams-per-part": (["5"], "sources.wikipedia.streams_per_part", 5),
    "--text": (["a.txt"], "sources.text.inputs", ["a.txt"]),
    "--input": (["a.txt"], "sources.text.inputs", ["a.txt"]),  # dedup's: sources.shards.inputs
    "--source-name": (["books"], "sources.books.kind", "text"),
    "--text-field": (["content"], "sources.text.text_field", "content"),
    "--lines": ([], "sources.text.lines", True),
    "--strip-gutenberg": ([], "sources.text.strip_gutenberg", True),
    "--language": (["de"], "sources.text.language", "de"),
    "--languages": (["en,de"], "sources.{s}.languages", ["en", "de"]),
    "--min-language-score": (["0.3"], "sources.{s}.min_language_score", 0.3),
    "--filters": (["c4"], "sources.{s}.filters", ["c4"]),
    "--filter-config": (["CONFIG"], "sources.{s}.filter_settings", {"c4": {"min_words_per_line": 2}}),
    "--keep-measures": ([], "sources.{s}.keep_measures", True),
    "--quality-model": (["models/quality"], "sources.{s}.quality_model", "models/quality"),
    "--min-quality": (["0.4"], "sources.{s}.min_quality", 0.4),
    "--quality-keep": (["0.5"], "sources.{s}.quality_keep", 0.5),
    "--badwords": (["en:en.txt,de:de.txt"], "sources.{s}.badwords", {"en": "en.txt", "de": "de.txt"}),
    "--badwords-keep": (["0.1"], "sources.{s}.badwords_keep", 0.1),
    "--pii": (["TOGGLE"], "sources.{s}.pii", None),  # the other of the source's default (on for the web only)
    "--pii-patterns": (["pii.txt"], "sources.{s}.pii_patterns", "pii.txt"),
    "--decontamination": (["evals.npz"], "sources.{s}.decontamination", "evals.npz"),
    "--decontamination-mode": (["cut"], "sources.{s}.decontamination_mode", "cut"),
    "--langid-model": (["lid.bin"], "langid.model", "lid.bin"),
    "--from-index": ([], "sources.commoncrawl.index", True),
    "--cc-index": (["i.parquet"], "sources.commoncrawl.cc_index", ["i.parquet"]),
    "--index-languages": (["any"], "sources.commoncrawl.index_language_mode", "any"),
    "--index-hosts": (["hosts.txt"], "sources.commoncrawl.index_hosts", "hosts.txt"),
    "--index-url-pattern": (["/news/"], "sources.commoncrawl.index_url_patterns", ["/news/"]),
    "--index-filter": (["url_host_tld = 'is'"], "sources.commoncrawl.index_filter", "url_host_tld = 'is'"),
    "--repos": (["a.tar.gz", "b.zip"], "sources.code.repos", ["a.tar.gz", "b.zip"]),
    "--revision": (["v1.0"], "sources.code.revision", "v1.0"),
    "--licenses": (["MIT,none"], "sources.code.licenses", ["MIT", "none"]),
    "--max-file-bytes": (["5000"], "sources.code.max_file_bytes", 5000),
    "--no-secrets": ([], "sources.code.secrets", False),
    "--output": (["elsewhere"], "output.dir", "elsewhere"),
    "--format": (["arrow"], "output.format", "arrow"),
    "--shard-size": (["1GB"], "output.shard_size", "1GB"),
    "--num-shards": (["7"], "output.num_shards", 7),
    "--no-dedup": ([], "dedup.enabled", False),
    "--no-minhash": ([], "dedup.minhash", False),
    "--threshold": (["0.7"], "dedup.threshold", 0.7),
    "--num-perm": (["64"], "dedup.num_perm", 64),
    "--bands": (["4"], "dedup.bands", 4),
    "--rows": (["8"], "dedup.rows", 8),
    "--ngram": (["3"], "dedup.ngram", 3),
    "--verify": ([], "dedup.verify", True),
    "--prefer": (["books,wikipedia"], "dedup.prefer", ["books", "wikipedia"]),
    "--components-rounds": (["9"], "dedup.components_rounds", 9),
    "--line-dedup": ([], "dedup.line_dedup", True),
    "--line-min-documents": (["5"], "dedup.line_min_documents", 5),
}
# Each preset: its inputs (the ones a row replaces when it is one of them) and the source its per-source flags name.
PRESETS = {
    "commoncrawl": (["--warcs", "base.warc.gz"], "commoncrawl"),
    "wikipedia": (["--dump", "base.xml"], "wikipedia"),
    "text": (["--input", "base.txt"], "text"),
    "code": (["--repos", "base.tar.gz"], "code"),
    "curate": (
        ["--warcs", "base.warc.gz", "--dump", "base.xml", "--text", "base.txt", "--repos", "r.zip"],
        "commoncrawl",
    ),
    "dedup": (["--input", "base.parquet"], "shards"),
}
INPUT_FLAGS = {"--crawl", "--warc-paths", "--warcs", "--dump", "--wiki", "--input", "--text", "--repos", "--cc-index"}
# The engine's flags set no recipe key (a recipe gives the same bytes on either engine): they reach the engine run
# (test_the_engine_flags_reach_the_engine).
ENGINE_FLAGS = {"--engine", "--spark-master", "--conf"}


def options(command: str) -> list[str]:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return [o for a in subparsers.choices[command]._actions for o in a.option_strings if o.startswith("--")]


def lookup(table: dict, dotted: str):
    for part in dotted.split("."):
        table = table[part]
    return table


def cases():
    for command in PRESETS:
        for flag in options(command):
            if flag != "--help" and flag not in ENGINE_FLAGS:
                yield command, flag


@pytest.mark.parametrize("command", PRESETS)
def test_every_flag_of_every_preset_has_a_row(command):
    assert [flag for flag in options(command) if flag not in {*FLAGS, *ENGINE_FLAGS, "--help"}] == []


@pytest.mark.parametrize(("command", "flag"), list(cases()))
def test_the_flag_reaches_the_resolved_recipe(command, flag, tmp_path):
    base, source = PRESETS[command]
    values, key, expected = FLAGS[flag]
    if flag == "--input" and command == "dedup":
        values, key, expected = ["a.parquet"], "sources.shards.inputs", ["a.parquet"]
    if values == ["CONFIG"]:
        config = tmp_path / "filters.json"
        config.write_text(
            json.dumps(
                {"c4": {"min_words_per_line": 2}, "min_length": {"min_words": 3}, "code_lines": {"max_line_length": 9}}
            )
        )
        values = [str(config)]
        if source in ("wikipedia", "text", "shards"):  # their default filters are min_length alone
            expected = {"min_length": {"min_words": 3}}
        if source == "code":
            expected = {"code_lines": {"max_line_length": 9}}
    if flag == "--languages" and source == "code":  # programming languages
        values, expected = ["python,c"], ["python", "c"]
    key = key.format(s=source)
    if values == ["TOGGLE"]:
        web = source in ("commoncrawl", "code")
        values, expected = ["off" if web else "on"], not web
    arguments = list(base)
    if flag in INPUT_FLAGS:  # replaces the preset's input of its kind
        kind = {"--crawl": "--warcs", "--warc-paths": "--warcs", "--wiki": "--dump", "--cc-index": "--warcs"}.get(
            flag, flag
        )
        at = arguments.index(kind)
        del arguments[at : at + 2]
    args, extra = cli.build_parser().parse_known_args([command, *arguments, "--output", "out", flag, *values])
    assert extra == []
    recipe = cli.preset_recipe(args, []).to_dict()
    assert lookup(recipe, key) == expected
    if flag not in INPUT_FLAGS and flag != "--source-name":
        args, _ = cli.build_parser().parse_known_args([command, *arguments, "--output", "out"])
        assert lookup(cli.preset_recipe(args, []).to_dict(), key) != expected  # the flag changed it


def test_a_plain_languages_value_leaves_code_alone_beside_other_sources():
    args, _ = cli.build_parser().parse_known_args(
        ["curate", "--warcs", "a.warc.gz", "--repos", "r.zip", "--languages", "en", "--output", "o"]
    )
    sources = cli.preset_recipe(args, []).to_dict()["sources"]
    assert sources["commoncrawl"]["languages"] == ["en"] and sources["code"]["languages"] == []
    args, _ = cli.build_parser().parse_known_args(
        ["curate", "--warcs", "a.warc.gz", "--repos", "r.zip", "--languages", "code=python", "--output", "o"]
    )
    assert cli.preset_recipe(args, []).to_dict()["sources"]["code"]["languages"] == ["python"]


def test_run_takes_its_output_from_the_flag(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[output]\ndir = "there"\n[sources.text]\nkind = "text"\ninputs = ["a.txt"]\n')
    args, extra = cli.build_parser().parse_known_args(["run", "--recipe", str(recipe), "--output", "here"])
    pairs = [("output.dir", args.output)]
    from pipeline import recipe as recipes

    assert recipes.load(args.recipe, pairs).output.dir == "here" and extra == []


@pytest.mark.parametrize("command", PRESETS)
def test_a_flag_sets_the_recipe_key_it_declares(command):
    """The one rule (pipeline/cli/options.py): a recipe option's destination is the key it reaches, the key the
    table above reads in the resolved recipe; the only other flags are the per-source ones and --source-name."""
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    others = {"source_name", "help", "keep_measures", "engine", "spark_master", "conf", *filtering.PER_SOURCE_FLAGS}
    for action in subparsers.choices[command]._actions:
        flag = action.option_strings[0]
        if action.dest in others:
            continue
        key = FLAGS[flag][1] if not (flag == "--input" and command == "dedup") else "sources.shards.inputs"
        assert action.dest.replace("{text}", "text") == key, flag


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dump", "a.xml", "--max-warcs", "3"], "--max-warcs: no commoncrawl input in this run"),
        (["--warcs", "a.warc.gz", "--namespaces", "0"], "--namespaces: no wikipedia input in this run"),
        (["--dump", "a.xml", "--source-name", "books", "--lines"], "--lines: no books input in this run (give --text)"),
        (["--warcs", "a.warc.gz", "--text", "b.txt", "--source-name", "commoncrawl"], "'commoncrawl' is already"),
    ],
)
def test_a_source_setting_without_its_input_is_refused(arguments, message):
    args, _ = cli.build_parser().parse_known_args(["curate", *arguments, "--output", "out"])
    with pytest.raises(cli.UsageError, match=re.escape(message)):
        cli.preset_recipe(args, [])


@pytest.mark.parametrize("command", [*PRESETS, "run"])
def test_the_engine_flags_reach_the_engine(command, tmp_path, monkeypatch):
    """--engine picks the engine that runs the recipe (Beam's run is not called), --spark-master and --conf reach
    Spark as given, and the recipe is the one the command builds without them."""
    from pipeline.beam import curate as beam_curate
    from pipeline.output.stats import Funnel
    from pipeline.spark import curate as spark_curate

    ran = {}

    def engine(name):
        def run(recipe, *arguments):
            ran[name] = (recipe.to_dict(), arguments)
            return Funnel()

        return run

    monkeypatch.setattr(beam_curate, "run", engine("beam"))
    monkeypatch.setattr(spark_curate, "run", engine("spark"))
    if command == "run":
        recipe = tmp_path / "r.toml"
        recipe.write_text('[sources.text]\nkind = "text"\ninputs = ["a.txt"]\n')
        base = ["run", "--recipe", str(recipe)]
    else:
        base = [command, *PRESETS[command][0]]
    base += ["--output", str(tmp_path / "out")]
    cli.main(base)
    cli.main(
        [*base, "--engine", "spark", "--spark-master", "spark://head:7077", "--conf", "spark.a=1", "--conf", "b=x=y"]
    )
    assert ran["spark"][1] == ("spark://head:7077", {"spark.a": "1", "b": "x=y"})
    assert ran["spark"][0] == ran["beam"][0]
    del ran["spark"]
    cli.main([*base, "--engine", "spark"])
    assert ran["spark"][1] == (None, {})  # spark-submit's master, else local[*] (pipeline.spark.session)
