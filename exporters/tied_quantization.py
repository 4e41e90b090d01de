"""The int8/int4 form of a tied table: one set of codes and scales for the embedding and the head.

An fp32 export of a tied model stores the table once, as the head's [H, V] weight that the
embedding reads along axis 1 (``exporters.head_graph``). Quantized, both consumers read the
same block-quantized codes (onnxruntime's ``quantize_matmul_{8,4}bits``, the kernel behind
``MatMulNBitsQuantizer``; blocks of 32 along H, symmetric):

- the head: ``com.microsoft.MatMulNBits(hidden, codes [V, k_blocks, blob], scales [V,
  k_blocks])`` with K = H, N = V (what the quantizer writes for an untied head);
- the embedding: ``com.microsoft.GatherBlockQuantized(codes, input_ids, scales')`` with
  ``gather_axis`` 0 and ``quantize_axis`` 2: the codes tensor is read as is, since
  ``[V, k_blocks, blob]`` is the table [V, H] in blocks of 32 along H, the layout
  GatherBlockQuantized quantizes in (``bits`` 8: one byte per code; ``bits`` 4: two codes per
  byte, low nibble first, as MatMulNBits packs them). Its output [batch, seq, k_blocks, 32] is
  reshaped to [batch, seq, H]. The zero points are both kernels' defaults (128 for 8 bits,
  8 for 4 bits).

The scales cannot be one initializer: MatMulNBits requires them as [V, k_blocks] (or flat),
GatherBlockQuantized with the same rank as the data, [V, k_blocks, 1]; a ``Reshape`` in the
graph bridges them (onnxruntime folds it into a copy of 1/8 of the codes' size at load, the
file holds one). Measured sizes are in exporters/README.md ("Tied tables").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class TiedPair:
    """The fp32 shared-table pattern of :func:`exporters.head_graph.share_tied_table`."""

    table: str  # initializer [H, V]
    gather: object  # onnx NodeProto: Gather(table, input_ids, axis=1)
    transpose: object  # onnx NodeProto: Transpose(gather, perm=[1, 2, 0]) -> [batch, seq, H]
    matmul: object  # onnx NodeProto: MatMul(hidden, table) -> logits (or pre-bias)


def find_tied_pair(model) -> TiedPair | None:
    """The shared-table nodes in ``model`` (an ``onnx.ModelProto``), or ``None``."""
    from onnx import helper

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gather" or attrs.get("axis", 0) != 1 or node.input[0] not in initializers:
            continue
        users = consumers.get(node.input[0], [])
        matmul = next((n for n in users if n.op_type == "MatMul" and n.input[1] == node.input[0]),
                      None)
        after = consumers.get(node.output[0], [])
        if matmul is None or len(users) != 2 or len(after) != 1 or after[0].op_type != "Transpose":
            continue
        return TiedPair(node.input[0], node, after[0], matmul)
    return None


def quantize_tied_pair(model, pair: TiedPair, bits: int, block_size: int,
                       accuracy_level: int) -> None:
    """Replace ``pair`` in ``model`` by MatMulNBits + GatherBlockQuantized on one set of
    ``bits``-bit codes (in place); the fp32 table is dropped.

    Raises:
        ValueError: ``bits`` is not 4 or 8.
    """
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits

    if bits not in (4, 8):
        raise ValueError(f"tied tables quantize to 4 or 8 bits, not {bits}")
    graph = model.graph
    tensor = next(t for t in graph.initializer if t.name == pair.table)
    weight = numpy_helper.to_array(tensor)  # [K = H, N = V]
    hidden, vocab = weight.shape
    blocks = -(-hidden // block_size)
    if blocks * block_size != hidden:  # MatMulNBits pads K to whole blocks
        weight = np.pad(weight, ((0, blocks * block_size - hidden), (0, 0)))
    blob = block_size * bits // 8
    codes = np.zeros((vocab, blocks, blob), np.uint8)
    scales = np.zeros((vocab, blocks), np.float32)
    zero_points = np.zeros((vocab, (blocks * bits + 7) // 8), np.uint8)  # unused: symmetric
    kernel = quantize_matmul_8bits if bits == 8 else quantize_matmul_4bits
    kernel(codes, np.ascontiguousarray(weight), scales, zero_points, block_size, vocab,
           blocks * block_size, True)
    name = f"{pair.table}_Q{bits}"
    perm = next(helper.get_attribute_value(a) for a in pair.transpose.attribute if a.name == "perm")
    ids_rank = len(perm) - 1  # the gather's output [*ids, k_blocks, 32] -> [*ids, H]
    constants = [
        numpy_helper.from_array(codes, name),
        numpy_helper.from_array(scales, f"{name}_scales"),
        numpy_helper.from_array(np.array([vocab, blocks, 1], np.int64), f"{name}_scales_shape"),
        numpy_helper.from_array(np.array([0] * ids_rank + [blocks * block_size], np.int64),
                                f"{name}_rows_shape"),
    ]
    head = helper.make_node(
        "MatMulNBits", [pair.matmul.input[0], name, f"{name}_scales"], list(pair.matmul.output),
        name=f"{pair.matmul.name}_Q{bits}", domain="com.microsoft", K=hidden, N=vocab,
        bits=bits, block_size=block_size, accuracy_level=accuracy_level)
    rows = pair.transpose.output[0]
    padded = blocks * block_size != hidden
    embedding = [
        helper.make_node("Reshape", [f"{name}_scales", f"{name}_scales_shape"],
                         [f"{name}_gather_scales"], name=f"{name}/gather_scales"),
        helper.make_node(
            "GatherBlockQuantized", [name, pair.gather.input[1], f"{name}_gather_scales"],
            [f"{name}_blocks"], name=f"{name}/gather", domain="com.microsoft", gather_axis=0,
            quantize_axis=2, block_size=block_size, bits=bits),
        helper.make_node("Reshape", [f"{name}_blocks", f"{name}_rows_shape"],
                         [f"{rows}_padded" if padded else rows], name=f"{name}/rows"),
    ]
    if padded:
        constants += [numpy_helper.from_array(np.array([v], np.int64), f"{name}_{k}")
                      for k, v in (("start", 0), ("end", hidden), ("axis", ids_rank))]
        embedding.append(helper.make_node(
            "Slice", [f"{rows}_padded", f"{name}_start", f"{name}_end", f"{name}_axis"], [rows],
            name=f"{name}/trim"))
    nodes = []
    gather, matmul, transpose = (n.output[0] for n in (pair.gather, pair.matmul, pair.transpose))
    for node in graph.node:
        if node.output[0] == gather:
            nodes += embedding
        elif node.output[0] == matmul:
            nodes.append(head)
        elif node.output[0] != transpose:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [t for t in graph.initializer if t.name != pair.table]
    del graph.initializer[:]
    graph.initializer.extend([*kept, *constants])
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    logger.info("tied table %s [%d, %d]: one set of %d-bit codes for the embedding and the "
                "head", pair.table, hidden, vocab, bits)
