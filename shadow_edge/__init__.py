"""shadow-edge: ShadowPEFT training, detaching and edge deployment.

The public names load lazily (PEP 562), so ``import shadow_edge.cli`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    "ShadowConfig": "config",
    "ShadowPeftModel": "model",
    "get_shadow_model": "model",
    "prepare_shadow_model": "backbone",
    "ShadowForCausalLM": "tasks",
    "ShadowForSequenceClassification": "tasks",
    "AutoModelForCausalLMWithHiddenProjection": "projection",
    "AutoModelForCausalLMWithHiddenProjectionConfig": "projection",
    "register_auto_classes": "projection",
    "load_shadow_checkpoint": "checkpoint",
    "ShadowCache": "cache",
    "ShadowEdgeError": "errors",
    "ConfigError": "errors",
    "CheckpointError": "errors",
    "ExportError": "errors",
    "ParityError": "errors",
    "ManifestError": "errors",
}

__all__ = [
    "AutoModelForCausalLMWithHiddenProjection",
    "AutoModelForCausalLMWithHiddenProjectionConfig",
    "CheckpointError",
    "ConfigError",
    "ExportError",
    "ManifestError",
    "ParityError",
    "ShadowCache",
    "ShadowConfig",
    "ShadowEdgeError",
    "ShadowForCausalLM",
    "ShadowForSequenceClassification",
    "ShadowPeftModel",
    "get_shadow_model",
    "load_shadow_checkpoint",
    "prepare_shadow_model",
    "register_auto_classes",
]  # the keys of _LAZY (a literal, so linters see the exports)


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'shadow_edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .backbone import prepare_shadow_model
    from .cache import ShadowCache
    from .checkpoint import load_shadow_checkpoint
    from .config import ShadowConfig
    from .errors import (
        CheckpointError,
        ConfigError,
        ExportError,
        ManifestError,
        ParityError,
        ShadowEdgeError,
    )
    from .model import ShadowPeftModel, get_shadow_model
    from .projection import (
        AutoModelForCausalLMWithHiddenProjection,
        AutoModelForCausalLMWithHiddenProjectionConfig,
        register_auto_classes,
    )
    from .tasks import ShadowForCausalLM, ShadowForSequenceClassification
