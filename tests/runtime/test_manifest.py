"""The manifest schema: round trips, validation messages, version refusal, atomic writes."""

from __future__ import annotations

import copy
import json
import re

import pytest

from runtime.errors import ManifestVersionError, ModelFolderError, ShadowRuntimeError
from runtime.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    FileInfo,
    Manifest,
    ModelInfo,
    check_files,
    read_manifest,
    write_manifest,
)

# The example from docs/DESIGN.md, filled in.
DESIGN_EXAMPLE = {
    "format": "shadow-edge",
    "format_version": 1,
    "task": "text-generation",
    "model_file": "model.onnx",
    "ort_model_file": None,
    "precision": "fp32",
    "opset": 18,
    "min_onnxruntime_version": None,
    "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["batch_size", "sequence_length"]}],
    "outputs": [
        {"name": "logits", "dtype": "float32", "shape": ["batch_size", "sequence_length", 49152]}
    ],
    "model": {
        "architecture": "LlamaModel", "num_layers": 2, "num_key_value_heads": 3, "head_dim": 64,
        "hidden_size": 576, "vocab_size": 49152, "max_position_embeddings": 8192,
        "num_labels": None, "id2label": None, "problem_type": None,
    },
    "tokens": {"eos_token_id": [2], "pad_token_id": 2, "bos_token_id": 1,
               "tokenizer_vocab_size": 49152},
    "source": {"checkpoint": "ckpt", "checkpoint_sha256": "ab" * 32, "base": "base",
               "kind": "adapter"},
    "detach": {"parameters": 10, "bytes": 40, "fold_max_rel_diff": 0.0},
    "files": {"model.onnx": {"bytes": 3, "sha256": "cd" * 32}},
    "tool_versions": {"onnx": "1.23.2", "shadow_edge": "0.1.0"},
    "verified": True,
    "parity": {"passed": True, "precision": "fp32", "checks": [{"name": "logits"}]},
    "quantization": None,
}

CLASSIFIER = {
    **DESIGN_EXAMPLE,
    "task": "text-classification",
    "model": {**DESIGN_EXAMPLE["model"], "num_labels": 2, "id2label": {"0": "no", "1": "yes"}},
}


def test_design_example_round_trips_exactly():
    manifest = Manifest.from_dict(copy.deepcopy(DESIGN_EXAMPLE))
    assert manifest.to_dict() == DESIGN_EXAMPLE
    assert list(manifest.to_dict()) == list(DESIGN_EXAMPLE)  # documented key order
    assert manifest.model.num_key_value_heads == 3 and manifest.is_generation


def test_classifier_id2label_has_int_keys_in_memory_and_str_keys_in_json():
    manifest = Manifest.from_dict(copy.deepcopy(CLASSIFIER))
    assert manifest.model.id2label == {0: "no", 1: "yes"}
    assert manifest.to_dict()["model"]["id2label"] == {"0": "no", "1": "yes"}


def test_unknown_keys_survive_a_round_trip():
    data = {**copy.deepcopy(DESIGN_EXAMPLE), "future_field": {"x": 1}}
    assert Manifest.from_dict(data).to_dict()["future_field"] == {"x": 1}


def test_int_eos_becomes_a_list():
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data["tokens"]["eos_token_id"] = 7
    assert Manifest.from_dict(data).tokens.eos_token_id == [7]


def test_write_then_read(tmp_path):
    manifest = Manifest.from_dict(copy.deepcopy(CLASSIFIER))
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST_NAME
    assert json.loads(path.read_text())["task"] == "text-classification"
    assert read_manifest(tmp_path) == manifest
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_NAME]  # no temp file left


def test_write_refuses_to_overwrite_without_flag(tmp_path):
    manifest = Manifest.from_dict(copy.deepcopy(DESIGN_EXAMPLE))
    write_manifest(tmp_path, manifest)
    with pytest.raises(ModelFolderError, match="overwrite=True"):
        write_manifest(tmp_path, manifest)
    manifest.precision = "int8"
    write_manifest(tmp_path, manifest, overwrite=True)
    assert read_manifest(tmp_path).precision == "int8"


