"""`python -m train.ablate` end to end: two recipes over a generated crawl (the web filters off and on) mixed with
Wikipedia, books and a code repository, one tokenizer,
two seeds each of a tiny proxy, bits per byte on two held-out sets and accuracy on two benchmark tasks; every figure
in results.json is what `python -m train.eval` gives for the same checkpoint, the order agreement over seeds is
what the seeds' figures say, the report renders in headless Chromium, and a finished curation run of an unchanged
recipe is reused."""

import json
import random
import statistics

import pyarrow.parquet as pq
import pytest

from pipeline.common import synthetic
from tests import codedata
from tests.browser import needs_chromium, screenshot
from train import ablate, eval as train_eval

TINY = [
    "--model.dim", "32", "--model.n_layers", "2", "--model.n_heads", "4", "--model.n_kv_heads", "2",
    "--model.max_seq_len", "64", "--data.seq_len", "64", "--training.batch_tokens", "1024",
    "--training.micro_batch_size", "8", "--training.device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate-inputs")
    synthetic.write_sample_warc(str(root / "crawl.warc.gz"), pages=70, seed=2)
    rng = random.Random(5)
    for name, language in (("english", "en"), ("german", "de")):
        with open(root / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for number in range(4):
                text = "\n\n".join(synthetic.article_paragraphs(rng, language))
                handle.write(json.dumps({"id": f"{name}-{number}", "text": text}, ensure_ascii=False) + "\n")
    with open(root / "choices.jsonl", "w", encoding="utf-8") as handle:  # a multiple-choice task (MosaicML's layout)
        for number in range(12):
            words = synthetic.article_paragraphs(rng, "en")[0].split()
            choices = [" ".join(words[i : i + 4]) for i in (0, 8, 16)]
            query = " ".join(words[20:30])
            handle.write(json.dumps({"query": query, "choices": choices, "gold": number % 3}) + "\n")
    with open(root / "cloze.jsonl", "w", encoding="utf-8") as handle:  # a last-word task (LAMBADA's layout)
        for _ in range(10):
            handle.write(json.dumps({"text": " ".join(synthetic.article_paragraphs(rng, "en")[0].split()[:25])}) + "\n")
    sample = synthetic.write_sample(str(root / "sample"), pages=2, articles=6, seed=4, republished=0)
    files = codedata.package_files("tzlocal", "tzlocal")
    codedata.write_tar(root / "tzlocal.tar.gz", files, "tzlocal-main")
    common = (
        f'[dedup]\nenabled = false\n[sources.wikipedia]\ndumps = ["{sample.dump}"]\n'
        f'[sources.books]\nkind = "text"\ninputs = ["{sample.heldout}"]\n'
        f'[sources.code]\nrepos = ["{root / "tzlocal.tar.gz"}"]\n'
        f'[sources.commoncrawl]\nkind = "commoncrawl"\nwarcs = ["{root / "crawl.warc.gz"}"]\n'
    )
    (root / "no-filters.toml").write_text(common + "filters = []\n")
    (root / "web-filters.toml").write_text(common)  # the web filters are Common Crawl's default
    return root


def arguments(inputs, output, *extra):
    return [
        "--recipe", str(inputs / "no-filters.toml"), "--recipe", str(inputs / "web-filters.toml"),
        "--eval", f"english={inputs / 'english.jsonl'}", "--eval", f"german={inputs / 'german.jsonl'}",
        "--task", f"choices=mosaicml:{inputs / 'choices.jsonl'}", "--task", f"cloze=lambada:{inputs / 'cloze.jsonl'}",
        "--task-limit", "9", "--tokens", "8000", "--vocab-size", "384", "--val-fraction", "0.2", "--workers", "1",
        "--output", str(output), *TINY, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ablation(inputs, tmp_path_factory):
    output = tmp_path_factory.mktemp("ablation")
    assert ablate.main(arguments(inputs, output, "--seeds", "2")) == 0
    return output


def test_every_figure_is_train_evals_for_the_same_checkpoint(inputs, ablation, tmp_path):
    results = json.loads((ablation / ablate.RESULTS_FILE).read_text())
    assert (
        results["steps"] == 8
        and results["tokens_per_run"] == 8192
        and list(results["recipes"]) == ["no-filters", "web-filters"]
    )
    for name, recipe in results["recipes"].items():
        stats = json.loads((ablation / "curated" / name / "stats.json").read_text())
        meta = json.loads((ablation / "bins" / name / "meta.json").read_text())
        assert recipe["documents"] == stats["kept"] and recipe["funnel"]["dropped"] == stats["dropped"]
        shards = sorted((ablation / "curated" / name).glob("part-*.parquet"))
        sources = set(pq.read_table(shards, columns=["source"]).column("source").to_pylist())
        assert sources == {"commoncrawl", "wikipedia", "books", "code"}
        assert recipe["tokens"] == {split: meta["splits"][split]["tokens"] for split in ("train", "val")}
        assert [run["seed"] for run in recipe["runs"]] == [1337, 1338]
        for eval_name in ("english", "german"):
            values = []
            for run in recipe["runs"]:
                written = tmp_path / f"{name}-{run['seed']}-{eval_name}.json"
                command = ["--checkpoint", run["run"], "--input", str(inputs / f"{eval_name}.jsonl")]
                assert train_eval.main([*command, "--output", str(written)]) == 0
                assert run["eval"][eval_name] == json.loads(written.read_text())
                values.append(run["eval"][eval_name]["bits_per_byte"])
            figures = recipe["bits_per_byte"][eval_name]
            assert figures["values"] == values and figures["mean"] == statistics.fmean(values)
            assert figures["std"] == statistics.stdev(values) > 0  # two seeds, two models
        for run in recipe["runs"]:  # both tasks in one train.eval, as a user would score them
            written = tmp_path / f"{name}-{run['seed']}-tasks.json"
            specs = [argument for task in ("choices", "cloze") for argument in ("--task", results["tasks"][task])]
            assert train_eval.main(["--checkpoint", run["run"], *specs, "--limit", "9", "--output", str(written)]) == 0
            expected = json.loads(written.read_text())["tasks"]  # docs/formats.md
            assert run["tasks"] == expected["tasks"] and expected["tasks"]["cloze"]["items"] == 9  # --task-limit
        for task in ("choices", "cloze"):
            assert recipe["tasks"][task]["values"] == [run["tasks"][task]["acc"] for run in recipe["runs"]]
        centred = [statistics.fmean(t["centred_acc"] for t in run["tasks"].values()) for run in recipe["runs"]]
        assert recipe["centred_acc"]["values"] == centred
    for metric, _, _ in ablate.metrics_of(results):  # the order agreement is the seeds' own story (either sort)
        per_seed = [
            sorted(results["recipes"], key=lambda n: ablate.figures_of(results["recipes"][n], metric)["values"][s])
            for s in (0, 1)
        ]
        tied = any(len(set(ablate.figures_of(r, metric)["values"])) < 2 for r in results["recipes"].values())
        assert results["agreement"][metric] == float(per_seed[0] == per_seed[1]) or tied, metric
    assert set(results["agreement"]) == {
        "bits_per_byte.english", "bits_per_byte.german", "tasks.choices", "tasks.cloze", "centred_acc",
    }  # fmt: skip
    dropped = {name: sum(r["funnel"]["dropped"].values()) for name, r in results["recipes"].items()}
    assert dropped["web-filters"] > dropped["no-filters"]  # the recipes reached their runs
    assert results["recipes"]["no-filters"]["documents"] > results["recipes"]["web-filters"]["documents"]
    curve = [r for r in map(json.loads, open(results["recipes"]["no-filters"]["runs"][0]["run"] + "/metrics.jsonl"))]
    assert sum("val.loss" in r for r in curve) >= 4  # validation passes along the run, for the overlaid curves


@needs_chromium
def test_the_report_renders(ablation, tmp_path):
    page = (ablation / ablate.REPORT_FILE).read_text()
    assert (
        page.count('<tr data-recipe="') == 2
        and 'data-metric="bits_per_byte.english"' in page
        and 'data-agreement="tasks.cloze"' in page
        and "report/curves.png" in page
    )
    assert (ablation / "report" / "curves.png").stat().st_size > 10_000
    console = screenshot(ablation / ablate.REPORT_FILE, tmp_path / "report.png", height=1500)
    assert (tmp_path / "report.png").stat().st_size > 20_000 and not [line for line in console if "ERROR" in line]


def test_a_finished_curation_run_of_the_same_recipe_file_is_reused(inputs, ablation, tmp_path, capsys):
    args, rest = ablate.build_parser().parse_known_args(arguments(inputs, ablation))
    again = ablate.Ablation(args, rest)
    recipe = str(inputs / "web-filters.toml")
    assert again.curate("web-filters", recipe) == str(ablation / "curated" / "web-filters")
    assert "curate-web-filters … reused: the same recipe file curated before" in capsys.readouterr().out
    marker, out = ablation / "curated" / "web-filters.done.json", str(ablation / "curated" / "web-filters")
    edited = tmp_path / "web-filters.toml"
    edited.write_text((inputs / "web-filters.toml").read_text() + "[output]\nnum_shards = 3\n")
    assert ablate.curated_before(out, str(marker), ablate.file_sha1(recipe))
    assert not ablate.curated_before(out, str(marker), ablate.file_sha1(str(edited)))  # an edited recipe runs again
    assert not ablate.curated_before(str(tmp_path / "unfinished"), str(marker), ablate.file_sha1(recipe))


def test_the_terminal_table_has_every_recipe_and_set(ablation):
    results = json.loads((ablation / ablate.RESULTS_FILE).read_text())
    header, rule, *rows, agreement = ablate.table_lines(results)
    assert "english bpb" in header and "german bpb" in header and "cloze acc" in header and set(rule) == {"-"}
    assert agreement.startswith("seeds agree on order") and agreement.count("%") == 5  # two seeds: 0% or 100%
    for row, (name, recipe) in zip(rows, results["recipes"].items(), strict=True):
        english = recipe["bits_per_byte"]["english"]
        assert row.startswith(name) and f"{english['mean']:.4f} ± {english['std']:.4f}" in row
        assert f"{recipe['documents']:,}" in row


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data.sources", "[]"], "--data.sources: set by the ablation"),
        (["--eval", "bad"], "--eval: expected NAME=GLOB"),
        (["--eval", "x=/nowhere/*.jsonl"], "--eval x: no file matches"),
        (["--training.batch_tokens", "1000"], "training.batch_tokens (1000) must be a multiple"),
        (["--task", "piqa=piqa:/nowhere/valid.jsonl"], "/nowhere/valid.jsonl"),
        (["--task-limit", "-1"], "--task-limit"),
    ],
)
def test_mistakes_stop_before_any_work_with_one_line(inputs, tmp_path, capsys, extra, message):
    assert ablate.main(arguments(inputs, tmp_path / "out", *extra)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "curated").exists()


