"""The training run's report: curves of every metric, a sample at each validation pass (which leaves the run's
losses as they are), the configuration; it renders in a headless browser without console errors."""

import html.parser

import pytest

from tests.browser import needs_chromium, screenshot
from tests.trainruns import records, run_args
from train import cli, report

PNG = b"\x89PNG\r\n\x1a\n"
SAMPLED = ["--training.steps", "6", "--logging.eval_interval", "3", "--logging.sample_tokens", "12"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_data):
    root = tmp_path_factory.mktemp("train-report")
    assert cli.main(run_args(train_data, root / "sampled", *SAMPLED)) == 0
    assert cli.main(run_args(train_data, root / "plain", *SAMPLED, "--logging.sample_tokens", "0")) == 0
    return root / "sampled", root / "plain"


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sample_steps, self._row = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "td" and dict(attrs).get("class") == "n":
            self._row = "step"

    def handle_data(self, data):
        if self._row == "step":
            self.sample_steps.append(int(data.replace(",", "")))
            self._row = None


def test_the_report_has_every_curve_a_sample_per_validation_pass_and_the_config(runs):
    run = runs[0]
    page = Page()
    text = (run / report.REPORT_FILE).read_text()
    page.feed(text)
    assert page.images == [f"{report.FIGURES_DIR}/{name}.png" for name, *_ in report.FIGURES] + [
        f"{report.FIGURES_DIR}/tasks.png"
    ]
    for source in page.images:
        assert (run / source).read_bytes().startswith(PNG)
    samples = [r for r in records(run) if "sample" in r]
    validations = [r["step"] for r in records(run) if "val.loss" in r]
    assert [r["step"] for r in samples] == validations == page.sample_steps == [3, 6]
    assert all(r["sample"] for r in samples)
    assert "[logging]" in text and "sample_tokens = 12" in text  # the configuration, as config.toml has it


def test_samples_leave_the_losses_as_they_are(runs):
    sampled, plain = runs

    def curve(run):
        return [(r["step"], r.get("loss"), r.get("val.loss")) for r in records(run) if "sample" not in r]

    assert curve(sampled) == curve(plain)
    assert not [r for r in records(plain) if "sample" in r]
    assert "none: samples are generated" in (plain / report.REPORT_FILE).read_text()


def test_the_report_command_redraws_it(runs, capsys):
    run = runs[0]
    (run / report.REPORT_FILE).unlink()
    assert report.main([str(run)]) == 0 and (run / report.REPORT_FILE).exists()
    assert report.main([str(run / "nowhere")]) == 2


@needs_chromium
def test_the_report_renders_in_a_browser_without_console_errors(runs, tmp_path):
    assert screenshot(runs[0] / report.REPORT_FILE, tmp_path / "run.png") == []
    assert (tmp_path / "run.png").stat().st_size > 30_000
