"""Recognise an export source and turn it into an (unfolded) :class:`DetachedShadow`.

Sources: our / shadow-peft 0.1.x adapter folders (``shadow_config.json``), HF peft SHADOW
adapter and standalone folders (``peft_format.py``), HF model folders (``*ForCausalLM``,
``*ForSequenceClassification``, the projected causal LM) and in-memory models. Every folder
is loaded strictly: a weight the model has but the folder lacks (it would be random), a
weight the model does not have, or a shape that differs is a ``CheckpointError`` naming the
keys, so no export can hold weights that did not come from the source. An option a source
cannot use (``base`` for anything but an adapter) is a ``ConfigError``.

The task comes from what the source holds (:func:`recorded_task_of`); ``task`` overrides it
only where the source does not say (and must agree where it does).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import transformers
from torch import nn

import shadow_edge
from shadow_edge.backbone import input_embeddings_of
from shadow_edge.encoder_heads import EncoderClassifierHead
from shadow_edge.encoders import drop_pooler
from shadow_edge.errors import CheckpointError, ConfigError
from shadow_edge.hf_loading import LOAD_ERRORS, load_pretrained_strict
from shadow_edge.task_inference import FROM_BASE, checkpoint_task_type, task_from_architectures

from . import peft_format
from .encoders import check_encoder_folder, encoder_head, is_encoder
from .errors import ExportError
from .loaded import (
    CLASSIFIER_ATTRS,
    Loaded,
    copy_fp32,
    id2label_of,
    read_json,
    tokens_of,
    weight_keys,
)
from .shadow_module import DetachedShadow
from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION, normalize_task

logger = logging.getLogger(__name__)

SHADOW_CONFIG = "shadow_config.json"
HF_CONFIG = "config.json"
PROJECTION_MODEL_TYPE = "causal_lm_with_hidden_projection"


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


def _optional(**kwargs) -> dict:
    return {key: value for key, value in kwargs.items() if value is not None}


def _hf_reference(model: nn.Module) -> Callable:
    @torch.no_grad()
    def run(input_ids, attention_mask, position_ids=None, *, token_type_ids=None):
        kwargs = _optional(position_ids=position_ids, token_type_ids=token_type_ids)
        return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits.float()

    return run


def from_hf_model(model: nn.Module, *, task: str | None = None, checkpoint: str | None = None,
                  asset_dirs: list[Path] | None = None, share_weights: bool = False) -> Loaded:
    """A standalone HF model (``*ForCausalLM``, ``*ForSequenceClassification``, projected LM).

    ``share_weights``: the detached model shares ``model``'s float32 tensors
    (:func:`exporters.loaded.copy_fp32`); only for a model loaded here from a folder.
    """
    model.eval()
    own = partial(copy_fp32, share_weights=share_weights)
    what = checkpoint or type(model).__name__
    if is_projection_model(model):
        actual = TEXT_GENERATION
        backbone, head = model.shadow_model, model.lm_head
        projection = model.shadow_hidden_projection
        if not isinstance(projection, nn.Linear):
            projection = None  # identity when the hidden sizes match
    elif is_encoder(model):  # first-token head of its own architecture, classification only
        actual, head, projection = TEXT_CLASSIFICATION, encoder_head(model, task), None
        backbone = own(model.base_model)
        drop_pooler(backbone)  # BERT's pooler belongs to the head
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
    id2label = None
    if task == TEXT_CLASSIFICATION:
        num_labels = (head.num_labels if isinstance(head, EncoderClassifierHead)
                      else head.out_features)
        id2label = id2label_of(model.config, num_labels)
    detached = DetachedShadow(
        own(backbone), own(head), task=task,
        projection=own(projection) if projection is not None else None, id2label=id2label,
        problem_type=getattr(model.config, "problem_type", None) if id2label is not None else None,
    )
    return Loaded(
        model=detached.eval(), reference=_hf_reference(model), task=task, tokens=tokens_of(model),
        checkpoint=checkpoint, kind="standalone", asset_dirs=list(asset_dirs or []),
    )


def _shadow_reference(model) -> Callable:
    @torch.no_grad()
    def run(input_ids, attention_mask, position_ids=None, *, token_type_ids=None):
        previous = getattr(model, "inference_mode", None)
        model.set_inference_mode("shadow_only")
        try:
            kwargs = _optional(position_ids=position_ids, token_type_ids=token_type_ids)
            out = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            if isinstance(previous, str):
                model.set_inference_mode(previous)
        return out.logits.float()

    return run


def from_shadow_model(model, *, task: str | None = None, checkpoint: str | None = None,
                      base: str | None = None, asset_dirs: list[Path] | None = None,
                      share_weights: bool = False) -> Loaded:
    """An in-memory ``ShadowForCausalLM`` / ``ShadowForSequenceClassification``.

    ``share_weights``: as in :func:`from_hf_model` (for an adapter loaded here).
    """
    model.eval()
    own = partial(copy_fp32, share_weights=share_weights)
    peft = model.peft_model
    if hasattr(model, "shadow_lm_head"):
        actual, head = TEXT_GENERATION, model.shadow_lm_head
    else:
        actual, head = TEXT_CLASSIFICATION, model.shadow_classifier_head
    task = _check_task(task, actual, checkpoint or type(model).__name__)
    backbone = own(peft.shadow_model)
    if input_embeddings_of(backbone) is None:  # transformers 5 raises instead of None
        backbone.set_input_embeddings(own(peft.shadow_input_embeddings()))
    projection = peft.shadow_hidden_projection
    base_model = peft.base_model
    id2label = None
    if task == TEXT_CLASSIFICATION:
        labels = getattr(head, "num_labels", None) or head.out_features  # encoder heads
        id2label = id2label_of(base_model.config, labels)
    detached = DetachedShadow(
        backbone, own(head), task=task,
        projection=own(projection) if isinstance(projection, nn.Linear) else None,
        id2label=id2label,
        problem_type=getattr(base_model.config, "problem_type", None) if id2label else None,
    )
    return Loaded(
        model=detached.eval(), reference=_shadow_reference(model), task=task,
        tokens=tokens_of(base_model), checkpoint=checkpoint, base=base, kind="adapter",
        asset_dirs=list(asset_dirs or []),
    )


def _hf_folder_task(folder: Path, config: dict) -> str | None:
    """An HF folder's task: its ``architectures``, else the head its weights hold."""
    if config.get("model_type") == PROJECTION_MODEL_TYPE:
        return TEXT_GENERATION
    if is_encoder(config):  # encoders export only as classifiers
        return TEXT_CLASSIFICATION
    found = task_from_architectures(config.get("architectures"))
    if found:
        return normalize_task(found)
    heads = {key.split(".", 1)[0] for key in weight_keys(folder)}
    if heads & set(CLASSIFIER_ATTRS):
        return TEXT_CLASSIFICATION
    return TEXT_GENERATION if "lm_head" in heads else None


