"""Recognise an export source and turn it into an (unfolded) :class:`DetachedShadow`.

Each loader returns a :class:`Loaded`: the detached model (deep copies in float32, so the
export never shares or mutates the caller's weights; tied embeddings become separate
tensors), the torch reference (the source model itself in shadow-only mode), the task, the
special tokens and where to copy tokenizer files from.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from shadow_edge.backbone import input_embeddings_of
from shadow_edge.errors import CheckpointError, ConfigError, ExportError

from .detached import DetachedShadow, Tokens
from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION, normalize_task

logger = logging.getLogger(__name__)

SHADOW_CONFIG = "shadow_config.json"
HF_CONFIG = "config.json"
PROJECTION_MODEL_TYPE = "causal_lm_with_hidden_projection"
# Attribute names of sequence-classification heads in HF task models.
CLASSIFIER_ATTRS = ("score", "classifier")
# Errors transformers / safetensors raise for unreadable or corrupt weights.
try:
    from safetensors import SafetensorError
except ImportError:  # pragma: no cover - older safetensors
    SafetensorError = OSError
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


@dataclass
class Loaded:
    """A recognised source: the unfolded :class:`DetachedShadow` (float32 copies), the torch
    ``reference`` ``(input_ids, attention_mask, position_ids) -> logits`` (int64 inputs,
    float32 logits), the canonical task, special tokens, the checkpoint path (absolute) and
    base, ``kind`` (``"adapter"`` / ``"standalone"``) and where tokenizer files live."""

    model: DetachedShadow
    reference: Callable
    task: str
    tokens: Tokens
    checkpoint: str | None = None
    base: str | None = None
    kind: str = "standalone"
    asset_dirs: list[Path] = field(default_factory=list)


def _copy(module: nn.Module) -> nn.Module:
    """A deep copy in float32 eval mode: the export never shares storage with the source."""
    return copy.deepcopy(module).float().eval()


def read_json(path: Path) -> dict:
    """Read a JSON object, mapping read/parse errors to CheckpointError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path}: {error}; the file is missing or corrupt") from error


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


def _check_task(requested: str | None, actual: str, what: str) -> str:
    if requested is None:
        return actual
    requested = normalize_task(requested)
    if requested != actual:
        raise ConfigError(
            f"{what} is a {actual} model, but task {requested!r} was requested; "
            f"drop --task or pass task={actual!r}"
        )
    return actual


def _hf_task(model: nn.Module) -> str:
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return TEXT_CLASSIFICATION
    if getattr(model, "get_output_embeddings", lambda: None)() is not None:
        return TEXT_GENERATION
    raise ExportError(
        f"cannot export {name}: it is neither a causal LM (with lm_head) nor a sequence "
        "classifier; export a *ForCausalLM or *ForSequenceClassification model"
    )


def is_projection_model(model) -> bool:
    return all(hasattr(model, a) for a in ("shadow_model", "shadow_hidden_projection", "lm_head"))


def is_shadow_task_model(model) -> bool:
    return hasattr(model, "peft_model") and (
        hasattr(model, "shadow_lm_head") or hasattr(model, "shadow_classifier_head")
    )


def _hf_reference(model: nn.Module) -> Callable:
    @torch.no_grad()
    def run(input_ids, attention_mask, position_ids=None):
        kwargs = {"position_ids": position_ids} if position_ids is not None else {}
        return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits.float()

    return run


