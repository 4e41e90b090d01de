"""generate, chat, classify, info and bench on tiny exports (torch-free commands)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from shadow_edge.cli import app
from tests.cli.conftest import LABELS, assert_one_line_error

runner = CliRunner()
# one xdist worker builds the session fixtures (tiny bases, checkpoints, exports) once
pytestmark = pytest.mark.xdist_group("cli-models")


@pytest.fixture(scope="module")
def generator(tiny_exports):
    import runtime

    return runtime.load(tiny_exports["lm"])


@pytest.fixture(scope="module")
def classifier(tiny_exports):
    import runtime

    return runtime.load(tiny_exports["cls"])


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


class TestGenerate:
    def test_greedy_output_equals_the_runtime_with_the_chat_template(self, tiny_exports,
                                                                     generator):
        result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "turn on",
                                     "--max-new-tokens", "8"])
        assert result.exit_code == 0, result.output
        expected = generator.generate(user("turn on"), max_new_tokens=8).text
        assert result.stdout == expected + "\n"

    def test_raw_prompt_system_and_streaming(self, tiny_exports, generator):
        folder = str(tiny_exports["lm"])
        raw = runner.invoke(app, ["generate", folder, "turn on", "--no-chat-template",
                                  "--max-new-tokens", "6"])
        assert raw.stdout == generator.generate("turn on", max_new_tokens=6).text + "\n"
        streamed = runner.invoke(app, ["generate", folder, "turn on", "--no-chat-template",
                                       "--max-new-tokens", "6", "--stream"])
        assert streamed.stdout == raw.stdout
        system = runner.invoke(app, ["generate", folder, "hi", "--system", "be brief",
                                     "--max-new-tokens", "6"])
        messages = [{"role": "system", "content": "be brief"}] + user("hi")
        assert system.stdout == generator.generate(messages, max_new_tokens=6).text + "\n"

    def test_sampling_with_a_seed_is_reproducible(self, tiny_exports, generator):
        args = ["generate", str(tiny_exports["lm"]), "x", "--temperature", "1.5", "--top-k",
                "50", "--top-p", "0.95", "--seed", "7", "--max-new-tokens", "12"]
        first, second = runner.invoke(app, args), runner.invoke(app, args)
        assert first.exit_code == 0 and first.stdout == second.stdout
        expected = generator.generate(user("x"), max_new_tokens=12, do_sample=True,
                                      temperature=1.5, top_k=50, top_p=0.95, seed=7).text
        assert first.stdout == expected + "\n"

    def test_empty_prompt_is_a_usage_error(self, tiny_exports):
        result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "  "])
        assert_one_line_error(result, 2, "the prompt is empty",
                              "Run 'shadow-edge generate --help'")

    def test_negative_max_new_tokens_is_a_usage_error(self, tiny_exports):
        result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "hi",
                                     "--max-new-tokens", "-1"])
        assert_one_line_error(result, 2, "'--max-new-tokens'", "greater than or equal to 1")

    def test_prompt_beyond_the_context_is_refused_or_truncated(self, tiny_exports, generator):
        folder, long_prompt = str(tiny_exports["lm"]), "x" * 300  # context: 128 tokens
        refused = runner.invoke(app, ["generate", folder, long_prompt, "--no-chat-template"])
        assert_one_line_error(refused, 2, "context is 128", "Shorten the prompt")
        kept = runner.invoke(app, ["generate", folder, long_prompt, "--no-chat-template",
                                   "--truncate", "--max-new-tokens", "4"])
        assert kept.exit_code == 0, kept.output
        expected = generator.generate(long_prompt, max_new_tokens=4, truncate=True).text
        assert kept.stdout == expected + "\n"

    def test_missing_folder(self, tmp_path):
        result = runner.invoke(app, ["generate", str(tmp_path / "nope"), "hi"])
        assert_one_line_error(result, 2, "does not exist", "shadow-edge export CKPT -o OUT")

    def test_folder_that_is_not_an_export(self, tiny_checkpoints):
        result = runner.invoke(app, ["generate", str(tiny_checkpoints["lm"]), "hi"])
        assert_one_line_error(result, 1, "shadow_edge.json")

    def test_generate_on_a_classifier_points_to_classify(self, tiny_exports):
        result = runner.invoke(app, ["generate", str(tiny_exports["cls"]), "hi"])
        assert_one_line_error(result, 2, "text-classification model",
                              "shadow-edge classify")

    def test_system_without_template_is_refused(self, tiny_exports):
        result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "hi", "--system",
                                     "s", "--no-chat-template"])
        assert_one_line_error(result, 2, "--system needs the chat template")

    def test_unavailable_provider_is_a_usage_error(self, tiny_exports):
        result = runner.invoke(app, ["generate", str(tiny_exports["lm"]), "hi", "--provider",
                                     "coreml"])
        assert_one_line_error(result, 2, "'coreml' is not available")


class TestChat:
    def test_chat_keeps_history_and_reset_clears_it(self, tiny_exports, generator):
        script = "hello\n\nmore\n/reset\nagain\n/exit\nignored\n"
        result = runner.invoke(app, ["chat", str(tiny_exports["lm"]), "--max-new-tokens", "5"],
                               input=script)
        assert result.exit_code == 0, result.output
        first = generator.generate(user("hello"), max_new_tokens=5).text
        history = user("hello") + [{"role": "assistant", "content": first}] + user("more")
        second = generator.generate(history, max_new_tokens=5).text
        third = generator.generate(user("again"), max_new_tokens=5).text
        assert result.stdout.split("\n") == [first, second, third, ""]
        assert "(history cleared)" in result.stderr

    def test_chat_ends_at_end_of_input(self, tiny_exports, generator):
        result = runner.invoke(app, ["chat", str(tiny_exports["lm"]), "--system", "sys",
                                     "--max-new-tokens", "3"], input="hi")
        assert result.exit_code == 0
        messages = [{"role": "system", "content": "sys"}] + user("hi")
        assert result.stdout == generator.generate(messages, max_new_tokens=3).text + "\n"


    def test_a_turn_too_long_for_the_context_is_skipped_not_fatal(self, tiny_exports,
                                                                   generator):
        too_long = "x" * 200  # 200+ tokens; the tiny model's context is 128
        result = runner.invoke(app, ["chat", str(tiny_exports["lm"]), "--max-new-tokens", "3"],
                               input=f"{too_long}\nhi\n")
        assert result.exit_code == 0, result.output
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and errors[0].endswith("Use /reset to start over.")
        assert result.stdout == generator.generate(user("hi"), max_new_tokens=3).text + "\n"


class TestClassify:
    def test_json_scores_equal_the_runtime(self, tiny_exports, classifier):
        texts = ["turn on the lamp", "off please"]
        result = runner.invoke(app, ["classify", str(tiny_exports["cls"]), *texts, "--json"])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.stdout)
        expected = classifier.classify(texts)
        assert [r["text"] for r in rows] == texts
        for row, want in zip(rows, expected):
            assert row["label"] == want.label and row["label"] in LABELS.values()
            assert row["score"] == pytest.approx(want.score, abs=1e-6)
            assert sorted(row["scores"]) == sorted(LABELS.values())
            assert sum(row["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    def test_table_and_files(self, tiny_exports, classifier, tmp_path):
        txt = tmp_path / "texts.txt"
        txt.write_text("turn on the lamp\n\noff please\n", encoding="utf-8")
        jsonl = tmp_path / "texts.jsonl"
        jsonl.write_text('{"text": "dim it"}\n', encoding="utf-8")
        result = runner.invoke(app, ["classify", str(tiny_exports["cls"]), "first", "--file",
                                     str(txt), "--batch-size", "2"])
        assert result.exit_code == 0, result.output
        labels = [c.label for c in classifier.classify(["first", "turn on the lamp",
                                                        "off please"])]
        lines = [line for line in result.stdout.splitlines() if "lamp" in line or
                 "first" in line or "please" in line]
        assert [line.split()[1] for line in lines] == labels
        from_jsonl = runner.invoke(app, ["classify", str(tiny_exports["cls"]), "-f", str(jsonl),
                                         "--json"])
        assert json.loads(from_jsonl.stdout)[0]["label"] == classifier.classify("dim it").label

    def test_non_utf8_file_is_a_usage_error(self, tiny_exports, tmp_path):
        bad = tmp_path / "bad.txt"
        bad.write_bytes(b"ok\n\xff\xfe broken\n")
        result = runner.invoke(app, ["classify", str(tiny_exports["cls"]), "--file", str(bad)])
        assert_one_line_error(result, 2, "'--file'", "not UTF-8 text", "byte 0xff on line 2")

    def test_no_texts(self, tiny_exports):
        result = runner.invoke(app, ["classify", str(tiny_exports["cls"])])
        assert_one_line_error(result, 2, "no texts to classify")

    def test_jsonl_row_with_an_empty_text_is_a_usage_error(self, tiny_exports, tmp_path):
        rows = tmp_path / "rows.jsonl"
        rows.write_text('{"text": "ok"}\n{"text": "  "}\n', encoding="utf-8")
        result = runner.invoke(app, ["classify", str(tiny_exports["cls"]), "-f", str(rows)])
        assert_one_line_error(result, 2, "row 2", 'non-empty "text"')

    def test_classify_on_a_generation_model_points_to_generate(self, tiny_exports):
        result = runner.invoke(app, ["classify", str(tiny_exports["lm"]), "hi"])
        assert_one_line_error(result, 2, "text-generation model", "shadow-edge generate")


class TestInfo:
    def test_json_has_manifest_sizes_io_and_providers(self, tiny_exports):
        folder = tiny_exports["lm"]
        result = runner.invoke(app, ["info", str(folder), "--json", "--check"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        manifest = json.loads((folder / "shadow_edge.json").read_text())
        assert data["manifest"]["files"] == manifest["files"]
        assert data["total_bytes"] == sum(f["bytes"] for f in manifest["files"].values())
        assert "CPUExecutionProvider" in data["available_providers"]
        assert all(f["present"] and f["size_matches"] for f in data["files"])
        names = [spec["name"] for spec in data["manifest"]["inputs"]]
        assert names[:3] == ["input_ids", "attention_mask", "position_ids"]

    def test_table_names_task_files_and_kv_inputs(self, tiny_exports):
        result = runner.invoke(app, ["info", str(tiny_exports["lm"])])
        assert result.exit_code == 0, result.output
        # the implicit shadow has 1 layer: one KV pair
        for fragment in ("text-generation", "fp32", "model.onnx", "CPUExecutionProvider",
                         "past_key_values.0.key", "present.0.value", "logits",
                         "[batch_size, sequence_length]"):
            assert fragment in result.stdout, fragment
        cls = runner.invoke(app, ["info", str(tiny_exports["cls"])])
        assert "text-classification" in cls.stdout and "3: off, on, dim" in cls.stdout

    def test_check_detects_a_changed_file(self, tiny_exports, tmp_path):
        import shutil

        copy = tmp_path / "copy"
        shutil.copytree(tiny_exports["cls"], copy)
        with open(copy / "config.json", "a", encoding="utf-8") as handle:
            handle.write(" ")
        result = runner.invoke(app, ["info", str(copy), "--check"])
        assert_one_line_error(result, 1, "config.json")


class TestBench:
    def test_generation_bench_reports_tokens_per_second(self, tiny_exports):
        result = runner.invoke(app, ["bench", str(tiny_exports["lm"]), "--prompt-tokens", "8",
                                     "--new-tokens", "4", "--repeats", "1", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["prompt_tokens"] == 8 and report["new_tokens"] == 4
        assert report["decode_tokens_per_s"] > 0 and report["prefill_tokens_per_s"] > 0
        assert report["model_bytes"] > 0 and report["weight_read_gb_per_s"] > 0
        table = runner.invoke(app, ["bench", str(tiny_exports["lm"]), "--prompt-tokens", "4",
                                    "--new-tokens", "2", "--repeats", "1"])
        assert "decode_tokens_per_s" in table.stdout

    def test_classification_bench_reports_latency(self, tiny_exports):
        result = runner.invoke(app, ["bench", str(tiny_exports["cls"]), "--repeats", "3",
                                     "--batch-size", "2", "--json"])
        report = json.loads(result.stdout)
        assert report["batch_size"] == 2 and report["repeats"] == 3
        assert 0 < report["p50_ms"] <= report["p95_ms"]

    def test_bench_prompt_beyond_context_is_a_usage_error(self, tiny_exports):
        result = runner.invoke(app, ["bench", str(tiny_exports["lm"]), "--prompt-tokens", "100",
                                     "--new-tokens", "100"])
        assert_one_line_error(result, 2, "exceeds the model's context")


def test_info_groups_per_layer_kv_tensors():
    from shadow_edge.cli.info import _abbreviate_kv

    specs = [{"name": "input_ids", "dtype": "int64", "shape": ["batch_size", "sequence_length"]}]
    for i in range(3):
        for kind in ("key", "value"):
            specs.append({"name": f"past_key_values.{i}.{kind}", "dtype": "float32",
                          "shape": ["batch_size", 2, "past_sequence_length", 16]})
    assert [s["name"] for s in _abbreviate_kv(specs)] == [
        "input_ids", "past_key_values.{0..2}.key", "past_key_values.{0..2}.value"]
