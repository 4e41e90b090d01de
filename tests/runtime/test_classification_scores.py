"""Classifier scores follow the model's problem_type exactly as transformers'
text-classification pipeline computes them (softmax, sigmoid for multi-label and one-logit
models, raw values for regression), with multi-label results above a threshold.

The tiny classifiers of each kind are built and exported with torch; without torch the same
behaviour is checked on the committed 3-label export with its problem_type edited."""

from __future__ import annotations

import json

import numpy as np
import pytest

import runtime
from runtime.classification import score_function, scores_of
from runtime.errors import InvalidSettingError
from runtime.manifest import MANIFEST_NAME, read_manifest
from tests.runtime.folder_edits import copy_export, refresh_manifest

pytestmark = pytest.mark.xdist_group("runtime")
TEXTS = ["turn on the kitchen light", "off", "dim the hallway lamp to forty percent"]
# name -> (num_labels, problem_type written to the HF config)
KINDS = {
    "one-logit": (1, None),  # the case: a softmax of one logit scored every text 1.000
    "multi-label": (4, "multi_label_classification"),
    "regression": (1, "regression"),
    "single-label": (3, "single_label_classification"),
}


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """{kind: (HF source folder, export folder)} built once (torch and the exporters: the
    tests using it skip without them)."""
    torch = pytest.importorskip("torch", reason="builds tiny classifiers with torch")
    pytest.importorskip("transformers", reason="builds tiny classifiers with transformers")
    from exporters import export
    from exporters.testing import tiny_model, tiny_tokenizer_files

    root = tmp_path_factory.mktemp("problem-types")
    built = {}
    for seed, (kind, (num_labels, problem_type)) in enumerate(KINDS.items()):
        model = tiny_model("llama", "text-classification", seed=seed, num_labels=num_labels)
        model.config.problem_type = problem_type
        with torch.no_grad():  # spread the logits so that sigmoids are not all ~0.5
            model.score.weight.mul_(0.3)
        source = root / f"{kind}-source"
        model.save_pretrained(str(source))
        tiny_tokenizer_files(source)
        built[kind] = (source, export(source, root / kind, verify=False).output_dir)
    return built


