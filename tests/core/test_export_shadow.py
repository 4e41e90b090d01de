"""export_shadow: a standalone HF model equal to the shadow-only path, loadable by Auto classes."""

from __future__ import annotations

import pytest
import torch
import transformers as tf
from torch import nn

from shadow_edge import (
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    get_shadow_model,
)
from shadow_edge.errors import ConfigError
from shadow_edge.export_shadow import export_shadow
from shadow_edge.projection import AutoModelForCausalLMWithHiddenProjection, register_auto_classes
from tests.core.shadow_helpers import causal_base, randomize, seq_cls_base, token_batch
from tests.tiny_models import ARCHITECTURES, tiny_config

ATOL = 1e-5


@pytest.fixture(autouse=True)
def ours_registered():
    """Another test file may have imported shadow_peft (which re-registers its class)."""
    assert register_auto_classes(override=True)


def _reload(model: tf.PreTrainedModel, path, auto=tf.AutoModelForCausalLM) -> tf.PreTrainedModel:
    model.save_pretrained(path)
    return auto.from_pretrained(path)


def _trained_task(base, *, shadow_model=None, **config):
    """A causal task wrapper whose shadow_lm_head differs from the base head (as if trained)."""
    peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=2, **config),
                            shadow_model=shadow_model)
    task = ShadowForCausalLM(peft, inference_mode="shadow_only")
    randomize(task.shadow_lm_head, seed=5, std=0.1)
    return task


def _numel(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class TestSameHiddenSize:
    @pytest.mark.parametrize("arch", ARCHITECTURES)
    def test_reloaded_logits_equal_shadow_only_logits(self, arch, tmp_path):
        base = causal_base(arch)
        task = _trained_task(base)
        loaded = _reload(export_shadow(task), tmp_path)
        assert type(loaded) is type(base)
        assert loaded.config.num_hidden_layers == 2
        ids = token_batch()
        with torch.no_grad():
            expected = task(input_ids=ids).logits
            logits = loaded(ids).logits
        assert logits.shape == (2, 7, 256)
        assert torch.allclose(logits, expected, atol=ATOL)
        # backbone + restored embeddings + (untied) trained head
        peft = task.peft_model
        expected_params = (_numel(peft.shadow_model) + _numel(peft.shadow_input_embeddings())
                           + _numel(task.shadow_lm_head))
        assert _numel(loaded) == expected_params

    def test_seed_usage_exports_base_lm_head(self, tmp_path):
        # model.peft_model.export_shadow() (seed README): embeddings and head from the base
        base = causal_base("qwen3")
        task = _trained_task(base)
        exported = task.peft_model.export_shadow()
        assert torch.equal(exported.lm_head.weight, base.lm_head.weight)
        assert torch.equal(exported.get_input_embeddings().weight,
                           base.get_input_embeddings().weight)
        assert exported.lm_head.weight.data_ptr() != base.lm_head.weight.data_ptr()
        loaded = _reload(exported, tmp_path)
        ids = token_batch()
        with torch.no_grad():
            expected = base.lm_head(task.peft_model.shadow_hidden_states(input_ids=ids))
            assert torch.allclose(loaded(ids).logits, expected, atol=ATOL)

    def test_lm_head_argument_overrides_the_head(self):
        base = causal_base("llama")
        peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=2))
        head = nn.Linear(64, 256, bias=False)
        exported = export_shadow(peft, lm_head=head)
        assert torch.equal(exported.lm_head.weight, head.weight)

    @pytest.mark.parametrize("arch", ["llama", "gpt2"])
    def test_tied_base_keeps_tie_only_for_the_base_head(self, arch, tmp_path):
        base = causal_base(arch, tie_word_embeddings=True)
        assert base.lm_head.weight.data_ptr() == base.get_input_embeddings().weight.data_ptr()
        task = _trained_task(base)
        kept = _reload(task.peft_model.export_shadow(), tmp_path / "base_head")
        assert kept.config.tie_word_embeddings is True
        assert kept.lm_head.weight.data_ptr() == kept.get_input_embeddings().weight.data_ptr()
        untied = _reload(export_shadow(task), tmp_path / "shadow_head")
        assert untied.config.tie_word_embeddings is False
        ids = token_batch()
        with torch.no_grad():
            assert torch.allclose(untied(ids).logits, task(input_ids=ids).logits, atol=ATOL)

    def test_size_overrides_reach_the_exported_config(self, tmp_path):
        base = causal_base("qwen3")
        task = _trained_task(base, shadow_intermediate_size=96, shadow_num_attention_heads=2,
                             shadow_num_key_value_heads=1, shadow_head_dim=8)
        loaded = _reload(export_shadow(task), tmp_path)
        config = loaded.config
        assert (config.intermediate_size, config.num_attention_heads) == (96, 2)
        assert (config.num_key_value_heads, config.head_dim) == (1, 8)
        assert len(config.layer_types) == 2
        ids = token_batch()
        with torch.no_grad():
            assert torch.allclose(loaded(ids).logits, task(input_ids=ids).logits, atol=ATOL)

    def test_explicit_shadow_keeps_its_own_embeddings(self, tmp_path):
        base = causal_base("llama")
        torch.manual_seed(7)
        shadow = tf.AutoModelForCausalLM.from_config(tiny_config("llama", num_hidden_layers=2))
        task = _trained_task(base, shadow_model=shadow)
        loaded = _reload(export_shadow(task), tmp_path)
        assert torch.equal(loaded.get_input_embeddings().weight,
                           shadow.get_input_embeddings().weight)
        assert not torch.equal(loaded.get_input_embeddings().weight,
                               base.get_input_embeddings().weight)
        ids = token_batch()
        with torch.no_grad():
            assert torch.allclose(loaded(ids).logits, task(input_ids=ids).logits, atol=ATOL)

    def test_generation_uses_base_generation_config_and_kv_cache(self, tmp_path):
        base = causal_base("qwen3")
        loaded = _reload(export_shadow(_trained_task(base)), tmp_path)
        assert loaded.generation_config.eos_token_id == base.generation_config.eos_token_id
        ids = token_batch(batch=1, seq=5)
        kwargs = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": False}
        cached = loaded.generate(ids, use_cache=True, **kwargs)
        assert torch.equal(cached, loaded.generate(ids, use_cache=False, **kwargs))
        assert cached.shape == (1, 17)


