"""``shadow-edge train``: single process through the CLI runner, and 2 ranks under torchrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shadow_edge.cli import app
from shadow_edge.cli.train import adapter_digest
from shadow_edge.training import format_logs
from tests.cli.conftest import assert_one_line_error, write_jsonl

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()
# one xdist worker builds the session fixtures (tiny bases, checkpoints, exports) once
pytestmark = pytest.mark.xdist_group("cli-models")

GEN_ROWS = [{"prompt": f"turn {w} the light", "completion": f"Hass{w.title()}"}
            for w in ("on", "off") * 4]
CLS_ROWS = [{"text": f"please {w} lamp {i}", "label": w} for i in range(3)
            for w in ("on", "off", "dim")]


def _digest_line(stdout: str) -> str:
    return re.search(r"adapter sha256: ([0-9a-f]{64})", stdout).group(1)


def _reload(checkpoint: Path):
    from shadow_edge import load_shadow_checkpoint

    return load_shadow_checkpoint(checkpoint, is_trainable=True)


def test_train_generation_writes_a_checkpoint_equal_to_the_trained_weights(tiny_bases, tmp_path):
    data = write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    out = tmp_path / "ckpt"
    result = runner.invoke(app, [
        "train", str(data), "--base", str(tiny_bases["lm"]), "-o", str(out), "--max-steps", "2",
        "--batch-size", "4", "--lr", "1e-2", "--injection-hidden-size", "8",
        "--modules-to-save", "shadow_lm_head",
    ])
    assert result.exit_code == 0, result.output
    # stdout holds only the results; Trainer's log lines go to stderr
    digest = _digest_line(result.stdout)
    assert result.stdout.splitlines() == [
        f"checkpoint: {out.resolve()}", f"adapter sha256: {digest}",
        f"next: shadow-edge export {out.resolve()} -o OUT"]
    assert "step 2: train_runtime" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "shadow_adapter.safetensors", "shadow_config.json", "shadow_modules.safetensors"]
    config = json.loads((out / "shadow_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM"
    assert config["modules_to_save"] == ["shadow_lm_head"]
    assert config["injection_hidden_size"] == 8
    assert config["base_model_name_or_path"] == str(tiny_bases["lm"].resolve())
    model = _reload(out)
    assert adapter_digest(model) == _digest_line(result.stdout)
    # U starts at zero (FORMAT.md step 2): training moved it
    assert model.peft_model.shadow_injection_model.injection_ups.abs().max().item() > 0
    assert "2 steps" in result.stderr


def test_train_classification_infers_sorted_labels_and_saves_both_heads(tiny_bases, tmp_path):
    data = write_jsonl(tmp_path / "cls.jsonl", CLS_ROWS)
    out = tmp_path / "ckpt"
    result = runner.invoke(app, [
        "train", str(data), "--base", str(tiny_bases["lm"]), "-o", str(out), "--max-steps", "1",
        "--shadow-loss-weight", "1.0",
    ])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "shadow_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS"
    assert config["id2label"] == {"0": "dim", "1": "off", "2": "on"}
    assert (out / "shadow_modules.safetensors").is_file()
    model = _reload(out)
    assert model.shadow_classifier_head.weight.shape == (3, 64)
    assert adapter_digest(model) == _digest_line(result.stdout)


def test_train_refuses_an_existing_output_without_force(tiny_bases, tmp_path):
    data = write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    (tmp_path / "taken").mkdir()
    result = runner.invoke(app, ["train", str(data), "--base", str(tiny_bases["lm"]),
                                 "-o", str(tmp_path / "taken")])
    assert_one_line_error(result, 2, "already exists", "--force")


def test_train_rejects_a_non_utf8_file(tiny_bases, tmp_path):
    data = tmp_path / "latin1.jsonl"
    data.write_bytes('{"text": "caf\u00e9"}\n'.encode("latin-1"))
    result = runner.invoke(app, ["train", str(data), "--base", str(tiny_bases["lm"]),
                                 "-o", str(tmp_path / "out")])
    assert_one_line_error(result, 2, "not UTF-8", "byte 0xe9 on line 1", "Re-save it as UTF-8")
    assert not (tmp_path / "out").exists()


def test_train_rejects_a_bad_row_before_loading_the_base(tmp_path):
    data = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"question": "?"}])
    result = runner.invoke(app, ["train", str(data), "--base", str(tmp_path / "no-base"),
                                 "-o", str(tmp_path / "out")])
    assert_one_line_error(result, 2, "row 2", "unexpected keys")


def test_train_rejects_a_missing_base_folder(tmp_path):
    data = write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    result = runner.invoke(app, ["train", str(data), "--base", str(tmp_path / "no-base"),
                                 "-o", str(tmp_path / "out")])
    assert_one_line_error(result, 2, "'--base'", "does not exist")


def test_train_rejects_a_bad_shadow_option(tiny_bases, tmp_path):
    data = write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    result = runner.invoke(app, ["train", str(data), "--base", str(tiny_bases["lm"]),
                                 "-o", str(tmp_path / "out"), "--dropout", "1.0"])
    assert_one_line_error(result, 2, "--dropout", "1.0 is not < 1.0")


def test_torchrun_two_ranks_train_identical_weights_and_the_checkpoint_exports(
        tiny_bases, tmp_path):
    """Why: DDP must all-reduce every trainable parameter (the last update slot gets no
    gradient, hence find_unused_parameters) so both ranks end with the same adapter."""
    data = write_jsonl(tmp_path / "gen.jsonl", GEN_ROWS)
    out = tmp_path / "ddp-ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    env.pop("SHADOW_EDGE_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "shadow_edge.cli", "train", str(data), "--base", str(tiny_bases["lm"]),
         "-o", str(out), "--max-steps", "3", "--batch-size", "2", "--lr", "1e-2"],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = dict(re.findall(r"rank (\d)/2: adapter sha256 ([0-9a-f]{64})", proc.stderr))
    assert sorted(ranks) == ["0", "1"], proc.stderr[-3000:]
    assert ranks["0"] == ranks["1"]
    assert _digest_line(proc.stdout) == ranks["0"]
    assert "3 steps" in proc.stderr
    # the checkpoint on disk holds exactly the weights both ranks trained
    assert adapter_digest(_reload(out)) == ranks["0"]

    export = runner.invoke(app, ["export", str(out), "-o", str(tmp_path / "onnx"), "--json"])
    assert export.exit_code == 0, export.output
    summary = json.loads(export.stdout)
    assert summary["task"] == "text-generation" and summary["verified"] is True
    assert summary["parity"]["passed"] is True


def test_trainer_logs_are_formatted_on_one_line():
    assert format_logs({"loss": 2.312345, "epoch": 0.5, "step_kind": "x"}) == (
        "loss 2.312, epoch 0.5, step_kind x")