def test_newer_format_version_is_refused_with_upgrade_hint(tmp_path):
    data = {**copy.deepcopy(DESIGN_EXAMPLE), "format_version": FORMAT_VERSION + 1,
            "model": "a future layout"}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ManifestVersionError, match="Upgrade shadow-edge") as info:
        read_manifest(tmp_path)
    assert isinstance(info.value, ShadowRuntimeError) and info.value.exit_code == 1


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("precision",), "fp16", "'precision' must be one of"),
        (("task",), "translation", "'task' must be one of"),
        (("format",), "onnx", "not a shadow-edge manifest"),
        (("format_version",), "1", "'format_version' must be an integer"),
        (("model", "num_layers"), 0, "'model.num_layers' must be >= 1"),
        (("model", "head_dim"), None, "'model.head_dim' is required"),
        (("tokens", "pad_token_id"), "2", "'tokens.pad_token_id' must be an integer"),
        (("inputs",), [{"name": "x", "dtype": "int64", "shape": "B"}], "'inputs[0].shape'"),
        (("verified",), "yes", "'verified' must be true or false"),
    ],
)
def test_invalid_fields_name_the_field(path, value, message):
    data = copy.deepcopy(DESIGN_EXAMPLE)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ModelFolderError, match=re.escape(message)):
        Manifest.from_dict(data)


def test_classifier_needs_matching_labels():
    data = copy.deepcopy(CLASSIFIER)
    data["model"]["num_labels"] = 3
    with pytest.raises(ModelFolderError, match="has 2 labels but num_labels is 3"):
        Manifest.from_dict(data)


def test_missing_folder_and_missing_manifest_and_bad_json(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(ModelFolderError, match="no shadow_edge.json"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_check_files_detects_missing_truncated_and_changed(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"abc")
    manifest = Manifest(
        task="text-generation",
        model=ModelInfo("LlamaModel", 1, 8, 16, num_key_value_heads=1, head_dim=8),
        files={"model.onnx": FileInfo.of(tmp_path / "model.onnx")},
    )
    assert manifest.files["model.onnx"].bytes == 3
    check_files(tmp_path, manifest, hashes=True)
    (tmp_path / "model.onnx").write_bytes(b"abd")
    with pytest.raises(ModelFolderError, match="SHA-256"):
        check_files(tmp_path, manifest, hashes=True)
    (tmp_path / "model.onnx").write_bytes(b"ab")
    with pytest.raises(ModelFolderError, match="has 2 bytes"):
        check_files(tmp_path, manifest)
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ModelFolderError, match="missing 'model.onnx'"):
        check_files(tmp_path, manifest)


@pytest.mark.parametrize(
    "path, value",
    [
        (("model_file",), "/etc/passwd"),
        (("model_file",), "../other/model.onnx"),
        (("ort_model_file",), "C:\\models\\model.ort"),
        (("ort_model_file",), "sub\\..\\..\\model.ort"),
        (("files",), {"../../secret": {"bytes": 1, "sha256": "ab" * 32}}),
    ],
)
def test_file_names_must_stay_inside_the_folder(path, value):
    # why: a tampered manifest must not point the runtime (or its hash check) at other files
    data = copy.deepcopy(DESIGN_EXAMPLE)
    data[path[0]] = value
    with pytest.raises(ModelFolderError, match="must be a file name inside the export folder"):
        Manifest.from_dict(data)
    data[path[0]] = {"files": {"sub/model.onnx.data": {"bytes": 1, "sha256": "ab" * 32}}}.get(
        path[0], "sub/model.onnx")
    assert Manifest.from_dict(data).to_dict()[path[0]] == data[path[0]]


def test_verifying_hashes_needs_the_model_file_listed(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"abc")
    manifest = Manifest(
        task="text-generation",
        model=ModelInfo("LlamaModel", 1, 8, 16, num_key_value_heads=1, head_dim=8),
    )
    check_files(tmp_path, manifest)  # size checks have nothing to check: fine
    with pytest.raises(ModelFolderError, match="cannot verify 'model.onnx'.*no size or SHA-256"):
        check_files(tmp_path, manifest, hashes=True)


def test_problem_type_is_optional_and_checked():
    old = copy.deepcopy(CLASSIFIER)
    old["model"].pop("problem_type")  # written before the field existed
    assert Manifest.from_dict(old).model.problem_type is None
    multi = copy.deepcopy(CLASSIFIER)
    multi["model"]["problem_type"] = "multi_label_classification"
    assert Manifest.from_dict(multi).to_dict()["model"]["problem_type"] == "multi_label_classification"
    multi["model"]["problem_type"] = "multilabel"
    with pytest.raises(ModelFolderError, match="'model.problem_type' must be one of"):
        Manifest.from_dict(multi)
