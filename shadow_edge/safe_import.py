"""Import classes named by strings in config files, refusing code outside transformers.

Checkpoint configs (e.g. the projected model's ``shadow_model_class``) name Python classes as
``"module:Class"`` strings. Importing an arbitrary module runs its code, so a config file from
an untrusted source could run anything. This module imports such strings only from the
``transformers`` package itself, unless the caller passes ``trust_remote_code=True`` (the
same opt-in name and meaning as in ``transformers``' ``from_pretrained``).
"""

from __future__ import annotations

import importlib
import logging

from .errors import ConfigError

logger = logging.getLogger(__name__)

_TRUSTED_PACKAGE = "transformers"


def _is_trusted_module(module_name: str) -> bool:
    """True when ``module_name`` is ``transformers`` or one of its submodules."""
    return module_name == _TRUSTED_PACKAGE or module_name.startswith(_TRUSTED_PACKAGE + ".")


def split_class_spec(spec: str) -> tuple[str, str]:
    """Split ``"pkg.module:Class"`` or ``"pkg.module.Class"`` into ``(module, qualname)``.

    The colon form may name a nested class (``"pkg.module:Outer.Inner"``); the dotted form
    takes the last component as the class name.

    Raises:
        ConfigError: ``spec`` is not a string, or not of either form, or a part is not a
            Python identifier.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"Class name {spec!r} in the config is not a 'module:Class' string; "
            "fix the config, e.g. 'transformers.models.llama.modeling_llama:LlamaModel'."
        )
    spec = spec.strip()
    if spec.count(":") > 1:
        raise ConfigError(
            f"Class name {spec!r} has more than one ':'; use 'module:Class', "
            "e.g. 'transformers.models.llama.modeling_llama:LlamaModel'."
        )
    if ":" in spec:
        module_name, qualname = spec.split(":")
    else:
        module_name, _, qualname = spec.rpartition(".")
    parts = module_name.split(".") + qualname.split(".")
    if not module_name or not qualname or not all(p.isidentifier() for p in parts):
        raise ConfigError(
            f"Class name {spec!r} is not of the form 'module:Class' or 'module.Class'; "
            "fix the config, e.g. 'transformers.models.llama.modeling_llama:LlamaModel'."
        )
    return module_name, qualname


def import_class(
    spec: str,
    *,
    trust_remote_code: bool = False,
    expected_base: type | tuple[type, ...] | None = None,
) -> type:
    """Import the class named by ``spec`` (``"module:Class"`` or ``"module.Class"``).

    Without ``trust_remote_code`` both the named module and the module that defines the
    class must be ``transformers`` or one of its submodules, and every step of a nested
    name must be a class (so ``"transformers.x:os.system"``-style re-exports are refused).

    Args:
        spec: the string read from a config file.
        trust_remote_code: allow modules outside ``transformers``. Importing a module runs
            its code: pass ``True`` only for config files from a source you trust.
        expected_base: when given, the class must be a subclass of it (or of one of them),
            e.g. ``transformers.PreTrainedModel`` or ``transformers.PretrainedConfig``.

    Returns:
        The class object.

    Raises:
        ConfigError: malformed ``spec``; a module outside transformers without
            ``trust_remote_code=True``; a module or attribute that does not exist; an object
            that is not a class; a class that does not derive from ``expected_base``.
            The message names ``spec`` and the fix.
    """
    module_name, qualname = split_class_spec(spec)
    if not trust_remote_code and not _is_trusted_module(module_name):
        raise ConfigError(
            f"Refusing to import {spec!r}: the config names a class outside the transformers "
            "package, and importing it would run its code. If you trust the source of this "
            "config, pass trust_remote_code=True."
        )
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"Cannot import module {module_name!r} named by {spec!r} in the config ({exc}). "
            "Install the package that provides it (for transformers classes: a transformers "
            "version that has this model) or fix the class name in the config."
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ConfigError(
                f"{spec!r} does not exist: {module_name!r} has no attribute {qualname!r}. "
                "Fix the class name in the config or install a transformers version that "
                "provides it."
            ) from exc
        if not isinstance(obj, type):
            raise ConfigError(
                f"{spec!r} does not name a class ({part!r} is a {type(obj).__name__}); "
                "config files may only name classes, e.g. "
                "'transformers.models.llama.modeling_llama:LlamaModel'."
            )
    if not trust_remote_code and not _is_trusted_module(getattr(obj, "__module__", "") or ""):
        raise ConfigError(
            f"Refusing to import {spec!r}: it resolves to {obj.__module__}.{obj.__qualname__}, "
            "which is defined outside the transformers package. If you trust the source of "
            "this config, pass trust_remote_code=True."
        )
    if expected_base is not None and not issubclass(obj, expected_base):
        bases = expected_base if isinstance(expected_base, tuple) else (expected_base,)
        names = " or ".join(b.__name__ for b in bases)
        raise ConfigError(
            f"{spec!r} is not a subclass of {names}; fix the class name in the config "
            f"(it must name a {names} class)."
        )
    logger.debug("imported %s for config string %r", obj, spec)
    return obj
