"""Checkpoint compatibility with the original package shadow-peft==0.1.1 (test-only dependency).

Why: users have checkpoints written by shadow-peft; ours must read them and write files it
reads, with the same numbers (logits and shadow_logits within atol 1e-5).

Import order: shadow_peft registers the model type "causal_lm_with_hidden_projection" with
transformers' Auto classes when it is imported (replacing whoever owned it). It is therefore
imported lazily by the module-scoped ``shadow_peft`` fixture, not at collection time, and the
fixture gives the model type back to shadow-edge's class afterwards
(``register_auto_classes(override=True)``), so other tests in the same process are unaffected.
Importing either package first works.
"""

from __future__ import annotations

import importlib

import pytest
import torch

import shadow_edge
from tests.core.shadow_helpers import causal_base, clone_base, randomize, seq_cls_base, token_batch

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # shadow_peft uses past_key_values=

ATOL = 1e-5


@pytest.fixture(scope="module")
def shadow_peft():
    """The original package, imported for this module only (see the module docstring)."""
    yield importlib.import_module("shadow_peft")
    shadow_edge.register_auto_classes(override=True)

CONFIG = {"num_shadow_layers": 1, "injection_hidden_size": 8, "gate_hidden_size": 6, "alpha": 0.3, "dropout": 0.1}


def randomize_all(peft_model, seed=1):
    """Random adapter weights (U starts at zero) so the comparison is not trivial."""
    randomize(peft_model.shadow_injection_model, seed=seed)
    randomize(peft_model.shadow_update_model, seed=seed + 1)
    randomize(peft_model.shadow_model, seed=seed + 2, std=0.05)
    projection = peft_model.shadow_hidden_projection
    if isinstance(projection, torch.nn.Linear):
        randomize(projection, seed=seed + 3)


def run(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits, out.shadow_logits


def assert_same(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=ATOL)


def small_shadow(seed=7, hidden_size=32):
    return causal_base("qwen3", hidden_size=hidden_size, num_hidden_layers=2, seed=seed)


# ---- theirs written, ours loaded ----
@pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
def test_their_implicit_causal_checkpoint_loads_in_ours(tmp_path, arch, shadow_peft):
    base = causal_base(arch)
    ours_base = clone_base(base)
    theirs = shadow_peft.ShadowForCausalLM(
        shadow_peft.get_shadow_model(base, shadow_peft.ShadowConfig(**CONFIG)))
    randomize_all(theirs.peft_model)
    theirs.eval()
    theirs.save_pretrained(tmp_path)
    ids = token_batch(2, 6)
    mask = torch.ones_like(ids)
    ours = shadow_edge.ShadowForCausalLM.from_pretrained(ours_base, tmp_path)
    assert_same(run(ours, ids, mask), run(theirs, ids, mask))


@pytest.mark.parametrize("hidden", [32, 64])  # with a projection, and same size without one
def test_their_explicit_causal_checkpoint_loads_in_ours(tmp_path, shadow_peft, hidden):
    base = causal_base("qwen3")
    ours_base = clone_base(base)
    theirs = shadow_peft.ShadowForCausalLM(shadow_peft.get_shadow_model(
        base, shadow_peft.ShadowConfig(**CONFIG), shadow_model=small_shadow(hidden_size=hidden)))
    randomize_all(theirs.peft_model)
    theirs.eval()
    theirs.save_pretrained(tmp_path)
    ids = token_batch(2, 6)
    mask = torch.ones_like(ids)
    ours = shadow_edge.ShadowForCausalLM.from_pretrained(
        ours_base, tmp_path, shadow_model=small_shadow(seed=9, hidden_size=hidden))
    projection = ours.peft_model.shadow_hidden_projection
    assert (projection.weight.shape == (64, 32)) if hidden == 32 else projection is None
    assert_same(run(ours, ids, mask), run(theirs, ids, mask))


def test_their_seq_cls_checkpoint_loads_in_ours(tmp_path, shadow_peft):
    base = seq_cls_base("qwen3")
    ours_base = clone_base(base)
    theirs = shadow_peft.ShadowForSequenceClassification(
        shadow_peft.get_shadow_model(base, shadow_peft.ShadowConfig(**CONFIG)))
    randomize_all(theirs.peft_model)
    randomize(theirs.shadow_classifier_head, seed=12)
    randomize(theirs.classifier_head, seed=13)
    theirs.eval()
    theirs.save_pretrained(tmp_path)
    ids = token_batch(3, 5)
    mask = torch.ones_like(ids)  # no padding: their pooling is only right without it
    ours = shadow_edge.ShadowForSequenceClassification.from_pretrained(ours_base, tmp_path)
    assert_same(run(ours, ids, mask), run(theirs, ids, mask))


# ---- ours written, theirs loaded ----
@pytest.mark.parametrize("arch", ["qwen3", "llama", "gpt2"])
def test_our_implicit_causal_checkpoint_loads_in_theirs(tmp_path, arch, shadow_peft):
    base = causal_base(arch)
    their_base = clone_base(base)
    ours = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(base, shadow_edge.ShadowConfig(**CONFIG)))
    randomize_all(ours.peft_model)
    ours.eval()
    ours.save_pretrained(tmp_path)
    ids = token_batch(2, 6)
    mask = torch.ones_like(ids)
    theirs = shadow_peft.ShadowForCausalLM.from_pretrained(their_base, str(tmp_path)).eval()
    assert_same(run(theirs, ids, mask), run(ours, ids, mask))


