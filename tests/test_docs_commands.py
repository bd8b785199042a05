"""The runner commands in docs/running-at-scale.md are checked: every `python -m pipeline …` line parses, its
lmforge flags build a valid recipe (a `run` command's recipe file is read), and every other option is one Beam
knows (a typo there would otherwise be passed through silently and only fail on the cluster); a Spark command
has no other options and its `--conf` settings parse."""

import pathlib
import re
import shlex

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import cli, recipe as recipes
from pipeline.common.settings import split_overrides
from pipeline.spark import session

REPO = pathlib.Path(__file__).resolve().parent.parent
BEAM_OPTIONS = set(PipelineOptions([]).get_all_options())


def documented_commands() -> list[list[str]]:
    text = (REPO / "docs" / "running-at-scale.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split(" &")[0]  # services started in the background
            if command.startswith("python -m pipeline "):
                commands.append(shlex.split(command.replace("…", ""))[3:])
    return commands


def test_every_documented_runner_command_is_valid():
    commands = documented_commands()
    runners = {c[c.index("--runner") + 1] for c in commands if "--runner" in c}
    assert {"DataflowRunner", "FlinkRunner", "SparkRunner", "PortableRunner"} <= runners
    assert any("--engine" in c and c[c.index("--engine") + 1] == "spark" for c in commands)
    for arguments in commands:
        args, extra = cli.build_parser().parse_known_args(arguments)
        overrides, engine_arguments = split_overrides(extra)
        if args.command == "run":
            recipes.load(str(REPO / args.recipe), [("output.dir", args.output)]).check()
        else:
            cli.preset_recipe(args, []).check()
        assert not overrides
        if args.engine == "spark":
            assert engine_arguments == [], arguments
            session.parse_conf(args.conf)
            continue
        names = [a.split("=")[0].lstrip("-") for a in engine_arguments if a.startswith("--")]
        assert set(names) <= BEAM_OPTIONS, (arguments, set(names) - BEAM_OPTIONS)
