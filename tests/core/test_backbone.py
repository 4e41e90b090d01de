"""Decoder-stack discovery, implicit shadows and prepare_shadow_model."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from shadow_edge import ConfigError, ShadowConfig, prepare_shadow_model
from shadow_edge.backbone import (
    build_implicit_shadow,
    carried_projection,
    find_decoder_stack,
    hidden_size_of,
    input_embeddings_of,
    num_layers_of,
    shrink_config,
)
from tests.core.shadow_helpers import causal_base, seq_cls_base
from tests.tiny_models import ARCHITECTURES


def tiny_opt() -> tf.OPTForCausalLM:
    torch.manual_seed(0)
    cfg = tf.OPTConfig(vocab_size=256, hidden_size=32, num_hidden_layers=3, ffn_dim=64,
                       num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=64)
    return tf.OPTForCausalLM(cfg).eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_finds_the_decoder_stack(arch):
    base = causal_base(arch)
    stack = find_decoder_stack(base)
    assert len(stack.layers) == 4
    expected = base.transformer if arch == "gpt2" else base.model
    assert stack.backbone is expected
    # A backbone passed directly is its own stack.
    assert find_decoder_stack(expected).layers is stack.layers


def test_finds_nested_model_decoder_layers():
    base = tiny_opt()
    stack = find_decoder_stack(base)
    assert stack.layers is base.model.decoder.layers and len(stack.layers) == 3


def test_sequence_classification_models_are_supported():
    stack = find_decoder_stack(seq_cls_base("qwen3"))
    assert len(stack.layers) == 4


def test_unsupported_model_raises_config_error():
    with pytest.raises(ConfigError, match="layer stack"):
        find_decoder_stack(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_implicit_shadow_is_the_base_backbone_class_with_fewer_layers(arch):
    base = causal_base(arch)
    shadow = build_implicit_shadow(base, ShadowConfig(num_shadow_layers=2))
    assert type(shadow) is type(find_decoder_stack(base).backbone)
    assert len(find_decoder_stack(shadow).layers) == 2
    assert num_layers_of(shadow.config) == 2 and num_layers_of(base.config) == 4
    assert hidden_size_of(shadow.config) == 64


def test_overrides_apply_to_the_implicit_shadow():
    base = causal_base("qwen3")
    shadow = build_implicit_shadow(base, ShadowConfig(
        shadow_intermediate_size=40, shadow_num_attention_heads=2, shadow_num_key_value_heads=1, shadow_head_dim=8,
    ))
    attn, mlp = shadow.layers[0].self_attn, shadow.layers[0].mlp
    assert mlp.gate_proj.weight.shape == (40, 64)
    assert attn.q_proj.weight.shape == (2 * 8, 64) and attn.k_proj.weight.shape == (1 * 8, 64)
    # the base config is untouched (deep copy)
    assert base.config.intermediate_size == 128 and base.config.num_hidden_layers == 4


def test_gpt2_overrides_use_gpt2_field_names():
    base = causal_base("gpt2")
    shadow = build_implicit_shadow(base, ShadowConfig(num_shadow_layers=1, shadow_intermediate_size=48))
    assert shadow.config.n_layer == 1 and shadow.config.n_inner == 48
    assert shadow.h[0].mlp.c_fc.weight.shape == (64, 48)  # GPT-2 Conv1D is [in, out]


def test_override_missing_from_architecture_raises_naming_the_field():
    with pytest.raises(ConfigError, match="shadow_num_key_value_heads"):
        build_implicit_shadow(causal_base("gpt2"), ShadowConfig(shadow_num_key_value_heads=1))


def test_per_layer_lists_are_cut():
    base = causal_base("qwen3", layer_types=["full_attention", "sliding_attention"] * 2, max_window_layers=4)
    cfg = shrink_config(base.config, 1)
    assert cfg.layer_types == ["full_attention"] and cfg.max_window_layers == 1
    assert len(base.config.layer_types) == 4
    # the cut config survives a JSON round trip
    assert tf.Qwen3Config.from_dict(cfg.to_dict()).layer_types == ["full_attention"]


def test_prepare_shadow_model_strips_the_head_and_can_remove_embeddings():
    shadow = causal_base("llama", num_hidden_layers=2)
    backbone = prepare_shadow_model(shadow)
    assert isinstance(backbone, tf.LlamaModel) and input_embeddings_of(backbone) is not None
    backbone = prepare_shadow_model(shadow, remove_embed_tokens=True)
    assert input_embeddings_of(backbone) is None
    assert not any(k.startswith("embed_tokens") for k in backbone.state_dict())


def test_prepare_shadow_model_removes_gpt2_wte():
    backbone = prepare_shadow_model(causal_base("gpt2", num_hidden_layers=1), remove_embed_tokens=True)
    assert "wte.weight" not in backbone.state_dict() and "wpe.weight" in backbone.state_dict()


class _Projected(torch.nn.Module):
    """Duck-typed stand-in for a projected model: .shadow_model and .shadow_hidden_projection."""

    def __init__(self, backbone, hidden, base_hidden):
        super().__init__()
        self.shadow_model = backbone
        self.shadow_hidden_projection = torch.nn.Linear(hidden, base_hidden, bias=False)


def test_prepare_shadow_model_unwraps_a_projected_model():
    backbone = prepare_shadow_model(causal_base("qwen3", num_hidden_layers=1, hidden_size=32))
    projected = _Projected(backbone, 32, 64)
    assert prepare_shadow_model(projected) is backbone
    assert carried_projection(projected) is projected.shadow_hidden_projection
    assert carried_projection(backbone) is None