def from_hf_model(model: nn.Module, *, task: str | None = None, checkpoint: str | None = None,
                  asset_dirs: list[Path] | None = None) -> Loaded:
    """A standalone HF model (``*ForCausalLM``, ``*ForSequenceClassification``, projected LM)."""
    model.eval()
    what = checkpoint or type(model).__name__
    if is_projection_model(model):
        actual = TEXT_GENERATION
        backbone, head = model.shadow_model, model.lm_head
        projection = model.shadow_hidden_projection
        if not isinstance(projection, nn.Linear):
            projection = None  # identity when the hidden sizes match
    else:
        actual = _hf_task(model)
        backbone = model.base_model
        if actual == TEXT_GENERATION:
            head, projection = model.get_output_embeddings(), None
        else:
            head = next((getattr(model, a) for a in CLASSIFIER_ATTRS if hasattr(model, a)), None)
            projection = None
            if not isinstance(head, nn.Linear):
                raise ExportError(
                    f"{type(model).__name__} has no linear classifier head ({CLASSIFIER_ATTRS}); "
                    "only last-token-pooled linear classifiers can be exported"
                )
    task = _check_task(task, actual, what)
    id2label = _id2label(model.config) if task == TEXT_CLASSIFICATION else None
    detached = DetachedShadow(
        _copy(backbone), _copy(head), task=task,
        projection=_copy(projection) if projection is not None else None, id2label=id2label,
    )
    return Loaded(
        model=detached.eval(), reference=_hf_reference(model), task=task, tokens=tokens_of(model),
        checkpoint=checkpoint, kind="standalone", asset_dirs=list(asset_dirs or []),
    )


def _id2label(config) -> dict[int, str]:
    labels = getattr(config, "id2label", None) or {}
    return {int(k): str(v) for k, v in labels.items()}


def _shadow_reference(model) -> Callable:
    @torch.no_grad()
    def run(input_ids, attention_mask, position_ids=None):
        previous = getattr(model, "inference_mode", None)
        model.set_inference_mode("shadow_only")
        try:
            kwargs = {"position_ids": position_ids} if position_ids is not None else {}
            out = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            if isinstance(previous, str):
                model.set_inference_mode(previous)
        return out.logits.float()

    return run


def from_shadow_model(model, *, task: str | None = None, checkpoint: str | None = None,
                      base: str | None = None, asset_dirs: list[Path] | None = None) -> Loaded:
    """An in-memory ``ShadowForCausalLM`` / ``ShadowForSequenceClassification``."""
    model.eval()
    peft = model.peft_model
    if hasattr(model, "shadow_lm_head"):
        actual, head = TEXT_GENERATION, model.shadow_lm_head
    else:
        actual, head = TEXT_CLASSIFICATION, model.shadow_classifier_head
    task = _check_task(task, actual, checkpoint or type(model).__name__)
    backbone = _copy(peft.shadow_model)
    if input_embeddings_of(backbone) is None:  # transformers 5 raises instead of None
        backbone.set_input_embeddings(_copy(peft.shadow_input_embeddings()))
    projection = peft.shadow_hidden_projection
    base_model = peft.base_model
    id2label = None
    if task == TEXT_CLASSIFICATION:
        id2label = _id2label(base_model.config) or {i: f"LABEL_{i}" for i in range(head.out_features)}
    detached = DetachedShadow(
        backbone, _copy(head), task=task,
        projection=_copy(projection) if isinstance(projection, nn.Linear) else None,
        id2label=id2label,
    )
    return Loaded(
        model=detached.eval(), reference=_shadow_reference(model), task=task,
        tokens=tokens_of(base_model), checkpoint=checkpoint, base=base, kind="adapter",
        asset_dirs=list(asset_dirs or []),
    )


def _load_hf_folder(folder: Path, task: str | None, trust_remote_code: bool) -> Loaded:
    config = read_json(folder / HF_CONFIG)
    try:
        if config.get("model_type") == PROJECTION_MODEL_TYPE:
            import shadow_edge

            model = shadow_edge.AutoModelForCausalLMWithHiddenProjection.from_pretrained(
                str(folder), trust_remote_code=trust_remote_code
            )
        else:
            import transformers

            archs = config.get("architectures") or []
            is_cls = any(a.endswith("ForSequenceClassification") for a in archs)
            auto = (transformers.AutoModelForSequenceClassification if is_cls
                    else transformers.AutoModelForCausalLM)
            model = auto.from_pretrained(str(folder), dtype=torch.float32,
                                         trust_remote_code=trust_remote_code)
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"cannot load the model in {folder}: {error}; the weights are missing or corrupt - "
            "re-save the model with save_pretrained"
        ) from error
    return from_hf_model(model, task=task, checkpoint=str(folder.absolute()), asset_dirs=[folder])


