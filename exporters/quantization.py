"""Quantize an fp32 export with onnxruntime's tools, and convert to the ORT mobile format.

Both precisions are weight-only and block-wise (onnxruntime's ``MatMulNBitsQuantizer``):

- ``int8``: 8-bit weights, block size 32, symmetric, ``accuracy_level`` 4 (activations are
  quantized to int8 per row and block of 32 inside ``MatMulNBits``, so a row never depends on
  its batch-mates), and the embedding table as an 8-bit ``GatherBlockQuantized`` (blocks of
  32 along the hidden axis; onnxruntime's quantizer only writes 4-bit gathers, so the table
  is packed here with onnxruntime's own 8-bit block kernel). Chosen by measurement over
  ``quantize_dynamic`` (per-tensor u8 activations: saturates on x86 without VNNI and couples
  the rows of a batch) and static QDQ S8S8 (exporters/README.md, "int8 schemes").
- ``int4``: 4-bit weights, block size 32, symmetric, ``accuracy_level`` 4, for MatMul and -
  unless ``keep_embeddings`` - the embedding Gather (quantized along the hidden axis).
- ORT format: ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` in a subprocess,
  writing ``model.ort`` and ``model.required_operators.config`` (the operator list a reduced
  mobile onnxruntime build needs, ``--include_ops_by_config``).

A tied table (stored once in the fp32 export, ``exporters.head_graph``) becomes one set of
codes read by both the head's MatMulNBits and the embedding's GatherBlockQuantized
(``exporters.tied_quantization``), unless ``keep_embeddings`` keeps the table in fp32.

GPT-2's Conv1D layers export as ``Gemm``; they are rewritten to ``MatMul`` + ``Add`` first so
they shrink too.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shadow_edge.errors import ConfigError

from .errors import ExportError
from .tied_quantization import find_tied_pair, quantize_tied_pair

logger = logging.getLogger(__name__)

QUANTIZED_PRECISIONS = ("int8", "int4")
BITS = {"int8": 8, "int4": 4}
BLOCK_SIZE = 32
#: 4-bit tensor types (the GatherBlockQuantized embedding table) exist from ONNX opset 21.
INT4_MIN_OPSET = 21
#: The oldest onnxruntime whose GatherBlockQuantized takes uint8 data with ``bits=8``
#: (microsoft/onnxruntime#25214, released in 1.23); opset-23 exports need 1.24.1 anyway.
INT8_MIN_ONNXRUNTIME = (1, 23, 0)
# MatMulNBits ``accuracy_level`` 4: int8 activations in the n-bit matmul (the setting
# onnxruntime-genai's builder uses on CPU). Measured on a 2-layer SmolLM2 shadow: int4 decode
# 78 -> 106-150 tokens/s against no level (benchmarks/README.md); 8-bit weights without it
# run ~50x slower than with it (0.9 vs 50 tokens/s, exporters/README.md).
ACCURACY_LEVEL = 4
# Models above this size are written with external data during quantization.
EXTERNAL_DATA_THRESHOLD = 1 << 30


def _data_file(path: Path) -> Path:
    return path.with_name(path.name + ".data")


def _model_bytes(path: Path) -> int:
    data = _data_file(path)
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def quantization_record(precision: str, keep_embeddings: bool = False) -> dict | None:
    """What the manifest's ``quantization`` key records for ``precision`` (``None`` for
    fp32): the method, bits, block size, symmetry, accuracy level and how the embedding table
    is stored. The runtime reads ``method`` (:func:`runtime.cpu.uses_dynamic_int8`)."""
    if precision not in QUANTIZED_PRECISIONS:
        return None
    return {"method": "MatMulNBits", "bits": BITS[precision], "block_size": BLOCK_SIZE,
            "symmetric": True, "accuracy_level": ACCURACY_LEVEL,
            "embeddings": "fp32" if keep_embeddings else
            f"GatherBlockQuantized ({BITS[precision]}-bit)"}


def quantize_gather_8bit(model, block_size: int = BLOCK_SIZE) -> int:
    """Rewrite every ``Gather`` of a constant float32 table [V, H] (axis 0) in ``model`` (an
    ``onnx.ModelProto``) as a com.microsoft ``GatherBlockQuantized`` with ``bits=8``, in place;
    returns the number rewritten.

    Blocks of ``block_size`` along H, symmetric: uint8 codes with onnxruntime's default zero
    point 128 and one float32 scale per block, packed by ``quantize_matmul_8bits`` (the kernel
    behind ``MatMulNBits`` 8-bit), so tables and matmuls round the same way. A table of
    V x H floats becomes V x H bytes + V x ceil(H / block_size) scales (0.28x at block 32).
    """
    import numpy as np
    from onnx import helper, numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_8bits

    initializers = {t.name: t for t in model.graph.initializer}
    nodes, rewritten, replaced = [], 0, set()
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        table = initializers.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or attrs.get("axis", 0) != 0 or len(table.dims) != 2 or (
                table.data_type != 1):  # TensorProto.FLOAT
            nodes.append(node)
            continue
        weights = numpy_helper.to_array(table)
        rows, width = weights.shape
        blocks = -(-width // block_size)
        packed = np.zeros((rows, blocks, block_size), np.uint8)
        scales = np.zeros((rows, blocks), np.float32)
        zero_points = np.zeros((rows, blocks), np.uint8)  # unused: symmetric
        quantize_matmul_8bits(packed, np.ascontiguousarray(weights.T), scales, zero_points,
                              block_size, rows, width, True)
        codes = numpy_helper.from_array(
            np.ascontiguousarray(packed.reshape(rows, blocks * block_size)[:, :width]),
            f"{table.name}_Q8")
        scale = numpy_helper.from_array(scales, f"{table.name}_scales")
        model.graph.initializer.extend([codes, scale])
        nodes.append(helper.make_node(
            "GatherBlockQuantized", [codes.name, node.input[1], scale.name], list(node.output),
            name=f"{node.name}_Q8", domain="com.microsoft", gather_axis=0, quantize_axis=1,
            block_size=block_size, bits=8))
        replaced.add(table.name)
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    still_used = {name for node in model.graph.node for name in node.input}
    kept = [t for t in model.graph.initializer if t.name not in replaced or t.name in still_used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    if rewritten and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return rewritten


def gemm_to_matmul(model) -> int:
    """Rewrite ``Gemm(A, W, C)`` with a constant ``W`` (alpha = beta = 1, no transA) as
    ``MatMul(A, W) + C`` in place, so MatMulNBits can quantize it (GPT-2's Conv1D layers
    export as Gemm). Returns the number of rewritten nodes.
    """
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    nodes, rewritten = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (node.op_type == "Gemm" and attrs.get("alpha", 1.0) == 1.0
                 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
                 and node.input[1] in initializers)
        if not plain:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            array = numpy_helper.to_array(initializers[weight]).T.copy()
            weight = f"{weight}_transposed"
            model.graph.initializer.append(numpy_helper.from_array(array, weight))
        has_bias = len(node.input) > 2 and node.input[2]
        product = f"{node.output[0]}_matmul" if has_bias else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product],
                                      name=f"{node.name}_matmul"))
        if has_bias:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]],
                                          name=f"{node.name}_bias"))
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def raise_opset(model, minimum: int) -> int:
    """Raise the default-domain opset of ``model`` (an ``onnx.ModelProto``) to ``minimum`` in
    place and return the resulting opset.

    onnxruntime's 4-bit quantizer does the same (with a warning) when it meets an older opset;
    doing it here makes it explicit and logged. The ops the exporter emits keep their meaning
    between opsets 18 and 21, and the parity gate checks the quantized model anyway.
    """
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < minimum:
            logger.info("raising the ONNX opset from %d to %d for 4-bit tensor types",
                        entry.version, minimum)
            entry.version = minimum
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return minimum


def model_opset(path: str | Path) -> int:
    """The default-domain (``ai.onnx``) opset of the ONNX file at ``path`` (weights not read)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(int(e.version) for e in model.opset_import if e.domain in ("", "ai.onnx"))


