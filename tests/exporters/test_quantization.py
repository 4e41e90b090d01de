"""int8 / int4 quantization: sizes, operators, parity against torch, the ORT mobile format.

The model is "tiny but not minuscule" (hidden 128, vocab 2048, 2 layers) so weights dominate
the file and the size ratios mean something.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import exporters
from exporters import QUANTIZED_THRESHOLDS, export, export_onnx, quantize, verify
from exporters.errors import ExportError
from exporters.quantization import convert_to_ort, model_opset
from exporters.spec import DEFAULT_OPSET
from exporters.testing import tiny_model
from exporters.verify_session import OnnxCausalLM, session
from runtime.manifest import check_files, read_manifest
from shadow_edge.errors import ConfigError

pytestmark = pytest.mark.xdist_group("exporters")
TASK = "text-generation"
SIZES = {"hidden_size": 128, "vocab_size": 2048, "num_layers": 2}


@pytest.fixture(scope="module")
def torch_model():
    return tiny_model("llama", TASK, **SIZES)


@pytest.fixture(scope="module")
def models(torch_model, tmp_path_factory):
    """One fp32 export, quantized three ways."""
    root = tmp_path_factory.mktemp("quantize")
    paths = {"fp32": export_onnx(torch_model, root / "fp32" / "model.onnx").path}
    for name, precision, keep in (("int8", "int8", False), ("int4", "int4", False),
                                  ("int4-keep", "int4", True)):
        paths[name] = quantize(paths["fp32"], root / name / "model.onnx", precision,
                               keep_embeddings=keep)
    return paths


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def _bits(path) -> dict[str, set[int]]:
    """{op_type: {bits attribute values}} of the n-bit operators in ``path``."""
    found: dict[str, set[int]] = {}
    for node in onnx.load(str(path)).graph.node:
        for attr in node.attribute:
            if attr.name == "bits":
                found.setdefault(node.op_type, set()).add(attr.i)
    return found


def _size(path) -> int:
    return path.stat().st_size


def test_quantized_files_meet_the_size_targets(models):
    fp32 = _size(models["fp32"])
    assert fp32 > 3_000_000  # ~826k float32 parameters
    assert _size(models["int8"]) <= 0.3 * fp32
    assert _size(models["int4"]) <= 0.2 * fp32
    # keeping the 2048 x 128 embedding table in fp32 costs ~1 MB
    assert 0.2 * fp32 < _size(models["int4-keep"]) < 0.5 * fp32


def test_quantized_graphs_use_the_expected_operators(models):
    """int8 is block-wise 8-bit weights and embeddings, no dynamic (per-tensor) activations."""
    int8 = _ops(models["int8"])
    assert {"MatMulNBits", "GatherBlockQuantized"} <= int8
    assert not int8 & {"MatMulInteger", "DynamicQuantizeLinear", "Gather", "MatMul"}
    assert _bits(models["int8"]) == {"MatMulNBits": {8}, "GatherBlockQuantized": {8}}
    assert _bits(models["int4"]) == {"MatMulNBits": {4}}  # the 4-bit gather: default bits
    int4 = _ops(models["int4"])
    assert "MatMulNBits" in int4 and "GatherBlockQuantized" in int4 and "Gather" not in int4
    keep = _ops(models["int4-keep"])
    assert "MatMulNBits" in keep and "GatherBlockQuantized" not in keep and "Gather" in keep


@pytest.mark.parametrize("name,precision", [("int8", "int8"), ("int4", "int4"),
                                            ("int4-keep", "int4")])
def test_quantized_parity_passes_the_documented_thresholds(models, torch_model, name, precision):
    report = verify(models[name], torch_model, precision=precision)
    assert report.passed
    limits = QUANTIZED_THRESHOLDS[precision]
    checks = {c.name: c for c in report.checks}
    assert checks["top1_agreement"].value >= limits["top1_agreement"]
    assert checks["mean_logit_cosine"].value >= limits["mean_logit_cosine"]
    assert checks["left_padding_min_cosine"].value >= limits["padding_cosine"]
    assert checks["mean_logit_cosine"].value < 1.0  # it really is quantized


@pytest.mark.parametrize("width", [64, 40])  # 40: a partial last block
def test_8bit_embedding_table_is_exact_to_half_a_quantization_step(tmp_path, width):
    """Why: onnxruntime's quantizer writes 4-bit gathers only, so the 8-bit table is packed
    here (with onnxruntime's 8-bit block kernel); onnxruntime must read it back as written."""
    from onnx import TensorProto, helper, numpy_helper

    from exporters.quantization import BLOCK_SIZE, quantize_gather_8bit

    table = np.random.default_rng(0).normal(0, 0.05, (10, width)).astype(np.float32)
    table[3, :BLOCK_SIZE] = 0.0  # an all-zero block
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["out"], axis=0)], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [None])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [None, width])],
        [numpy_helper.from_array(table, "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    assert quantize_gather_8bit(model) == 1
    assert [t.name for t in model.graph.initializer] == ["table_Q8", "table_scales"]
    onnx.save(model, tmp_path / "m.onnx")
    ids = np.array([3, 0, 9, 3])
    out = session(tmp_path / "m.onnx").run(None, {"ids": ids})[0]
    blocks = -(-width // BLOCK_SIZE)
    padded = np.zeros((10, blocks * BLOCK_SIZE), np.float32)
    padded[:, :width] = table
    step = np.abs(padded.reshape(10, blocks, BLOCK_SIZE)).max(-1) / 128  # symmetric, [-128, 127]
    bound = np.repeat(step / 2, BLOCK_SIZE, axis=1)[:, :width] + 1e-7
    assert (np.abs(out - table[ids]) <= bound[ids]).all()
    assert (out[0, :BLOCK_SIZE] == 0).all()


def test_fp32_file_passes_the_fp32_gate(models, torch_model):
    report = verify(models["fp32"], torch_model, precision="fp32")
    assert report.passed and report.check("greedy_tokens_identical").value == 32


def test_int8_pipeline_with_ort_format(torch_model, models, reuse_onnx, tmp_path):
    reuse_onnx.source = models["fp32"]  # the dynamo export of torch_model is tested above
    stages = []
    result = export(torch_model, tmp_path / "out", precision="int8", ort=True,
                    progress=lambda stage, info: stages.append(stage))
    assert stages == ["load", "fold", "export", "quantize", "verify", "write"]
    folder = result.output_dir
    assert result.manifest == read_manifest(folder)
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "model.ort", "model.required_operators.config",
            "shadow_edge.json", "config.json", "generation_config.json"} <= names
    assert not any(n.startswith(".") for n in names)  # no work folder left behind
    manifest = read_manifest(folder)
    check_files(folder, manifest, hashes=True)
    assert (manifest.precision, manifest.ort_model_file, manifest.verified) == ("int8", "model.ort", True)
    assert manifest.parity["precision"] == "int8"
    assert manifest.quantization == {
        "method": "MatMulNBits", "bits": 8, "block_size": 32, "symmetric": True,
        "accuracy_level": 4, "embeddings": "GatherBlockQuantized (8-bit)"}
    operators = (folder / "model.required_operators.config").read_text()
    assert "MatMulNBits" in operators and "GatherBlockQuantized" in operators
    # the .ort file runs in onnxruntime and agrees with model.onnx
    onnx_model = OnnxCausalLM(folder / "model.onnx")
    ort_model = OnnxCausalLM(folder / "model.onnx")
    ort_model.session = session(folder / "model.ort")
    ids = np.arange(3, 13)[None]
    mask = np.ones_like(ids)
    expected, actual = onnx_model.step(ids, mask)[0], ort_model.step(ids, mask)[0]
    assert np.abs(expected - actual).max() <= 1e-3 * np.abs(expected).max()


def test_ort_format_refuses_a_4bit_embedding_table_and_keeps_int4_matmuls(models, tmp_path):
    """Why: onnxruntime's converter writes an .ort file with an int4 Gather table that
    onnxruntime then cannot load; the export must fail instead of shipping it."""
    with pytest.raises(ExportError, match="--int4-keep-embeddings"):
        convert_to_ort(models["int4"], tmp_path)
    assert list(tmp_path.iterdir()) == []
    ort_file, config = convert_to_ort(models["int4-keep"], tmp_path)
    assert "MatMulNBits" in config.read_text()
    ids = np.arange(3, 13)[None]
    expected = OnnxCausalLM(models["int4-keep"]).step(ids, np.ones_like(ids))[0]
    from_ort = OnnxCausalLM(models["int4-keep"])
    from_ort.session = session(ort_file)
    assert np.abs(from_ort.step(ids, np.ones_like(ids))[0] - expected).max() <= (
        1e-3 * np.abs(expected).max())


def test_quantization_keeps_the_default_opset(models):
    assert {model_opset(path) for path in models.values()} == {DEFAULT_OPSET}
    assert "Attention" in _ops(models["int8"]) and "QAttention" not in _ops(models["int8"])
    assert "Attention" in _ops(models["int4"])


def test_opset_18_exports_decomposed_attention_and_int4_raises_it_to_21(torch_model, models,
                                                                        tmp_path):
    old = export_onnx(torch_model, tmp_path / "fp32" / "model.onnx", opset=18).path
    assert model_opset(old) == 18 and "Attention" not in _ops(old)
    assert len(onnx.load(str(old)).graph.node) > 1.5 * len(onnx.load(str(models["fp32"])).graph.node)
    int4 = quantize(old, tmp_path / "int4" / "model.onnx", "int4")
    assert model_opset(int4) == 21
    ids = np.array([[0, 0, 5, 9, 11, 3], [7, 1, 2, 8, 4, 6]])
    mask = np.array([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    fused = OnnxCausalLM(models["fp32"]).step(ids, mask)[0]
    decomposed = OnnxCausalLM(old).step(ids, mask)[0]
    keep = mask.astype(bool)
    assert np.abs(fused[keep] - decomposed[keep]).max() <= 1e-4 * np.abs(decomposed).max()


def test_quantized_classifier_passes_its_gate(exports, tmp_path):
    from tests.exporters.conftest import ARCH_SIZES

    folder = exports.get("llama", "text-classification")
    torch_model = tiny_model("llama", "text-classification", **ARCH_SIZES["llama"])
    int8 = quantize(folder / "model.onnx", tmp_path / "model.onnx", "int8")
    report = verify(int8, torch_model, precision="int8", task="text-classification")
    assert report.passed
    assert {c.name for c in report.checks} == {
        "argmax_agreement", "mean_logit_cosine", "padding_min_cosine",
        "argmax_agreement_random_ids", "mean_logit_cosine_random_ids"}


def test_bad_quantization_options_are_config_errors(models, tmp_path):
    with pytest.raises(ConfigError, match="int8"):
        exporters.quantize(models["fp32"], tmp_path / "x.onnx", "int2")
    with pytest.raises(ConfigError, match="int4"):
        exporters.quantize(models["fp32"], tmp_path / "x.onnx", "int8", keep_embeddings=True)
    assert list(tmp_path.iterdir()) == []


def test_quantize_export_reuses_an_fp32_folder(shadow_exports, tmp_path):
    from exporters import quantize_export

    case = shadow_exports("llama")
    fp32 = case.folder
    checked = quantize_export(fp32, tmp_path / "int8", "int8", checkpoint=case.model)
    manifest = read_manifest(checked.output_dir)
    assert checked.manifest == manifest  # what it returned is what it wrote
    check_files(checked.output_dir, manifest, hashes=True)
    assert (manifest.precision, manifest.verified, manifest.opset) == ("int8", True, DEFAULT_OPSET)
    assert manifest.parity["precision"] == "int8" and manifest.verified_reason is None
    assert {p.name for p in checked.output_dir.iterdir()} == {p.name for p in fp32.iterdir()}
    # tiny random shadows sit at the edge of the int4 gate (test_export_causal.py): unchecked
    unchecked = quantize_export(fp32, tmp_path / "int4", "int4")
    manifest = read_manifest(unchecked.output_dir)
    assert unchecked.manifest == manifest
    assert (manifest.precision, manifest.verified, manifest.parity) == ("int4", False, None)
    assert manifest.opset == DEFAULT_OPSET
    assert "shadow-edge verify" in manifest.verified_reason
    with pytest.raises(ConfigError, match="fp32 export"):
        quantize_export(unchecked.output_dir, tmp_path / "again", "int8")
    assert not (tmp_path / "again").exists()


def test_gpt2_external_data_export_quantizes_its_gemm_layers(shadow_exports, tmp_path):
    """GPT-2's Conv1D layers export as Gemm; int4 rewrites them to MatMul so they shrink."""
    from exporters import quantize_export

    case = shadow_exports("gpt2")  # explicit GPT-2 shadow, exported with external data
    fp32 = case.folder
    assert "Gemm" in _ops(fp32 / "model.onnx")
    result = quantize_export(fp32, tmp_path / "int4", "int4", checkpoint=case.model)
    ops = _ops(result.model_path)
    assert "Gemm" not in ops and "MatMulNBits" in ops
    assert (result.output_dir / "model.onnx.data").is_file() and result.parity.passed
    fp32_bytes = (fp32 / "model.onnx").stat().st_size + (fp32 / "model.onnx.data").stat().st_size
    int4_bytes = result.files["model.onnx"] + result.files["model.onnx.data"]
    assert int4_bytes < 0.35 * fp32_bytes  # tiny dims: block scales and graph overhead weigh in


def test_external_data_decision():
    from exporters.onnx import EXTERNAL_DATA_THRESHOLD, use_external_data

    assert use_external_data(3 << 30) is True  # a 3 GB head cannot fit a 2 GB protobuf
    assert use_external_data(EXTERNAL_DATA_THRESHOLD) is False
    assert use_external_data(10, external_data=True) is True
    assert use_external_data(3 << 30, external_data=False) is False
    assert use_external_data(2000, threshold=1000) is True


def test_int8_raises_the_recorded_onnxruntime_floor_for_its_8bit_gather():
    """Why: the 8-bit GatherBlockQuantized exists from onnxruntime 1.23 only."""
    from exporters.api import min_onnxruntime

    assert min_onnxruntime("int8", 18) == "1.23.0"
    assert min_onnxruntime("int8", 23) == "1.24.1"
    assert min_onnxruntime("int4", 21) == "1.20.0"
    assert min_onnxruntime("fp32", 23) == "1.24.1"