def _load_adapter(folder: Path, base, task: str | None, trust_remote_code: bool) -> Loaded:
    import shadow_edge

    shadow_config = read_json(folder / SHADOW_CONFIG)
    recorded = shadow_config.get("base_model_name_or_path")
    if base is None and not recorded:
        raise CheckpointError(
            f"the adapter checkpoint {folder} does not record its base model; "
            "pass the base with --base PATH_OR_ID (base=... in Python)"
        )
    chosen = base if base is not None else recorded
    if isinstance(chosen, (str, Path)) and not Path(chosen).exists() and (
        Path(chosen).is_absolute() or str(chosen).startswith(".")
    ):
        raise CheckpointError(
            f"the base model {chosen} does not exist; pass the base folder with --base PATH_OR_ID"
        )
    recorded_task = recorded_task_of(folder)
    if task is None:
        task = recorded_task
    elif recorded_task is not None and task != recorded_task:
        # fail before loading the base (the core would load it, then refuse the wrapper)
        raise ConfigError(
            f"{folder} is a {recorded_task} checkpoint (task_type in {SHADOW_CONFIG}), but "
            f"task {task!r} was requested; drop --task or pass task={recorded_task!r}"
        )
    model = shadow_edge.load_shadow_checkpoint(
        str(folder), base=chosen, task=task, trust_remote_code=trust_remote_code
    )
    base_name = chosen if isinstance(chosen, (str, Path)) else getattr(
        getattr(chosen, "config", None), "_name_or_path", None)
    asset_dirs = [folder]
    if isinstance(chosen, (str, Path)) and Path(chosen).is_dir():
        asset_dirs.append(Path(chosen))
    return from_shadow_model(model, task=task, checkpoint=str(folder.absolute()),
                             base=str(base_name) if base_name else None, asset_dirs=asset_dirs)


def recorded_task_of(folder: str | Path) -> str | None:
    """The task a checkpoint folder records, without loading it: ``task_type`` of an adapter's
    ``shadow_config.json``, or the ``architectures`` of an HF ``config.json`` (``None`` when
    the folder records none, e.g. adapters saved by shadow-peft 0.1.x).

    Raises:
        CheckpointError: the JSON file is unreadable.
    """
    folder = Path(folder)
    if (folder / SHADOW_CONFIG).is_file():
        task_type = read_json(folder / SHADOW_CONFIG).get("task_type")
        return normalize_task(task_type) if task_type else None
    if (folder / HF_CONFIG).is_file():
        config = read_json(folder / HF_CONFIG)
        if config.get("model_type") == PROJECTION_MODEL_TYPE:
            return TEXT_GENERATION
        archs = config.get("architectures") or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return TEXT_CLASSIFICATION
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return TEXT_GENERATION
    return None


def load(source, *, base=None, task: str | None = None, trust_remote_code: bool = False) -> Loaded:
    """Dispatch on the kind of ``source`` (see :mod:`exporters.detaching`)."""
    if task is not None:
        task = normalize_task(task)
    if isinstance(source, DetachedShadow):
        source.eval()
        reference = source.logits
        return Loaded(model=source, reference=reference, task=_check_task(task, source.task, "model"),
                      tokens=tokens_of(source.backbone))
    if isinstance(source, nn.Module):
        if is_shadow_task_model(source):
            return from_shadow_model(source, task=task)
        return from_hf_model(source, task=task)
    if not isinstance(source, (str, Path)):
        raise ConfigError(
            f"cannot export a {type(source).__name__}; pass a checkpoint folder or a model"
        )
    folder = Path(source)
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise CheckpointError(
            f"checkpoint folder {folder} {problem}; pass a ShadowPEFT adapter folder "
            "(with shadow_config.json) or an HF model folder (with config.json)"
        )
    if (folder / SHADOW_CONFIG).is_file():
        return _load_adapter(folder, base, task, trust_remote_code)
    if (folder / HF_CONFIG).is_file():
        return _load_hf_folder(folder, task, trust_remote_code)
    raise CheckpointError(
        f"{folder} is neither a ShadowPEFT adapter (no {SHADOW_CONFIG}) nor an HF model "
        f"folder (no {HF_CONFIG}); pass the folder save_pretrained wrote"
    )
