"""What a recognised export source becomes (:class:`Loaded`), and helpers every loader shares.

Loaders (``sources.py`` for our checkpoints, HF folders and in-memory models,
``peft_format.py`` for HF peft's) return a :class:`Loaded`: the detached model as float32
copies (the export never shares or mutates the caller's weights; tied embeddings become
separate tensors; a source loaded from a folder shares its float32 tensors instead,
:func:`copy_fp32`), the torch reference, the task, the special tokens and where to copy
tokenizer files from.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from shadow_edge.checkpoint import read_safetensors
from shadow_edge.errors import CheckpointError

from .shadow_module import DetachedShadow, Tokens

# Attribute names of sequence-classification heads in HF task models.
CLASSIFIER_ATTRS = ("score", "classifier")


@dataclass
class Loaded:
    """A recognised source: the unfolded :class:`DetachedShadow` (float32 copies), the torch
    ``reference`` ``(input_ids, attention_mask, position_ids) -> logits`` (int64 inputs,
    float32 logits; ``None`` once ``exporters.memory.release_source`` let the source go), the
    canonical task, special tokens, the checkpoint path (absolute) and base, ``kind``
    (``"adapter"`` / ``"standalone"``) and where tokenizer files live."""

    model: DetachedShadow
    reference: Callable | None
    task: str
    tokens: Tokens
    checkpoint: str | None = None
    base: str | None = None
    kind: str = "standalone"
    asset_dirs: list[Path] = field(default_factory=list)


def copy_fp32(module: nn.Module, *, share_weights: bool = False) -> nn.Module:
    """A deep copy of ``module`` in float32 eval mode.

    By default the copy owns its tensors: the export never shares storage with a model the
    caller passed in. With ``share_weights`` the module tree is new but every float32
    parameter and buffer (and every non-float one) is the source's own tensor, so the copy
    costs no memory; tensors of other dtypes are still copied and converted. Only for a
    source the exporter loaded itself: its weights are never written in place, and the
    export lets the source go (``exporters.memory``) before it moves the copy's weights.
    """
    memo = None
    if share_weights:
        memo = {id(tensor): tensor
                for tensor in (*module.parameters(), *module.buffers())
                if tensor.dtype == torch.float32 or not tensor.is_floating_point()}
    return copy.deepcopy(module, memo).float().eval()


def read_json(path: Path) -> dict:
    """Read a JSON object, mapping read/parse errors to CheckpointError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}; the file is missing or corrupt") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object; the file is corrupt")
    return data


def _eos_list(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def tokens_of(model) -> Tokens:
    """Special tokens from ``model.generation_config`` (preferred) or ``model.config``."""
    sources = [getattr(model, "generation_config", None), getattr(model, "config", None)]
    found = {}
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
        for holder in sources:
            value = getattr(holder, key, None) if holder is not None else None
            if value is not None:
                found[key] = value
                break
    pad, bos = found.get("pad_token_id"), found.get("bos_token_id")
    return Tokens(
        eos_token_id=_eos_list(found.get("eos_token_id")),
        pad_token_id=int(pad) if pad is not None else None,
        bos_token_id=int(bos) if bos is not None else None,
    )


def id2label_of(config, num_labels: int) -> dict[int, str]:
    """The config's class names when it has ``num_labels`` of them, else ``LABEL_i``."""
    labels = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if sorted(labels) == list(range(num_labels)):
        return labels
    return {i: f"LABEL_{i}" for i in range(num_labels)}


def weight_keys(folder: Path) -> dict[str, list[int]]:
    """Key -> shape of the weights in ``folder``'s safetensors files (no tensor is read);
    empty when there are none or they are unreadable (the loader reports that)."""
    keys: dict[str, list[int]] = {}
    for file in _weight_files(folder, required=False):
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 (not a dict)
                    keys[key] = list(handle.get_slice(key).get_shape())
        except (SafetensorError, OSError):
            return {}
    return keys


def _weight_files(folder: Path, *, required: bool = True) -> list[Path]:
    """``model.safetensors``, or the shards listed in ``model.safetensors.index.json``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map") or {}
        return [folder / name for name in sorted(set(weight_map.values()))]
    if (folder / "model.safetensors").is_file() or not required:
        return [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []
    other = "pytorch_model.bin" if (folder / "pytorch_model.bin").is_file() else None
    raise CheckpointError(
        f"{folder} has no model.safetensors" + (f" (only {other})" if other else "")
        + "; re-save the shadow with save_pretrained(..., safe_serialization=True)")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF model folder (single or sharded safetensors), on CPU.

    Raises:
        CheckpointError: no safetensors weights, or a corrupt file.
    """
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(folder):
        state.update(read_safetensors(file))
    return state
