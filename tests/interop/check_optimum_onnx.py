"""optimum-onnx loads our exports and gets our runtime's tokens and logits (``make interop``).

Runs in the separate optimum environment (``.venv-interop``: optimum-onnx 0.1.0 pins
transformers < 4.58), on the folders and references ``build_fixtures.py`` wrote into
``$SHADOW_EDGE_INTEROP_DIR``::

    .venv-interop/bin/python -m pytest tests/interop/check_optimum_onnx.py

It imports neither shadow_edge nor exporters: only optimum, onnxruntime and numpy, like a
user of another runtime.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from optimum.onnxruntime import ORTModelForCausalLM, ORTModelForSequenceClassification

FOLDER = Path(os.environ.get("SHADOW_EDGE_INTEROP_DIR", ".interop"))
#: Same onnxruntime, same file: only the order of float operations may differ.
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def references() -> dict:
    path = FOLDER / "references.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `python -m tests.interop.build_fixtures {FOLDER}` "
                    "in the main environment first (make interop does)")
    return json.loads(path.read_text())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def _close(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", ["causal-fp32", "causal-int4", "classifier-fp32"])
def test_installed_onnxruntime_meets_the_recorded_minimum(references, name):
    minimum = references[name]["min_onnxruntime_version"]
    assert minimum == "1.24.1" or name == "causal-int4"
    assert _version(onnxruntime.__version__) >= _version(minimum)


@pytest.mark.parametrize("name", ["causal-fp32", "causal-int4"])
def test_ort_model_for_causal_lm_greedy_tokens_and_logits(references, name):
    reference = references[name]
    model = ORTModelForCausalLM.from_pretrained(FOLDER / name, use_cache=True,
                                                use_io_binding=False)
    for prompt, want in zip(reference["prompts"], reference["tokens"]):
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=len(want), num_beams=1)
        assert out[0, len(prompt):].tolist() == want, name
    ids = torch.tensor(reference["input_ids"])
    mask = torch.tensor(reference["attention_mask"])
    logits = model(input_ids=ids, attention_mask=mask).logits.numpy()
    want = np.array(reference["logits"], np.float32)
    real = mask.numpy().astype(bool)  # padded positions are free to differ
    assert _close(logits[real], want[real]) <= RELATIVE_TOLERANCE


@pytest.mark.parametrize("side", ["right", "left"])
def test_ort_model_for_sequence_classification_logits(references, side):
    reference = references["classifier-fp32"]
    model = ORTModelForSequenceClassification.from_pretrained(FOLDER / "classifier-fp32")
    batch = reference["batches"][side]
    logits = model(input_ids=torch.tensor(batch["input_ids"]),
                   attention_mask=torch.tensor(batch["attention_mask"])).logits.numpy()
    want = np.array(reference["logits"], np.float32)
    assert _close(logits, want) <= RELATIVE_TOLERANCE
    labels = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert labels == reference["labels"]
