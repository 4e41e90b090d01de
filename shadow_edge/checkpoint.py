"""Checkpoint I/O: strict safetensors loading, Hub resolution (``repo@revision``) and push.

A checkpoint folder (FORMAT.md) holds ``shadow_config.json``, ``shadow_adapter.safetensors``
and, when task heads are saved, ``shadow_modules.safetensors``. Every load is strict: a
missing or unexpected key, or a shape that does not fit, raises ``CheckpointError`` naming
the keys and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import _IncompatibleKeys

from .backbone import embedding_attribute_name, get_backbone, prepare_shadow_model
from .config import ADAPTER_NAME, CONFIG_NAME, MODULES_NAME, ShadowConfig
from .errors import CheckpointError
from .hf_loading import is_head_key, load_pretrained_strict
from .task_inference import HEADS, checkpoint_task_type, saved_head_names

logger = logging.getLogger(__name__)

CHECKPOINT_FILES = (CONFIG_NAME, ADAPTER_NAME, MODULES_NAME)
# Unused embedding tables that some shadow-peft 0.1.x checkpoints carry for a shadow fed the
# base's embeddings (its GPT-2 shadows keep `wte`); they are dropped with a log line.
_LEGACY_SHARED_EMBEDDING_KEYS = re.compile(r"^shadow_model\.(embed_tokens|wte)\.weight$")
_TASK_ALIASES = {
    "CAUSAL_LM": "CAUSAL_LM", "causal-lm": "CAUSAL_LM", "causal_lm": "CAUSAL_LM",
    "text-generation": "CAUSAL_LM", "SEQ_CLS": "SEQ_CLS", "seq-cls": "SEQ_CLS",
    "seq_cls": "SEQ_CLS", "text-classification": "SEQ_CLS", "sequence-classification": "SEQ_CLS",
}


def _list_keys(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


# ---- strict state loading ----
def load_strict(
    target: Mapping[str, torch.Tensor],
    source: Mapping[str, torch.Tensor],
    *,
    strict: bool = True,
    what: str = "adapter",
) -> _IncompatibleKeys:
    """Copy ``source`` tensors into the ``target`` parameters/buffers (same keys).

    Args:
        target: key -> live parameter or buffer (``state_dict(keep_vars=True)``).
        source: key -> tensor from a file.
        strict: raise on missing or unexpected keys (else report them in the result).
        what: a name for messages.

    Raises:
        CheckpointError: strict and keys differ (names listed), or a shape differs (key,
            both shapes and the fix), whatever ``strict``.
    """
    missing = [k for k in target if k not in source]
    unexpected = [k for k in source if k not in target]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys: {_list_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_list_keys(unexpected)}")
        raise CheckpointError(
            f"The {what} weights do not match the model ({'; '.join(parts)}). Load the checkpoint "
            "on the base and shadow it was saved with (pass shadow_model= for explicit shadows)."
        )
    for key, value in source.items():
        if key in target and tuple(target[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{what} weight {key!r} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(target[key].shape)} in the model. The checkpoint was saved for a different "
                "base or shadow size: load it on the base model (and shadow_model=) it was trained with."
            )
    with torch.no_grad():
        for key, value in source.items():
            if key in target:
                target[key].copy_(value.to(device=target[key].device, dtype=target[key].dtype))
    return _IncompatibleKeys(missing_keys=missing, unexpected_keys=unexpected)


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file on CPU.

    Raises:
        CheckpointError: the file is missing or corrupt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(
            f"Missing {path.name} in {path.parent}. A checkpoint folder needs {CONFIG_NAME} and "
            f"{ADAPTER_NAME}; re-save it with save_pretrained."
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}). Re-save the checkpoint.") from exc


# ---- resolve ----
def resolve_checkpoint_dir(path_or_repo: str | os.PathLike, *, token: str | None = None) -> Path:
    """Return a local folder for a checkpoint given as a folder, a Hub id or ``repo_id@revision``.

    Raises:
        CheckpointError: a local path that does not exist, or a Hub download failure.
    """
    text = os.fspath(path_or_repo)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise CheckpointError(f"{local} is a file; pass the checkpoint folder that contains it.")
        return local
    looks_local = text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text
    if looks_local:
        raise CheckpointError(
            f"Checkpoint folder {text} does not exist. Pass a folder written by save_pretrained or a "
            "Hub id such as 'org/name' (optionally 'org/name@revision')."
        )
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id=repo_id, revision=revision or None, allow_patterns=list(CHECKPOINT_FILES), token=token
        )
    except (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError, OSError) as exc:
        raise CheckpointError(
            f"{text!r} is not a local folder (relative to {Path.cwd()}), and fetching it from the "
            f"Hugging Face Hub failed ({exc}). Fix the folder path, or check the repo id and "
            "revision, your network and token."
        ) from exc
    return Path(folder)


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


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)


def save_checkpoint(peft_model, save_directory: str | os.PathLike, *, modules: dict | None, **extras: Any) -> Path:
    """Write a checkpoint folder (config, adapter and, if ``modules``, the heads).

    ``extras`` are ShadowConfig fields recorded in the config (``task_type``, ``num_labels``
    ...). Each file is written to a temporary name and renamed, so a failed save leaves
    no half-written file; a stale ``shadow_modules.safetensors`` is removed.
    """
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(peft_model.shadow_config, **extras)
    _atomic_save_tensors({**peft_model.adapter_state_dict(), **compat_embedding_tensors(peft_model)},
                         directory / ADAPTER_NAME)
    modules_path = directory / MODULES_NAME
    if modules:
        _atomic_save_tensors(modules, modules_path)
    elif modules_path.exists():
        modules_path.unlink()
    config.save_pretrained(directory)
    logger.info("saved ShadowPEFT checkpoint to %s", directory)
    return directory


def push_to_hub(
    model,
    repo_id: str,
    *,
    commit_message: str = "Add ShadowPEFT adapter",
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create ``repo_id`` if needed and upload ``model.save_pretrained``'s files (no base weights).

    Returns the commit URL.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="shadow-edge-push-") as folder:
        model.save_pretrained(folder)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=commit_message,
            revision=revision, create_pr=create_pr,
        )
    return str(getattr(info, "commit_url", None) or info)


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


def load_peft_model(
    cls,
    base_model: nn.Module,
    path: str | os.PathLike,
    *,
    is_trainable: bool = False,
    shadow_model: nn.Module | None = None,
):
    """Build ``cls(base_model, config, shadow_model=...)`` and load the adapter strictly."""
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


def load_task_model(
    cls,
    base_model: nn.Module,
    path: str | os.PathLike,
    *,
    is_trainable: bool = False,
    shadow_model: nn.Module | None = None,
    shadow_loss_weight: float = 0.05,
    inference_mode: str = "base_shadow",
):
    """Load a task wrapper: the adapter, then the heads in ``shadow_modules.safetensors``."""
    from .model import ShadowPeftModel

    directory = resolve_checkpoint_dir(path)
    saved_task = ShadowConfig.from_pretrained(directory).task_type
    if saved_task is not None and saved_task != cls.task_type:
        from .tasks import ShadowForCausalLM, ShadowForSequenceClassification

        right = {"CAUSAL_LM": ShadowForCausalLM, "SEQ_CLS": ShadowForSequenceClassification}[saved_task]
        raise CheckpointError(
            f"{directory} was saved from a {saved_task} wrapper, not {cls.task_type}. Load it with "
            f"{right.__name__}.from_pretrained (on a matching base), or, to reuse only the adapter "
            f"for another task, with ShadowPeftModel.from_pretrained and wrap it in {cls.__name__}."
        )
    peft_model = load_peft_model(
        ShadowPeftModel, base_model, directory, is_trainable=is_trainable,
        shadow_model=shadow_model,
    )
    wrapper = cls(peft_model, shadow_loss_weight=shadow_loss_weight, inference_mode=inference_mode)
    modules_path = directory / MODULES_NAME
    requested = list(peft_model.shadow_config.modules_to_save)
    if modules_path.exists():
        flat = read_safetensors(modules_path)
        heads = {key.split(".", 1)[0] for key in flat}
        foreign = sorted(heads - set(cls.head_names))
        if foreign:
            raise CheckpointError(
                f"{modules_path} holds heads {foreign} that {cls.__name__} does not have (it has "
                f"{list(cls.head_names)}). Load it with the task it was saved from."
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
    if not is_trainable:
        wrapper.requires_grad_(False)
        wrapper.eval()
    return wrapper


def _task_class(task: str):
    from .tasks import ShadowForCausalLM, ShadowForSequenceClassification

    return ShadowForCausalLM if task == "CAUSAL_LM" else ShadowForSequenceClassification


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
        task: ``"CAUSAL_LM"`` / ``"SEQ_CLS"`` (aliases ``text-generation``, ``text-classification``);
            default: inferred by :func:`checkpoint_task_type` (``task_type``, saved heads,
            ``modules_to_save``, the base's architectures), else causal LM.
        trust_remote_code: passed to transformers when loading the base by name.

    Returns:
        ``ShadowForCausalLM`` or ``ShadowForSequenceClassification`` (frozen, eval mode unless
        ``is_trainable``).

    Raises:
        CheckpointError: missing folder/file, corrupt weights, no base recorded or loadable,
            or weights that do not fit the base.
    """
    directory = resolve_checkpoint_dir(path)
    config = ShadowConfig.from_pretrained(directory)
    task_name = task or checkpoint_task_type(directory, base)[0] or "CAUSAL_LM"
    if task_name not in _TASK_ALIASES:
        raise CheckpointError(f"Unknown task {task!r}; use one of {sorted(set(_TASK_ALIASES))}.")
    task_name = _TASK_ALIASES[task_name]
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
    return _task_class(task_name).from_pretrained(
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
    if task == "SEQ_CLS":
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
