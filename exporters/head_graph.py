"""Graph edits around the causal-LM head: last-position logits and one copy of a tied table.

Both run on the traced graph (``onnx_ir``) in :func:`exporters.onnx.export_onnx`, before
it is saved; the int8/int4 form of the shared table is in :mod:`exporters.tied_quantization`.

``logits_to_keep`` (as transformers' ``forward(logits_to_keep=...)``)
    An int64 scalar graph input with the default 0 stored as an initializer of the same
    name (an ONNX *overridable initializer*): the head runs on the last ``k`` positions of
    the hidden states (``Slice(hidden, -k, end, axis=1)``), and ``k = 0`` keeps every
    position, so a runtime that does not know the input (onnxruntime-genai, optimum, a
    teacher-forced check) gets the full ``[batch, sequence_length, vocab]`` logits.
    ``session.get_inputs()`` does not list it; ``session.get_overridable_initializers()``
    does. A generation's prefill feeds 1: for SmolLM2's 49,152-token vocabulary the head
    is about three quarters of a 128-token prefill of a 2-layer shadow (issue 17).

One copy of a tied table
    When the (folded) head weight equals the input embedding (``torch.equal``, checked by
    :func:`tied_head`; SmolLM2, Gemma and GPT-2 shadows without a projection), the traced
    graph still holds two bit-identical tables: the embedding [V, H] of the ``Gather`` and
    the head's constant-folded transpose [H, V] of the ``MatMul``. :func:`share_tied_table`
    keeps the head's [H, V] table and makes the embedding read its columns
    (``Gather(table, input_ids, axis=1)`` -> [H, batch, seq], ``Transpose`` -> [batch, seq,
    H]), so the file stores the table once while the decode-time ``MatMul`` is unchanged
    (onnxruntime still pre-packs it at load, exporters/README.md "Tied tables").
"""

from __future__ import annotations

import logging

import numpy as np
import torch

logger = logging.getLogger(__name__)

LOGITS_TO_KEEP = "logits_to_keep"
#: The logits' sequence axis once ``logits_to_keep`` may shorten it: min(k, seq), or seq.
LOGITS_SEQUENCE_AXIS = "logits_sequence_length"
_INT64_MAX = np.iinfo(np.int64).max


def tied_head(model) -> bool:
    """Whether the (folded) LM head weight [V, H] equals the input embedding [V, H]
    element for element (``torch.equal``; the same tensor or a bit-identical copy).

    ``model`` is an :class:`exporters.shadow_module.DetachedShadow` of task text-generation.
    """
    head = getattr(model.head, "weight", None)
    embedding = model.backbone.get_input_embeddings()
    table = getattr(embedding, "weight", None)
    if not isinstance(head, torch.Tensor) or not isinstance(table, torch.Tensor):
        return False
    return head.shape == table.shape and bool(torch.equal(head.detach(), table.detach()))


def _initializer(graph, value):
    """The initializer behind ``value`` (``None`` if it is computed)."""
    if value is None or value.const_value is None:
        return None
    return graph.initializers.get(value.name)


def head_matmul(graph):
    """The ``MatMul(hidden, W[H, V])`` that produces the ``logits`` output (possibly through
    a bias ``Add``); ``None`` if the graph does not end that way."""
    logits = next((v for v in graph.outputs if v.name == "logits"), None)
    node = logits.producer() if logits is not None else None
    if node is not None and node.op_type == "Add":
        node = next((v.producer() for v in node.inputs
                     if v is not None and v.producer() is not None
                     and v.producer().op_type == "MatMul"), None)
    if node is None or node.op_type != "MatMul" or _initializer(graph, node.inputs[1]) is None:
        return None
    return node


def _constant(graph, name: str, array: np.ndarray):
    import onnx_ir as ir

    value = ir.Value(name=name, shape=ir.Shape(array.shape),
                     type=ir.TensorType(ir.DataType.INT64), const_value=ir.tensor(array))
    graph.register_initializer(value)
    return value


