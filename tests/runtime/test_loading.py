"""Loading export folders: providers, threads, precisions, and clear errors for bad folders."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import pytest

import runtime
import runtime.session as session_module
from runtime.errors import (
    InvalidSettingError,
    ManifestVersionError,
    ModelFolderError,
    OnnxRuntimeVersionError,
    ProviderUnavailableError,
)
from runtime.session import (
    PROVIDER_ALIASES,
    available_providers,
    canonical_provider,
    resolve_providers,
)

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")


def _copy(exports, key, tmp_path):
    return shutil.copytree(exports[key], tmp_path / key)


def test_load_returns_the_task_class_and_reports_providers(exports, generator, classifier):
    assert isinstance(generator, runtime.ShadowGenerator)
    assert isinstance(classifier, runtime.ShadowClassifier)
    assert generator.providers == ["CPUExecutionProvider"]
    assert classifier.labels == ["label_0", "label_1", "label_2"]
    assert generator.pad_token_id == 0 and generator.eos_token_ids == [2]


def test_info_reads_only_the_manifest(exports):
    info = runtime.info(exports["int8"])
    assert info["task"] == "text-generation" and info["precision"] == "int8"
    assert info["model"]["num_layers"] == 2 and info["model"]["head_dim"] == 16
    assert info["files"]["model.onnx"] == (exports["int8"] / "model.onnx").stat().st_size
    assert info["verified"] is False
    assert "CPUExecutionProvider" in info["available_providers"]


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_exports_decode_through_the_cache_like_a_full_recompute(exports, generator,
                                                                          precision):
    quantized = runtime.load(exports[precision], threads=1)
    assert quantized.manifest.precision == precision
    prompt = generator.tokenizer.encode("The robot turns on the kitchen light")
    ids = quantized.generate(prompt, max_new_tokens=24, eos_token_id=[]).token_ids
    # the cached greedy tokens are the argmax of one full pass over prompt + continuation
    full = np.array([prompt + ids])
    mask = np.ones_like(full)
    positions = np.arange(full.shape[1])[None]
    got, _ = quantized.runner.step(full, mask, positions, quantized.runner.empty_cache(1),
                                   all_logits=True)
    assert got[0, len(prompt) - 1:-1].argmax(-1).tolist() == ids
    # and the quantized weights still carry the model: far above chance (1/259) vs fp32
    want, _ = generator.runner.step(full, mask, positions, generator.runner.empty_cache(1),
                                    all_logits=True)
    assert (want.argmax(-1) == got.argmax(-1)).mean() >= 0.5
    batch = quantized.generate(["a", "bcd"], max_new_tokens=6, eos_token_id=[])
    assert [r.token_ids for r in batch] == [
        quantized.generate(p, max_new_tokens=6, eos_token_id=[]).token_ids for p in ["a", "bcd"]
    ]


def test_threads_and_optimization_levels(exports, generator):
    want = generator.generate("Hello", max_new_tokens=8, eos_token_id=[]).token_ids
    for threads, level in [(2, "basic"), (1, "disable")]:
        model = runtime.load(exports["fp32"], threads=threads, optimization=level)
        assert model.generate("Hello", max_new_tokens=8, eos_token_id=[]).token_ids == want


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"threads": 0}, InvalidSettingError, "threads must be a positive integer"),
        ({"optimization": "max"}, InvalidSettingError, "unknown graph optimization level"),
        ({"providers": "coreml-ish"}, ProviderUnavailableError, "unknown execution provider"),
        ({"providers": "coreml"}, ProviderUnavailableError, "not available"),
        ({"use_ort_format": True}, ModelFolderError, "no .ort model"),
    ],
)
def test_bad_load_settings(exports, kwargs, error, message):
    with pytest.raises(error, match=message):
        runtime.load(exports["cls"], **kwargs)


def test_ort_format_model_gives_the_same_tokens(exports, generator):
    model = runtime.load(exports["fp32"], use_ort_format=True, threads=1)
    assert model.manifest.ort_model_file == "model.ort"
    want = generator.generate("Hello", max_new_tokens=8, eos_token_id=[]).token_ids
    assert model.generate("Hello", max_new_tokens=8, eos_token_id=[]).token_ids == want


def test_provider_names_resolve_with_cpu_last():
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    assert resolve_providers(["CPUExecutionProvider", "cpu"]) == ["CPUExecutionProvider"]


def test_every_alias_names_a_provider_onnxruntime_registers():
    # the case: "xnnpack" used to become "XNNPACKExecutionProvider", a name onnxruntime lacks
    registered = set(onnxruntime.get_all_providers())
    assert PROVIDER_ALIASES and set(PROVIDER_ALIASES.values()) <= registered
    assert {name: PROVIDER_ALIASES[name] for name in ("cpu", "xnnpack", "nnapi", "coreml", "qnn")} == {
        "cpu": "CPUExecutionProvider", "xnnpack": "XnnpackExecutionProvider",
        "nnapi": "NnapiExecutionProvider", "coreml": "CoreMLExecutionProvider",
        "qnn": "QNNExecutionProvider"}
    # any spelling a user types resolves to onnxruntime's own name
    for typed in ("xnnpack", "XNNPACK", " Xnnpack ", "XNNPACKExecutionProvider",
                  "xnnpackexecutionprovider", "XnnpackExecutionProvider"):
        assert canonical_provider(typed) == "XnnpackExecutionProvider"
    for full in registered:
        assert canonical_provider(full) == full and canonical_provider(full.upper()) == full


def test_an_offered_accelerator_resolves_to_its_registered_name(monkeypatch):
    offered = ["XnnpackExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(session_module, "available_providers", lambda: list(offered))
    assert resolve_providers("xnnpack") == ["XnnpackExecutionProvider", "CPUExecutionProvider"]
    assert resolve_providers(["coreml", "XNNPACK", "cpu"]) == [
        "CoreMLExecutionProvider", "XnnpackExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize("name", ["xnnpack", "nnapi", "coreml", "qnn", "cuda"])
def test_a_missing_provider_names_itself_and_only_what_is_offered(name):
    full = canonical_provider(name)
    if full in available_providers():
        pytest.skip(f"{full} is offered by this build")
    with pytest.raises(ProviderUnavailableError, match=f"'{name}' is not available") as error:
        resolve_providers([name])
    offered = str(error.value).split("offers ")[1].split(", not")[0]
    assert full not in offered and f"not {full}" in str(error.value)


def test_unknown_provider_name_lists_the_short_names():
    with pytest.raises(ProviderUnavailableError, match="unknown execution provider 'xnnpak'.*'xnnpack'"):
        resolve_providers("xnnpak")


def test_missing_folder_and_files(exports, tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        runtime.load(tmp_path / "nothing")
    folder = _copy(exports, "fp32", tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFolderError, match="missing 'tokenizer.json'"):
        runtime.load(folder)
    (folder / "model.onnx").unlink()
    with pytest.raises(ModelFolderError, match="missing 'model.onnx'"):
        runtime.load(folder)


def test_corrupt_model_file_of_the_right_size(exports, tmp_path):
    folder = _copy(exports, "fp32", tmp_path)
    size = (folder / "model.onnx").stat().st_size
    (folder / "model.onnx").write_bytes(b"\x07garbage" * (size // 8) + b"x" * (size % 8))
    with pytest.raises(ModelFolderError, match="onnxruntime cannot load"):
        runtime.load(folder)
    with pytest.raises(ModelFolderError, match="SHA-256"):
        runtime.load(folder, verify_hashes=True)


def test_newer_manifest_version_is_refused(exports, tmp_path):
    folder = _copy(exports, "cls", tmp_path)
    data = json.loads((folder / "shadow_edge.json").read_text())
    data["format_version"] = 2
    (folder / "shadow_edge.json").write_text(json.dumps(data))
    with pytest.raises(ManifestVersionError, match="format_version 2.*Upgrade shadow-edge"):
        runtime.load(folder)


def test_manifest_that_disagrees_with_the_graph(exports, tmp_path):
    folder = _copy(exports, "fp32", tmp_path)
    data = json.loads((folder / "shadow_edge.json").read_text())
    data["model"]["num_layers"] = 3
    (folder / "shadow_edge.json").write_text(json.dumps(data))
    with pytest.raises(ModelFolderError, match="missing inputs \\['past_key_values.2.key'"):
        runtime.load(folder)


def test_classifier_errors(classifier):
    with pytest.raises(InvalidSettingError, match="zero tokens"):
        classifier.classify(["ok", ""])
    with pytest.raises(InvalidSettingError, match="batch_size must be"):
        classifier.classify(["ok"], batch_size=0)
    with pytest.raises(InvalidSettingError, match="string or a non-empty list"):
        classifier.classify([])
    with pytest.raises(InvalidSettingError, match="unpaired surrogate"):
        classifier.classify(["ok", "\ud800"])
    long_text = "word " * 200
    with pytest.raises(runtime.errors.PromptTooLongError, match="truncate=True"):
        classifier.classify(long_text)
    assert classifier.classify(long_text, truncate=True).label.startswith("label_")


def test_batched_classification_equals_single_rows(classifier):
    texts = ["a", "turn the lights off in the hall", "é😀", "set timer"]
    batch = classifier.classify(texts, batch_size=3)
    for text, result in zip(texts, batch):
        alone = classifier.classify(text)
        assert alone.label == result.label
        np.testing.assert_allclose(alone.logits, result.logits, atol=1e-5)
    assert batch[0].as_dict(classifier.labels)["scores"].keys() == set(classifier.labels)


@pytest.mark.parametrize("opset, version, ok", [
    (23, "1.32.0", True), (23, "1.24.1", True), (23, "1.24.1+cpu", True),
    (23, "1.23.2", False), (23, "1.22.1", False), (23, "1.25.0.dev20251020", True),
    (18, "1.20.0", True), (21, "1.19.0", False), (18, "1.19.0", True), (None, "1.0.0", True),
])
def test_onnxruntime_version_check_by_opset(opset, version, ok):
    from runtime.session import check_onnxruntime_version

    if ok:
        check_onnxruntime_version(opset, version)
    else:
        with pytest.raises(OnnxRuntimeVersionError, match=r"onnxruntime>=1\.\d+\.\d+.*--opset 18"):
            check_onnxruntime_version(opset, version)


def test_an_old_onnxruntime_is_refused_before_it_runs_wrong_numbers(exports, monkeypatch):
    """1.23.x loads opset-23 graphs and returns wrong logits; load() must stop first."""
    import runtime.session

    assert runtime.info(exports["fp32"])["opset"] >= 23
    monkeypatch.setattr(runtime.session.ort, "__version__", "1.23.2")
    with pytest.raises(OnnxRuntimeVersionError, match="opset 23.*1.23.2"):
        runtime.load(exports["fp32"])
