"""Build fresh exports and our runtime's reference outputs for ``make interop``.

Runs in the main environment (torch, transformers 5)::

    python -m tests.interop.build_fixtures OUT

and writes ``OUT/{causal-fp32,causal-int4,classifier-fp32}`` (verified export folders of
tiny random ShadowPEFT adapters) and ``OUT/references.json``: for each folder the inputs and
what our runtime (``runtime.load``) returns for them - greedy tokens and logits. The optimum
environment (``tests/interop/check_optimum_onnx.py``) loads the same folders with
``ORTModelForCausalLM`` / ``ORTModelForSequenceClassification`` and compares.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

import runtime
import shadow_edge as se
from exporters import export, quantize_export
from exporters.testing import tiny_model, tiny_model_folder
from runtime.generation import positions_from_mask

logger = logging.getLogger("interop")
PROMPTS = [[1, 84, 104, 101, 32, 114, 111, 98, 111, 116, 32], [1, 72, 105, 33]]
TEXTS = ["turn on the kitchen light", "dim it", "what is the weather like today?"]
STEPS = 12


def _perturb(module: torch.nn.Module, seed: int, std: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


def _adapter(root: Path, task: str) -> Path:
    """A tiny adapter (our format): explicit hidden-32 llama shadow on a hidden-64 base."""
    import transformers as tf

    base_dir = tiny_model_folder(root / f"{task}-base", "llama", task, num_layers=3)
    auto = tf.AutoModelForCausalLM if task == "text-generation" else (
        tf.AutoModelForSequenceClassification)
    base = auto.from_pretrained(base_dir, dtype=torch.float32)
    small = tiny_model("llama", num_layers=2, hidden_size=32, seed=3)
    peft = se.get_shadow_model(base, se.ShadowConfig(), shadow_model=small)
    _perturb(peft.shadow_model, 1, 0.05)
    _perturb(peft.shadow_hidden_projection, 2, 0.2)
    cls = se.ShadowForCausalLM if task == "text-generation" else se.ShadowForSequenceClassification
    model = cls(peft)
    model.save_pretrained(root / f"{task}-adapter")
    return root / f"{task}-adapter"


def _causal_reference(folder: Path) -> dict:
    model = runtime.load(folder, threads=1)
    tokens = [model.generate(p, max_new_tokens=STEPS).token_ids for p in PROMPTS]
    # logits of a left-padded batch at every real position (our runtime's runner)
    width = max(map(len, PROMPTS))
    ids = np.array([[model.pad_token_id] * (width - len(p)) + p for p in PROMPTS], np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in PROMPTS], np.int64)
    logits, _ = model.runner.step(ids, mask, positions_from_mask(mask),
                                  model.runner.empty_cache(len(PROMPTS)), all_logits=True)
    return {"prompts": PROMPTS, "tokens": tokens, "input_ids": ids.tolist(),
            "attention_mask": mask.tolist(), "logits": logits.tolist()}


def _classifier_reference(folder: Path) -> dict:
    model = runtime.load(folder, threads=1)
    rows = model.tokenizer.encode_batch(TEXTS)
    width = max(map(len, rows))
    pad = model.pad_token_id
    batches = {}
    for side in ("right", "left"):
        ids = [r + [pad] * (width - len(r)) if side == "right" else [pad] * (width - len(r)) + r
               for r in rows]
        mask = [[1] * len(r) + [0] * (width - len(r)) if side == "right"
                else [0] * (width - len(r)) + [1] * len(r) for r in rows]
        batches[side] = {"input_ids": ids, "attention_mask": mask}
    right = model.runner.logits(rows, pad)  # our runtime right-pads classifier batches
    labels = [c.label for c in model.classify(TEXTS)]
    return {"texts": TEXTS, "batches": batches, "logits": right.tolist(), "labels": labels}


def build(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "sources"
    causal = _adapter(work, "text-generation")
    classifier = _adapter(work, "text-classification")
    fp32 = export(causal, out / "causal-fp32").output_dir
    int4 = quantize_export(fp32, out / "causal-int4", "int4", checkpoint=causal).output_dir
    cls = export(classifier, out / "classifier-fp32").output_dir
    references = {"causal-fp32": _causal_reference(fp32), "causal-int4": _causal_reference(int4),
                  "classifier-fp32": _classifier_reference(cls)}
    for name, reference in references.items():
        manifest = json.loads((out / name / "shadow_edge.json").read_text())
        reference["min_onnxruntime_version"] = manifest["min_onnxruntime_version"]
    (out / "references.json").write_text(json.dumps(references))
    return references


def main(argv: list[str]) -> int:
    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()  # load reports and bars of tiny random models: noise here
    hf_logging.set_verbosity_error()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # notes on optional packages
    torch.set_num_threads(1)
    if len(argv) != 1:
        print("usage: python -m tests.interop.build_fixtures OUT", file=sys.stderr)
        return 2
    start = time.perf_counter()
    build(Path(argv[0]))
    print(f"interop fixtures in {argv[0]} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
