"""How to export: trace a :class:`DetachedShadow` to ONNX with ``torch.onnx.export(dynamo=True)``.

A small wrapper module gives the graph the flat I/O of ``exporters.spec``: the causal-LM
wrapper rebuilds a ``DynamicCache`` from the ``past_key_values.{i}.key/value`` tensors and
returns ``logits`` plus ``present.{i}.key/value``. The example inputs use sequence length 3
and past length 2 (so no axis is specialised to 0 or 1); the graph also runs with past
length 0 (the first step), which the tests check in onnxruntime. After tracing, the graph's
input/output shapes are renamed to the spec's axis names (``total_sequence_length`` etc.).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from shadow_edge.quiet import drop_log_messages, ignore_warnings

from .attention import FUSED_ATTENTION_MIN_OPSET, fused_attention
from .errors import ExportError
from .head_graph import add_logits_to_keep, share_tied_table, tied_head
from .memory import forget_rewriter_graphs
from .shadow_module import DetachedShadow
from .spec import (
    LOGITS_TO_KEEP,
    TEXT_GENERATION,
    ModelDims,
    TensorSpec,
    architecture_spec,
    task_spec,
)

logger = logging.getLogger(__name__)

#: Initializer bytes above which weights go to ``model.onnx.data``. Protobuf files cannot
#: exceed 2 GiB; 1 GiB leaves room for the graph and keeps single files easy to copy.
EXTERNAL_DATA_THRESHOLD = 1 << 30
MODEL_FILE = "model.onnx"
#: The torch.onnx logger that reports optional packages (torchvision) it skips.
TORCH_ONNX_REGISTRATION = "torch.onnx._internal.exporter._registration"

# Example sizes used for tracing (not specialised; all axes are dynamic).
EXAMPLE_BATCH, EXAMPLE_SEQUENCE, EXAMPLE_PAST = 2, 3, 2


class CausalLMWrapper(nn.Module):
    """Flat-tensor causal LM: ``(input_ids, attention_mask, position_ids, past) -> (logits, *present)``.

    ``past`` is a list ``[key_0, value_0, key_1, value_1, ...]``, each float32
    [batch, kv_heads, past_sequence_length, head_dim].
    """

    def __init__(self, model: DetachedShadow, num_layers: int):
        super().__init__()
        self.model = model
        self.num_layers = num_layers

    def forward(self, input_ids, attention_mask, position_ids, past_key_values):
        from transformers.cache_utils import DynamicCache

        # No config: every layer is a full layer; sliding windows are applied by the mask.
        cache = DynamicCache()
        for layer in range(self.num_layers):
            cache.update(past_key_values[2 * layer], past_key_values[2 * layer + 1], layer)
        logits, cache = self.model(input_ids, attention_mask, position_ids, cache)
        present = []
        for layer in cache.layers:
            present += [layer.keys, layer.values]
        return (logits, *present)


class ClassificationWrapper(nn.Module):
    """``(input_ids, attention_mask) -> logits [batch, num_labels]``."""

    def __init__(self, model: DetachedShadow):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids, attention_mask)[0]


class SegmentClassificationWrapper(ClassificationWrapper):
    """``(input_ids, attention_mask, token_type_ids) -> logits [batch, num_labels]`` (BERT)."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids, attention_mask, token_type_ids=token_type_ids)[0]


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote."""

    path: Path
    task: str
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    external_data: bool
    files: list[Path] = field(default_factory=list)
    #: the tied embedding / head table is stored once (``exporters.head_graph``)
    shared_table: bool = False


def _example(model: DetachedShadow, dims: ModelDims):
    from torch.export import Dim

    batch, seq = Dim("batch_size"), Dim("sequence_length")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, dims.vocab_size, (EXAMPLE_BATCH, EXAMPLE_SEQUENCE), generator=generator)
    if model.task != TEXT_GENERATION:
        mask = torch.ones_like(ids)
        shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
        if dims.token_type_ids:
            types = torch.randint(0, 2, ids.shape, generator=generator)
            shapes["token_type_ids"] = {0: batch, 1: seq}
            return SegmentClassificationWrapper(model), (ids, mask, types), shapes
        return ClassificationWrapper(model), (ids, mask), shapes
    total = EXAMPLE_PAST + EXAMPLE_SEQUENCE
    mask = torch.ones(EXAMPLE_BATCH, total, dtype=torch.int64)
    positions = torch.arange(EXAMPLE_PAST, total).expand(EXAMPLE_BATCH, -1).contiguous()
    kv = (EXAMPLE_BATCH, dims.num_key_value_heads, EXAMPLE_PAST, dims.head_dim)
    past = [torch.randn(kv, generator=generator) for _ in range(2 * dims.num_layers)]
    past_len = Dim("past_sequence_length", min=0)
    shapes = {
        "input_ids": {0: batch, 1: seq},
        "attention_mask": {0: batch, 1: Dim.AUTO},
        "position_ids": {0: batch, 1: seq},
        "past_key_values": [{0: batch, 2: past_len} for _ in past],
    }
    return CausalLMWrapper(model, dims.num_layers), (ids, mask, positions, past), shapes


def _rename_axes(program, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
    """Give graph inputs/outputs the spec's names and axis names; check fixed sizes."""
    import onnx_ir as ir

    graph = program.model.graph
    for values, specs in ((graph.inputs, inputs), (graph.outputs, outputs)):
        if len(values) != len(specs):
            raise ExportError(
                f"the traced graph has {len(values)} values where the spec expects {len(specs)}; "
                "this architecture is not exportable with the standard I/O"
            )
        for value, spec in zip(values, specs):
            traced = list(value.shape) if value.shape is not None else []
            if len(traced) != len(spec.shape):
                raise ExportError(f"{spec.name}: traced rank {len(traced)} != spec rank {len(spec.shape)}")
            for got, want in zip(traced, spec.shape):
                if isinstance(want, int) and isinstance(got, int) and got != want:
                    raise ExportError(
                        f"{spec.name}: traced size {got} != expected {want} "
                        "(config head_dim / kv heads disagree with the model)"
                    )
            value.name = spec.name
            value.shape = ir.Shape([ir.SymbolicDim(d) if isinstance(d, str) else d
                                    for d in spec.shape])


