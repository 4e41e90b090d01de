"""``shadow-edge demo`` hands its arguments to ``examples/robot_intent/demo.py:main``."""

from __future__ import annotations

from typer.testing import CliRunner

from shadow_edge.cli import app, demo
from tests.cli.conftest import assert_one_line_error

runner = CliRunner()


def test_demo_options_reach_the_demo_parser():
    result = runner.invoke(app, ["demo", "--", "--help"])
    assert result.exit_code == 0, result.output
    assert "usage: shadow-edge demo" in result.stdout
    assert "--n-generation" in result.stdout


def test_demo_passes_arguments_and_exit_code(monkeypatch):
    seen = []

    def fake_main(argv):
        seen.append(argv)
        return 3

    monkeypatch.setattr(demo, "load_demo_main", lambda: fake_main)
    result = runner.invoke(app, ["demo", "--tasks", "classification", "--threads", "1"])
    assert result.exit_code == 3
    assert seen == [["--tasks", "classification", "--threads", "1"]]


def test_demo_without_the_source_tree_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setattr(demo, "_repo_root", lambda: tmp_path)
    result = runner.invoke(app, ["demo"])
    assert_one_line_error(result, 1, "the robot-intent demo is not installed", "make demo")
