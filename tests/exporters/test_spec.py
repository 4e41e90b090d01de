"""The declarative I/O spec: names, shapes and the registries (no export needed)."""

from __future__ import annotations

import pytest

from exporters.spec import (
    TEXT_CLASSIFICATION,
    TEXT_GENERATION,
    ArchitectureSpec,
    DecoderSpec,
    architecture_spec,
    normalize_task,
    register_architecture,
    supported_architectures,
    task_spec,
)
from exporters.testing import tiny_config
from shadow_edge.errors import ConfigError
from tests.tiny_models import ARCHITECTURES


def test_every_supported_architecture_is_registered():
    assert set(ARCHITECTURES) <= set(supported_architectures())


@pytest.mark.parametrize("alias,task", [
    ("CAUSAL_LM", TEXT_GENERATION), ("causal-lm", TEXT_GENERATION),
    ("text-generation", TEXT_GENERATION), ("SEQ_CLS", TEXT_CLASSIFICATION),
    ("text-classification", TEXT_CLASSIFICATION),
])
def test_task_aliases_map_to_registered_tasks(alias, task):
    assert normalize_task(alias) == task


def test_unknown_task_is_a_config_error_listing_the_choices():
    with pytest.raises(ConfigError, match="unknown task 'translation'.*text-generation"):
        normalize_task("translation")


def test_causal_lm_io_uses_the_config_head_dim_not_hidden_over_heads():
    # Qwen3-style: head_dim 32 while hidden/heads = 16.
    config = tiny_config("qwen3", num_layers=3, hidden_size=64, head_dim=32)
    dims = architecture_spec(config).dims(config)
    assert (dims.num_layers, dims.num_key_value_heads, dims.head_dim) == (3, 2, 32)
    spec = task_spec(TEXT_GENERATION)
    inputs = spec.inputs(dims)
    assert [i.name for i in inputs[:3]] == ["input_ids", "attention_mask", "position_ids"]
    assert [i.name for i in inputs[3:-1]] == [
        f"past_key_values.{layer}.{kind}" for layer in range(3) for kind in ("key", "value")
    ]
    assert (inputs[-1].name, inputs[-1].dtype, inputs[-1].shape) == ("logits_to_keep", "int64", [])
    assert inputs[3].shape == ["batch_size", 2, "past_sequence_length", 32]
    assert inputs[1].shape == ["batch_size", "total_sequence_length"]
    outputs = spec.outputs(dims)
    assert outputs[0].shape == ["batch_size", "logits_sequence_length", config.vocab_size]
    assert outputs[1].name == "present.0.key"
    assert outputs[1].shape == ["batch_size", 2, "total_sequence_length", 32]
    assert all(i.dtype == "int64" for i in inputs[:3])
    assert all(o.dtype == "float32" for o in outputs)


def test_gpt2_has_no_gqa_and_derives_head_dim():
    config = tiny_config("gpt2", hidden_size=64)
    dims = architecture_spec(config).dims(config)
    assert (dims.num_key_value_heads, dims.head_dim, dims.num_attention_heads) == (4, 16, 4)


def test_classification_io():
    config = tiny_config("llama", num_labels=5)
    dims = architecture_spec(config).dims(config, num_labels=5)
    spec = task_spec("SEQ_CLS")
    assert [(i.name, i.shape) for i in spec.inputs(dims)] == [
        ("input_ids", ["batch_size", "sequence_length"]),
        ("attention_mask", ["batch_size", "sequence_length"]),
    ]
    assert spec.outputs(dims)[0].to_dict() == {
        "name": "logits", "dtype": "float32", "shape": ["batch_size", 5]}


def test_register_architecture_decorator_and_fallback(caplog):
    @register_architecture("tiny-test-arch")
    class TinySpec(ArchitectureSpec):
        default_opset = 19

    class Cfg:
        model_type = "tiny-test-arch"

    assert architecture_spec(Cfg) is TinySpec and TinySpec.model_types == ("tiny-test-arch",)
    Cfg.model_type = "never-registered"
    with caplog.at_level("WARNING"):
        assert architecture_spec(Cfg) is DecoderSpec
    assert "never-registered" in caplog.text


@pytest.mark.parametrize("arch,types", [("bert", True), ("distilbert", False), ("roberta", False)])
def test_encoders_are_classification_only_with_segment_ids_where_used(arch, types):
    from dataclasses import replace

    from exporters.spec import EncoderSpec, check_architecture_task

    config = tiny_config(arch, num_labels=4)
    spec = architecture_spec(config)
    assert spec is EncoderSpec and spec.tasks == (TEXT_CLASSIFICATION,)
    dims = replace(spec.dims(config, num_labels=4), token_type_ids=types)
    assert (dims.num_layers, dims.hidden_size, dims.num_key_value_heads, dims.head_dim) == (2, 64, 4, 16)
    names = [i.name for i in task_spec(TEXT_CLASSIFICATION).inputs(dims)]
    assert names == ["input_ids", "attention_mask"] + (["token_type_ids"] if types else [])
    check_architecture_task(config, TEXT_CLASSIFICATION)
    with pytest.raises(ConfigError, match=f"{arch} is an encoder model.*text-generation"):
        check_architecture_task(config, TEXT_GENERATION)


def test_an_unregistered_encoder_has_no_decoder_fallback():
    import transformers as tf

    with pytest.raises(ConfigError, match="encoder type 'electra' cannot be exported"):
        architecture_spec(tf.ElectraConfig())
