"""Import HF peft's ShadowPEFT checkpoints (peft >= 0.21, ``peft_type: "SHADOW"``).

Two layouts, causal LM (``task_type: CAUSAL_LM``) and sequence classification (``SEQ_CLS``):

- **adapter folder** (``PeftModel.save_pretrained``): ``adapter_config.json`` +
  ``adapter_model.safetensors``, used with its base model;
- **standalone folder** (``model.unload_shadow(copy=True).save_pretrained``, a
  ``DetachedShadowModel``): ``config.json`` (the shadow backbone's config, ``architectures:
  ["DetachedShadowModel"]``) + ``model.safetensors``.

Only the detached shadow, ``head(projection(backbone(x)))``, is imported: that is what
peft's own ``unload_shadow()`` runs. peft's per-block networks (GELU, biased Linears, a slot
on every block) are not FORMAT.md's and the detached shadow does not use them, so their keys
(``*.shadow_down.*``, ``*.shadow_up.*``, ``*.shadow_update_{gate,transform}.*``) are skipped.

Key mapping (measured end to end against peft 0.21.2's ``DetachedShadowModel``):

| part | adapter folder | standalone folder |
| --- | --- | --- |
| backbone | ``base_model.shadow_backbone.default.*`` | ``backbone.*`` |
| projection (Hs != H) | ``base_model.shadow_projection.default.weight`` | ``shadow_hidden_projection.weight`` |
| causal-LM head | the base's ``lm_head``, or ``base_model.model.lm_head.*`` with ``modules_to_save`` | ``head.*`` or ``head.modules_to_save.<adapter>.*`` |
| classifier head | ``base_model.shadow_head.default.*`` | ``head.*`` |
| input embeddings | shared: the base's (``share_embeddings`` and Hs == H); else the backbone's | ``backbone.embed_tokens`` (restored by ``copy=True``) |

Semantics taken from peft's ``ShadowModel``: a "mirror" shadow is the base backbone class
built from a copy of its config with ``shadow_num_hidden_layers`` (default 1) layers and
the ``shadow_hidden_size`` / ``shadow_intermediate_size`` / ``shadow_num_attention_heads``
overrides; a shared-embedding shadow is fed the base's input embeddings (GPT-2 keeps an
unused ``wte`` in the adapter, skipped here); the classifier shadow head is a copy of the
base's ``score`` / ``classifier``; every weight is loaded strictly.
"""

from __future__ import annotations

import copy
import inspect
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import AutoConfig, AutoModel, GenerationConfig

from shadow_edge.backbone import get_backbone, input_embeddings_of, shrink_config
from shadow_edge.checkpoint import read_safetensors
from shadow_edge.errors import CheckpointError, ConfigError
from shadow_edge.hf_loading import is_head_key, list_keys, load_pretrained_strict, load_state_strict
from shadow_edge.task_inference import task_from_architectures
from shadow_edge.task_types import PEFT_TASK_TYPES

from .errors import ExportError
from .loaded import (
    CLASSIFIER_ATTRS,
    Loaded,
    copy_fp32,
    id2label_of,
    read_json,
    read_weights,
    tokens_of,
    weight_keys,
)
from .shadow_module import DetachedShadow
from .spec import TEXT_CLASSIFICATION, TEXT_GENERATION, normalize_task

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
STANDALONE_ARCHITECTURE = "DetachedShadowModel"
PEFT_TYPE = "SHADOW"

_BACKBONE = "base_model.shadow_backbone.default."
_PROJECTION = "base_model.shadow_projection.default."
_SHADOW_HEAD = "base_model.shadow_head.default."
_BASE = "base_model.model."
#: peft's per-block injection/update modules: not part of the detached shadow.
_PER_BLOCK = re.compile(r"\.shadow_(down|up|update_gate|update_transform)\.")
# Config fields peft overrides on a mirror shadow (first one the config has wins), as in
# peft's ShadowModel._build_shadow_backbone.
_MIRROR_OVERRIDES = {
    "shadow_hidden_size": ("hidden_size", "n_embd", "d_model"),
    "shadow_intermediate_size": ("intermediate_size", "ffn_dim", "n_inner"),
    "shadow_num_attention_heads": ("num_attention_heads", "n_head", "num_heads"),
}