def use_external_data(parameter_bytes: int, external_data: bool | None = None,
                      threshold: int = EXTERNAL_DATA_THRESHOLD) -> bool:
    """Whether weights go to ``model.onnx.data``: forced by ``external_data`` when given,
    else when the parameters exceed ``threshold`` bytes (a head > 2 GB always does)."""
    return parameter_bytes > threshold if external_data is None else bool(external_data)


def _strip_trace_metadata(program) -> None:
    """Drop per-node tracing metadata (FX node text, stack traces, module paths).

    It is ~100 bytes per node, would ship local source paths to devices, and dominates the
    file size of small models.
    """
    for node in program.model.graph.all_nodes():
        node.metadata_props.clear()
        node.doc_string = None


def export_onnx(model: DetachedShadow, output: str | Path, *, opset: int | None = None,
                external_data: bool | None = None,
                external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> OnnxExport:
    """Export ``model`` to ``output`` (a ``.onnx`` file path) and return what was written.

    Args:
        model: the (folded) detached shadow, float32.
        opset: ONNX opset, at least :data:`runtime.manifest.MIN_OPSET` (the public entry
            points check it: ``exporters.export``, ``exporters.export_onnx``); default: the
            architecture spec's (23). From 23 on, attention
            is exported as one ONNX ``Attention`` node per layer (``exporters.attention``);
            opset 18-22 gives the decomposed graph older onnxruntime builds can run.
        external_data: ``True`` forces weights into ``<output>.data``, ``False`` forbids it,
            ``None`` decides by size (``> external_data_threshold`` bytes of parameters).

    Raises:
        ExportError: tracing or conversion failed, or the graph does not match the spec.
    """
    output = Path(output)
    model = model.eval().float()
    dims = model.dims()
    spec = task_spec(model.task)
    opset = int(opset or architecture_spec(model.config).default_opset)
    wrapper, args, shapes = _example(model, dims)
    wrapper.eval()  # a new module starts in training mode; torch.onnx warns about it
    inputs, outputs = spec.inputs(dims), spec.outputs(dims)
    use_external = use_external_data(model.parameter_count()[1], external_data,
                                     external_data_threshold)
    logger.info("exporting %s (%s, %d layers) to %s with opset %d", dims.architecture, model.task,
                dims.num_layers, output, opset)
    try:
        program = _trace(model, wrapper, args, shapes, inputs, outputs, opset)
        shared = _save(program, model, output, inputs, outputs, use_external)
    finally:  # else onnxscript's rewrite rules keep the traced graph and its weights
        program = None
        forget_rewriter_graphs()
    files = [output]
    data = output.with_name(output.name + ".data")
    if data.exists():
        files.append(data)
    return OnnxExport(path=output, task=model.task, opset=opset, inputs=inputs, outputs=outputs,
                      external_data=data.exists(), files=files, shared_table=shared)


def _trace(model: DetachedShadow, wrapper: nn.Module, args, shapes, inputs, outputs,
           opset: int):
    """``torch.onnx.export(dynamo=True)`` of ``wrapper``; the program, at ``opset``.

    Raises:
        ExportError: tracing or conversion failed, or another opset came out.
    """
    dims = model.dims()
    attention = fused_attention(model) if opset >= FUSED_ATTENTION_MIN_OPSET else nullcontext()
    try:
        # torch.onnx registers torchvision's detection ops (nms, roi_align, ...) and says per
        # op that torchvision is not installed: our graphs use none of them. Its Python
        # warnings (tracing notes on transformers internals) say nothing about the result,
        # which the parity gate checks. Both show with -v / SHADOW_EDGE_DEBUG=1.
        with drop_log_messages(TORCH_ONNX_REGISTRATION, "torchvision is not installed"), \
                ignore_warnings(), torch.no_grad(), attention:
            program = torch.onnx.export(
                wrapper, args, dynamo=True, dynamic_shapes=shapes,
                input_names=[s.name for s in inputs], output_names=[s.name for s in outputs],
                opset_version=opset, verbose=False,
            )
    except (RuntimeError, TypeError, ValueError, AssertionError) as error:
        raise ExportError(
            f"torch.onnx.export failed for {dims.architecture} ({model.task}): {error}; "
            "set SHADOW_EDGE_DEBUG=1 for the traceback and report the architecture"
        ) from error
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ExportError("torch.onnx.export returned no program")
    actual = program.model.opset_imports.get("")
    if actual != opset:
        raise ExportError(f"the exporter produced opset {actual} instead of {opset}; "
                          f"use --opset {actual}")
    return program


def _save(program, model: DetachedShadow, output: Path, inputs, outputs,
          use_external: bool) -> bool:
    """Name the graph's I/O, edit a causal LM's head (``_edit_head``), strip tracing
    metadata and write ``output``; returns whether the tied table is stored once."""
    traced_inputs = [s for s in inputs if s.name != LOGITS_TO_KEEP]
    shared = False
    if model.task == TEXT_GENERATION:
        _rename_axes(program, traced_inputs, [_traced_logits(outputs[0]), *outputs[1:]])
        shared = _edit_head(program.model.graph, tied_head(model))
    else:
        _rename_axes(program, inputs, outputs)
    _strip_trace_metadata(program)
    output.parent.mkdir(parents=True, exist_ok=True)
    with ignore_warnings():  # onnx_ir's notes on saving; the file is checked by the gate
        program.save(str(output), external_data=use_external)
    return shared


def _traced_logits(spec: TensorSpec) -> TensorSpec:
    """The logits as traced: every position (``logits_to_keep`` is added afterwards)."""
    return TensorSpec(spec.name, spec.dtype, ("batch_size", "sequence_length", spec.shape[2]))


def _edit_head(graph, tied: bool) -> bool:
    """Add ``logits_to_keep`` and, for a tied head, store the table once
    (``exporters.head_graph``); returns whether the table is shared."""
    try:
        add_logits_to_keep(graph)
    except ValueError as error:
        raise ExportError(f"cannot add {LOGITS_TO_KEEP} to the causal-LM graph: {error}; "
                          "report the architecture") from error
    return share_tied_table(graph) if tied else False
