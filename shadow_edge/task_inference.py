"""Which task a checkpoint was trained for, from what it holds (no weights are read).

Evidence, strongest first (:func:`infer_task_type`):

1. ``task_type`` recorded in the config (ours and HF peft's; shadow-peft 0.1.x records none);
2. the heads saved with the adapter: ``classifier_head`` / ``shadow_classifier_head`` mean
   sequence classification, ``lm_head`` / ``shadow_lm_head`` a causal LM;
3. the heads named in ``modules_to_save``;
4. the base model's ``architectures`` (``*ForSequenceClassification``, ``*ForCausalLM``).

Tasks use PEFT's names, ``"CAUSAL_LM"`` and ``"SEQ_CLS"`` (``task_types.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import nn

from .config import MODULES_NAME, ShadowConfig
from .errors import CheckpointError
from .task_types import CAUSAL_LM, HEADS, SEQ_CLS

#: The evidence text of a task taken from the base (a guess a requested task may override).
FROM_BASE = "its base model's architectures"
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification",)
_CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def task_from_heads(names: Iterable[str], where: str) -> str | None:
    """The task whose heads ``names`` are (``None`` when they name no head).

    Raises:
        CheckpointError: heads of both tasks, which no task wrapper saves.
    """
    names = set(names)
    found = sorted(task for task, heads in HEADS.items() if names & set(heads))
    if len(found) > 1:
        raise CheckpointError(
            f"{where} holds heads of both tasks ({sorted(names)}); a checkpoint is saved from "
            "one task wrapper - remove the other task's heads or re-save the checkpoint")
    return found[0] if found else None


def task_from_architectures(architectures: Iterable[str] | None) -> str | None:
    """``SEQ_CLS`` / ``CAUSAL_LM`` from an HF config's ``architectures`` (``None``: unknown)."""
    architectures = list(architectures or [])
    if any(name.endswith(_CLASSIFIER_SUFFIXES) for name in architectures):
        return SEQ_CLS
    if any(name.endswith(_CAUSAL_LM_SUFFIXES) for name in architectures):
        return CAUSAL_LM
    return None


def infer_task_type(*, task_type: str | None, saved_heads: Iterable[str] = (),
                    modules_to_save: Iterable[str] = (),
                    base_architectures: Iterable[str] | None = None,
                    where: str = "the checkpoint") -> tuple[str | None, str]:
    """``(task, evidence)``: the task a checkpoint holds and the words that say why.

    ``task`` is ``None`` when nothing says (the caller picks its default). ``evidence`` is
    short text for messages, e.g. ``"its saved heads"``.

    Raises:
        CheckpointError: the saved heads belong to both tasks.
    """
    if task_type:
        return task_type, "task_type in its config"
    found = task_from_heads(saved_heads, where)
    if found:
        return found, "the heads it holds"
    found = task_from_heads(modules_to_save, where)
    if found:
        return found, "its modules_to_save"
    found = task_from_architectures(base_architectures)
    if found:
        return found, FROM_BASE
    return None, "nothing"


def saved_head_names(directory: str | os.PathLike) -> set[str]:
    """Names of the heads in a checkpoint's ``shadow_modules.safetensors`` (only the key
    names are read; an empty set when the file is absent).

    Raises:
        CheckpointError: the file is not readable safetensors.
    """
    path = Path(directory) / MODULES_NAME
    if not path.is_file():
        return set()
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key.split(".", 1)[0] for key in handle.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}). Re-save the checkpoint.") from exc


def _base_architectures(base) -> list[str]:
    """``architectures`` of a base given as a local folder or a loaded model (else ``[]``)."""
    if isinstance(base, nn.Module):
        return list(getattr(getattr(base, "config", None), "architectures", None) or [type(base).__name__])
    if isinstance(base, (str, os.PathLike)) and (Path(base) / "config.json").is_file():
        try:
            data = json.loads((Path(base) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return []  # the base load reports it
        return list(data.get("architectures") or [])
    return []


def checkpoint_task_type(directory: str | os.PathLike, base=None) -> tuple[str | None, str]:
    """``(task, evidence)`` of a checkpoint folder without loading weights
    (:func:`shadow_edge.task_inference.infer_task_type`): its ``task_type``, the heads it holds,
    its ``modules_to_save``, then ``base``'s architectures (``base`` default: the recorded one).

    Raises:
        CheckpointError: unreadable config or modules file, or heads of both tasks.
    """
    directory = Path(directory)
    config = ShadowConfig.from_pretrained(directory)
    return infer_task_type(
        task_type=config.task_type, saved_heads=saved_head_names(directory),
        modules_to_save=config.modules_to_save or (),
        base_architectures=_base_architectures(base if base is not None else config.base_model_name_or_path),
        where=str(directory))