def is_adapter_folder(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


def is_standalone_folder(folder: Path, config: dict) -> bool:
    """``DetachedShadowModel`` in ``architectures``, or weights keyed ``backbone.*`` + ``head.*``
    (a config that lost its ``architectures``)."""
    if STANDALONE_ARCHITECTURE in (config.get("architectures") or []):
        return True
    keys = weight_keys(folder)
    return bool(keys) and all(k.startswith(("backbone.", "head.", "shadow_hidden_projection."))
                              for k in keys) and any(k.startswith("head.") for k in keys)


# ---- the adapter folder ----
def read_adapter_config(folder: Path) -> dict:
    """``adapter_config.json``, checked to be a SHADOW adapter.

    Raises:
        CheckpointError: unreadable, or another peft method (LoRA, ...).
    """
    config = read_json(folder / ADAPTER_CONFIG)
    peft_type = config.get("peft_type")
    if peft_type != PEFT_TYPE:
        raise CheckpointError(
            f"{folder} is a peft {peft_type} adapter, not a ShadowPEFT (peft_type SHADOW) one; "
            "merge it into its base (merge_and_unload) and export the merged model folder")
    return config


def adapter_task(config: dict, state_keys=(), base_architectures=()) -> tuple[str | None, bool]:
    """``(task, certain)``: ``task_type``, else a ``shadow_head`` (only classifier adapters
    have one) in its weights - both certain -, else the base's architectures; ``None`` when
    nothing says.

    Raises:
        ConfigError: a ``task_type`` other than CAUSAL_LM / SEQ_CLS.
    """
    task_type = config.get("task_type")
    if task_type:
        if task_type not in PEFT_TASK_TYPES.values():
            raise ConfigError(
                f"the peft adapter has task_type {task_type!r}; shadow-edge exports "
                f"{sorted(PEFT_TASK_TYPES.values())} (causal LM and sequence classification) only")
        return normalize_task(task_type), True
    if any(k.startswith(_SHADOW_HEAD) for k in state_keys):
        return TEXT_CLASSIFICATION, True
    found = task_from_architectures(base_architectures)
    return (normalize_task(found) if found else None), False


def adapter_task_of(folder: Path, base=None) -> str | None:
    """:func:`adapter_task` of an adapter folder, reading only its config and key names."""
    config = read_adapter_config(folder)
    chosen = base if base is not None else config.get("base_model_name_or_path")
    return adapter_task(config, _adapter_keys(folder), _architectures(chosen))[0]


def _adapter_keys(folder: Path) -> list[str]:
    try:
        with safe_open(str(folder / ADAPTER_WEIGHTS), framework="pt") as handle:
            return list(handle.keys())
    except (SafetensorError, OSError):
        return []  # the loader reports it


def _architectures(base) -> list[str] | None:
    if isinstance(base, nn.Module):
        return list(getattr(base.config, "architectures", None) or [type(base).__name__])
    if isinstance(base, (str, Path)) and (Path(base) / "config.json").is_file():
        return read_json(Path(base) / "config.json").get("architectures")
    return None


def _load_base(base, task: str, num_labels: int | None, lm_head_saved: bool,
               trust_remote_code: bool) -> nn.Module:
    """The base model, strict on its backbone. A task-head key may differ: the shadow's
    classifier is the adapter's ``shadow_head``, and a saved ``lm_head`` replaces the base's."""
    if isinstance(base, nn.Module):
        return base.eval()
    kwargs = {"dtype": torch.float32, "trust_remote_code": trust_remote_code}
    auto = transformers.AutoModelForCausalLM
    if task == TEXT_CLASSIFICATION:
        auto = transformers.AutoModelForSequenceClassification
        kwargs["num_labels"] = num_labels

    def tolerate(model, key: str) -> bool:
        return is_head_key(model, key) and (
            task == TEXT_CLASSIFICATION or lm_head_saved or key not in model.state_dict())

    return load_pretrained_strict(
        auto, base, what="the base model of the peft adapter", tolerate=tolerate,
        fix="pass --base with the base model folder the adapter was trained on",
        **kwargs).eval()


def _shadow_config_from_path(path: str, trust_remote_code: bool):
    """Config of an explicit ``shadow_model`` (a folder; a projected checkpoint's inner one)."""
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise CheckpointError(
            f"the adapter's shadow_model {path!r} is not a local folder with config.json; "
            "download it and point shadow_model in adapter_config.json at the folder")
    raw = read_json(folder / "config.json")
    if raw.get("model_type") == "causal_lm_with_hidden_projection":
        inner = dict(raw.get("shadow_model_config") or {})
        return AutoConfig.for_model(inner.pop("model_type", None), **inner)
    return AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)


