"""``shadow-edge export`` and ``shadow-edge verify`` on tiny checkpoints."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from exporters.spec import DEFAULT_OPSET
from shadow_edge.cli import app
from shadow_edge.cli.export import parity_rows, platform_note
from shadow_edge.cli.progress import stage_note
from tests.cli.conftest import assert_one_line_error

runner = CliRunner()
# one xdist worker builds the session fixtures (tiny bases, checkpoints, exports) once
pytestmark = pytest.mark.xdist_group("cli-models")


def _siblings(tmp_path) -> list[str]:
    """Everything in ``tmp_path``, hidden temporary export folders included."""
    return sorted(p.name for p in tmp_path.iterdir())


def test_int8_classifier_adapter_export_prints_stages_sizes_and_parity(tiny_checkpoints,
                                                                       tmp_path):
    """Why: int8 pre-processing of a classifier adapter crashed in onnxruntime's symbolic
    shape inference (TypeError 'NoneType' object is not iterable); it now falls back."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", str(tiny_checkpoints["cls"]), "-o", str(out),
                                 "--onnx", "--int8"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "WARNING" not in result.stderr
    manifest = json.loads((out / "shadow_edge.json").read_text())
    assert (manifest["task"], manifest["precision"], manifest["opset"]) == (
        "text-classification", "int8", DEFAULT_OPSET)
    assert manifest["verified"] is True and manifest["parity"]["passed"] is True
    assert manifest["source"]["kind"] == "adapter"
    assert manifest["source"]["checkpoint"] == str(tiny_checkpoints["cls"].absolute())
    assert manifest["model"]["id2label"] == {"0": "off", "1": "on", "2": "dim"}
    checks = {c["name"]: c["value"] for c in manifest["parity"]["checks"]}
    assert checks["argmax_agreement"] >= 0.75 and checks["mean_logit_cosine"] >= 0.99
    assert _siblings(tmp_path) == ["out"]
    for stage in ("load", "fold", "export", "quantize (int8)", "verify (int8)", "write"):
        assert stage in result.stderr, stage
    assert f"exported {out.resolve()}" in result.stdout
    for name in manifest["files"]:
        assert name in result.stdout
    for check in manifest["parity"]["checks"]:
        assert check["name"] in result.stdout


@pytest.fixture
def reuse_onnx(monkeypatch, tiny_exports):
    """``export`` copies the session's fp32 ``model.onnx`` of the same checkpoint instead of
    tracing it again (the real dynamo path runs in the classifier int8 test and the torchrun
    test); set ``.source`` to ``tiny_exports[kind] / "model.onnx"``."""
    import exporters.api
    from exporters.testing import copying_export

    fake = copying_export(None)
    monkeypatch.setattr(exporters.api.onnx_export, "export_onnx", fake)
    return fake


def test_export_json_int8_ort_and_summary_matches_the_manifest(tiny_checkpoints, tiny_exports,
                                                               reuse_onnx, tmp_path):
    reuse_onnx.source = tiny_exports["lm"] / "model.onnx"
    out = tmp_path / "int8"
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o", str(out),
                                 "--int8", "--ort", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # --json: stdout is only JSON, no progress
    manifest = json.loads((out / "shadow_edge.json").read_text())
    assert summary["precision"] == manifest["precision"] == "int8"
    assert summary["task"] == "text-generation"
    assert summary["files"] == {k: v["bytes"] for k, v in manifest["files"].items()}
    assert summary["total_bytes"] == sum(summary["files"].values())
    assert summary["parity"]["passed"] is True
    assert summary["output"] == str(out.resolve())
    assert {"model.ort", "model.required_operators.config"} <= set(summary["files"])
    # the .ort file runs and gives the same tokens as the .onnx file
    args = ["generate", str(out), "hi", "--max-new-tokens", "6"]
    from_onnx, from_ort = runner.invoke(app, args), runner.invoke(app, [*args, "--ort"])
    assert from_ort.exit_code == 0, from_ort.output
    assert from_ort.stdout == from_onnx.stdout


