"""Escapes typed on the command line (--stop '\\n', --system, the prompt) become the
characters they stand for, as llama.cpp's --escape does; --no-escape keeps them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from shadow_edge.cli import app
from shadow_edge.cli.options import process_escapes
from tests.cli.conftest import assert_one_line_error

runner = CliRunner()
pytestmark = pytest.mark.xdist_group("cli-models")


@pytest.mark.parametrize(
    "typed, meant",
    [
        (r"\n", "\n"),  # the case: --stop '\n' arrived as a backslash and an n
        (r"\n\n", "\n\n"),
        (r"a\tb\rc", "a\tb\rc"),
        (r"\'\"\\", "'\"\\"),
        (r"\\n", "\\n"),  # an escaped backslash, then a plain n
        (r"\x41\x42", "AB"),
        (r"\xe2\x86\x92 \xc3\xa9", "→ é"),  # bytes combine into UTF-8
        (r"<|im_end|>\n", "<|im_end|>\n"),
        (r"C:\path\q", "C:\\path\\q"),  # unknown escapes stay as typed
        ("end\\", "end\\"),
        (r"\x4", "\\x4"), (r"\xZZ", "\\xZZ"),
        ("plain é", "plain é"),
    ],
)
def test_process_escapes(typed, meant):
    assert process_escapes(typed) == meant


def test_bytes_that_are_no_utf8_are_refused():
    with pytest.raises(ValueError, match="do not form valid UTF-8"):
        process_escapes(r"\xff")
    with pytest.raises(ValueError, match="do not form valid UTF-8"):
        process_escapes(r"\xe2\x86 x")  # a character cut short


@pytest.fixture(scope="module")
def generator(tiny_exports):
    import runtime

    return runtime.load(tiny_exports["lm"])


def _generate(folder, *args):
    result = runner.invoke(app, ["generate", str(folder), *args, "--max-new-tokens", "24",
                                 "--no-chat-template"])
    assert result.exit_code == 0, result.output
    return result.stdout[:-1]  # the newline generate prints


def test_stop_prompt_and_system_escapes_reach_the_model(tiny_exports, generator):
    folder = tiny_exports["lm"]
    free = generator.generate("turn on", max_new_tokens=24).text
    stop = free[len(free) // 2]  # a character the model does generate
    escaped = rf"\x{ord(stop):02x}"
    assert _generate(folder, "turn on", "--stop", escaped) == free[:free.index(stop)]
    assert _generate(folder, "turn on", "--stop", escaped, "--no-escape") == free
    assert _generate(folder, r"turn\x20on") == free
    system = runner.invoke(app, ["generate", str(folder), "hi", "--system", r"be\nbrief",
                                 "--max-new-tokens", "6"])
    messages = [{"role": "system", "content": "be\nbrief"}, {"role": "user", "content": "hi"}]
    assert system.stdout == generator.generate(messages, max_new_tokens=6).text + "\n"


def test_chat_processes_stop_and_system_escapes(tiny_exports, generator):
    free = generator.generate([{"role": "user", "content": "hi"}], max_new_tokens=12).text
    stop = free[len(free) // 2]
    result = runner.invoke(app, ["chat", str(tiny_exports["lm"]), "--max-new-tokens", "12",
                                 "--stop", rf"\x{ord(stop):02x}"], input="hi\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == free[:free.index(stop)] + "\n"


def test_bad_escape_bytes_are_a_usage_error(tiny_exports):
    result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "hi", "--stop", r"\xff"])
    assert_one_line_error(result, 2, "--stop", "valid UTF-8")


def test_help_says_escapes_are_processed():
    import re

    result = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"\s+", " ", re.sub(r"\x1b\[[0-9;]*m", "", result.stdout))
    assert "--no-escape" in text and "as llama.cpp does" in text
    assert r"--stop '\n'" in text
