"""Tiny HF peft SHADOW checkpoints (peft >= 0.21, a dev dependency) and peft's own detached
model as the reference.

``peft_checkpoint`` trains nothing: it moves every weight the detached shadow uses away from
its initial value (the backbone, the projection, the classifier shadow head and any
``modules_to_save`` copy), so an import that took a base weight instead of the adapter's, or
a fresh random one, cannot match peft's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from exporters.testing import tiny_config, tiny_tokenizer_files

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class PeftCheckpoint:
    """A saved peft SHADOW adapter, its base folder and the standalone ``unload_shadow``
    folder, with peft's detached model (``reference``) reloaded from the adapter."""

    task: str  # "CAUSAL_LM" or "SEQ_CLS"
    base_dir: Path
    adapter_dir: Path
    standalone_dir: Path
    reference: torch.nn.Module  # peft's DetachedShadowModel, eval mode


def _perturb(module: torch.nn.Module, seed: int, std: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


def _auto(task: str):
    import transformers as tf

    return tf.AutoModelForCausalLM if task == "CAUSAL_LM" else tf.AutoModelForSequenceClassification


def peft_checkpoint(root: Path, task: str = "CAUSAL_LM", *, arch: str = "llama",
                    shadow_hidden_size: int | None = None, share_embeddings: bool = True,
                    modules_to_save: bool = False, tied: bool = False, seed: int = 0,
                    shadow_model: str = "mirror") -> PeftCheckpoint:
    """Build, perturb and save a tiny peft SHADOW model of ``task`` under ``root``.

    ``shadow_hidden_size`` != 64 (the base's) adds a projection; ``modules_to_save`` trains
    a copy of the base's task head (``lm_head`` / ``score``); ``tied`` ties the base's
    ``lm_head`` to its embeddings (SmolLM2-style).
    """
    from peft import PeftModel, get_peft_model
    from peft.tuners.shadow import ShadowConfig

    root = Path(root)
    torch.manual_seed(seed)
    config = tiny_config(arch, num_layers=2)
    config.tie_word_embeddings = tied
    base = _auto(task).from_config(config).eval()
    head = base.get_output_embeddings() if task == "CAUSAL_LM" else base.score
    with torch.no_grad():
        head.weight.normal_(0.0, 0.3 if task == "CAUSAL_LM" else 1.0)
    base_dir = root / "base"
    base.save_pretrained(base_dir)
    tiny_tokenizer_files(base_dir)

    kwargs = {}
    if modules_to_save:
        kwargs["modules_to_save"] = ["lm_head"] if task == "CAUSAL_LM" else ["score"]
    if shadow_hidden_size is not None:
        kwargs.update(shadow_hidden_size=shadow_hidden_size, shadow_num_attention_heads=4)
    if shadow_model == "mirror":
        kwargs["shadow_num_hidden_layers"] = 2
    peft_config = ShadowConfig(task_type=task, share_embeddings=share_embeddings,
                               shadow_model=shadow_model, **kwargs)
    model = get_peft_model(_auto(task).from_pretrained(base_dir), peft_config)
    tuner = model.base_model
    _perturb(tuner.shadow_backbone["default"], seed + 1, 0.05)
    _perturb(tuner.shadow_projection["default"], seed + 2, 0.2)
    if "default" in tuner.shadow_head:
        _perturb(tuner.shadow_head["default"], seed + 3, 0.5)
    if modules_to_save:
        wrapper = base_head_wrapper(model, task)
        _perturb(wrapper.modules_to_save["default"], seed + 4, 0.3)
    model.save_pretrained(root / "adapter")
    standalone = model.eval().unload_shadow(copy=True)
    standalone.save_pretrained(root / "standalone")
    for name in TOKENIZER_FILES:  # users save the tokenizer next to the shadow
        (root / "standalone" / name).write_bytes((base_dir / name).read_bytes())

    fresh = PeftModel.from_pretrained(_auto(task).from_pretrained(base_dir), root / "adapter")
    reference = fresh.eval().base_model.unload_shadow().eval()
    return PeftCheckpoint(task, base_dir, root / "adapter", root / "standalone", reference)


def base_head_wrapper(model, task: str):
    """The ModulesToSaveWrapper around the base's task head inside a PeftModel."""
    inner = model.base_model.model
    return inner.lm_head if task == "CAUSAL_LM" else inner.score


@torch.no_grad()
def reference_logits(reference, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """peft's detached model's logits: [batch, seq, vocab] or [batch, num_labels]."""
    return reference(input_ids=input_ids, attention_mask=attention_mask).logits.float()


@torch.no_grad()
def reference_greedy(reference, prompt: list[int], steps: int) -> list[int]:
    """Greedy tokens of peft's detached model by full recompute (no eos stop)."""
    ids = torch.tensor([prompt])
    out = []
    for _ in range(steps):
        token = int(reference(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].argmax())
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out
