"""shadow-edge: ShadowPEFT training, detaching and edge deployment.

The public names load lazily (PEP 562), so ``import shadow_edge.cli`` does not import torch.
``ExportError`` and ``ParityError`` are the exporters' errors (``exporters/errors.py``),
re-exported here where users have imported them; resolving either imports the exporters.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> submodule that defines it (or, for the re-exported exporter errors, the module)
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
    "load_shadow_checkpoint": "loading",
    "ShadowCache": "cache",
    "ShadowEdgeError": "errors",
    "ConfigError": "errors",
    "CheckpointError": "errors",
    "ExportError": "exporters.errors",
    "ParityError": "exporters.errors",
}

__all__ = [
    "AutoModelForCausalLMWithHiddenProjection",
    "AutoModelForCausalLMWithHiddenProjectionConfig",
    "CheckpointError",
    "ConfigError",
    "ExportError",
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
    if "." not in module_name:
        module_name = f"{__name__}.{module_name}"
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from exporters.errors import ExportError, ParityError

    from .backbone import prepare_shadow_model
    from .cache import ShadowCache
    from .config import ShadowConfig
    from .errors import CheckpointError, ConfigError, ShadowEdgeError
    from .loading import load_shadow_checkpoint
    from .model import ShadowPeftModel, get_shadow_model
    from .projection import (
        AutoModelForCausalLMWithHiddenProjection,
        AutoModelForCausalLMWithHiddenProjectionConfig,
        register_auto_classes,
    )
    from .tasks import ShadowForCausalLM, ShadowForSequenceClassification
