"""What ``shadow-edge export`` prints: our stage progress and results, without third-party
output we handle on purpose, unless ``-v`` or ``SHADOW_EDGE_DEBUG=1`` asks for everything.

The export runs in a subprocess: transformers and torch log through handlers bound to the
real stderr, which an in-process runner does not capture.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# one xdist worker builds the session fixtures (tiny bases, checkpoints, exports) once
pytestmark = pytest.mark.xdist_group("cli-models")
#: transformers' table for a base loaded without the task head that the adapter replaces
LOAD_REPORT = "LOAD REPORT"
TORCHVISION = "torchvision is not installed"


@pytest.fixture(scope="module")
def classifier_on_a_causal_lm_base(tiny_bases, tmp_path_factory) -> Path:
    """A classifier adapter whose base folder is a causal LM (as the robot-intent demo's
    SmolLM2): loading that base as a classifier leaves ``score.weight`` to the adapter."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from shadow_edge import ShadowConfig, ShadowForSequenceClassification, get_shadow_model

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_bases["lm"]),
                                                              num_labels=3)
    config = ShadowConfig(num_shadow_layers=1, base_model_name_or_path=str(tiny_bases["lm"]))
    model = ShadowForSequenceClassification(get_shadow_model(base, config))
    return model.save_pretrained(tmp_path_factory.mktemp("quiet") / "cls-on-lm")


def _export(checkpoint: Path, out: Path, *args: str, verbose: bool = False,
            debug: bool = False) -> subprocess.CompletedProcess:
    """``shadow-edge [-v] export CHECKPOINT -o OUT ARGS`` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SHADOW_EDGE_DEBUG", None)
    if debug:
        env["SHADOW_EDGE_DEBUG"] = "1"
    command = [sys.executable, "-m", "shadow_edge.cli", *(["-v"] if verbose else []),
               "export", str(checkpoint), "-o", str(out), *args]
    proc = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_default_output_is_our_progress_and_results_only(classifier_on_a_causal_lm_base,
                                                         tmp_path):
    proc = _export(classifier_on_a_causal_lm_base, tmp_path / "out", "--int8")
    for stage in ("load", "fold", "export", "quantize (int8)", "verify (int8)", "write"):
        assert stage in proc.stderr, stage
    for noise in (LOAD_REPORT, "MISSING", TORCHVISION, "Loading weights", "Warning",
                  "WARNING", "it/s"):
        assert noise not in proc.stderr, (noise, proc.stderr)
    assert f"exported {(tmp_path / 'out').resolve()}" in proc.stdout
    assert "argmax_agreement" in proc.stdout and "model.onnx" in proc.stdout


@pytest.mark.parametrize("how", ["-v", "SHADOW_EDGE_DEBUG=1"])
def test_verbose_or_debug_shows_everything(classifier_on_a_causal_lm_base, tmp_path, how):
    proc = _export(classifier_on_a_causal_lm_base, tmp_path / "out", "--no-verify",
                   verbose=how == "-v", debug=how != "-v")
    assert LOAD_REPORT in proc.stderr and "score.weight" in proc.stderr
    if importlib.util.find_spec("torchvision") is None:
        assert TORCHVISION in proc.stderr
    assert "write" in proc.stderr  # our progress too


def test_the_library_filters_at_its_call_sites(classifier_on_a_causal_lm_base, tmp_path):
    """``exporters.export`` from a plain script (the demo's path, no CLI set-up): quiet by
    default, everything with SHADOW_EDGE_DEBUG=1; nothing is silenced process-wide."""
    script = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from exporters import export\n"
        "export(sys.argv[1], sys.argv[2])\n"
        "from transformers.utils import logging as hf_logging\n"
        "assert hf_logging.is_progress_bar_enabled()  # restored after the load\n"
        "logging.getLogger('transformers.modeling_utils').warning('LOAD REPORT after')\n"
    )
    runs = {}
    for debug in (False, True):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        env.pop("SHADOW_EDGE_DEBUG", None)
        if debug:
            env["SHADOW_EDGE_DEBUG"] = "1"
        proc = subprocess.run([sys.executable, "-c", script, str(classifier_on_a_causal_lm_base),
                               str(tmp_path / f"out-{debug}")], check=False, cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        runs[debug] = proc.stderr
    quiet, everything = runs[False], runs[True]

    def load_reports(stderr: str) -> list[str]:
        # lines, not records: with CI=true transformers also propagates its records to the
        # root handler of basicConfig, so one record may print twice
        return [line for line in stderr.splitlines() if LOAD_REPORT in line]

    # only the record logged after the export passes: the filter was removed again
    assert load_reports(quiet) and all("LOAD REPORT after" in line
                                       for line in load_reports(quiet)), quiet
    assert TORCHVISION not in quiet and "Loading weights" not in quiet
    assert any("LOAD REPORT after" not in line for line in load_reports(everything))
    assert "score.weight" in everything