def test_calibration_text_becomes_a_gated_probe_set(tiny_checkpoints, tiny_exports, reuse_onnx,
                                                    tmp_path):
    reuse_onnx.source = tiny_exports["lm"] / "model.onnx"
    text = tmp_path / "domain.txt"
    text.write_text("dim the hallway lights to forty percent\nopen the garage door\n" * 3)
    out = tmp_path / "int8"
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o", str(out),
                                 "--int8", "--calibration-text", str(text), "--json"])
    assert result.exit_code == 0, result.output
    parity = json.loads((out / "shadow_edge.json").read_text())["parity"]
    assert parity["reference"]["probes"] == {"text": [2, 32], "calibration": [2, 32],
                                             "random_ids": [1, 32]}
    names = {c["name"] for c in parity["checks"]}
    assert {"top1_agreement_calibration", "mean_logit_cosine_calibration"} <= names
    verified = runner.invoke(app, ["verify", str(out), "--json"])  # stored probes: same sets
    assert verified.exit_code == 0, verified.output
    assert {c["name"] for c in json.loads(verified.stdout)["checks"]} == names


def test_calibration_text_needs_the_gate(tiny_checkpoints, tmp_path):
    text = tmp_path / "domain.txt"
    text.write_text("open the garage door")
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--calibration-text", str(text),
                                 "--no-verify"])
    assert_one_line_error(result, 2, "--calibration-text", "--no-verify")
    assert _siblings(tmp_path) == ["domain.txt"]


def test_too_short_calibration_text_is_a_config_error(tiny_checkpoints, tiny_exports,
                                                      reuse_onnx, tmp_path):
    reuse_onnx.source = tiny_exports["lm"] / "model.onnx"
    text = tmp_path / "domain.txt"
    text.write_text("hi")
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--int8", "--calibration-text", str(text)])
    assert_one_line_error(result, 2, "longer --calibration-text")
    assert _siblings(tmp_path) == ["domain.txt"]