def add_logits_to_keep(graph) -> None:
    """Add the optional ``logits_to_keep`` input (default 0 = every position) and slice the
    head's input to the last ``logits_to_keep`` positions (in place).

    Raises:
        ValueError: the graph's ``logits`` do not come from a ``MatMul`` with a constant
            weight (the head cannot be found).
    """
    import onnx_ir as ir

    matmul = head_matmul(graph)
    if matmul is None:
        raise ValueError("the logits do not come from a MatMul with a constant weight")
    keep = ir.Value(name=LOGITS_TO_KEEP, shape=ir.Shape([]),
                    type=ir.TensorType(ir.DataType.INT64),
                    const_value=ir.tensor(np.array(0, np.int64)))
    graph.inputs.append(keep)
    graph.register_initializer(keep)  # the default: an overridable initializer
    axes = _constant(graph, f"{LOGITS_TO_KEEP}.axes", np.array([1], np.int64))
    ends = _constant(graph, f"{LOGITS_TO_KEEP}.ends", np.array([_INT64_MAX], np.int64))
    as_list = ir.node("Unsqueeze", [keep, _constant(graph, f"{LOGITS_TO_KEEP}.unsqueeze",
                                                    np.array([0], np.int64))],
                      name=f"{LOGITS_TO_KEEP}/unsqueeze")
    start = ir.node("Neg", [as_list.outputs[0]], name=f"{LOGITS_TO_KEEP}/neg")
    sliced = ir.node("Slice", [matmul.inputs[0], start.outputs[0], ends, axes],
                     name=f"{LOGITS_TO_KEEP}/slice")
    sliced.outputs[0].name = "kept_hidden_states"
    graph.insert_before(matmul, [as_list, start, sliced])
    matmul.replace_input_with(0, sliced.outputs[0])
    logits = next(v for v in graph.outputs if v.name == "logits")
    if logits.shape is not None and len(logits.shape) == 3:
        logits.shape = ir.Shape([logits.shape[0], ir.SymbolicDim(LOGITS_SEQUENCE_AXIS),
                                 logits.shape[2]])


def embedding_gathers(graph, rows: int, width: int) -> list:
    """The ``Gather(table[rows, width], ids)`` nodes (axis 0) on a constant table whose ids
    have a known rank: the input embedding's candidates."""
    found = []
    for node in graph:
        if node.op_type != "Gather" or node.attributes.get_int("axis", 0) != 0:
            continue
        table, ids = _initializer(graph, node.inputs[0]), node.inputs[1]
        if (table is not None and ids is not None and ids.shape is not None
                and table.shape is not None and tuple(table.shape) == (rows, width)):
            found.append(node)
    return found


def share_tied_table(graph) -> bool:
    """Store a tied table once (in place): the embedding ``Gather`` reads the head's [H, V]
    table along axis 1 and the [V, H] copy is dropped. Returns whether it did.

    Only call it for a model where :func:`tied_head` holds; the graph's two tables are
    compared again (bit for bit) so a graph whose nodes are not the expected ones is left
    alone (with a log line).
    """
    import onnx_ir as ir

    matmul = head_matmul(graph)
    if matmul is None:
        logger.info("tied table not shared: no head MatMul found")
        return False
    weight = matmul.inputs[1]
    hidden, vocab = (int(d) for d in weight.shape)
    head = weight.const_value.numpy().T
    gather = next((node for node in embedding_gathers(graph, vocab, hidden)
                   if len(node.inputs[0].uses()) == 1
                   and np.array_equal(node.inputs[0].const_value.numpy(), head)), None)
    if gather is None:
        logger.info("tied table not shared: no embedding Gather reads a [%d, %d] table equal "
                    "to the head's (and nothing else reads it)", vocab, hidden)
        return False
    table = gather.inputs[0]
    rank = len(gather.inputs[1].shape)  # ids [batch, seq] (GPT-2: a reshaped copy)
    columns = ir.node("Gather", [weight, gather.inputs[1]], {"axis": 1},
                      name="tied_embedding/gather")
    rows = ir.node("Transpose", [columns.outputs[0]], {"perm": [*range(1, rank + 1), 0]},
                   name="tied_embedding/transpose")
    graph.insert_before(gather, [columns, rows])
    name = gather.outputs[0].name or "embedding"
    gather.outputs[0].replace_all_uses_with(rows.outputs[0])
    graph.remove(gather, safe=True)
    rows.outputs[0].name = name
    del graph.initializers[table.name]
    logger.info("tied table stored once: %s [%d, %d] serves the embedding and the head",
                weight.name, hidden, vocab)
    return True
