"""shadow-edge runtime: run exported shadow models with onnxruntime (no torch).

Imports only onnxruntime, numpy, tokenizers, jinja2 and the standard library (and the
optional llguidance, on the first ``grammar=`` call). Public names load lazily (PEP 562),
so ``from runtime.manifest import read_manifest`` stays cheap.
"""

from __future__ import annotations

import importlib

# public name -> submodule that defines it
_LAZY = {
    "load": "api",
    "info": "api",
    "ShadowGenerator": "api",
    "ShadowClassifier": "api",
    "GenerationResult": "generation",
    "Classification": "classification",
    "SamplingSettings": "sampling",
    "Grammar": "grammar",
    "Tokenizer": "tokenizer",
    "available_providers": "session",
    "Manifest": "manifest",
    "read_manifest": "manifest",
    "write_manifest": "manifest",
    "ShadowRuntimeError": "errors",
    "ModelFolderError": "errors",
    "ManifestVersionError": "errors",
    "InvalidSettingError": "errors",
    "ProviderUnavailableError": "errors",
    "PromptTooLongError": "errors",
    "OnnxRuntimeVersionError": "errors",
    "GrammarError": "errors",
    "MissingDependencyError": "errors",
    "verify_folder": "parity",
}

__all__ = [
    "Classification",
    "GenerationResult",
    "Grammar",
    "GrammarError",
    "InvalidSettingError",
    "Manifest",
    "ManifestVersionError",
    "MissingDependencyError",
    "ModelFolderError",
    "OnnxRuntimeVersionError",
    "PromptTooLongError",
    "ProviderUnavailableError",
    "SamplingSettings",
    "ShadowClassifier",
    "ShadowGenerator",
    "ShadowRuntimeError",
    "Tokenizer",
    "available_providers",
    "info",
    "load",
    "read_manifest",
    "verify_folder",
    "write_manifest",
]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