class TestDifferentHiddenSize:
    @pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
    def test_projected_export_equals_shadow_only_logits(self, arch, tmp_path):
        base = causal_base(arch)
        torch.manual_seed(3)
        small = tf.AutoModelForCausalLM.from_config(
            tiny_config(arch, hidden_size=32, num_hidden_layers=2)
        )
        task = _trained_task(base, shadow_model=small)
        randomize(task.peft_model.shadow_hidden_projection, seed=9, std=0.1)
        exported = export_shadow(task)
        assert type(exported) is AutoModelForCausalLMWithHiddenProjection
        assert torch.equal(exported.shadow_hidden_projection.weight,
                           task.peft_model.shadow_hidden_projection.weight)
        assert torch.equal(exported.lm_head.weight, task.shadow_lm_head.weight)
        loaded = _reload(exported, tmp_path)
        assert type(loaded) is AutoModelForCausalLMWithHiddenProjection
        assert loaded.config.base_hidden_size == 64
        ids = token_batch()
        with torch.no_grad():
            assert torch.allclose(loaded(ids).logits, task(input_ids=ids).logits, atol=ATOL)

    def test_carried_projection_round_trips(self, tmp_path):
        # a pre-trained projected shadow -> ShadowPEFT -> export: the projection survives
        base = causal_base("qwen3")
        torch.manual_seed(4)
        small = tf.AutoModelForCausalLM.from_config(
            tiny_config("qwen3", hidden_size=32, num_hidden_layers=2)
        )
        projected = AutoModelForCausalLMWithHiddenProjection.wrap(
            small, nn.Linear(32, 64, bias=False), base.lm_head
        )
        peft = get_shadow_model(base, ShadowConfig(), shadow_model=projected)
        exported = export_shadow(peft)
        assert torch.equal(exported.shadow_hidden_projection.weight,
                           projected.shadow_hidden_projection.weight)
        ids = token_batch()
        loaded = _reload(exported, tmp_path)
        with torch.no_grad():
            assert torch.allclose(loaded(ids).logits, projected(ids).logits, atol=ATOL)


class TestSequenceClassification:
    @pytest.mark.parametrize("arch", ["llama", "qwen3"])
    def test_reloaded_logits_equal_shadow_only_logits(self, arch, tmp_path):
        base = seq_cls_base(arch)
        peft = get_shadow_model(base, ShadowConfig(num_shadow_layers=2))
        task = ShadowForSequenceClassification(peft, inference_mode="shadow_only")
        randomize(task.shadow_classifier_head, seed=6, std=0.1)
        loaded = _reload(export_shadow(task), tmp_path, tf.AutoModelForSequenceClassification)
        assert type(loaded) is type(base)
        assert loaded.config.num_labels == 3 and loaded.config.id2label[2] == "label_2"
        # row 0 left-padded, row 1 right-padded (pad_token_id 0); transformers pools the last
        # non-pad token, the wrapper the last unmasked one
        ids = token_batch(seq=6)
        mask = torch.ones_like(ids)
        ids[0, :2] = 0
        mask[0, :2] = 0
        ids[1, 4:] = 0
        mask[1, 4:] = 0
        with torch.no_grad():
            expected = task(input_ids=ids, attention_mask=mask).logits
            logits = loaded(input_ids=ids, attention_mask=mask).logits
        assert logits.shape == (2, 3)
        assert torch.allclose(logits, expected, atol=ATOL)

    def test_lm_head_argument_is_refused(self):
        peft = get_shadow_model(seq_cls_base("llama"), ShadowConfig(num_shadow_layers=2))
        with pytest.raises(ConfigError, match="ShadowForSequenceClassification"):
            export_shadow(peft, lm_head=nn.Linear(64, 256, bias=False))

    def test_projected_classifier_is_refused(self):
        base = seq_cls_base("llama")
        small = tf.AutoModelForCausalLM.from_config(
            tiny_config("llama", hidden_size=32, num_hidden_layers=2)
        )
        peft = get_shadow_model(base, ShadowConfig(), shadow_model=small)
        with pytest.raises(ConfigError, match="ONNX"):
            export_shadow(peft)


class TestErrors:
    def test_not_a_shadow_model(self):
        with pytest.raises(ConfigError, match="ShadowPeftModel"):
            export_shadow(nn.Linear(2, 2))

    def test_head_of_wrong_shape_names_the_key(self):
        peft = get_shadow_model(causal_base("llama"), ShadowConfig(num_shadow_layers=2))
        with pytest.raises(ConfigError, match="lm_head.weight"):
            export_shadow(peft, lm_head=nn.Linear(64, 100, bias=False))
