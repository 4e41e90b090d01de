"""KV-cached generation in both modes: equal to recomputation, left padding, stopping."""

from __future__ import annotations

import pytest
import torch

from shadow_edge import ShadowConfig, ShadowForCausalLM, get_shadow_model
from shadow_edge.cache import ShadowCache
from shadow_edge.generation import build_logits_processors
from shadow_edge.pooling import positions_from_mask
from tests.core.shadow_helpers import causal_base, randomize_adapter, token_batch
from tests.tiny_models import ARCHITECTURES

MODES = ("base_shadow", "shadow_only")


def trained_model(arch: str) -> ShadowForCausalLM:
    model = ShadowForCausalLM(get_shadow_model(causal_base(arch), ShadowConfig(dropout=0.0))).eval()
    randomize_adapter(model.peft_model)
    return model


def left_padded_batch():
    ids = token_batch(2, 6, seed=11)
    mask = torch.ones_like(ids)
    ids[0, :2], mask[0, :2] = 0, 0
    return ids, mask


class TestKVCache:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("arch", ARCHITECTURES)
    def test_cached_greedy_equals_recomputation_over_32_tokens(self, arch, mode):
        model = trained_model(arch)
        model.set_inference_mode(mode)
        ids, mask = left_padded_batch()
        cached = model.generate(ids, attention_mask=mask, max_new_tokens=32, eos_token_id=[])
        full = model.generate(ids, attention_mask=mask, max_new_tokens=32, eos_token_id=[], use_cache=False)
        assert cached.shape == (2, 6 + 32)
        assert torch.equal(cached, full)

    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
    def test_batched_left_padded_equals_per_row(self, arch, mode):
        model = trained_model(arch)
        model.set_inference_mode(mode)
        ids, mask = left_padded_batch()
        batched = model.generate(ids, attention_mask=mask, max_new_tokens=16, eos_token_id=[])
        row0 = model.generate(ids[:1, 2:], max_new_tokens=16, eos_token_id=[])
        row1 = model.generate(ids[1:], max_new_tokens=16, eos_token_id=[])
        assert torch.equal(batched[0, 2:], row0[0])
        assert torch.equal(batched[1], row1[0])

    @pytest.mark.parametrize("mode", MODES)
    def test_prefill_plus_decode_logits_equal_full_forward(self, mode):
        model = trained_model("llama")
        model.set_inference_mode(mode)
        ids = token_batch(2, 9)
        full = model(input_ids=ids)
        out = model(input_ids=ids[:, :6], use_cache=True)
        cache = out.cache
        assert isinstance(cache, ShadowCache) and cache.get_seq_length() == 6
        assert (cache.base is None) == (mode == "shadow_only")
        step = model(input_ids=ids[:, 6:], past_key_values=cache, attention_mask=torch.ones_like(ids))
        assert cache.get_seq_length() == 9
        torch.testing.assert_close(step.logits, full.logits[:, 6:], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(step.shadow_logits, full.shadow_logits[:, 6:], rtol=1e-4, atol=1e-5)

    def test_use_cache_is_the_default(self, monkeypatch):
        model = trained_model("qwen3")
        seen = []
        original = ShadowCache.for_model
        monkeypatch.setattr(ShadowCache, "for_model", classmethod(
            lambda cls, *a, **k: seen.append(1) or original(*a, **k)))
        model.generate(token_batch(1, 4), max_new_tokens=3, eos_token_id=[])
        assert seen == [1]


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = trained_model("llama")
    ids = token_batch(2, 5)
    free = model.generate(ids, max_new_tokens=8, eos_token_id=[])
    eos = int(free[0, 5 + 2])  # row 0's third new token becomes the EOS id
    out = model.generate(ids, max_new_tokens=8, eos_token_id=eos, pad_token_id=0)
    assert torch.equal(out[0, : 5 + 3], free[0, : 5 + 3])
    assert (out[0, 5 + 3:] == 0).all()
    # the run stops when every row has finished
    first = (free[1, 5:] == eos).nonzero()
    if len(first):  # row 1 emitted the same id, so both finished early
        assert out.shape[1] <= 5 + int(first[0]) + 1 + 8
    else:
        assert out.shape[1] == 5 + 8


def test_defaults_come_from_the_generation_config():
    model = trained_model("llama")
    ids = token_batch(1, 4)
    free = model.generate(ids, max_new_tokens=8, eos_token_id=[])
    stop = int(free[0, 4 + 2])
    first = int((free[0, 4:] == stop).nonzero()[0])  # the id may occur earlier
    model.peft_model.base_model.generation_config.eos_token_id = stop
    out = model.generate(ids, max_new_tokens=8)
    assert torch.equal(out, free[:, : 4 + first + 1])  # stopped right after the first EOS


def test_sampling_is_reproducible_with_a_generator_and_uses_hf_warpers():
    model = trained_model("qwen3")
    ids = token_batch(1, 4)
    kwargs = {"max_new_tokens": 10, "do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 0.9,
              "eos_token_id": []}
    a = model.generate(ids, generator=torch.Generator().manual_seed(0), **kwargs)
    b = model.generate(ids, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.equal(a, b) and a.shape == (1, 14)
    names = [type(p).__name__ for p in build_logits_processors(
        do_sample=True, temperature=0.7, top_k=20, top_p=0.9, repetition_penalty=1.2)]
    assert names == ["RepetitionPenaltyLogitsProcessor", "TemperatureLogitsWarper", "TopKLogitsWarper",
                     "TopPLogitsWarper"]
    assert len(build_logits_processors(do_sample=False, temperature=0.7, top_k=5, top_p=0.5,
                                       repetition_penalty=None)) == 0


def test_top_k_1_sampling_equals_greedy():
    model = trained_model("mistral")
    ids = token_batch(1, 4)
    greedy = model.generate(ids, max_new_tokens=6, eos_token_id=[])
    sampled = model.generate(ids, max_new_tokens=6, eos_token_id=[], do_sample=True, top_k=1,
                             generator=torch.Generator().manual_seed(3))
    assert torch.equal(greedy, sampled)


def test_positions_from_mask():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert positions_from_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 3]]


