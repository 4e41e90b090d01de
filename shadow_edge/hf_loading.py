"""Load Hugging Face model folders strictly: every weight the model has comes from the file.

``from_pretrained`` initialises missing weights at random, drops unexpected ones and (with
``ignore_mismatched_sizes``) re-initialises weights of the wrong shape; it only logs a "load
report". A model built that way runs, exports and even passes a parity check against
itself, so :func:`load_pretrained_strict` turns the report into a ``CheckpointError`` that
names the keys. A caller may tolerate keys it replaces itself (e.g. a base's task head that
the adapter checkpoint brings) with ``tolerate``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from .errors import CheckpointError
from .quiet import drop_log_messages, no_transformers_progress_bars

logger = logging.getLogger(__name__)

try:
    from safetensors import SafetensorError
except ImportError:  # pragma: no cover - older safetensors
    SafetensorError = OSError
#: What transformers / safetensors raise for a folder whose files are missing or unreadable.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError)


def list_keys(keys, limit: int = 6) -> str:
    """``"a, b, c"``, cut after ``limit`` names with the total: keys for one-line messages."""
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


@dataclass
class LoadReport:
    """The keys a load did not match: ``missing`` (in the model, not the file: they would be
    random), ``unexpected`` (in the file, not the model: dropped) and ``mismatched``
    (``(key, shape in file, shape in model)``: they would be re-initialised)."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line: ``missing keys: ...; unexpected keys: ...; shape mismatches: ...``."""
        parts = []
        if self.missing:
            parts.append(f"missing keys: {list_keys(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys: {list_keys(self.unexpected)}")
        if self.mismatched:
            parts.append("shape mismatches: " + ", ".join(
                f"{key} is {tuple(saved)} in the file but {tuple(expected)} in the model"
                for key, saved, expected in self.mismatched[:4]))
        return "; ".join(parts)


def is_head_key(model: nn.Module, key: str) -> bool:
    """Whether ``key`` lies outside ``model``'s backbone (``model.`` / ``transformer.``), i.e.
    belongs to a task head such as ``lm_head`` or ``score``."""
    prefix = getattr(model, "base_model_prefix", "") or ""
    return bool(prefix) and not key.startswith(prefix + ".")


def report_of(info: dict) -> LoadReport:
    """A :class:`LoadReport` from transformers' ``output_loading_info`` dict."""
    return LoadReport(
        missing=sorted(info.get("missing_keys") or []),
        unexpected=sorted(info.get("unexpected_keys") or []),
        mismatched=sorted((key, tuple(saved), tuple(expected))
                          for key, saved, expected in info.get("mismatched_keys") or []),
    )


def load_pretrained_strict(
    auto_class,
    name_or_path: str | os.PathLike,
    *,
    what: str,
    tolerate: Callable[[nn.Module, str], bool] | None = None,
    fix: str = "re-save the model with save_pretrained",
    **kwargs,
) -> nn.Module:
    """``auto_class.from_pretrained(name_or_path, **kwargs)`` that refuses any key mismatch.

    Args:
        auto_class: e.g. ``transformers.AutoModelForCausalLM``.
        name_or_path: model folder or Hub id.
        what: how messages name the model (``"the base model"``).
        tolerate: ``tolerate(model, key) -> True`` for a missing or unexpected key the
            caller accounts for (logged at debug level); shape mismatches are never tolerated.
        fix: the advice that ends the error message.
        **kwargs: passed to ``from_pretrained`` (``dtype``, ``trust_remote_code``, ...).

    Raises:
        CheckpointError: the folder cannot be read, or its weights do not match the model
            built from its config (the keys and shapes are named).
    """
    try:
        # transformers' "LOAD REPORT" table repeats what the strict check below does with
        # the same keys: every unexplained key becomes a CheckpointError, the tolerated ones
        # (a base's task head that the adapter replaces, e.g. "score.weight MISSING") are
        # logged at debug level. Its "Loading weights" bar takes well under a second.
        with drop_log_messages("transformers.modeling_utils", "LOAD REPORT"), \
                no_transformers_progress_bars():
            model, info = auto_class.from_pretrained(
                os.fspath(name_or_path), output_loading_info=True, ignore_mismatched_sizes=True,
                **kwargs)
    except LOAD_ERRORS as error:
        raise CheckpointError(
            f"Cannot load {what} from {name_or_path}: {error}; the files are missing or "
            f"corrupt - {fix}") from error
    report = report_of(info)
    if tolerate is not None:
        accepted = [k for k in report.missing + report.unexpected if tolerate(model, k)]
        if accepted:
            logger.debug("%s: keys accounted for by the caller: %s", what, accepted)
        report.missing = [k for k in report.missing if k not in accepted]
        report.unexpected = [k for k in report.unexpected if k not in accepted]
    if report:
        raise CheckpointError(
            f"The weights in {name_or_path} do not match {what} ({type(model).__name__}): "
            f"{report.describe()}; {fix}")
    return model


def load_state_strict(module: nn.Module, state: dict, *, what: str, fix: str,
                      missing_ok: Callable[[str], bool] | None = None) -> None:
    """Copy ``state`` (key -> tensor) into ``module``; every key must match in name and shape.

    Args:
        module: the target; its ``state_dict()`` keys are the expected ones.
        state: tensors from a file, keys relative to ``module``.
        what: how messages name the weights (``"the shadow backbone"``).
        fix: the advice that ends the error message.
        missing_ok: ``missing_ok(key) -> True`` for a key the caller fills itself.

    Raises:
        CheckpointError: missing, unexpected or wrongly shaped keys (all named).
    """
    expected = module.state_dict()
    report = LoadReport(
        missing=sorted(k for k in expected if k not in state and not (missing_ok and missing_ok(k))),
        unexpected=sorted(k for k in state if k not in expected),
        mismatched=sorted((k, tuple(v.shape), tuple(expected[k].shape)) for k, v in state.items()
                          if k in expected and tuple(v.shape) != tuple(expected[k].shape)),
    )
    if report:
        raise CheckpointError(f"The weights of {what} do not match its architecture "
                              f"({type(module).__name__}): {report.describe()}; {fix}")
    module.load_state_dict(state, strict=False)