def quantize_nbits(source: Path, output: Path, bits: int, *, keep_embeddings: bool = False,
                   external_data: bool | None = None, block_size: int = BLOCK_SIZE) -> Path:
    """Block-wise ``bits``-bit weights (4 or 8; symmetric, accuracy level 4, blocks of
    ``block_size``) for every MatMul with a constant weight and - unless ``keep_embeddings`` -
    the embedding Gather. Returns ``output``."""
    import numpy as np
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    # onnxruntime's quantizer writes 4-bit gathers only; 8-bit tables: quantize_gather_8bit
    ops = ("MatMul", "Gather") if bits == 4 and not keep_embeddings else ("MatMul",)
    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size, is_symmetric=True, bits=bits, op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1)), accuracy_level=ACCURACY_LEVEL,
    )
    model = onnx.load(str(source))
    if bits == 4:
        raise_opset(model, INT4_MIN_OPSET)
    tied = None if keep_embeddings else find_tied_pair(model)
    if tied is not None:
        quantize_tied_pair(model, tied, bits, block_size, ACCURACY_LEVEL)
    if gemm_to_matmul(model):
        logger.info("rewrote Gemm nodes as MatMul + Add for %d-bit quantization", bits)
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero blocks: scale 0 -> 0
        quantizer.process()
    if bits == 8 and not keep_embeddings:
        quantize_gather_8bit(quantizer.model.model, block_size)
    large = _model_bytes(source) > EXTERNAL_DATA_THRESHOLD if external_data is None else external_data
    quantizer.model.save_model_to_file(str(output), use_external_data_format=large)
    return output


