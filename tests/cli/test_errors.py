"""The pure error formatters: known exception -> one line + exit code; unknown -> None."""

from __future__ import annotations

import errno

import pytest
import typer
from typer._click import exceptions as click_exc

from exporters.errors import ParityError
from runtime.errors import InvalidSettingError, ModelFolderError, PromptTooLongError
from shadow_edge.cli.errors import (
    FAILURE_EXIT,
    INTERRUPT_EXIT,
    USAGE_EXIT,
    format_error,
    one_line,
)
from shadow_edge.errors import CheckpointError, ConfigError


def test_one_line_collapses_newlines_and_runs_of_spaces():
    assert one_line("a\n  b\t\tc \n") == "a b c"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("alpha must be finite.\nSet alpha to 0.1."), 2),
        (CheckpointError("shadow_config.json is missing. Pass a checkpoint folder."), 1),
        (ParityError("max |dlogit| 3e-2 > 1e-4. Re-export with --no-verify to inspect.", {}), 1),
        (ModelFolderError("model.onnx is missing. Re-export."), 1),
        (InvalidSettingError("top_p must be in (0, 1]. Use e.g. 0.9."), 2),
        (PromptTooLongError("prompt has 900 tokens; the context is 512. Shorten it."), 2),
    ],
)
def test_library_errors_keep_their_message_and_exit_code(exc, code):
    report = format_error(exc)
    assert report.exit_code == code
    assert report.message == "Error: " + one_line(str(exc))
    assert "\n" not in report.message


def test_usage_error_names_the_help_of_its_command():
    from shadow_edge.cli import app

    ctx = typer.Context(typer.main.get_command(app), info_name="shadow-edge")
    exc = click_exc.BadParameter("-3 is not >= 1.", ctx=ctx, param_hint="'--max-new-tokens'")
    report = format_error(exc)
    assert report.exit_code == USAGE_EXIT
    assert report.message == (
        "Error: Invalid value for '--max-new-tokens': -3 is not >= 1. "
        "Run 'shadow-edge --help' to see the options."
    )


def test_usage_error_without_context_points_at_the_root_help():
    report = format_error(click_exc.UsageError("No such command 'exprot'."))
    assert report.message.endswith("Run 'shadow-edge --help' to see the options.")
    assert report.exit_code == 2


def test_missing_optional_dependency_names_the_extra():
    exc = ModuleNotFoundError("No module named 'torch'", name="torch")
    report = format_error(exc)
    assert report.exit_code == FAILURE_EXIT
    assert "pip install 'shadow-edge[export]'" in report.message
    assert format_error(ModuleNotFoundError("x", name="accelerate")).message.endswith(
        "pip install 'shadow-edge[train]'")


def test_unknown_missing_module_is_a_bug_not_a_known_error():
    assert format_error(ModuleNotFoundError("No module named 'foo'", name="foo")) is None


def test_os_error_names_the_file():
    exc = PermissionError(errno.EACCES, "Permission denied", "/root/out")
    report = format_error(exc)
    assert report == format_error(exc)  # pure
    assert report.message == (
        "Error: Permission denied: '/root/out'. Check the path and its permissions.")
    assert report.exit_code == 1


def test_interrupt_and_abort():
    assert format_error(KeyboardInterrupt()).exit_code == INTERRUPT_EXIT
    assert format_error(typer.Abort()).exit_code == 1


@pytest.mark.parametrize("exc", [ValueError("x"), KeyError("k"), AssertionError()])
def test_unknown_exceptions_are_not_formatted(exc):
    assert format_error(exc) is None
