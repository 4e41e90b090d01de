"""generate/chat with --grammar, --regex, --json-schema and --choice; info's status line."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from typer.testing import CliRunner

from shadow_edge.cli import app
from tests.cli.conftest import assert_one_line_error
from tests.cli.test_torch_free import BLOCKED, run_blocked

runner = CliRunner()
pytestmark = pytest.mark.xdist_group("cli-models")

SCHEMA = {"type": "object", "properties": {"on": {"type": "boolean"},
                                           "level": {"type": "integer", "minimum": 0,
                                                     "maximum": 100}},
          "required": ["on", "level"], "additionalProperties": False,
          "x-guidance": {"whitespace_flexible": False}}


@pytest.fixture(scope="module")
def byte_export(tmp_path_factory):
    """A tiny export with a byte-level BPE tokenizer (which llguidance reads)."""
    from exporters.testing import tiny_export

    return str(tiny_export(tmp_path_factory.mktemp("grammar-cli"), name="lm", verify=False))


@pytest.fixture(scope="module")
def model(byte_export):
    import runtime

    return runtime.load(byte_export, threads=1)


def generate(*args: str):
    return runner.invoke(app, ["generate", *args])


class TestConstraintFlags:
    def test_choice_output_is_one_choice_and_equals_the_runtime(self, byte_export, model):
        result = generate(byte_export, "lights?", "--choice", "on", "--choice", "off",
                          "--choice", "dim")
        assert result.exit_code == 0, result.output
        expected = model.generate([{"role": "user", "content": "lights?"}], max_new_tokens=128,
                                  grammar=["on", "off", "dim"]).text
        assert result.stdout == expected + "\n"
        assert expected in {"on", "off", "dim"}

    def test_regex_streams_the_same_text(self, byte_export):
        args = [byte_export, "x", "--regex", "[a-z]{2,6}-[0-9]{2}", "--temperature", "1",
                "--seed", "4"]
        plain, streamed = generate(*args), generate(*args, "--stream")
        assert plain.exit_code == 0 and streamed.exit_code == 0, plain.output
        assert re.fullmatch(r"[a-z]{2,6}-[0-9]{2}\n", plain.stdout)
        assert streamed.stdout == plain.stdout

    def test_json_schema_file(self, byte_export, tmp_path):
        path = tmp_path / "schema.json"
        path.write_text(json.dumps(SCHEMA))
        result = generate(byte_export, "set it", "--json-schema", str(path))
        assert result.exit_code == 0, result.output
        jsonschema.validate(json.loads(result.stdout), SCHEMA)

    def test_lark_grammar_file(self, byte_export, tmp_path):
        path = tmp_path / "action.lark"
        path.write_text('start: "HassTurnOn area=" AREA\nAREA: "kitchen" | "attic"\n')
        result = generate(byte_export, "x", "--grammar", str(path))
        assert result.exit_code == 0, result.output
        assert result.stdout in {"HassTurnOn area=kitchen\n", "HassTurnOn area=attic\n"}

    def test_a_cut_off_output_gets_a_note_on_stderr(self, byte_export):
        result = generate(byte_export, "x", "--regex", "[0-9]{50}", "--max-new-tokens", "4")
        assert result.exit_code == 0
        assert re.fullmatch(r"[0-9]{4}\n", result.stdout)
        assert "before the grammar was complete" in result.stderr

    def test_num_beams_equals_the_runtime_beam_search(self, byte_export, model):
        choices = ["kitchen", "k", "attic", "living room"]
        args = [byte_export, "lights?", "--num-beams", "4"]
        for choice in choices:
            args += ["--choice", choice]
        result = generate(*args)
        assert result.exit_code == 0, result.output
        expected = model.generate([{"role": "user", "content": "lights?"}], max_new_tokens=128,
                                  grammar=choices, num_beams=4).text
        assert result.stdout == expected + "\n" and expected in choices

    def test_chat_replies_follow_the_grammar(self, byte_export):
        result = runner.invoke(app, ["chat", byte_export, "--choice", "yes", "--choice", "no"],
                               input="hello\nand again\n")
        assert result.exit_code == 0, result.output
        assert [line for line in result.stdout.splitlines() if line] in (
            [a, b] for a in ("yes", "no") for b in ("yes", "no"))


class TestConstraintErrors:
    def test_two_kinds_cannot_be_combined(self, byte_export):
        result = generate(byte_export, "x", "--regex", "a", "--choice", "a")
        assert_one_line_error(result, 2, "--regex and --choice cannot be combined")

    @pytest.mark.parametrize(("extra", "code", "message"), [
        (["--stream"], 2, "--num-beams cannot be combined with --stream"),
        (["--temperature", "0.7", "--seed", "1"], 2, "combined with --temperature, --seed"),
        (["--stop", "x"], 2, "--num-beams cannot be combined with --stop"),
    ])
    def test_num_beams_refuses_what_beam_search_cannot_do(self, byte_export, extra, code,
                                                          message):
        result = generate(byte_export, "x", "--num-beams", "3", *extra)
        assert_one_line_error(result, code, message)

    def test_a_schema_file_that_is_not_json(self, byte_export, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text("{nope")
        result = generate(byte_export, "x", "--json-schema", str(path))
        assert_one_line_error(result, 2, "is not valid JSON", "--json-schema")

    def test_a_grammar_that_does_not_compile(self, byte_export):
        result = generate(byte_export, "x", "--regex", "(a")
        assert_one_line_error(result, 2, "regex grammar cannot be compiled", "unclosed group")

    def test_a_bad_grammar_fails_chat_before_the_first_message(self, byte_export):
        result = runner.invoke(app, ["chat", byte_export, "--regex", "(a"], input="")
        assert_one_line_error(result, 2, "regex grammar cannot be compiled")

    def test_a_tokenizer_llguidance_cannot_read(self, tiny_exports):
        # the CLI fixtures' character-level WordLevel tokenizer has a Fuse decoder
        result = generate(str(tiny_exports["lm"]), "x", "--choice", "a")
        assert_one_line_error(result, 2, "constrained decoding is not available",
                              "llguidance cannot use its tokenizer.json")

    def test_without_llguidance_the_error_says_how_to_install(self, byte_export):
        proc = run_blocked("generate", byte_export, "x", "--choice", "a",
                           blocked=BLOCKED + ("llguidance",))
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "pip install 'shadow-edge[grammar]'" in lines[0], proc.stderr
        info = run_blocked("info", byte_export, blocked=BLOCKED + ("llguidance",))
        assert info.returncode == 0, info.stderr
        assert "shadow-edge[grammar]" in info.stdout


class TestInfo:
    def test_json_and_table_say_whether_grammars_work(self, byte_export):
        data = json.loads(runner.invoke(app, ["info", byte_export, "--json"]).stdout)
        assert data["constrained_decoding"]["available"] is True
        assert data["manifest"]["tokens"]["tokenizer_vocab_size"] == 259
        table = runner.invoke(app, ["info", byte_export], env={"COLUMNS": "200"}).stdout
        assert "constrained decoding" in table and "yes (tokenizer.json ids (259)" in table


def test_grammar_summary_lines():
    from shadow_edge.cli.info import grammar_summary

    base = {"available": True, "reason": "r", "tokenizer_vocab_size": 9,
            "llguidance_installed": True}
    assert grammar_summary(base) == "yes (r)"
    assert grammar_summary({**base, "llguidance_installed": False}) == (
        "yes, after pip install 'shadow-edge[grammar]' (r)")
    assert grammar_summary({**base, "available": False}) == "no: r"
