"""Bad input gives a clear error and leaves no output folder and no temporary folder."""

from __future__ import annotations

import shutil

import pytest
from onnx import numpy_helper

from exporters import export, verify
from exporters.errors import ExportError, ParityError
from exporters.testing import tiny_model, tiny_model_folder
from runtime.manifest import read_manifest
from shadow_edge.errors import CheckpointError, ConfigError
from tests.exporters.conftest import ARCH_SIZES

pytestmark = pytest.mark.xdist_group("exporters")


def _names(path):
    return sorted(p.name for p in path.iterdir())


@pytest.fixture(scope="module")
def llama(shadow_exports):
    """The session's implicit llama shadow adapter and its fp32 export."""
    return shadow_exports("llama")


@pytest.fixture(scope="module")
def source(llama):
    return llama.checkpoint


@pytest.fixture
def reuse_export(reuse_onnx, llama):
    """Exports of ``source`` reuse the session's llama ``model.onnx`` (no dynamo export)."""
    reuse_onnx.source = llama.folder / "model.onnx"
    return reuse_onnx


def _scale_largest_weight(proto):
    largest = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    array = numpy_helper.to_array(largest) * 1.5
    largest.CopyFrom(numpy_helper.from_array(array, largest.name))


def test_unknown_task_fails_before_any_work(source, tmp_path):
    with pytest.raises(ConfigError, match="unknown task 'summarization'"):
        export(source, tmp_path / "out", task="summarization")
    assert _names(tmp_path) == []


def test_unknown_precision_is_a_config_error(source, tmp_path):
    with pytest.raises(ConfigError, match="fp16"):
        export(source, tmp_path / "out", precision="fp16")
    with pytest.raises(ConfigError, match="--int4"):
        export(source, tmp_path / "out", int4_keep_embeddings=True)
    with pytest.raises(ConfigError, match="--opset 18"):
        export(source, tmp_path / "out", opset=17)
    assert _names(tmp_path) == []


def test_existing_output_folder_needs_force(source, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(ExportError, match="--force"):
        export(source, tmp_path / "out")
    assert _names(tmp_path) == ["out"] and _names(tmp_path / "out") == ["mine.txt"]


def test_unwritable_output_path(source, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="writable"):
        export(source, tmp_path / "file" / "out")
    assert _names(tmp_path) == ["file"]


def test_missing_and_non_checkpoint_folders(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        export(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="shadow_config.json.*config.json"):
        export(tmp_path / "empty", tmp_path / "out")
    assert _names(tmp_path) == ["empty"]


def test_checkpoint_that_is_a_file(tmp_path):
    (tmp_path / "data.jsonl").write_text("{}")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        export(tmp_path / "data.jsonl", tmp_path / "out")
    assert _names(tmp_path) == ["data.jsonl"]


def test_task_other_than_the_adapters_fails_before_loading_the_base(source, tmp_path):
    with pytest.raises(ConfigError, match="is a text-generation checkpoint.*drop --task"):
        export(source, tmp_path / "out", task="SEQ_CLS")
    assert _names(tmp_path) == []


def test_verify_against_a_checkpoint_of_another_task(llama, tmp_path):
    shutil.copytree(llama.checkpoint, tmp_path / "ckpt")
    config = (tmp_path / "ckpt" / "shadow_config.json")
    config.write_text(config.read_text().replace('"CAUSAL_LM"', '"SEQ_CLS"'))
    with pytest.raises(ConfigError, match="text-generation export, but .* text-classification"):
        verify(llama.folder, tmp_path / "ckpt")


def test_corrupt_safetensors_is_a_checkpoint_error(tmp_path):
    hf_source = tiny_model_folder(tmp_path / "model", "llama", **ARCH_SIZES["llama"])
    broken = shutil.copytree(hf_source, tmp_path / "broken")
    shutil.rmtree(hf_source)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        export(broken, tmp_path / "out")
    assert _names(tmp_path) == ["broken"]


def test_perturbed_onnx_fails_the_gate_and_leaves_nothing(source, tmp_path, reuse_export):
    reuse_export.perturb = _scale_largest_weight
    with pytest.raises(ParityError, match="does not match the torch model") as error:
        export(source, tmp_path / "out")
    report = error.value.report
    assert report["passed"] is False and report["precision"] == "fp32"
    failed = {c["name"] for c in report["checks"] if not c["passed"]}
    assert "logits_max_abs_diff" in failed
    assert all({"name", "value", "threshold", "passed"} <= set(c) for c in report["checks"])
    assert _names(tmp_path) == []


def test_failed_gate_with_force_keeps_the_previous_export(source, tmp_path, reuse_export):
    export(source, tmp_path / "out")
    before = (tmp_path / "out" / "shadow_edge.json").read_bytes()
    reuse_export.perturb = _scale_largest_weight
    with pytest.raises(ParityError):
        export(source, tmp_path / "out", force=True)
    assert (tmp_path / "out" / "shadow_edge.json").read_bytes() == before
    assert _names(tmp_path) == ["out"]


def test_force_replaces_an_existing_export(source, tmp_path, reuse_export):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.bin").write_bytes(b"old")
    result = export(source, tmp_path / "out", force=True)
    assert "stale.bin" not in _names(result.output_dir)
    assert read_manifest(result.output_dir).verified
    assert _names(tmp_path) == ["out"]


def test_no_verify_is_recorded_in_the_manifest(source, tmp_path, reuse_export):
    reuse_export.perturb = _scale_largest_weight  # would fail the gate, but it is skipped
    result = export(source, tmp_path / "out", verify=False)
    assert result.parity is None
    manifest = read_manifest(result.output_dir)
    assert manifest.verified is False and manifest.parity is None
    assert "--no-verify" in manifest.verified_reason


def test_mismatched_torch_reference_fails_verify(llama):
    folder = llama.folder
    other = tiny_model("llama", seed=7, **ARCH_SIZES["llama"])
    with pytest.raises(ParityError) as error:
        verify(folder, other)
    assert error.value.report["passed"] is False
    report = verify(folder, other, raise_on_failure=False)
    assert not report.passed and report.check("greedy_tokens_identical").value < 32


def test_an_onnxruntime_too_old_for_the_opset_stops_before_exporting(source, tmp_path,
                                                                     monkeypatch):
    import runtime.session
    from runtime.errors import OnnxRuntimeVersionError

    monkeypatch.setattr(runtime.session.ort, "__version__", "1.23.2")
    with pytest.raises(OnnxRuntimeVersionError, match="--opset 18"):
        export(source, tmp_path / "out")
    assert _names(tmp_path) == []
