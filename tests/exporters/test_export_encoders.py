"""Encoder classifiers (BERT, DistilBERT, RoBERTa): export, gate, runtime, and the wrong turns.

Each architecture's ShadowPEFT classifier adapter (``conftest.build_encoder_export``: BERT
implicit, DistilBERT and RoBERTa explicit with a folded projection) is exported once per
session and checked against the torch shadow under left and right padding, through
``exporters.verify_session`` and through the runtime.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import transformers as tf

import runtime
from exporters import export, quantize_export, verify
from exporters.sources import recorded_task_of
from exporters.testing import TINY_VOCAB, tiny_model, tiny_model_folder
from exporters.verify_session import OnnxClassifier
from runtime.manifest import read_manifest
from shadow_edge.errors import CheckpointError, ConfigError
from tests.tiny_models import ENCODER_ARCHITECTURES

pytestmark = pytest.mark.xdist_group("exporters")
TASK = "text-classification"


@pytest.fixture(params=ENCODER_ARCHITECTURES)
def built(request, encoder_exports):
    return encoder_exports(request.param)


def torch_logits(model, ids, mask, types=None) -> np.ndarray:
    """The torch shadow-only logits of each row run alone (no padding)."""
    rows = []
    for i in range(len(ids)):
        keep = mask[i].astype(bool)
        kwargs = {} if types is None else {"token_type_ids": torch.from_numpy(types[i:i + 1, keep])}
        with torch.no_grad():
            rows.append(model(input_ids=torch.from_numpy(ids[i:i + 1, keep]), **kwargs).logits[0].numpy())
    return np.stack(rows)


def padded(rows: list[np.ndarray], side: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    ids = np.zeros((len(rows), width), np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def test_export_passes_the_gate_with_the_encoder_io(built):
    manifest = read_manifest(built.folder)
    assert manifest.task == TASK and manifest.verified and manifest.model.num_labels == 3
    names = [t.name for t in manifest.inputs]
    # only BERT has segment embeddings (type_vocab_size 2); RoBERTa checkpoints have one type
    expected = ["input_ids", "attention_mask"] + (["token_type_ids"] if built.arch == "bert" else [])
    assert names == expected
    checks = {c["name"]: c for c in manifest.parity["checks"]}
    assert checks["argmax_agreement"]["value"] == 1.0
    assert checks["logits_max_abs_diff"]["value"] <= 1e-5 * manifest.parity["logit_scale"]
    graph = onnx.load(str(built.folder / "model.onnx")).graph
    assert sum(node.op_type == "Attention" for node in graph.node) == 2  # one per shadow layer
    assert not any(init.name.endswith("pooler.dense.weight") and "shadow" in init.name
                   for init in graph.initializer)
    if built.kind == "explicit":  # the projection is folded into the head's first Linear
        assert manifest.detach.fold_max_rel_diff <= 1e-5


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_rows_match_torch_and_the_rows_alone(built, side):
    rng = np.random.default_rng(3)
    rows = [rng.integers(3, TINY_VOCAB, n) for n in (9, 4, 6, 1)]
    ids, mask = padded(rows, side, 9)
    logits = OnnxClassifier(built.folder / "model.onnx").logits(ids, mask)
    reference = torch_logits(built.model, ids, mask)
    assert logits.shape == (4, 3)
    assert np.abs(logits - reference).max() <= 1e-4 * np.abs(reference).max()
    assert (logits.argmax(-1) == reference.argmax(-1)).all()


def test_token_type_ids_are_wired_through_the_graph(encoder_exports):
    built = encoder_exports("bert")
    ids = np.array([[5, 9, 11, 30, 31, 40], [0, 0, 7, 8, 9, 10]])
    mask = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    types = np.array([[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    classifier = OnnxClassifier(built.folder / "model.onnx")
    typed = classifier.logits(ids, mask, types)
    reference = torch_logits(built.model, ids, mask, types)
    assert np.abs(typed - reference).max() <= 1e-4 * np.abs(reference).max()
    assert np.abs(typed - classifier.logits(ids, mask)).max() > 1e-3  # the types matter


def test_runtime_classifies_like_the_torch_shadow(built):
    classifier = runtime.load(built.folder, threads=1)
    texts = ["turn on the kitchen light", "stop", "what is the weather like in the attic today"]
    results = classifier.classify(texts, batch_size=2)
    tokenizer = classifier.tokenizer
    for text, result in zip(texts, results):
        ids = np.array([tokenizer.encode(text)])
        reference = torch_logits(built.model, ids, np.ones_like(ids))[0]
        assert np.abs(result.logits - reference).max() <= 1e-4 * np.abs(reference).max()
        assert result.label == f"label_{int(reference.argmax())}"
    assert classifier.runner.takes_token_type_ids == (built.arch == "bert")


def test_runtime_feeds_the_token_type_ids_the_caller_gives(encoder_exports):
    built = encoder_exports("bert")
    runner = runtime.load(built.folder, threads=1).runner
    rows, types = [[5, 9, 11, 30, 31], [7, 8, 9]], [[0, 0, 1, 1, 1], [0, 1, 1]]
    logits = runner.logits(rows, 0, types)
    for i, (row, typ) in enumerate(zip(rows, types)):
        ids, segs = np.array([row]), np.array([typ])
        reference = torch_logits(built.model, ids, np.ones_like(ids), segs)[0]
        assert np.abs(logits[i] - reference).max() <= 1e-4 * np.abs(reference).max()


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_quantized_encoder_exports_are_sound_and_gated(built, precision, tmp_path):
    """The gate runs on quantized encoder graphs with the classification checks. Tiny random
    shadows sit at the edge of the quantized gates (3 random logits per row: one row with
    small logits moves the mean cosine), so soundness is asserted here and accuracy on real
    text with MiniLM (test_minilm_export.py)."""
    result = quantize_export(built.folder, tmp_path / precision, precision)
    report = verify(result.output_dir, built.checkpoint, raise_on_failure=False)
    assert report.precision == precision and report.task == TASK
    checks = {c.name: c.value for c in report.checks}
    assert set(checks) == {"argmax_agreement", "mean_logit_cosine", "argmax_agreement_random_ids",
                           "mean_logit_cosine_random_ids", "padding_min_cosine"}
    # a broken graph scores ~1/3 and ~0; measured (argmax / cosine over the three
    # architectures): int8 0.91-1.0 / 0.972-0.9995, int4 0.84-0.94 / 0.941-0.999
    assert checks["argmax_agreement"] >= {"int8": 0.85, "int4": 0.75}[precision]
    assert checks["mean_logit_cosine"] > 0.9
    ids, mask = padded([np.arange(3, 12), np.arange(20, 24)], "right", 9)
    logits = OnnxClassifier(tmp_path / precision / "model.onnx").logits(ids, mask)
    assert np.isfinite(logits).all() and logits.shape == (2, 3)


@pytest.mark.parametrize("arch", ENCODER_ARCHITECTURES)
def test_hf_encoder_classifier_pools_its_first_token_like_transformers(arch, exports):
    """A plain ``*ForSequenceClassification`` folder: the architecture's own head on [CLS]
    (before: BERT was exported as a last-token decoder, DistilBERT failed in torch.export)."""
    folder = exports.get(arch, TASK)
    model = tiny_model(arch, TASK, num_layers=2)
    rows = [np.array([5, 9, 11, 30, 31]), np.array([7, 8, 9])]
    classifier = OnnxClassifier(folder / "model.onnx")
    for side in ("left", "right"):
        ids, mask = padded(rows, side, 5)
        logits = classifier.logits(ids, mask)
        for i, row in enumerate(rows):
            with torch.no_grad():
                reference = model(input_ids=torch.from_numpy(row[None])).logits[0].numpy()
            np.testing.assert_allclose(logits[i], reference, atol=1e-4 * np.abs(reference).max())
    with torch.no_grad():  # transformers' own right-padded batch (it pools position 0)
        ids, mask = padded(rows, "right", 5)
        hf = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    np.testing.assert_allclose(classifier.logits(ids, mask), hf.numpy(), atol=1e-4)


@pytest.mark.parametrize("model_class", [tf.BertModel, tf.BertForMaskedLM, tf.DistilBertModel,
                                         tf.RobertaForCausalLM])
def test_encoder_folders_without_a_classifier_are_refused_even_unverified(model_class, tmp_path):
    from exporters.testing import tiny_encoder_config

    arch = {"Bert": "bert", "Dist": "distilbert", "Robe": "roberta"}[model_class.__name__[:4]]
    model_class(tiny_encoder_config(arch)).save_pretrained(tmp_path / "src")
    assert recorded_task_of(tmp_path / "src") == TASK  # never "a text-generation model"
    with pytest.raises(CheckpointError, match="encoder without a trained classification head"):
        export(tmp_path / "src", tmp_path / "out", verify=False)
    assert not (tmp_path / "out").exists()


def test_a_classifier_folder_missing_its_head_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tiny_model_folder(tmp_path / "src", "bert", TASK)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing keys: .*classifier.weight"):
        export(folder, tmp_path / "out", verify=False)
    assert not (tmp_path / "out").exists()


def test_text_generation_of_an_encoder_is_a_one_line_config_error(encoder_exports, tmp_path):
    folder = tiny_model_folder(tmp_path / "src", "bert", TASK)
    for source in (folder, tiny_model("distilbert", TASK)):
        with pytest.raises(ConfigError, match="encoder .*cannot generate text") as error:
            export(source, tmp_path / "out", task="text-generation")
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="text-classification checkpoint"):
        export(encoder_exports("roberta").checkpoint, tmp_path / "out", task="CAUSAL_LM")
    with pytest.raises(ConfigError, match="encoder without a classification head"):
        export(tf.BertModel(tiny_model("bert", TASK).config), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_manifest_and_config_describe_the_encoder(encoder_exports):
    built = encoder_exports("bert")
    manifest = json.loads((built.folder / "shadow_edge.json").read_text())
    assert manifest["model"]["architecture"] == "BertModel"
    assert manifest["model"]["num_layers"] == 2 and manifest["source"]["kind"] == "adapter"
    config = json.loads((built.folder / "config.json").read_text())
    assert config["model_type"] == "bert" and config["num_hidden_layers"] == 2


def test_runtime_refuses_a_manifest_that_disagrees_on_token_type_ids(encoder_exports, tmp_path):
    import shutil

    from runtime.errors import ModelFolderError

    folder = shutil.copytree(encoder_exports("bert").folder, tmp_path / "copy")
    manifest = json.loads((folder / "shadow_edge.json").read_text())
    manifest["inputs"] = [i for i in manifest["inputs"] if i["name"] != "token_type_ids"]
    (folder / "shadow_edge.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFolderError, match="does not list the input token_type_ids"):
        runtime.load(folder, threads=1)