def _load_hf_folder(folder: Path, config: dict, task: str | None,
                    trust_remote_code: bool) -> Loaded:
    fix = ("re-save the model with save_pretrained; for a ShadowPEFT or peft checkpoint, "
           "export its adapter folder")
    if is_encoder(config):
        check_encoder_folder(folder, config, task)
    recorded = _hf_folder_task(folder, config)
    if recorded is not None:
        task = _check_task(task, recorded, str(folder))
    if config.get("model_type") == PROJECTION_MODEL_TYPE:
        try:  # strict itself (missing/unexpected keys and shapes are CheckpointErrors)
            model = shadow_edge.AutoModelForCausalLMWithHiddenProjection.from_pretrained(
                str(folder), trust_remote_code=trust_remote_code)
        except LOAD_ERRORS as error:
            raise CheckpointError(f"cannot load the model in {folder}: {error}; the weights are "
                                  f"missing or corrupt - {fix}") from error
    else:
        auto = (transformers.AutoModelForSequenceClassification if task == TEXT_CLASSIFICATION
                else transformers.AutoModelForCausalLM)
        model = load_pretrained_strict(auto, folder, what="the architecture in its config.json",
                                       fix=fix, dtype=torch.float32,
                                       trust_remote_code=trust_remote_code)
    return from_hf_model(model, task=task, checkpoint=str(folder.absolute()), asset_dirs=[folder],
                         share_weights=True)


