"""Keep third-party output that shadow-edge handles on purpose out of the user's way.

Each helper is a context manager used *at the call site* that handles the cause, with a
comment there saying why the output is redundant (e.g. transformers' "LOAD REPORT" for a base
whose task head the adapter replaces: ``shadow_edge.hf_loading`` checks every key itself).
Nothing is filtered globally, and everything stays visible when :func:`show_everything` is
true: ``SHADOW_EDGE_DEBUG=1``, or our loggers at INFO or below (``shadow-edge -v``, or a
host program's ``logging.basicConfig(level=logging.INFO)``).

Imports only the standard library (the CLI imports it without torch).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import warnings
from collections.abc import Iterator

#: Environment variable that shows tracebacks (CLI) and all third-party output.
DEBUG_ENV = "SHADOW_EDGE_DEBUG"
#: The logger whose level ``-v`` lowers (the CLI sets ``exporters`` and ``runtime`` alike).
OUR_LOGGER = "shadow_edge"


def debug_enabled() -> bool:
    """True when ``SHADOW_EDGE_DEBUG`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def show_everything() -> bool:
    """True when nothing should be filtered: :func:`debug_enabled`, or the ``shadow_edge``
    logger is enabled for INFO (``shadow-edge -v``)."""
    return debug_enabled() or logging.getLogger(OUR_LOGGER).isEnabledFor(logging.INFO)


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextlib.contextmanager
def drop_log_messages(logger_name: str, *fragments: str) -> Iterator[None]:
    """While the block runs, drop records of the logger ``logger_name`` whose message holds
    any of ``fragments``; other records of that logger pass. A no-op when
    :func:`show_everything`."""
    if show_everything():
        yield
        return
    logger = logging.getLogger(logger_name)
    drop = _DropMessages(fragments)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def ignore_warnings(*categories: type[Warning]) -> Iterator[None]:
    """``warnings.catch_warnings`` that ignores ``categories`` (default: all) in the block;
    a no-op when :func:`show_everything`."""
    if show_everything():
        yield
        return
    with warnings.catch_warnings():
        for category in categories or (Warning,):
            warnings.simplefilter("ignore", category)
        yield


@contextlib.contextmanager
def no_transformers_progress_bars() -> Iterator[None]:
    """Hide transformers' progress bars (e.g. "Loading weights") in the block; restored
    after. A no-op when :func:`show_everything`."""
    if show_everything():
        yield
        return
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def no_gguf_progress_bars() -> Iterator[None]:
    """Hide the "Converting and de-quantizing GGUF tensors" bar of transformers' GGUF loader
    in the block (it calls ``tqdm`` directly, so transformers' own switch misses it), plus
    transformers' other bars. A no-op when :func:`show_everything`."""
    if show_everything():
        yield
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(no_transformers_progress_bars())
        try:
            gguf = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
        except ImportError:  # another transformers layout: its bars stay visible
            gguf = None
        if gguf is not None and callable(getattr(gguf, "tqdm", None)):
            original = gguf.tqdm
            gguf.tqdm = functools.partial(original, disable=True)
            stack.callback(setattr, gguf, "tqdm", original)
        yield
