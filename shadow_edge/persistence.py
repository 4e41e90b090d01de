"""Saving a ShadowPEFT model to a checkpoint folder and rebuilding it on a given base.

``ShadowPeftModel`` and the task wrappers call these from their ``save_pretrained`` and
``from_pretrained``; the file handling itself is ``checkpoint.py``. This module knows the
adapter's layout (FORMAT.md) but not the model classes: the loaders take the class to build
(``cls``), so ``model.py`` and ``tasks.py`` import it without a cycle.

What it adds to plain file I/O:

- explicit shadows are rebuilt from ``shadow_model_config`` when none is passed, and a
  passed one loses its embeddings when the checkpoint was saved without them;
- shadow-peft 0.1.x compatibility: the unused embedding table that 0.1.x needs in the adapter
  file is written for implicit shadows that share the base's embeddings, and dropped again
  (with the legacy keys some 0.1.x checkpoints carry) when loading;
- the heads in ``shadow_modules.safetensors`` load strictly into a task wrapper.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbone import embedding_attribute_name, get_backbone, prepare_shadow_model
from .checkpoint import load_strict, read_safetensors, resolve_checkpoint_dir, write_checkpoint
from .config import ADAPTER_NAME, MODULES_NAME, ShadowConfig
from .errors import CheckpointError

logger = logging.getLogger(__name__)

# Unused embedding tables that some shadow-peft 0.1.x checkpoints carry for a shadow fed the
# base's embeddings (its GPT-2 shadows keep `wte`); they are dropped with a log line.
_LEGACY_SHARED_EMBEDDING_KEYS = re.compile(r"^shadow_model\.(embed_tokens|wte)\.weight$")


# ---- save ----
def compat_embedding_tensors(peft_model) -> dict[str, torch.Tensor]:
    """Unused embedding entries that shadow-peft 0.1.x needs to load our adapter file.

    0.1.x removes only a backbone attribute named ``embed_tokens`` when an implicit shadow
    shares the base's embeddings; other layouts (GPT-2's ``wte``) keep a table it never uses
    but loads strictly. For such an implicit shadow this returns
    ``{"shadow_model.wte.weight": <the base's table, [V, H]>}`` (GPT-2), else ``{}``. The
    cost is one ``[V, H]`` table in the file; our loader drops the key again.
    """
    if not peft_model.embeddings_shared or peft_model.is_explicit:
        return {}
    name = embedding_attribute_name(get_backbone(peft_model.base_model))
    if name is None or name == "embed_tokens":
        return {}
    return {f"shadow_model.{name}.weight": peft_model.base_model.get_input_embeddings().weight}


def save_checkpoint(peft_model, save_directory: str | os.PathLike, *, modules: dict | None, **extras: Any) -> Path:
    """Write ``peft_model``'s checkpoint folder (config, adapter and, if ``modules``, the heads).

    ``extras`` are ShadowConfig fields recorded in the config (``task_type``, ``num_labels``
    ...). See :func:`checkpoint.write_checkpoint` for the atomic writes.
    """
    config = dataclasses.replace(peft_model.shadow_config, **extras)
    adapter = {**peft_model.adapter_state_dict(), **compat_embedding_tensors(peft_model)}
    return write_checkpoint(save_directory, config, adapter, modules)


# ---- load ----
def build_explicit_shadow(config: ShadowConfig) -> nn.Module:
    """Rebuild an explicit shadow backbone from ``config.shadow_model_config`` (random weights).

    Only transformers' own model types are built (``AutoConfig.for_model`` + ``AutoModel``).

    Raises:
        CheckpointError: the model type is unknown to transformers.
    """
    from transformers import AutoConfig, AutoModel

    data = dict(config.shadow_model_config or {})
    model_type = data.pop("model_type", None)
    try:
        backbone_config = AutoConfig.for_model(model_type, **data)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"Cannot rebuild the explicit shadow from shadow_model_config (model_type={model_type!r}: {exc}). "
            "Pass the shadow model yourself with shadow_model=."
        ) from exc
    backbone = AutoModel.from_config(backbone_config)
    if config.shadow_embeddings_shared:
        backbone = prepare_shadow_model(backbone, remove_embed_tokens=True)
    return backbone


def _align_explicit_embeddings(shadow_model: nn.Module, config: ShadowConfig, state: Mapping[str, Any]) -> nn.Module:
    """Remove the explicit shadow's embeddings when the checkpoint was saved without them."""
    backbone = prepare_shadow_model(shadow_model)
    name = embedding_attribute_name(backbone)
    if name is None:
        return shadow_model
    saved_without = f"shadow_model.{name}.weight" not in state and any(k.startswith("shadow_model.") for k in state)
    if config.shadow_embeddings_shared or saved_without:
        logger.info("the checkpoint shares the base's embeddings; removing the shadow's %s", name)
        prepare_shadow_model(shadow_model, remove_embed_tokens=True)
    return shadow_model


def load_adapter(
    cls,
    base_model: nn.Module,
    path: str | os.PathLike,
    *,
    is_trainable: bool = False,
    shadow_model: nn.Module | None = None,
):
    """Build ``cls(base_model, config, shadow_model=...)`` and load the adapter strictly.

    ``cls`` is ``ShadowPeftModel`` (or a subclass); see its ``from_pretrained`` for the
    arguments and errors. The checkpoint may be a folder, a Hub id or ``repo@revision``.
    """
    directory = resolve_checkpoint_dir(path)
    config = ShadowConfig.from_pretrained(directory)
    state = read_safetensors(directory / ADAPTER_NAME)
    base_name = getattr(getattr(base_model, "config", None), "_name_or_path", "") or ""
    recorded = config.base_model_name_or_path
    if recorded and base_name and Path(recorded).name != Path(base_name).name:
        # weights that fit in shape may still come from another base (e.g. another vocabulary)
        logger.warning("%s was trained on base %r but is loaded on %r; outputs may be wrong if "
                       "these are different models", directory, recorded, base_name)
    passed_shadow = shadow_model is not None
    if shadow_model is None and config.shadow_model_config is not None:
        shadow_model = build_explicit_shadow(config)
    elif shadow_model is not None:
        shadow_model = _align_explicit_embeddings(shadow_model, config, state)
    peft_model = cls(base_model, config, shadow_model=shadow_model)
    if peft_model.embeddings_shared:
        unused = set(compat_embedding_tensors(peft_model))
        unused.update(k for k in state if _LEGACY_SHARED_EMBEDDING_KEYS.match(k))
        for key in sorted(unused.intersection(state).difference(peft_model.adapter_tensors())):
            logger.debug("ignoring %s: the shadow is fed the base's input embeddings", key)
            state.pop(key)
    peft_model.load_state_dict(state, strict=True)
    if is_trainable:
        keep = {id(p): p.requires_grad for p in peft_model.shadow_model.parameters()}
        peft_model.set_adapter_trainable(True)
        if passed_shadow:  # keep the explicit shadow's own freezing (e.g. frozen embeddings)
            for parameter in peft_model.shadow_model.parameters():
                parameter.requires_grad = keep[id(parameter)]
        peft_model.train()
    else:
        peft_model.requires_grad_(False)
        peft_model.eval()
    return peft_model




def load_heads(wrapper, directory: Path) -> None:
    """Load ``shadow_modules.safetensors`` of ``directory`` strictly into a task wrapper's heads.

    Raises:
        CheckpointError: the file holds a head the wrapper does not have, a head's keys or
            shapes differ, or a head named in ``modules_to_save`` has no weights.
    """
    modules_path = directory / MODULES_NAME
    requested = list(wrapper.peft_model.shadow_config.modules_to_save)
    name = type(wrapper).__name__
    if modules_path.exists():
        flat = read_safetensors(modules_path)
        heads = {key.split(".", 1)[0] for key in flat}
        foreign = sorted(heads - set(wrapper.head_names))
        if foreign:
            raise CheckpointError(
                f"{modules_path} holds heads {foreign} that {name} does not have (it has "
                f"{list(wrapper.head_names)}). Load it with the task it was saved from."
            )
        for head in sorted(heads):
            module = getattr(wrapper, head)
            prefix = head + "."
            target = {prefix + k: v for k, v in module.state_dict(keep_vars=True).items()}
            load_strict(target, {k: v for k, v in flat.items() if k.startswith(prefix)}, what=head)
        absent = [h for h in requested if h not in heads]
    else:
        absent = requested
    if absent:
        raise CheckpointError(
            f"modules_to_save lists {absent} but {directory} has no weights for them in {MODULES_NAME}. "
            "Re-save the checkpoint from the task wrapper."
        )
