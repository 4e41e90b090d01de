"""The exporter infers the task of every source from what it holds; ``--task`` overrides only
a guess and must agree with what a checkpoint says.

Why: shadow-peft 0.1.1 classification checkpoints record no ``task_type`` and needed
``--task``; peft's standalone classifier was exported as text generation.
"""

from __future__ import annotations

import importlib
import json

import pytest

import shadow_edge
from exporters import detach
from exporters.sources import recorded_task_of
from exporters.testing import tiny_model, tiny_model_folder
from shadow_edge.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def shadow_peft():
    """The original package, for this module only (see tests/core/test_compat_shadow_peft.py)."""
    yield importlib.import_module("shadow_peft")
    shadow_edge.register_auto_classes(override=True)


def test_shadow_peft_classifier_checkpoint_exports_without_task(tmp_path, shadow_peft):
    base_dir = tiny_model_folder(tmp_path / "base", "llama", "text-classification")
    base = tiny_model("llama", "text-classification")
    theirs = shadow_peft.ShadowForSequenceClassification(
        shadow_peft.get_shadow_model(base, shadow_peft.ShadowConfig(num_shadow_layers=1)))
    theirs.save_pretrained(tmp_path / "ckpt")
    assert "task_type" not in json.loads((tmp_path / "ckpt" / "shadow_config.json").read_text())
    assert recorded_task_of(tmp_path / "ckpt") == "text-classification"
    detached = detach(tmp_path / "ckpt", base=base_dir)
    assert detached.task == "text-classification" and detached.model.num_labels == 3
    with pytest.raises(ConfigError, match="text-classification checkpoint .the heads it holds."):
        detach(tmp_path / "ckpt", base=base_dir, task="text-generation")


def test_hf_folder_without_architectures_is_told_by_its_head(tmp_path):
    for task, head in (("text-classification", "score"), ("text-generation", "lm_head")):
        folder = tiny_model_folder(tmp_path / task, "llama", task)
        config = json.loads((folder / "config.json").read_text())
        config.pop("architectures")
        (folder / "config.json").write_text(json.dumps(config))
        assert recorded_task_of(folder) == task, head
        assert detach(folder).task == task


def test_task_of_a_silent_adapter_is_guessed_from_its_base_and_may_be_overridden(tmp_path):
    """An adapter that says nothing (no task_type, no heads): the base's architectures
    decide, ``task`` may override that guess, and strict loading still refuses a head that
    would be random."""
    model = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(
        tiny_model("llama"), shadow_edge.ShadowConfig(num_shadow_layers=1)))
    model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "shadow_config.json").read_text())
    config.pop("task_type")
    (tmp_path / "ckpt" / "shadow_config.json").write_text(json.dumps(config))
    causal_base = tiny_model_folder(tmp_path / "base", "llama", "text-generation")
    classifier_base = tiny_model_folder(tmp_path / "cls-base", "llama", "text-classification")
    assert recorded_task_of(tmp_path / "ckpt", causal_base) == "text-generation"
    assert recorded_task_of(tmp_path / "ckpt", classifier_base) == "text-classification"
    # the classifier base brings a trained score: the shadow head starts as its copy
    assert detach(tmp_path / "ckpt", base=classifier_base).task == "text-classification"
    # overriding the guess passes the task check; the causal base has no score to copy
    with pytest.raises(CheckpointError, match="missing keys: score.weight"):
        detach(tmp_path / "ckpt", base=causal_base, task="text-classification")
