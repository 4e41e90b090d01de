"""Quantize an fp32 export with onnxruntime's tools, and convert to the ORT mobile format.

- ``int8``: ``quant_pre_process`` (symbolic shape inference + graph optimisation), then
  ``quantize_dynamic`` with QInt8 weights, per-channel (MatMul -> MatMulInteger with
  dynamically quantized activations; Gather embeddings are quantized too).
- ``int4``: ``MatMulNBitsQuantizer``: 4-bit weights, block size 32, symmetric, for MatMul
  and - unless ``keep_embeddings`` - the embedding Gather (quantized along the hidden axis).
  ``accuracy_level`` 4: activations are quantized to int8 inside the 4-bit matmul.
- ORT format: ``python -m onnxruntime.tools.convert_onnx_models_to_ort`` in a subprocess,
  writing ``model.ort`` and ``model.required_operators.config`` (the operator list a reduced
  mobile onnxruntime build needs, ``--include_ops_by_config``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from shadow_edge.errors import ConfigError, ExportError

logger = logging.getLogger(__name__)

QUANTIZED_PRECISIONS = ("int8", "int4")
#: Node types ``quantize_dynamic`` rewrites. Its default list also maps ``Attention`` to the
#: com.microsoft ``QAttention``, which is not the ONNX (opset 23) ``Attention`` operator.
INT8_OP_TYPES = ("MatMul", "Gather")
INT4_BLOCK_SIZE = 32
#: 4-bit tensor types (the GatherBlockQuantized embedding table) exist from ONNX opset 21.
INT4_MIN_OPSET = 21
# Models above this size are written with external data during quantization.
EXTERNAL_DATA_THRESHOLD = 1 << 30


def _data_file(path: Path) -> Path:
    return path.with_name(path.name + ".data")


def _model_bytes(path: Path) -> int:
    data = _data_file(path)
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def quantize_int8(source: Path, output: Path, *, external_data: bool | None = None) -> Path:
    """Dynamic int8 (QInt8 weights, per channel). Returns ``output``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    large = _model_bytes(source) > EXTERNAL_DATA_THRESHOLD if external_data is None else external_data
    with tempfile.TemporaryDirectory(prefix="shadow-edge-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        options = {"save_as_external_data": large, "all_tensors_to_one_file": True,
                   "external_data_location": "prepared.onnx.data"}
        try:
            quant_pre_process(str(source), str(prepared), **options)
        except (TypeError, KeyError, ValueError, AssertionError) as error:
            # onnxruntime's symbolic shape inference does not know every op pattern the
            # dynamo exporter emits (e.g. the pooling gather); ONNX shape inference suffices.
            # Expected for classification graphs, hence info: the parity gate checks the result.
            logger.info("symbolic shape inference failed (%s); pre-processing with ONNX shape "
                        "inference only", error)
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True, **options)
        quantize_dynamic(str(prepared), str(output), weight_type=QuantType.QInt8,
                         per_channel=True, use_external_data_format=large,
                         op_types_to_quantize=list(INT8_OP_TYPES))
    return output


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


# MatMulNBits ``accuracy_level`` 4: int8 activations in the 4-bit matmul (the setting
# onnxruntime-genai's builder uses on CPU). Measured on a 2-layer SmolLM2 shadow: decode
# 78 -> 106-150 tokens/s against no level (benchmarks/README.md).
INT4_ACCURACY_LEVEL = 4


def quantize_int4(source: Path, output: Path, *, keep_embeddings: bool = False,
                  external_data: bool | None = None) -> Path:
    """4-bit MatMulNBits (block 32, symmetric), embeddings too unless ``keep_embeddings``."""
    import numpy as np
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    ops = ("MatMul",) if keep_embeddings else ("MatMul", "Gather")
    config = DefaultWeightOnlyQuantConfig(
        block_size=INT4_BLOCK_SIZE, is_symmetric=True, op_types_to_quantize=ops,
        quant_axes=(("MatMul", 0), ("Gather", 1)), accuracy_level=INT4_ACCURACY_LEVEL,
    )
    model = onnx.load(str(source))
    raise_opset(model, INT4_MIN_OPSET)
    if gemm_to_matmul(model):
        logger.info("rewrote Gemm nodes as MatMul + Add for 4-bit quantization")
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero blocks: scale 0 -> 0
        quantizer.process()
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
        if precision == "int8":
            quantize_int8(source, output, external_data=external_data)
        else:
            quantize_int4(source, output, keep_embeddings=keep_embeddings,
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

    from .ort_model import session

    try:
        session(ort_file)
    except ExportError as error:
        ops = {node.op_type for node in onnx.load(str(source), load_external_data=False).graph.node}
        hint = ("the ORT format cannot hold the 4-bit embedding table: add "
                "--int4-keep-embeddings (int4_keep_embeddings=True) or drop --ort"
                if "GatherBlockQuantized" in ops else "drop --ort or report the model")
        raise ExportError(f"the converted ORT model does not load in onnxruntime; {hint} "
                          f"({error})") from error