def _build_backbone(config: dict, base: nn.Module, trust_remote_code: bool) -> nn.Module:
    """A fresh (random) shadow backbone shaped as peft builds it."""
    shadow_model = config.get("shadow_model") or "mirror"
    if shadow_model != "mirror":
        return AutoModel.from_config(_shadow_config_from_path(shadow_model, trust_remote_code),
                                     trust_remote_code=trust_remote_code)
    base_backbone = get_backbone(base)
    cfg = shrink_config(base_backbone.config, int(config.get("shadow_num_hidden_layers") or 1))
    for field, names in _MIRROR_OVERRIDES.items():
        value = config.get(field)
        if value is None:
            continue
        name = next((n for n in names if hasattr(cfg, n)), None)
        if name is None:
            raise CheckpointError(f"the adapter sets {field}={value}, but the base config "
                                  f"{type(cfg).__name__} has none of {list(names)}")
        setattr(cfg, name, int(value))
    return type(base_backbone)(cfg)


def _hidden_size(config) -> int:
    return int(next(getattr(config, n) for n in ("hidden_size", "n_embd", "d_model")
                    if hasattr(config, n)))


def _linear_from(state: dict, prefix: str, what: str, fix: str) -> nn.Linear:
    """A Linear from ``{prefix}weight`` (+ ``{prefix}bias``)."""
    weight = state.get(prefix + "weight")
    if weight is None or weight.dim() != 2:
        raise CheckpointError(f"{what}: missing key {prefix}weight (a 2-D weight); {fix}")
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=prefix + "bias" in state)
    load_state_strict(linear, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                      what=what, fix=fix)
    return linear


def load_adapter(folder: Path, base, task: str | None, trust_remote_code: bool) -> Loaded:
    """A peft SHADOW adapter folder and its base -> :class:`Loaded` (unfolded, float32).

    Raises:
        CheckpointError: not a SHADOW adapter, no base, or weights that do not match.
        ConfigError: an unsupported ``task_type`` or a ``task`` the adapter contradicts.
    """
    config = read_adapter_config(folder)
    fix = "export the adapter on the base it was trained on, or re-save it with peft"
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(f"the peft adapter folder {folder} has no {ADAPTER_WEIGHTS}; "
                              "re-save it with save_pretrained(..., safe_serialization=True)")
    state = read_safetensors(folder / ADAPTER_WEIGHTS)
    chosen = base if base is not None else config.get("base_model_name_or_path")
    if not chosen:
        raise CheckpointError(f"the peft adapter {folder} records no base_model_name_or_path; "
                              "pass the base with --base PATH_OR_ID (base=... in Python)")
    base_dir = Path(chosen) if isinstance(chosen, (str, Path)) and Path(chosen).is_dir() else None
    task = _settle_task(task, *adapter_task(config, state, _architectures(chosen)), folder)
    head_weight = state.get(_SHADOW_HEAD + "weight")
    if task == TEXT_CLASSIFICATION and (head_weight is None or head_weight.dim() != 2):
        raise CheckpointError(f"the peft classifier adapter {folder} has no shadow classifier "
                              f"({_SHADOW_HEAD}weight); {fix}")
    overrides = {k[len(_BASE):]: v for k, v in state.items()
                 if k.startswith(_BASE) and not _PER_BLOCK.search(k)}
    num_labels = int(head_weight.shape[0]) if task == TEXT_CLASSIFICATION else None
    base_model = _load_base(chosen, task, num_labels,
                            any(k.startswith("lm_head.") for k in overrides), trust_remote_code)
    _check_overrides(base_model, overrides, fix)

    backbone = _build_backbone(config, base_model, trust_remote_code)
    base_hidden, shadow_hidden = _hidden_size(base_model.config), _hidden_size(backbone.config)
    accepts_embeds = "inputs_embeds" in inspect.signature(backbone.forward).parameters
    share = bool(config.get("share_embeddings", True)) and (config.get("shadow_model") or
            "mirror") == "mirror" and accepts_embeds and shadow_hidden == base_hidden
    backbone_state = {k[len(_BACKBONE):]: v for k, v in state.items() if k.startswith(_BACKBONE)}
    embedding_keys = set()
    if share:  # fed the base's (possibly trained, modules_to_save) input embeddings
        embeddings = _base_module(base_model, base_model.get_input_embeddings(), overrides)
        name = next(n for n, m in backbone.named_modules() if m is input_embeddings_of(backbone))
        embedding_keys = {f"{name}.{k}" for k in embeddings.state_dict()}
        unused = sorted(embedding_keys & set(backbone_state))  # GPT-2 keeps its own wte
        if unused:
            logger.debug("skipping %s: the shadow is fed the base's input embeddings", unused)
        backbone_state = {k: v for k, v in backbone_state.items() if k not in embedding_keys}
    load_state_strict(backbone, backbone_state, what="the peft shadow backbone", fix=fix,
                      missing_ok=embedding_keys.__contains__)
    if share:
        backbone.set_input_embeddings(copy_fp32(embeddings))

    projection = None
    if shadow_hidden != base_hidden or any(k.startswith(_PROJECTION) for k in state):
        projection = _linear_from(state, _PROJECTION, "the peft shadow projection", fix)
        if projection.bias is not None or tuple(projection.weight.shape) != (base_hidden, shadow_hidden):
            raise CheckpointError(
                f"the peft shadow projection is {tuple(projection.weight.shape)} but the base and "
                f"shadow hidden sizes need a bias-free ({base_hidden}, {shadow_hidden}); {fix}")
    if task == TEXT_CLASSIFICATION:
        head = _classifier_head(base_model, state, fix)
        id2label = id2label_of(base_model.config, head.out_features)
    else:
        output = base_model.get_output_embeddings()
        if output is None:
            raise ExportError(f"{type(base_model).__name__} has no lm_head; pass a causal-LM base")
        head, id2label = _base_module(base_model, output, overrides), None

    _check_all_used(state, fix)
    detached = DetachedShadow(copy_fp32(backbone), copy_fp32(head), task=task,
                              projection=copy_fp32(projection) if projection else None,
                              id2label=id2label,
                              problem_type=getattr(base_model.config, "problem_type", None)
                              if id2label else None).eval()
    base_name = str(chosen) if isinstance(chosen, (str, Path)) else getattr(
        base_model.config, "_name_or_path", None)
    return Loaded(model=detached, reference=detached.logits, task=task, tokens=tokens_of(base_model),
                  checkpoint=str(folder.absolute()), base=base_name or None, kind="adapter",
                  asset_dirs=[folder] + ([base_dir] if base_dir else []))