def quantize(source: str | Path, output: str | Path, precision: str, *,
             keep_embeddings: bool = False, external_data: bool | None = None) -> Path:
    """Quantize the fp32 ONNX model ``source`` into ``output`` (``int8`` or ``int4``).

    Raises:
        ConfigError: unknown precision.
        ExportError: onnxruntime's quantizer failed.
    """
    source, output = Path(source), Path(output)
    if precision not in QUANTIZED_PRECISIONS:
        raise ConfigError(f"cannot quantize to {precision!r}; use one of {QUANTIZED_PRECISIONS}")
    if keep_embeddings and precision != "int4":
        raise ConfigError("keep_embeddings (--int4-keep-embeddings) only applies to int4")
    output.parent.mkdir(parents=True, exist_ok=True)
    logger.info("quantizing %s to %s", source, precision)
    try:
        quantize_nbits(source, output, BITS[precision], keep_embeddings=keep_embeddings,
                       external_data=external_data)
    except (RuntimeError, ValueError, KeyError, OSError) as error:
        raise ExportError(f"{precision} quantization of {source} failed: {error}; try another "
                          "precision or report the model") from error
    logger.info("%s model: %d bytes (fp32 %d bytes)", precision, _model_bytes(output),
                _model_bytes(source))
    return output


def convert_to_ort(model: str | Path, output_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``<name>.ort`` and ``<name>.required_operators.config`` next to ``model``.

    Uses onnxruntime's converter (optimization style "Fixed", the default for CPU/XNNPACK),
    then loads the ``.ort`` file in onnxruntime: the converter writes files that cannot be
    loaded back (4-bit embedding tables), and a device should not be the first to find out.

    Raises:
        ExportError: the converter failed (its output is in the message), or onnxruntime
            cannot load the ``.ort`` file it wrote.
    """
    model = Path(model)
    output_dir = Path(output_dir or model.parent)
    with tempfile.TemporaryDirectory(prefix="shadow-edge-ort-") as work:
        staged = Path(work) / model.name
        shutil.copyfile(model, staged)
        if _data_file(model).exists():
            shutil.copyfile(_data_file(model), _data_file(staged))
        command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
                   str(staged), "--output_dir", work, "--optimization_style", "Fixed"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        stem = model.name[: -len(".onnx")] if model.name.endswith(".onnx") else model.stem
        ort_file = Path(work) / f"{stem}.ort"
        config = next(Path(work).glob("*.config"), None)
        if result.returncode != 0 or not ort_file.exists() or config is None:
            raise ExportError(
                f"ORT format conversion failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        check_ort_loads(ort_file, model)
        targets = (output_dir / ort_file.name, output_dir / f"{stem}.required_operators.config")
        shutil.copyfile(ort_file, targets[0])
        shutil.copyfile(config, targets[1])
    return targets


def check_ort_loads(ort_file: Path, source: Path) -> None:
    """Load ``ort_file`` (converted from the ONNX file ``source``) in an onnxruntime session.

    Raises:
        ExportError: it does not load; for a 4-bit embedding table (``GatherBlockQuantized``
            in ``source``) the message names the fix.
    """
    import onnx

    from .verify_session import session

    try:
        session(ort_file)
    except ExportError as error:
        ops = {node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node}
        hint = ("the ORT format cannot hold the 4-bit embedding table: add "
                "--int4-keep-embeddings (int4_keep_embeddings=True) or drop --ort"
                if "GatherBlockQuantized" in ops else "drop --ort or report the model")
        raise ExportError(f"the converted ORT model does not load in onnxruntime; {hint} "
                          f"({error})") from error