@pytest.mark.parametrize("hidden", [32, 64])
def test_our_explicit_causal_checkpoint_loads_in_theirs(tmp_path, shadow_peft, hidden):
    base = causal_base("qwen3")
    their_base = clone_base(base)
    ours = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(
        base, shadow_edge.ShadowConfig(**CONFIG), shadow_model=small_shadow(hidden_size=hidden)))
    randomize_all(ours.peft_model)
    ours.eval()
    ours.save_pretrained(tmp_path)
    ids = token_batch(2, 6)
    mask = torch.ones_like(ids)
    theirs = shadow_peft.ShadowForCausalLM.from_pretrained(
        their_base, str(tmp_path), shadow_model=small_shadow(seed=9, hidden_size=hidden)).eval()
    assert_same(run(theirs, ids, mask), run(ours, ids, mask))


def test_our_seq_cls_checkpoint_loads_in_theirs(tmp_path, shadow_peft):
    base = seq_cls_base("llama")
    their_base = clone_base(base)
    ours = shadow_edge.ShadowForSequenceClassification(
        shadow_edge.get_shadow_model(base, shadow_edge.ShadowConfig(**CONFIG)))
    randomize_all(ours.peft_model)
    randomize(ours.shadow_classifier_head, seed=12)
    ours.eval()
    ours.save_pretrained(tmp_path)
    ids = token_batch(3, 5)
    mask = torch.ones_like(ids)
    theirs = shadow_peft.ShadowForSequenceClassification.from_pretrained(their_base, str(tmp_path)).eval()
    assert_same(run(theirs, ids, mask), run(ours, ids, mask))


def test_our_gpt2_file_carries_the_unused_wte_key_theirs_expects(tmp_path):
    """Theirs keeps GPT-2's `wte` in an implicit shadow and loads strictly; ours writes the
    base's table under that key (ours drops it on load: the shadow is fed the base's)."""
    from safetensors.torch import load_file

    base = causal_base("gpt2")
    ours = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(base, shadow_edge.ShadowConfig(**CONFIG)))
    ours.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "shadow_adapter.safetensors")
    assert torch.equal(saved["shadow_model.wte.weight"], base.transformer.wte.weight)
    assert "shadow_model.wte.weight" not in ours.state_dict()
    llama = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(causal_base("llama"), shadow_edge.ShadowConfig()))
    llama.save_pretrained(tmp_path / "llama")
    assert not any("embed_tokens" in k for k in load_file(tmp_path / "llama" / "shadow_adapter.safetensors"))


def tiny_opt(seed=0):
    import transformers as tf

    torch.manual_seed(seed)
    return tf.OPTForCausalLM(tf.OPTConfig(
        vocab_size=256, hidden_size=32, num_hidden_layers=3, ffn_dim=64, num_attention_heads=4,
        word_embed_proj_dim=32, max_position_embeddings=64, dropout=0.0)).eval()


def test_nested_decoder_layout_opt_round_trips_both_ways(tmp_path, shadow_peft):
    """model.decoder.layers: both packages keep the unused decoder.embed_tokens key."""
    ids = token_batch(2, 5)
    mask = torch.ones_like(ids)
    ours = shadow_edge.ShadowForCausalLM(shadow_edge.get_shadow_model(tiny_opt(), shadow_edge.ShadowConfig(**CONFIG)))
    randomize_all(ours.peft_model)
    ours.eval().save_pretrained(tmp_path / "ours")
    theirs = shadow_peft.ShadowForCausalLM.from_pretrained(tiny_opt(), str(tmp_path / "ours")).eval()
    assert_same(run(theirs, ids, mask), run(ours, ids, mask))

    theirs = shadow_peft.ShadowForCausalLM(shadow_peft.get_shadow_model(tiny_opt(), shadow_peft.ShadowConfig(**CONFIG)))
    randomize_all(theirs.peft_model)
    theirs.eval().save_pretrained(tmp_path / "theirs")
    ours = shadow_edge.ShadowForCausalLM.from_pretrained(tiny_opt(), tmp_path / "theirs")
    assert_same(run(ours, ids, mask), run(theirs, ids, mask))