def _settle_task(requested: str | None, recorded: str | None, certain: bool, folder: Path) -> str:
    """The requested task overrides a guess, never what the adapter itself says."""
    if requested is None:
        return recorded or TEXT_GENERATION
    requested = normalize_task(requested)
    if certain and requested != recorded:
        raise ConfigError(f"{folder} is a {recorded} peft adapter, but task {requested!r} was "
                          "requested; drop --task")
    return requested


def _check_overrides(base_model: nn.Module, overrides: dict, fix: str) -> None:
    """``modules_to_save`` copies must be weights of the base, of the same shape."""
    expected = base_model.state_dict()
    unknown = sorted(_BASE + k for k in overrides if k not in expected)
    wrong = sorted(_BASE + k for k, v in overrides.items()
                   if k in expected and tuple(v.shape) != tuple(expected[k].shape))
    if unknown or wrong:
        parts = ([f"unexpected keys: {list_keys(unknown)}"] if unknown else []) + (
            [f"shapes that differ from the base's: {list_keys(wrong)}"] if wrong else [])
        raise CheckpointError(f"the peft adapter's saved base modules do not match "
                              f"{type(base_model).__name__} ({'; '.join(parts)}); {fix}")


def _base_module(base_model: nn.Module, module: nn.Module, overrides: dict) -> nn.Module:
    """A copy of ``module`` (a submodule of the base) with its ``modules_to_save`` weights."""
    name = next(n for n, m in base_model.named_modules() if m is module)
    saved = {k[len(name) + 1:]: v for k, v in overrides.items() if k.startswith(name + ".")}
    result = copy.deepcopy(module)
    if saved:
        result.load_state_dict(saved, strict=True)
        logger.info("using the adapter's trained %s (modules_to_save)", name)
    return result


def _classifier_head(base_model: nn.Module, state: dict, fix: str) -> nn.Module:
    base_head = next((getattr(base_model, a) for a in CLASSIFIER_ATTRS if hasattr(base_model, a)),
                     None)
    if not isinstance(base_head, nn.Linear):
        raise ExportError(f"{type(base_model).__name__} has no linear classifier head "
                          f"{CLASSIFIER_ATTRS}; only last-token-pooled linear classifiers export")
    head = copy.deepcopy(base_head)
    load_state_strict(head, {k[len(_SHADOW_HEAD):]: v for k, v in state.items()
                             if k.startswith(_SHADOW_HEAD)}, what="the peft shadow head", fix=fix)
    return head