def _load_adapter(folder: Path, base, task: str | None, trust_remote_code: bool) -> Loaded:
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
    found, evidence = checkpoint_task_type(folder, chosen)
    found = normalize_task(found) if found else None
    if task is None:
        task = found
    elif found is not None and task != found and evidence != FROM_BASE:
        # fail before loading the base (the core would load it, then refuse the wrapper)
        raise ConfigError(
            f"{folder} is a {found} checkpoint ({evidence}), but task {task!r} was requested; "
            f"drop --task or pass task={found!r}"
        )
    model = shadow_edge.load_shadow_checkpoint(
        str(folder), base=chosen, task=task, trust_remote_code=trust_remote_code
    )
    base_name = chosen if isinstance(chosen, (str, Path)) else getattr(
        getattr(chosen, "config", None), "_name_or_path", None)
    asset_dirs = [folder]
    if isinstance(chosen, (str, Path)) and Path(chosen).is_dir():
        asset_dirs.append(Path(chosen))
    # a base the caller passed in as a model keeps its own tensors
    return from_shadow_model(model, task=task, checkpoint=str(folder.absolute()),
                             base=str(base_name) if base_name else None, asset_dirs=asset_dirs,
                             share_weights=not isinstance(chosen, nn.Module))


def recorded_task_of(folder: str | Path, base=None) -> str | None:
    """The task a checkpoint folder holds, without loading weights (``None``: it does not say).

    - our / shadow-peft adapters: ``task_type``, the saved heads, ``modules_to_save``, the
      base's ``architectures`` (:func:`shadow_edge.task_inference.checkpoint_task_type`);
    - peft adapters: ``task_type``, a ``shadow_head``, the base's ``architectures``;
    - peft standalone folders: the head's rows (the vocabulary size means a causal LM);
    - HF folders: ``architectures``, else the head in the weights.

    Raises:
        CheckpointError: a config file is unreadable.
    """
    folder = Path(folder)
    if (folder / SHADOW_CONFIG).is_file():
        found = checkpoint_task_type(folder, base)[0]
        return normalize_task(found) if found else None
    if peft_format.is_adapter_folder(folder):
        return peft_format.adapter_task_of(folder, base)
    if (folder / HF_CONFIG).is_file():
        config = read_json(folder / HF_CONFIG)
        if peft_format.is_standalone_folder(folder, config):
            return peft_format.standalone_task_of(folder, config)
        return _hf_folder_task(folder, config)
    return None


def _refuse_base(base, what: str) -> None:
    if base is not None:
        raise ConfigError(f"{what} needs no base model (it holds all its weights); drop --base "
                          "(base= in Python), which only applies to adapter checkpoints")


def load(source, *, base=None, task: str | None = None, trust_remote_code: bool = False) -> Loaded:
    """Dispatch on the kind of ``source`` (see :mod:`exporters.folding`).

    Raises:
        ConfigError: ``base`` for a source that has all its weights; a ``task`` the source
            contradicts.
        CheckpointError: an unknown, unreadable or mismatched checkpoint.
    """
    if task is not None:
        task = normalize_task(task)
    if isinstance(source, DetachedShadow):
        _refuse_base(base, "a DetachedShadow")
        source.eval()
        task = _check_task(task, source.task, "model")
        # the export folds, unties and releases its own copy, never the caller's model
        return Loaded(model=copy_fp32(source), reference=source.logits, task=task,
                      tokens=tokens_of(source.backbone))
    if isinstance(source, nn.Module):
        _refuse_base(base, f"an in-memory {type(source).__name__}")
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
    if peft_format.is_adapter_folder(folder):
        return peft_format.load_adapter(folder, base, task, trust_remote_code)
    if (folder / HF_CONFIG).is_file():
        config = read_json(folder / HF_CONFIG)
        if peft_format.is_standalone_folder(folder, config):
            _refuse_base(base, f"{folder} (a peft standalone shadow, DetachedShadowModel)")
            return peft_format.load_standalone(folder, task, trust_remote_code)
        _refuse_base(base, f"the HF model folder {folder}")
        return _load_hf_folder(folder, config, task, trust_remote_code)
    raise CheckpointError(
        f"{folder} is neither a ShadowPEFT adapter (no {SHADOW_CONFIG} or "
        f"{peft_format.ADAPTER_CONFIG}) nor a model folder (no {HF_CONFIG}); pass the folder "
        "save_pretrained wrote"
    )
