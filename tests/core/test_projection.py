"""AutoModelForCausalLMWithHiddenProjection: math, wrap, save/load, generation, compatibility."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers as tf
from safetensors.torch import load_file, save_file
from torch import nn

from shadow_edge.errors import CheckpointError, ConfigError
from shadow_edge.optimal_projection import solve_optimal_projection
from shadow_edge.projection import (
    MODEL_TYPE,
    AutoModelForCausalLMWithHiddenProjection,
    AutoModelForCausalLMWithHiddenProjectionConfig,
    register_auto_classes,
)
from tests.tiny_models import tiny_config

SMALL_H, BASE_H = 32, 64


class LocalLlamaModel(tf.LlamaModel):
    """A backbone class outside transformers (needs trust_remote_code)."""


def _small_and_base(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    small = tf.AutoModelForCausalLM.from_config(
        tiny_config(arch, hidden_size=SMALL_H, num_hidden_layers=2)
    )
    base = tf.AutoModelForCausalLM.from_config(tiny_config(arch, hidden_size=BASE_H))
    return small.eval(), base.eval()


def _wrapped(arch: str, seed: int = 0):
    small, base = _small_and_base(arch, seed)
    projection = nn.Linear(SMALL_H, BASE_H, bias=False)
    return AutoModelForCausalLMWithHiddenProjection.wrap(small, projection, base.lm_head), small


def _ids(batch: int = 2, seq: int = 7, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, 256, (batch, seq), generator=generator)


@pytest.fixture
def ours_registered():
    """Other test files may import shadow_peft, which re-registers its class; make ours
    the active Auto registration for tests that load through the Auto classes."""
    assert register_auto_classes(override=True)


class TestOptimalProjection:
    def test_residual_not_above_random_projections(self):
        torch.manual_seed(0)
        large, small = torch.randn(48, 16), torch.randn(48, 8)
        best = solve_optimal_projection(large, small)
        assert best.shape == (16, 8) and best.dtype == torch.float32
        best_residual = (large @ best - small).norm()
        for _ in range(20):
            random_residual = (large @ torch.randn(16, 8) - small).norm()
            assert best_residual <= random_residual

    def test_equals_pinv_solution_on_well_conditioned_case(self):
        torch.manual_seed(1)
        large, small = torch.randn(40, 12, dtype=torch.float64), torch.randn(40, 6)
        expected = (torch.linalg.pinv(large) @ small.double()).float()
        assert torch.allclose(solve_optimal_projection(large, small), expected, atol=1e-5)

    def test_rank_deficient_head_gives_minimum_norm_solution(self):
        # duplicated columns: many minimisers; gelsd returns the minimum-norm one (= pinv's)
        torch.manual_seed(2)
        half = torch.randn(30, 5, dtype=torch.float64)
        large = torch.cat([half, half], dim=1)
        small = torch.randn(30, 4, dtype=torch.float64)
        expected = (torch.linalg.pinv(large) @ small).float()
        assert torch.allclose(solve_optimal_projection(large, small), expected, atol=1e-5)

    def test_vocab_mismatch_is_refused(self):
        with pytest.raises(ConfigError, match="vocab size"):
            solve_optimal_projection(torch.randn(10, 4), torch.randn(11, 2))

    def test_wrap_recovers_exact_projection(self):
        # reference head = base head @ P_true, so the optimal projection reproduces the small
        # model's own logits through the base head
        small, base = _small_and_base("qwen3")
        p_true = torch.randn(BASE_H, SMALL_H) * 0.1
        with torch.no_grad():
            small.lm_head.weight.copy_(base.lm_head.weight @ p_true)
        wrapped = AutoModelForCausalLMWithHiddenProjection.wrap(
            small, nn.Linear(SMALL_H, BASE_H, bias=False), base.lm_head,
            init_optimal_projection=True, reference_lm_head=small.lm_head,
        )
        ids = _ids()
        with torch.no_grad():
            assert torch.allclose(wrapped(ids).logits, small(ids).logits, atol=1e-4)

    def test_wrap_requires_reference_head(self):
        small, base = _small_and_base("llama")
        with pytest.raises(ConfigError, match="reference_lm_head"):
            AutoModelForCausalLMWithHiddenProjection.wrap(
                small, nn.Linear(SMALL_H, BASE_H, bias=False), base.lm_head,
                init_optimal_projection=True,
            )
        with pytest.raises(ConfigError, match="expected"):
            AutoModelForCausalLMWithHiddenProjection.wrap(
                small, nn.Linear(SMALL_H, BASE_H, bias=False), base.lm_head,
                init_optimal_projection=True, reference_lm_head=base.lm_head,
            )


class TestWrap:
    @pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
    def test_logits_are_backbone_then_projection_then_head(self, arch):
        small, base = _small_and_base(arch)
        projection = nn.Linear(SMALL_H, BASE_H, bias=False)
        wrapped = AutoModelForCausalLMWithHiddenProjection.wrap(small, projection, base.lm_head)
        ids = _ids()
        with torch.no_grad():
            expected = base.lm_head(projection(small.base_model(ids).last_hidden_state))
            logits = wrapped(ids).logits
        assert logits.shape == (2, 7, 256)
        assert torch.allclose(logits, expected, atol=1e-6)
        assert wrapped.config.base_hidden_size == BASE_H and wrapped.config.hidden_size == BASE_H
        assert wrapped.config.num_hidden_layers == 2
        assert wrapped.shadow_model.__class__ is type(small.base_model)

    def test_weights_are_copied_not_shared(self):
        small, base = _small_and_base("llama")
        wrapped = AutoModelForCausalLMWithHiddenProjection.wrap(
            small.model, nn.Linear(SMALL_H, BASE_H, bias=False), base.lm_head
        )
        assert wrapped.lm_head.weight.data_ptr() != base.lm_head.weight.data_ptr()
        for name, tensor in small.model.state_dict().items():
            assert torch.equal(wrapped.shadow_model.state_dict()[name], tensor)

    def test_parameter_count(self):
        wrapped, small = _wrapped("qwen3")
        backbone = sum(p.numel() for p in small.model.parameters())
        expected = backbone + BASE_H * SMALL_H + 256 * BASE_H
        assert sum(p.numel() for p in wrapped.parameters()) == expected

    def test_projection_with_bias_is_refused(self):
        small, base = _small_and_base("llama")
        with pytest.raises(ConfigError, match="bias-free"):
            AutoModelForCausalLMWithHiddenProjection.wrap(small, nn.Linear(SMALL_H, BASE_H),
                                                          base.lm_head)

    def test_wrong_projection_size_is_refused(self):
        small, base = _small_and_base("llama")
        with pytest.raises(ConfigError, match=f"nn.Linear\\({SMALL_H}, {BASE_H}"):
            AutoModelForCausalLMWithHiddenProjection.wrap(
                small, nn.Linear(SMALL_H, 48, bias=False), base.lm_head
            )

    def test_backbone_without_embeddings_is_refused(self):
        small, base = _small_and_base("llama")
        small.model.embed_tokens = None
        with pytest.raises(ConfigError, match="set_input_embeddings"):
            AutoModelForCausalLMWithHiddenProjection.wrap(
                small, nn.Linear(SMALL_H, BASE_H, bias=False), base.lm_head
            )


class TestSaveLoad:
    @pytest.mark.parametrize("arch", ["llama", "qwen3", "gpt2"])
    def test_reload_through_auto_class_gives_identical_logits(self, arch, tmp_path,
                                                              ours_registered):
        wrapped, _ = _wrapped(arch)
        wrapped.save_pretrained(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        assert config["model_type"] == MODEL_TYPE
        assert config["shadow_model_class"].startswith("transformers.models.")
        weights = load_file(tmp_path / "model.safetensors")
        assert weights["shadow_hidden_projection.weight"].shape == (BASE_H, SMALL_H)
        assert weights["lm_head.weight"].shape == (256, BASE_H)
        assert all(k.startswith(("shadow_model.", "shadow_hidden_projection.", "lm_head."))
                   for k in weights)
        loaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path)
        assert type(loaded) is AutoModelForCausalLMWithHiddenProjection
        assert type(tf.AutoConfig.from_pretrained(tmp_path)) is (
            AutoModelForCausalLMWithHiddenProjectionConfig
        )
        ids = _ids()
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, wrapped(ids).logits)

    def test_freeze_flags(self, tmp_path):
        wrapped, _ = _wrapped("qwen3")
        wrapped.save_pretrained(tmp_path)
        cls = AutoModelForCausalLMWithHiddenProjection

        def trainable(model):
            return {n for n, p in model.named_parameters() if p.requires_grad}

        every = {n for n, _ in wrapped.named_parameters()}
        default = cls.from_pretrained(tmp_path)
        assert trainable(default) == every - {"shadow_model.embed_tokens.weight",
                                              "lm_head.weight"}
        frozen = cls.from_pretrained(tmp_path, freeze_backbone=True)
        assert trainable(frozen) == {"shadow_hidden_projection.weight"}
        free = cls.from_pretrained(tmp_path, freeze_embed_tokens=False, freeze_lm_head=False)
        assert trainable(free) == every

    def test_loss_is_next_token_cross_entropy_ignoring_minus_100(self):
        wrapped, _ = _wrapped("llama")
        ids = _ids()
        labels = ids.clone()
        labels[0, :3] = -100
        with torch.no_grad():
            out = wrapped(ids, labels=labels)
            expected = F.cross_entropy(out.logits[:, :-1].reshape(-1, 256),
                                       labels[:, 1:].reshape(-1), ignore_index=-100)
        assert out.loss.dtype == torch.float32
        assert torch.allclose(out.loss, expected, atol=1e-6)

    def test_logits_to_keep(self):
        wrapped, _ = _wrapped("llama")
        ids = _ids()
        with torch.no_grad():
            full = wrapped(ids).logits
            last = wrapped(ids, logits_to_keep=1).logits
        assert last.shape == (2, 1, 256)
        assert torch.allclose(last, full[:, -1:], atol=1e-6)

    def test_config_naming_class_outside_transformers_is_refused(self, tmp_path):
        wrapped, _ = _wrapped("llama")
        wrapped.save_pretrained(tmp_path)
        config_path = tmp_path / "config.json"
        config = json.loads(config_path.read_text())
        config["shadow_model_class"] = "collections:OrderedDict"
        config_path.write_text(json.dumps(config))
        with pytest.raises(ConfigError, match="trust_remote_code=True"):
            AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path)

    def test_trusted_local_backbone_class_loads_only_with_trust(self, tmp_path, ours_registered):
        torch.manual_seed(0)
        backbone = LocalLlamaModel(tiny_config("llama", hidden_size=SMALL_H, num_hidden_layers=2))
        head = nn.Linear(BASE_H, 256, bias=False)
        projection = nn.Linear(SMALL_H, BASE_H, bias=False)
        with pytest.raises(ConfigError, match="trust_remote_code=True"):
            AutoModelForCausalLMWithHiddenProjection.wrap(backbone, projection, head)
        wrapped = AutoModelForCausalLMWithHiddenProjection.wrap(
            backbone, projection, head, trust_remote_code=True
        )
        wrapped.save_pretrained(tmp_path)
        with pytest.raises(ConfigError, match="tests.core.test_projection:LocalLlamaModel"):
            tf.AutoModelForCausalLM.from_pretrained(tmp_path)
        loaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)
        assert type(loaded.shadow_model) is LocalLlamaModel
        ids = _ids()
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, wrapped(ids).logits)

    def test_missing_and_unexpected_keys_are_named(self, tmp_path):
        wrapped, _ = _wrapped("llama")
        wrapped.save_pretrained(tmp_path)
        weights_path = tmp_path / "model.safetensors"
        weights = load_file(weights_path)
        del weights["lm_head.weight"]
        weights["extra.weight"] = torch.zeros(2)
        save_file(weights, weights_path, metadata={"format": "pt"})
        with pytest.raises(CheckpointError) as info:
            AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path)
        assert "lm_head.weight" in str(info.value) and "extra.weight" in str(info.value)

    def test_weight_shapes_that_do_not_fit_the_config_name_key_and_shapes(self, tmp_path):
        # Why: transformers raises a bare RuntimeError pointing at a log report.
        wrapped, _ = _wrapped("llama")
        wrapped.save_pretrained(tmp_path)
        config = json.loads((tmp_path / "config.json").read_text())
        hidden = config["base_hidden_size"]
        config["base_hidden_size"] = hidden - 16
        (tmp_path / "config.json").write_text(json.dumps(config))
        for load in (AutoModelForCausalLMWithHiddenProjection.from_pretrained,
                     tf.AutoModelForCausalLM.from_pretrained):
            with pytest.raises(CheckpointError) as info:
                load(tmp_path)
            message = str(info.value)
            assert f"shadow_hidden_projection.weight is ({hidden}, " in message
            assert f"in the checkpoint but ({hidden - 16}, " in message
            assert "base_hidden_size" in message
        # asking transformers to ignore mismatches is honoured (those weights stay random)
        model, info = AutoModelForCausalLMWithHiddenProjection.from_pretrained(
            tmp_path, ignore_mismatched_sizes=True, output_loading_info=True)
        assert model.shadow_hidden_projection.weight.shape[0] == hidden - 16
        assert {key for key, *_ in info["mismatched_keys"]} == {"shadow_hidden_projection.weight", "lm_head.weight"}

    def test_config_without_backbone_is_refused(self):
        with pytest.raises(ConfigError, match="shadow_model_class"):
            AutoModelForCausalLMWithHiddenProjection(
                AutoModelForCausalLMWithHiddenProjectionConfig()
            )


class TestGeneration:
    @pytest.mark.parametrize("arch", ["qwen3", "gpt2"])
    def test_kv_cache_greedy_equals_recompute(self, arch):
        wrapped, _ = _wrapped(arch)
        ids = _ids(batch=1, seq=5)
        kwargs = {"max_new_tokens": 16, "min_new_tokens": 16, "do_sample": False, "pad_token_id": 0}
        cached = wrapped.generate(ids, use_cache=True, **kwargs)
        recomputed = wrapped.generate(ids, use_cache=False, **kwargs)
        assert cached.shape == (1, 21)
        assert torch.equal(cached, recomputed)

    def test_left_padded_batch_equals_per_row(self):
        wrapped, _ = _wrapped("llama")
        rows = [_ids(1, 6, seed=3)[0], _ids(1, 4, seed=4)[0]]
        kwargs = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
        batch = torch.zeros(2, 6, dtype=torch.long)
        mask = torch.zeros(2, 6, dtype=torch.long)
        for i, row in enumerate(rows):
            batch[i, 6 - len(row):] = row
            mask[i, 6 - len(row):] = 1
        together = wrapped.generate(batch, attention_mask=mask, **kwargs)[:, 6:]
        for i, row in enumerate(rows):
            alone = wrapped.generate(row[None], **kwargs)[0, len(row):]
            assert torch.equal(together[i], alone)


@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
class TestCompatibilityWithShadowPeft:
    """Checkpoints written by shadow-peft 0.1.1 load in ours and vice versa (same logits)."""

    @pytest.mark.parametrize("arch", ["qwen3", "llama"])
    def test_theirs_written_ours_loaded(self, arch, tmp_path):
        import shadow_peft

        small, base = _small_and_base(arch)
        theirs = shadow_peft.AutoModelForCausalLMWithHiddenProjection.wrap(
            shadow_model=small, shadow_hidden_projection=nn.Linear(SMALL_H, BASE_H, bias=False),
            lm_head=base.lm_head, init_optimal_projection=False,
        )
        theirs.save_pretrained(tmp_path)
        ours = AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path)
        ids = _ids()
        with torch.no_grad():
            assert torch.allclose(ours(ids).logits, theirs(ids).logits, atol=1e-5)

    @pytest.mark.parametrize("arch", ["qwen3", "llama"])
    def test_ours_written_theirs_loaded(self, arch, tmp_path):
        import shadow_peft

        ours, _ = _wrapped(arch)
        ours.save_pretrained(tmp_path)
        theirs = shadow_peft.AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path)
        ids = _ids()
        with torch.no_grad():
            assert torch.allclose(theirs(ids).logits, ours(ids).logits, atol=1e-5)


class TestRegistration:
    def test_idempotent(self, ours_registered):
        assert register_auto_classes()
        assert register_auto_classes(exist_ok=False)
        assert tf.AutoConfig.for_model(MODEL_TYPE).__class__ is (
            AutoModelForCausalLMWithHiddenProjectionConfig
        )

    def test_foreign_owner_is_kept_with_warning_unless_override(self, caplog):
        import shadow_peft

        foreign = shadow_peft.AutoModelForCausalLMWithHiddenProjectionConfig
        tf.AutoConfig.register(MODEL_TYPE, foreign, exist_ok=True)
        try:
            with caplog.at_level(logging.WARNING, logger="shadow_edge.projection"):
                assert register_auto_classes() is False
            assert "already registered by shadow_peft" in caplog.text
            assert type(tf.AutoConfig.for_model(MODEL_TYPE)) is foreign
            with pytest.raises(ConfigError, match="override=True"):
                register_auto_classes(exist_ok=False)
        finally:
            assert register_auto_classes(override=True)
        assert type(tf.AutoConfig.for_model(MODEL_TYPE)) is (
            AutoModelForCausalLMWithHiddenProjectionConfig
        )

    def test_importing_after_shadow_peft_does_not_crash(self):
        # the import-time path, in a fresh interpreter: theirs first, then ours
        code = (
            "import shadow_peft, shadow_edge.projection as p, transformers as tf\n"
            "print(type(tf.AutoConfig.for_model(p.MODEL_TYPE)).__module__)\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=False, cwd=Path(__file__).resolve().parents[2], timeout=300)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "shadow_peft.projected_causal_lm"
        assert "override=True" in result.stderr