def _pipeline(source):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    return pipeline("text-classification", model=model,
                    tokenizer=AutoTokenizer.from_pretrained(str(source)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_scores_equal_the_transformers_pipeline(classifiers, kind):
    source, folder = classifiers[kind]
    problem_type = KINDS[kind][1]
    assert read_manifest(folder).model.problem_type == problem_type  # recorded at export
    model = runtime.load(folder, threads=1)
    results = model.classify(TEXTS)
    pipe = _pipeline(source)
    for text, result in zip(TEXTS, results):
        every = {d["label"]: d["score"] for d in pipe(text, top_k=None)}
        got = dict(zip(model.labels, result.scores.tolist()))
        assert got == pytest.approx(every, abs=1e-5)
        best = pipe(text)[0]  # the pipeline's default output: the best label and its score
        assert result.label == best["label"]
        assert result.score == pytest.approx(best["score"], abs=1e-5)


def test_one_logit_scores_are_sigmoids_not_ones(classifiers):
    result = runtime.load(classifiers["one-logit"][1], threads=1).classify(TEXTS)
    scores = [r.score for r in result]
    assert all(0.0 < s < 1.0 for s in scores) and len({round(s, 4) for s in scores}) == 3
    for r in result:
        assert r.score == pytest.approx(1 / (1 + np.exp(-float(r.logits[0]))), abs=1e-6)


def _check_thresholds(model, num_labels: int) -> None:
    """Multi-label results list every label scoring >= the threshold, best first."""
    for threshold in (0.0, 0.3, 0.5, 0.9, 1.0):
        for result in model.classify(TEXTS, threshold=threshold):
            above = [(s, name) for name, s in zip(model.labels, result.scores) if s >= threshold]
            assert result.labels == [name for _, name in sorted(above, key=lambda p: -p[0])]
            assert result.as_dict(model.labels)["labels"] == result.labels
    assert all(len(r.labels) == num_labels for r in model.classify(TEXTS, threshold=0.0))
    with pytest.raises(InvalidSettingError, match="threshold must be a number in \\[0, 1\\]"):
        model.classify(TEXTS, threshold=1.5)


def _check_one_label(single, regression) -> None:
    """Single-label and regression results list their one label; regression scores are the
    raw values of the logit of that label, not probabilities."""
    for model in (single, regression):
        for result in model.classify(TEXTS):
            assert result.labels == [result.label]
    for result in regression.classify(TEXTS):
        best = regression.labels.index(result.label)
        assert result.score == pytest.approx(float(result.logits[best]), abs=0.0)


def test_multi_label_results_list_every_label_above_the_threshold(classifiers):
    _check_thresholds(runtime.load(classifiers["multi-label"][1], threads=1), 4)


def test_single_label_and_regression_results_list_their_one_label(classifiers):
    _check_one_label(*(runtime.load(classifiers[kind][1], threads=1)
                       for kind in ("single-label", "regression")))


@pytest.mark.parametrize(
    "problem_type, num_labels, function",
    [(None, 1, "sigmoid"), (None, 2, "softmax"), ("regression", 1, "none"),
     ("regression", 3, "none"), ("multi_label_classification", 3, "sigmoid"),
     ("multi_label_classification", 1, "sigmoid"), ("single_label_classification", 1, "sigmoid"),
     ("single_label_classification", 5, "softmax")],
)
def test_score_function_follows_the_pipeline_rules(problem_type, num_labels, function):
    # TextClassificationPipeline.postprocess: regression first, then multi-label or one
    # logit -> sigmoid, then single-label or several logits -> softmax
    assert score_function(problem_type, num_labels) == function


def test_scores_of_each_function():
    logits = np.array([[2.0, -1.0, 0.0]], np.float32)
    np.testing.assert_allclose(scores_of(logits, "softmax").sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(scores_of(logits, "sigmoid"), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    np.testing.assert_array_equal(scores_of(logits, "none"), logits)


def test_the_cli_lists_multi_label_labels_above_its_threshold(classifiers):
    import json

    from typer.testing import CliRunner

    from shadow_edge.cli import app

    folder = classifiers["multi-label"][1]
    want = runtime.load(folder, threads=1).classify(TEXTS, threshold=0.3)
    result = CliRunner().invoke(app, ["classify", str(folder), *TEXTS, "--threshold", "0.3",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert [row["labels"] for row in json.loads(result.stdout)] == [w.labels for w in want]
    table = CliRunner().invoke(app, ["classify", str(folder), TEXTS[0], "--threshold", "0"],
                               env={"COLUMNS": "200"})
    assert "labels" in table.stdout and ", ".join(want[0].labels[:2]) in table.stdout


# ---- the committed classifier with its problem_type edited: runs without torch ----------

# the kinds a 3-label model can be -> the pipeline's function for it
COMMITTED_KINDS = {"multi-label": "sigmoid", "regression": "none", "single-label": "softmax"}


@pytest.fixture(scope="module")
def committed_classifiers(exports, tmp_path_factory):
    """{kind: runtime model}: the committed ``cls`` export (3 labels; its logits are checked
    against torch in test_parity) with config.json's and the manifest's problem_type set."""
    root = tmp_path_factory.mktemp("committed-problem-types")
    models = {}
    for kind in COMMITTED_KINDS:
        folder = copy_export(exports["cls"], root / kind)
        problem_type = KINDS[kind][1]
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        manifest["model"]["problem_type"] = problem_type
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
        config = json.loads((folder / "config.json").read_text())
        config["problem_type"] = problem_type
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        models[kind] = runtime.load(refresh_manifest(folder), threads=1)
        assert models[kind].runner.problem_type == problem_type  # what decides the scores
    return models


def _pipeline_scores(logits: np.ndarray, function: str) -> np.ndarray:
    """TextClassificationPipeline.postprocess's functions, in float64."""
    logits = logits.astype(np.float64)
    if function == "softmax":
        shifted = np.exp(logits - logits.max())
        return shifted / shifted.sum()
    return 1 / (1 + np.exp(-logits)) if function == "sigmoid" else logits


@pytest.mark.parametrize("kind", list(COMMITTED_KINDS))
def test_committed_classifier_scores_follow_its_problem_type(classifier, committed_classifiers,
                                                            kind):
    model = committed_classifiers[kind]
    for result, base in zip(model.classify(TEXTS), classifier.classify(TEXTS), strict=True):
        np.testing.assert_array_equal(result.logits, base.logits)  # only the scores change
        expected = _pipeline_scores(result.logits, COMMITTED_KINDS[kind])
        np.testing.assert_allclose(result.scores, expected, rtol=1e-6, atol=1e-7)
        best = int(np.argmax(expected))  # the pipeline's default output: the best label
        assert result.label == model.labels[best]
        assert result.score == pytest.approx(expected[best], rel=1e-6)


def test_committed_multi_label_lists_every_label_above_the_threshold(committed_classifiers):
    _check_thresholds(committed_classifiers["multi-label"], 3)


def test_committed_single_label_and_regression_list_their_one_label(committed_classifiers):
    _check_one_label(committed_classifiers["single-label"], committed_classifiers["regression"])
