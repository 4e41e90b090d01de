"""Session-shared tiny exports: a dynamo export costs seconds, so each is built once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from exporters.testing import tiny_export

# Qwen3/Gemma get head_dim 32 != hidden/heads (16), the case DESIGN.md calls out.
ARCH_SIZES = {
    "llama": {"num_layers": 2},
    "qwen2": {"num_layers": 2},
    "qwen3": {"num_layers": 2, "head_dim": 32},
    "mistral": {"num_layers": 2},
    "gemma": {"num_layers": 2, "head_dim": 32},
    "gemma3_text": {"num_layers": 2, "head_dim": 32},
    "gpt2": {"num_layers": 2},
    "bert": {"num_layers": 2},
    "distilbert": {"num_layers": 2},
    "roberta": {"num_layers": 2},
}


class ExportCache:
    """Build tiny exports on first use; ``get(arch, task, **kwargs)`` -> export folder."""

    def __init__(self, factory):
        self.factory = factory
        self.folders = {}

    def get(self, arch: str, task: str = "text-generation", precision: str = "fp32", **kwargs):
        key = (arch, task, precision, tuple(sorted(kwargs.items())))
        if key not in self.folders:
            root = self.factory.mktemp(f"{arch}-{task}-{precision}")
            self.folders[key] = tiny_export(root, arch, task, precision,
                                            sizes=ARCH_SIZES.get(arch), **kwargs)
        return self.folders[key]


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> ExportCache:
    return ExportCache(tmp_path_factory)


@pytest.fixture
def reuse_onnx(monkeypatch):
    """Replace the (slow) dynamo export inside :func:`exporters.export` by a copy of an
    existing ``model.onnx`` (:func:`exporters.testing.copying_export`): set ``.source`` to
    the file to copy and optionally ``.perturb`` to edit the copied proto."""
    import exporters.api
    from exporters.testing import copying_export

    fake = copying_export(None)
    monkeypatch.setattr(exporters.api.onnx_export, "export_onnx", fake)
    return fake


def pytest_configure(config):
    # Registered by pytest-xdist; declared here too so `-p no:xdist` runs stay warning-free.
    config.addinivalue_line("markers", "xdist_group(name): run in one xdist worker")


#: Each architecture's causal-LM shadow: implicit (base layers copied, shared embeddings) or
#: explicit with hidden 32 against a hidden-64 base (projection folded into the head).
SHADOW_KINDS = {"llama": "implicit", "qwen2": "explicit", "qwen3": "implicit",
                "mistral": "explicit", "gemma": "implicit", "gemma3_text": "implicit",
                "gpt2": "explicit",
                # encoder classifiers (build_encoder_export)
                "bert": "implicit", "distilbert": "explicit", "roberta": "explicit"}


@dataclass
class ShadowExport:
    arch: str
    kind: str
    base_dir: Path
    checkpoint: Path
    model: object  # ShadowForCausalLM / ShadowForSequenceClassification, shadow_only mode
    result: object  # exporters.ExportResult

    @property
    def folder(self) -> Path:
        return self.result.output_dir


def _perturb(module, seed: int, std: float = 0.05) -> None:
    """Move weights away from their (base-copied / zero) init so the test sees real values."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


def build_shadow_export(root: Path, arch: str, kind: str) -> ShadowExport:
    """Save a tiny ShadowPEFT causal-LM adapter of ``arch`` and export the adapter folder."""
    import torch
    import transformers as tf

    import shadow_edge as se
    from exporters import export
    from exporters.testing import tiny_model, tiny_model_folder

    head_dim = ARCH_SIZES[arch].get("head_dim")
    base_dir = tiny_model_folder(root / "base", arch, num_layers=3, head_dim=head_dim)
    base = tf.AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if kind == "implicit":
        peft = se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=2))
    else:
        small = tiny_model(arch, num_layers=2, hidden_size=32, seed=3)
        peft = se.get_shadow_model(base, se.ShadowConfig(), shadow_model=small)
        _perturb(peft.shadow_hidden_projection, 4, std=0.2)
    model = se.ShadowForCausalLM(peft)
    _perturb(peft.shadow_model, 1)
    _perturb(model.shadow_lm_head, 2)
    peft.shadow_config.modules_to_save = ["shadow_lm_head"]
    model.save_pretrained(root / "ckpt")
    model.set_inference_mode("shadow_only")
    result = export(root / "ckpt", root / "out", external_data=arch == "gpt2")
    return ShadowExport(arch, kind, base_dir, root / "ckpt", model, result)


def build_encoder_export(root: Path, arch: str, kind: str) -> ShadowExport:
    """Save a tiny ShadowPEFT classifier adapter on an encoder base of ``arch`` (3 layers,
    3 labels) and export the adapter folder (fp32)."""
    import torch
    import transformers as tf

    import shadow_edge as se
    from exporters import export
    from exporters.testing import tiny_encoder_config, tiny_model_folder

    base_dir = tiny_model_folder(root / "base", arch, "text-classification", num_layers=3)
    base = tf.AutoModelForSequenceClassification.from_pretrained(base_dir, dtype=torch.float32)
    if kind == "implicit":
        peft = se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=2))
    else:
        small = tf.AutoModel.from_config(tiny_encoder_config(arch, num_layers=2, hidden_size=32))
        peft = se.get_shadow_model(base, se.ShadowConfig(), shadow_model=small)
        _perturb(peft.shadow_hidden_projection, 4, std=0.2)
    model = se.ShadowForSequenceClassification(peft)
    _perturb(peft.shadow_model, 1)
    _perturb(model.shadow_classifier_head, 2, std=0.3)
    model.save_pretrained(root / "ckpt")
    model.eval().set_inference_mode("shadow_only")
    result = export(root / "ckpt", root / "out")
    return ShadowExport(arch, kind, base_dir, root / "ckpt", model, result)


@pytest.fixture(scope="session")
def encoder_exports(tmp_path_factory):
    """``encoder_exports(arch)`` -> :class:`ShadowExport` of a classifier adapter, built once."""
    built = {}

    def get(arch: str) -> ShadowExport:
        if arch not in built:
            built[arch] = build_encoder_export(tmp_path_factory.mktemp(f"encoder-{arch}"), arch,
                                               SHADOW_KINDS[arch])
        return built[arch]

    return get


@pytest.fixture(scope="session")
def shadow_exports(tmp_path_factory):
    """``shadow_exports(arch)`` -> :class:`ShadowExport`, built once per session."""
    built = {}

    def get(arch: str) -> ShadowExport:
        if arch not in built:
            built[arch] = build_shadow_export(tmp_path_factory.mktemp(f"shadow-{arch}"), arch,
                                              SHADOW_KINDS[arch])
        return built[arch]

    return get
