"""Letting go of torch memory between export stages, so the export's peak stays near the
largest single stage instead of the sum of all of them (issue 17: peak RSS <= 4x the fp32
model; measured figures in exporters/README.md, "Export memory").

``export`` holds, in order: the source model (for an adapter, the whole base), the detached
float32 copies, the traced ONNX program, the quantizer's model and onnxruntime's session for
the parity gate. The gate's torch logits are computed first, so the source can go before
tracing (:func:`release_source`); once the ONNX file is written the detached weights go too
(:func:`release_weights`), keeping the config and sizes the manifest is built from.
"""

from __future__ import annotations

import ctypes
import gc
import logging

import torch
from torch import nn

from .loaded import Loaded

logger = logging.getLogger(__name__)


def _malloc_trim():
    """glibc's ``malloc_trim`` (returns freed heap pages to the system), or None elsewhere.

    Tensors below glibc's mmap threshold (which grows to 32 MiB as large blocks are freed)
    live on the heap, and ``free`` keeps those pages mapped; without a trim the freed
    weights of a small model never leave the process's RSS.
    """
    try:  # the symbols already loaded into this process (no ldconfig subprocess)
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to trim
        return None


_TRIM = _malloc_trim()


def collect() -> None:
    """Run the garbage collector, then hand freed heap pages back to the system (glibc)."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def forget_rewriter_graphs() -> None:
    """Make onnxscript's rewrite rules let go of the last graph they matched.

    ``torch.onnx.export`` optimises the graph with onnxscript's rewriter, whose rules are
    module-level objects; each rule's ``SimplePatternMatcher`` keeps the last graph, node
    and tracer it matched (onnxscript 0.7.2), so the traced graph and every weight it holds
    outlive the export (measured on the robot-intent generation shadow: 296 MiB, its 189 MiB
    of weights plus the program around them). The matcher sets these again at its next
    match. The graph's reference cycles are freed by the next :func:`collect` (``export``
    runs one in :func:`release_weights`) or by Python's own collector.
    """
    try:
        from onnxscript.rewriter._matcher import SimplePatternMatcher
    except ImportError:  # another onnxscript layout: nothing known to clear
        logger.debug("onnxscript has no rewriter._matcher.SimplePatternMatcher; "
                     "the rewrite rules' last graph is not cleared")
        return
    for found in gc.get_objects():
        # by type: isinstance() would read every object's __class__, and some (torch's
        # deprecated ``torch.distributed.reduce_op``) warn when read
        if issubclass(type(found), SimplePatternMatcher):
            for name in ("_graph", "_current_node", "_tracer", "_match"):
                if name in vars(found):
                    setattr(found, name, None)


def release_source(loaded: Loaded) -> None:
    """Drop ``loaded.reference`` (the torch source model the parity gate compares with).

    Call it once the gate's reference logits exist. A model the caller passed in stays
    alive through the caller's own reference; one loaded from a folder is freed here.
    """
    loaded.reference = None
    collect()


def release_weights(model: nn.Module) -> None:
    """Move ``model``'s parameters and buffers to the ``meta`` device (no storage), in place.

    Shapes, dtypes, the config and :meth:`DetachedShadow.dims` still answer; running the
    model raises. Call it once the ONNX file holds the weights. The model gets new
    parameter objects (torch's ``overwrite_module_params_on_conversion``): a parameter it
    shares with another model (``copy_fp32(share_weights=True)``) is left as it was. That
    switch is process-wide while the call runs, so do not convert other modules on another
    thread at the same time.
    """
    previous = torch.__future__.get_overwrite_module_params_on_conversion()
    torch.__future__.set_overwrite_module_params_on_conversion(True)
    try:
        model.to("meta")
    finally:
        torch.__future__.set_overwrite_module_params_on_conversion(previous)
    collect()