def test_seed_style_call_with_tokenizer_outputs():
    model = trained_model("gemma")
    inputs = {"input_ids": token_batch(1, 5), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    assert model.generate(**inputs, use_cache=False, max_new_tokens=4, eos_token_id=[]).shape == (1, 9)


class TestCacheArguments:
    def test_peft_model_forward_returns_a_shadow_cache_that_continues_decoding(self):
        model = trained_model("qwen3")
        peft = model.peft_model
        ids = token_batch(2, 9)
        full = peft(input_ids=ids).logits
        first = peft(input_ids=ids[:, :6], use_cache=True)
        cache = first.past_key_values
        assert isinstance(cache, ShadowCache) and cache.get_seq_length() == 6
        step = peft(input_ids=ids[:, 6:], past_key_values=cache, attention_mask=torch.ones_like(ids))
        torch.testing.assert_close(step.logits, full[:, 6:], rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("mode", MODES)
    def test_cache_is_accepted_under_transformers_new_name(self, mode):
        model = trained_model("llama")
        model.set_inference_mode(mode)
        ids = token_batch(2, 8)
        full = model(input_ids=ids)
        cache = model(input_ids=ids[:, :5], use_cache=True).past_key_values
        step = model(input_ids=ids[:, 5:], cache=cache, attention_mask=torch.ones_like(ids))
        assert cache.get_seq_length() == 8
        torch.testing.assert_close(step.logits, full.logits[:, 5:], rtol=1e-4, atol=1e-5)

    @pytest.mark.parametrize("bad", ["dynamic", "legacy"])
    @pytest.mark.parametrize("mode", MODES)
    def test_a_plain_hf_cache_is_refused_with_the_fix(self, mode, bad):
        from transformers import DynamicCache

        from shadow_edge import ConfigError

        model = trained_model("llama")
        model.set_inference_mode(mode)
        cache = DynamicCache() if bad == "dynamic" else ((torch.zeros(1, 2, 3, 16),) * 2,)
        with pytest.raises(ConfigError, match="ShadowCache") as info:
            model(input_ids=token_batch(1, 3), past_key_values=cache)
        assert "use_cache=True" in str(info.value)

    def test_shadow_only_cache_is_refused_in_base_shadow_mode(self):
        from shadow_edge import ConfigError

        model = trained_model("llama")
        with pytest.raises(ConfigError, match="no base half"):
            model(input_ids=token_batch(1, 3), past_key_values=ShadowCache.for_model(model.peft_model, shadow_only=True))

    def test_return_dict_false_and_hidden_states(self):
        model = trained_model("gpt2")
        ids = token_batch(1, 4)
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
        assert len(out.hidden_states) == 5 and out.hidden_states[-1].shape == (1, 4, 64)
        as_tuple = model(input_ids=ids, labels=ids, return_dict=False)
        assert isinstance(as_tuple, tuple)
        torch.testing.assert_close(as_tuple[0], out.loss)
        torch.testing.assert_close(as_tuple[1], out.logits)


class TestHFStyleArguments:
    def test_generation_config_max_length_and_num_beams_1(self):
        from transformers import GenerationConfig

        model = trained_model("llama")
        ids = token_batch(2, 6)
        reference = model.generate(ids, max_new_tokens=4, eos_token_id=[])
        config = GenerationConfig(max_new_tokens=4, eos_token_id=[], pad_token_id=0)
        assert torch.equal(model.generate(ids, generation_config=config), reference)
        assert torch.equal(model.generate(ids, max_length=9, eos_token_id=[], num_beams=1), reference[:, :9])
        # explicit arguments win over the config; a max_length-only config counts the prompt
        assert model.generate(ids, generation_config=config, max_new_tokens=2).shape == (2, 8)
        assert model.generate(ids, generation_config=GenerationConfig(max_length=7, eos_token_id=[])).shape == (2, 7)
        # decoder-only models ignore token_type_ids, as transformers' generate does
        assert torch.equal(model.generate(ids, token_type_ids=torch.zeros_like(ids), max_new_tokens=4,
                                          eos_token_id=[]), reference)

    def test_unsupported_arguments_are_named(self):
        from shadow_edge import ConfigError

        model = trained_model("llama")
        ids = token_batch(1, 4)
        with pytest.raises(ConfigError, match="num_beams=4"):
            model.generate(ids, num_beams=4)
        with pytest.raises(ConfigError, match=r"\['inputs_embeds', 'streamer'\]"):
            model.generate(ids, streamer=object(), inputs_embeds=torch.zeros(1, 4, 64))
        with pytest.raises(ConfigError, match=">= 0"):
            model.generate(ids, max_new_tokens=-1)

    def test_max_new_tokens_0_returns_the_prompt(self):
        model = trained_model("qwen3")
        ids, mask = left_padded_batch()
        assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=0), ids)