def test_int8_with_int4_is_a_usage_error(tiny_checkpoints, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--int8", "--int4"])
    assert_one_line_error(result, 2, "--int8 and --int4 exclude each other")
    assert _siblings(tmp_path) == []


def test_keep_embeddings_needs_int4(tiny_checkpoints, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--int4-keep-embeddings"])
    assert_one_line_error(result, 2, "only applies to --int4")


def test_existing_output_needs_force(tiny_checkpoints, tiny_exports, reuse_onnx, tmp_path):
    reuse_onnx.source = tiny_exports["cls"] / "model.onnx"
    taken = tmp_path / "taken"
    shutil.copytree(tiny_exports["cls"], taken)
    before = (taken / "shadow_edge.json").read_text()
    result = runner.invoke(app, ["export", str(tiny_checkpoints["cls"]), "-o", str(taken)])
    assert_one_line_error(result, 2, "already exists", "--force")
    assert (taken / "shadow_edge.json").read_text() == before
    forced = runner.invoke(app, ["export", str(tiny_checkpoints["cls"]), "-o", str(taken),
                                 "--force", "--no-verify"])
    assert forced.exit_code == 0, forced.output
    assert json.loads((taken / "shadow_edge.json").read_text())["verified"] is False
    assert "not verified (--no-verify)" in forced.stdout
    assert _siblings(tmp_path) == ["taken"]


def test_missing_checkpoint(tmp_path):
    result = runner.invoke(app, ["export", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert_one_line_error(result, 2, "does not exist")


def test_folder_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    result = runner.invoke(app, ["export", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert_one_line_error(result, 1, "neither a ShadowPEFT adapter", "shadow_config.json")
    assert _siblings(tmp_path) == ["empty"]


def test_task_other_than_the_checkpoints(tiny_checkpoints, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--task", "text-classification"])
    assert_one_line_error(result, 2, "is a text-generation checkpoint", "drop --task")
    assert _siblings(tmp_path) == []


def test_missing_base_folder(tiny_checkpoints, tmp_path):
    result = runner.invoke(app, ["export", str(tiny_checkpoints["lm"]), "-o",
                                 str(tmp_path / "o"), "--base", str(tmp_path / "no-base")])
    assert_one_line_error(result, 1, "does not exist", "--base")
    assert _siblings(tmp_path) == []


def test_debug_env_shows_the_traceback(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("SHADOW_EDGE_DEBUG", "1")
    result = runner.invoke(app, ["export", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


class TestVerify:
    def test_verify_passes_against_the_source(self, tiny_exports, tiny_checkpoints):
        result = runner.invoke(app, ["verify", str(tiny_exports["lm"]), "--against",
                                     str(tiny_checkpoints["lm"]), "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["passed"] is True and report["precision"] == "fp32"
        assert all(check["passed"] for check in report["checks"])

    def test_verify_without_against_uses_the_stored_reference(self, tiny_exports):
        result = runner.invoke(app, ["verify", str(tiny_exports["lm"])])
        assert result.exit_code == 0, result.output
        assert "greedy_tokens_identical" in result.stdout
        assert "measured on " in result.stdout and "onnxruntime" in result.stdout
        report = json.loads(runner.invoke(app, ["verify", str(tiny_exports["cls"]),
                                                "--json"]).stdout)
        assert report["passed"] is True and report["task"] == "text-classification"
        assert report["platform"]["onnxruntime"] and report["reference"]["bytes"] > 0

    def test_verify_without_a_stored_reference_names_against(self, tiny_exports, tmp_path):
        folder = shutil.copytree(tiny_exports["lm"], tmp_path / "old")
        (folder / "parity_reference.npz").unlink()
        result = runner.invoke(app, ["verify", str(folder)])
        assert_one_line_error(result, 1, "no parity reference", "--against CKPT")

    def test_verify_against_a_checkpoint_of_another_task(self, tiny_exports,
                                                         tiny_checkpoints):
        result = runner.invoke(app, ["verify", str(tiny_exports["lm"]), "--against",
                                     str(tiny_checkpoints["cls"])])
        assert_one_line_error(result, 2, "is a text-generation export",
                              "is a text-classification checkpoint")

    def test_verify_fails_against_a_different_checkpoint(self, tiny_exports, tiny_checkpoints,
                                                         tmp_path):
        from safetensors.torch import load_file, save_file

        changed = tmp_path / "changed"
        shutil.copytree(tiny_checkpoints["cls"], changed)
        weights = load_file(changed / "shadow_adapter.safetensors")
        weights["shadow_model.norm.weight"] = weights["shadow_model.norm.weight"] * 3.0
        save_file(weights, changed / "shadow_adapter.safetensors")
        result = runner.invoke(app, ["verify", str(tiny_exports["cls"]), "--against",
                                     str(changed)])
        line = assert_one_line_error(result, 1, "parity check failed", "Re-export")
        assert "FAIL" in result.stdout and line


def test_platform_note_is_pure():
    platform = {"machine": "aarch64", "cpu": None, "cpu_flags": ["asimd", "asimddp"],
                "onnxruntime": "1.32.0", "python": "3.11.7"}
    assert platform_note(platform) == "aarch64 (asimd, asimddp), onnxruntime 1.32.0"
    assert platform_note({**platform, "cpu": "AMD EPYC", "cpu_flags": []}) == (
        "aarch64 (AMD EPYC, no flags known), onnxruntime 1.32.0")
    assert platform_note(None) == "an unrecorded machine"


def test_parity_rows_and_stage_notes_are_pure():
    report = {"checks": [{"name": "max_abs_logit_diff", "value": 2e-6, "threshold": 1e-4,
                          "comparison": "<=", "passed": True, "detail": ""},
                         {"name": "top1", "value": 0.5, "threshold": 0.9, "comparison": ">=",
                          "passed": False, "detail": "3 prompts"}]}
    assert parity_rows(report) == [("max_abs_logit_diff", "ok", "2e-06 <= 0.0001"),
                                   ("top1", "FAIL", "0.5 >= 0.9 (3 prompts)")]
    assert parity_rows(None) == []
    assert stage_note("fold", {"parameters": 1234, "bytes": 2048,
                               "fold_max_rel_diff": 3e-8}) == (
        "1,234 parameters, 2.0 KiB, fold max rel diff 3.0e-08")
    assert stage_note("quantize", {"precision": "int4", "keep_embeddings": True}) == (
        "int4 (embeddings kept fp32)")


@pytest.mark.parametrize("task,code,fragments", [
    ("text-generation", 2, ("is an encoder (bert)", "cannot generate text")),
    (None, 1, ("BertModel encoder without a trained classification head",)),
])
def test_an_encoder_folder_gives_one_line_errors(task, code, fragments, tmp_path):
    """A bare BertModel folder (all-MiniLM-L6-v2 as installed): it has no classifier to ship,
    and it never was a text-generation model."""
    import transformers as tf

    from exporters.testing import tiny_encoder_config

    tf.BertModel(tiny_encoder_config("bert")).save_pretrained(tmp_path / "minilm")
    args = ["export", str(tmp_path / "minilm"), "-o", str(tmp_path / "out"), "--no-verify"]
    result = runner.invoke(app, args + (["--task", task] if task else []))
    assert_one_line_error(result, code, *fragments)
    assert _siblings(tmp_path) == ["minilm"]
