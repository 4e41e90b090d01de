"""``--help`` of every command documents every option, and the root only wires commands."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from shadow_edge.cli import app

ROOT = typer.main.get_command(app)
COMMANDS = sorted(ROOT.commands)
runner = CliRunner()


def test_all_issue_commands_are_wired():
    assert COMMANDS == sorted(
        ["bench", "chat", "classify", "demo", "export", "generate", "info", "train", "verify"])


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_and_documents_every_option(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    command = ROOT.commands[name]
    help_text = re.sub(r"\s+", " ", result.stdout)
    assert command.help and command.help.splitlines()[0] in help_text
    for param in command.params:
        for flag in param.opts + param.secondary_opts:
            if flag.startswith("-"):
                assert re.search(rf"(^|[\s,/]){re.escape(flag)}\b", help_text), (name, flag)
        assert getattr(param, "help", None) or param.param_type_name == "argument", (
            f"{name}: option {param.name} has no help text")
        if param.param_type_name == "argument":
            assert param.metavar in result.stdout, (name, param.metavar)


def test_every_option_has_help_text_that_is_a_sentence():
    for name in COMMANDS:
        for param in ROOT.commands[name].params:
            if param.param_type_name == "option" and param.name != "help":
                assert len(param.help) > 10, (name, param.name)


def test_root_help_lists_the_commands_and_bare_call_shows_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout
    bare = runner.invoke(app, [])
    assert bare.exit_code == 2
    assert "Usage: shadow-edge" in bare.output
    assert "Error" not in bare.output


def test_version():
    from shadow_edge import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"shadow-edge {__version__}"
