"""``load_shadow_checkpoint``: a checkpoint plus its base, as the right task wrapper.

The one-call entry point of the exporters and the CLI. It sits above ``tasks.py``: it picks
the task (``task_types`` vocabulary, ``task_inference`` evidence), loads the base strictly
(``hf_loading``) and calls the task wrapper's ``from_pretrained`` (``persistence.py``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .checkpoint import resolve_checkpoint_dir
from .config import CONFIG_NAME, ShadowConfig
from .errors import CheckpointError
from .hf_loading import is_head_key, load_pretrained_strict
from .task_inference import checkpoint_task_type, saved_head_names
from .task_types import CAUSAL_LM, HEADS, SEQ_CLS, peft_task_type
from .tasks import TASK_MODELS


def load_shadow_checkpoint(
    path: str | os.PathLike,
    base: str | os.PathLike | nn.Module | None = None,
    task: str | None = None,
    trust_remote_code: bool = False,
    *,
    inference_mode: str = "base_shadow",
    is_trainable: bool = False,
    shadow_model: nn.Module | None = None,
    dtype: torch.dtype = torch.float32,
):
    """Load a checkpoint with its base: the one-call entry point of the exporters and CLI.

    Args:
        path: checkpoint folder, Hub id or ``repo@revision``.
        base: a loaded base model, or its path/Hub id; default: the checkpoint's
            ``base_model_name_or_path``. A base loaded here is loaded strictly: weights it lacks
            are an error, except the task head when the checkpoint brings both task heads.
        task: ``"CAUSAL_LM"`` / ``"SEQ_CLS"`` or an alias (``text-generation``,
            ``text-classification``: ``task_types.TASK_ALIASES``); default: inferred by
            :func:`~shadow_edge.task_inference.checkpoint_task_type` (``task_type``, saved heads,
            ``modules_to_save``, the base's architectures), else causal LM.
        trust_remote_code: passed to transformers when loading the base by name.
        dtype: the dtype of a base loaded here (default float32).

    Returns:
        ``ShadowForCausalLM`` or ``ShadowForSequenceClassification`` (frozen, eval mode unless
        ``is_trainable``).

    Raises:
        CheckpointError: missing folder/file, corrupt weights, no base recorded or loadable,
            or weights that do not fit the base.
        ConfigError: an unknown ``task`` (the message lists the accepted names).
    """
    directory = resolve_checkpoint_dir(path)
    config = ShadowConfig.from_pretrained(directory)
    task_name = peft_task_type(task or checkpoint_task_type(directory, base)[0] or CAUSAL_LM)
    if base is None:
        base = config.base_model_name_or_path
        if not base:
            raise CheckpointError(
                f"{directory / CONFIG_NAME} records no base_model_name_or_path; pass base= (a loaded "
                "model, a folder or a Hub id)."
            )
    if not isinstance(base, nn.Module):
        heads = saved_head_names(directory)
        base = _load_base(os.fspath(base), task_name, config, trust_remote_code, dtype,
                          head_in_checkpoint=set(HEADS[task_name]) <= heads)
    return TASK_MODELS[task_name].from_pretrained(
        base, directory, is_trainable=is_trainable, shadow_model=shadow_model,
        inference_mode=inference_mode,
    )


def _load_base(name: str, task: str, config: ShadowConfig, trust_remote_code: bool, dtype: torch.dtype,
               *, head_in_checkpoint: bool):
    """The base, strictly: a task-head key may be missing only when the checkpoint holds both
    task heads (e.g. a SEQ_CLS adapter on a causal-LM base folder), and may be unexpected
    (the other task's head in the folder)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": dtype}
    auto = AutoModelForCausalLM
    if task == SEQ_CLS:
        auto = AutoModelForSequenceClassification
        if config.num_labels is not None:
            kwargs["num_labels"] = config.num_labels
        if config.id2label:
            kwargs["id2label"] = dict(config.id2label)
            kwargs["label2id"] = {v: k for k, v in config.id2label.items()}
        if config.problem_type:
            kwargs["problem_type"] = config.problem_type

    def tolerate(model, key: str) -> bool:
        is_missing = key in model.state_dict()  # else unexpected: another head in the folder
        return is_head_key(model, key) and (head_in_checkpoint or not is_missing)

    return load_pretrained_strict(
        auto, name, what=f"the base model for a {task} checkpoint", tolerate=tolerate,
        fix="pass base= with the base model folder the checkpoint was trained on (and its task head)",
        **kwargs)