def test_a_malformed_task_is_the_command_line_s_error(inputs, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        ablate.main(arguments(inputs, tmp_path / "out", "--task", "piqa=nosuch:x.jsonl"))
    assert stopped.value.code == 2
    assert "argument --task: 'piqa=nosuch:x.jsonl': unknown task format 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_ablation_options_reach_their_stages(inputs, ablation):
    results = json.loads((ablation / ablate.RESULTS_FILE).read_text())
    meta = json.loads((ablation / "bins" / "web-filters" / "meta.json").read_text())
    assert meta["vocab_size"] == 384 and meta["val_fraction"] == 0.2  # --vocab-size, --val-fraction
    run = results["recipes"]["web-filters"]["runs"][0]["run"]
    records = [json.loads(line) for line in open(f"{run}/metrics.jsonl")]
    assert sorted(r["step"] for r in records if "val.loss" in r) == list(range(1, 9))  # --curve-points 10, 8 steps
    logs = sorted((ablation / "logs").glob("*curate-web-filters.log"))
    assert logs and "--direct_num_workers=1" in logs[0].read_text().splitlines()[0]  # --workers
    args, rest = ablate.build_parser().parse_known_args(
        [*arguments(inputs, ablation), "--tokenizer", str(ablation / "tokenizer")]
    )
    assert ablate.Ablation(args, rest).tokenizer({}) == str(ablation / "tokenizer")  # taken, not trained


def test_the_order_agreement_is_the_share_of_seed_pairs_that_rank_the_recipes_alike():
    # three seeds: seeds 0 and 1 put a before b, seed 2 the other way round: one pair of three agrees
    bpb = {"a": [1.0, 1.1, 1.3], "b": [1.2, 1.3, 1.2]}
    assert ablate.order_agreement(bpb, lower_is_better=True) == pytest.approx(1 / 3)
    assert ablate.order_agreement({"a": [0.6, 0.7], "b": [0.5, 0.4]}, lower_is_better=False) == 1.0
    three = {"a": [0.6, 0.7], "b": [0.5, 0.4], "c": [0.55, 0.75]}  # the same winner is not enough: the whole order
    assert ablate.order_agreement(three, lower_is_better=False) == 0.0
    assert ablate.order_agreement({"a": [0.6], "b": [0.5]}, lower_is_better=False) is None  # one seed
    assert ablate.order_agreement({"a": [0.6, 0.5]}, lower_is_better=False) is None  # one recipe