def _check_all_used(state: dict, fix: str) -> None:
    known = (_BACKBONE, _PROJECTION, _SHADOW_HEAD, _BASE)
    unknown = [k for k in state if not k.startswith(known)]
    if unknown:
        raise CheckpointError(f"the peft adapter holds keys shadow-edge does not know: "
                              f"{list_keys(unknown)}; {fix}")


# ---- the standalone folder ----
def load_standalone(folder: Path, task: str | None, trust_remote_code: bool) -> Loaded:
    """A ``DetachedShadowModel`` folder (``unload_shadow(copy=True).save_pretrained``).

    The task comes from the head: as many rows as the vocabulary means a causal LM, else a
    classifier (``task`` may only confirm it).

    Raises:
        CheckpointError: weights that do not match the backbone config, a missing head or
            embeddings (``copy=False`` saves leave them out).
        ConfigError: ``task`` contradicts the head.
    """
    fix = ("re-save it with model.unload_shadow(copy=True).save_pretrained(...), or export the "
           "peft adapter folder with its base instead")
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    state = read_weights(folder)
    backbone = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    load_state_strict(backbone, backbone_state, what=f"the peft standalone shadow in {folder}",
                      fix=fix)
    projection = None
    if "shadow_hidden_projection.weight" in state:
        projection = _linear_from(state, "shadow_hidden_projection.", "the shadow projection", fix)
    head = _standalone_head(state, fix)
    rest = [k for k in state if not k.startswith(("backbone.", "head.", "shadow_hidden_projection."))]
    if rest:
        raise CheckpointError(f"{folder} holds keys a DetachedShadowModel does not have: "
                              f"{list_keys(rest)}; {fix}")
    actual = TEXT_GENERATION if head.out_features == config.vocab_size else TEXT_CLASSIFICATION
    if task is not None and normalize_task(task) != actual:
        raise ConfigError(f"{folder} is a {actual} model (its head has {head.out_features} "
                          f"outputs, the vocabulary {config.vocab_size}), but task "
                          f"{normalize_task(task)!r} was requested; drop --task")
    id2label = id2label_of(config, head.out_features) if actual == TEXT_CLASSIFICATION else None
    detached = DetachedShadow(copy_fp32(backbone), copy_fp32(head), task=actual,
                              projection=copy_fp32(projection) if projection else None,
                              id2label=id2label,
                              problem_type=getattr(config, "problem_type", None)
                              if id2label else None).eval()
    generation = (GenerationConfig.from_pretrained(str(folder))
                  if (folder / "generation_config.json").is_file() else None)
    tokens = tokens_of(SimpleNamespace(config=config, generation_config=generation))
    return Loaded(model=detached, reference=detached.logits, task=actual, tokens=tokens,
                  checkpoint=str(folder.absolute()), kind="standalone", asset_dirs=[folder])


def standalone_task_of(folder: Path, config: dict) -> str | None:
    """The task of a standalone folder from its head's rows, reading only key names/shapes."""
    shapes = weight_keys(folder)
    rows = next((shape[0] for key, shape in shapes.items() if len(shape) == 2 and (
        key == "head.weight" or re.fullmatch(r"head\.modules_to_save\.[^.]+\.weight", key))),
        None)
    if rows is None or config.get("vocab_size") is None:
        return None
    return TEXT_GENERATION if rows == config["vocab_size"] else TEXT_CLASSIFICATION


def _standalone_head(state: dict, fix: str) -> nn.Linear:
    """``head.*``, or the trained copy ``head.modules_to_save.<adapter>.*`` of a head that
    was in ``modules_to_save`` (its frozen ``head.original_module.*`` is not used)."""
    copies = sorted({k.split(".")[2] for k in state if k.startswith("head.modules_to_save.")})
    if len(copies) > 1:
        raise CheckpointError(f"the standalone head holds several adapters' copies {copies}; "
                              "unload one adapter with unload_shadow(adapter_name=..., copy=True)")
    if copies:
        unused = [k for k in state if k.startswith("head.original_module.")]
        logger.debug("using head.modules_to_save.%s; skipping %s", copies[0], unused)
        prefix = f"head.modules_to_save.{copies[0]}."
        others = [k for k in state if k.startswith("head.") and not k.startswith(
            (prefix, "head.original_module."))]
    else:
        prefix = "head."
        others = []
    if others:
        raise CheckpointError(f"the standalone head has keys a Linear head does not: "
                              f"{list_keys(others)}; {fix}")
    return _linear_from(state, prefix, "the standalone shadow head", fix)
