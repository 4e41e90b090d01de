"""One task vocabulary: the core's table, the exporters' use of it and the runtime's names agree."""

from __future__ import annotations

import pytest

from exporters import spec
from runtime import manifest as runtime_manifest
from runtime import parity as runtime_parity
from shadow_edge import task_types
from shadow_edge.config import KNOWN_MODULES_TO_SAVE
from shadow_edge.errors import ConfigError
from shadow_edge.task_types import (
    CAUSAL_LM,
    CLASSIFICATION,
    EXPORT_TASKS,
    GENERATION,
    PEFT_TASK_TYPES,
    SEQ_CLS,
    TASK_ALIASES,
    normalize_task,
    peft_task_type,
)
from shadow_edge.tasks import TASK_MODELS, ShadowForCausalLM, ShadowForSequenceClassification


def test_export_task_names_are_the_runtimes_own_strings():
    # the runtime never imports the core, so it spells them itself
    assert task_types.TASKS == runtime_manifest.TASKS == ("text-generation", "text-classification")
    assert (runtime_parity.TEXT_GENERATION, runtime_parity.TEXT_CLASSIFICATION) == (GENERATION, CLASSIFICATION)


def test_task_types_are_pefts_and_the_maps_are_inverse():
    assert task_types.TASK_TYPES == ("CAUSAL_LM", "SEQ_CLS")
    assert PEFT_TASK_TYPES == {"text-generation": "CAUSAL_LM", "text-classification": "SEQ_CLS"}
    assert {v: k for k, v in PEFT_TASK_TYPES.items()} == EXPORT_TASKS


@pytest.mark.parametrize("alias,export,peft", [
    ("text-generation", GENERATION, CAUSAL_LM), ("CAUSAL_LM", GENERATION, CAUSAL_LM),
    ("causal-lm", GENERATION, CAUSAL_LM), ("causal_lm", GENERATION, CAUSAL_LM),
    ("text-classification", CLASSIFICATION, SEQ_CLS), ("SEQ_CLS", CLASSIFICATION, SEQ_CLS),
    ("sequence-classification", CLASSIFICATION, SEQ_CLS), ("seq-cls", CLASSIFICATION, SEQ_CLS),
    ("seq_cls", CLASSIFICATION, SEQ_CLS),
])
def test_every_alias_has_one_meaning_in_the_core_and_the_exporters(alias, export, peft):
    assert normalize_task(alias) == export
    assert peft_task_type(alias) == peft
    assert spec.normalize_task(alias) == export  # exporters read the same table


def test_the_alias_table_is_the_one_listed_above():
    assert set(TASK_ALIASES) == {"text-generation", "CAUSAL_LM", "causal-lm", "causal_lm",
                                 "text-classification", "SEQ_CLS", "sequence-classification",
                                 "seq-cls", "seq_cls"}


@pytest.mark.parametrize("call", [normalize_task, peft_task_type, spec.normalize_task])
def test_an_unknown_task_is_a_config_error_listing_the_names(call):
    with pytest.raises(ConfigError, match=r"unknown task 'summarization'; use one of "
                                          r"\['text-generation', 'text-classification'\]"):
        call("summarization")


def test_the_exporters_register_a_spec_for_each_task():
    assert spec.supported_tasks() == sorted(task_types.TASKS)
    assert spec.TEXT_GENERATION == GENERATION and spec.TEXT_CLASSIFICATION == CLASSIFICATION


def test_the_task_wrappers_declare_the_vocabularys_types_and_heads():
    assert TASK_MODELS == {CAUSAL_LM: ShadowForCausalLM, SEQ_CLS: ShadowForSequenceClassification}
    for task, cls in TASK_MODELS.items():
        assert cls.task_type == task
        assert cls.head_names == task_types.HEADS[task]
    assert KNOWN_MODULES_TO_SAVE == ("lm_head", "shadow_lm_head", "classifier_head",
                                     "shadow_classifier_head")


@pytest.mark.parametrize("task,cls", [
    ("text-generation", ShadowForCausalLM), ("causal_lm", ShadowForCausalLM),
    ("text-classification", ShadowForSequenceClassification),
    ("sequence-classification", ShadowForSequenceClassification),
])
def test_load_shadow_checkpoint_reads_the_same_task_names(tmp_path, task, cls):
    import torch

    from shadow_edge import ShadowConfig, get_shadow_model, load_shadow_checkpoint
    from tests.core.shadow_helpers import causal_base, seq_cls_base, token_batch

    make_base = causal_base if cls is ShadowForCausalLM else seq_cls_base
    saved = cls(get_shadow_model(make_base("llama"), ShadowConfig(num_shadow_layers=1)))
    saved.save_pretrained(tmp_path)
    loaded = load_shadow_checkpoint(tmp_path, base=make_base("llama"), task=task)
    assert type(loaded) is cls and loaded.task_type == peft_task_type(task)
    ids = token_batch()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).shadow_logits, saved.eval()(input_ids=ids).shadow_logits)
    with pytest.raises(ConfigError, match="unknown task 'summarization'"):
        load_shadow_checkpoint(tmp_path, base=make_base("llama"), task="summarization")
