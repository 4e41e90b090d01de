"""ShadowPeftModel: the seed's implicit/explicit usage, freezing, counts, the forward pass."""

from __future__ import annotations

import io

import pytest
import torch
import transformers as tf

from shadow_edge import (
    ConfigError,
    ShadowConfig,
    ShadowPeftModel,
    get_shadow_model,
    prepare_shadow_model,
)
from shadow_edge.backbone import find_decoder_stack, input_embeddings_of
from shadow_edge.layers import adapter_parameter_count
from tests.core.shadow_helpers import causal_base, clone_base, numel, randomize_adapter, token_batch
from tests.tiny_models import ARCHITECTURES, tiny_config

H = 64


def implicit_shadow_params(arch: str, num_layers: int) -> int:
    """Parameter count of an implicit shadow backbone without its input embedding table."""
    cfg = tiny_config(arch, num_hidden_layers=num_layers)
    backbone = find_decoder_stack(tf.AutoModelForCausalLM.from_config(cfg)).backbone
    return numel(backbone) - 256 * H


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_seed_usage_1_implicit_shadow(arch):
    base = causal_base(arch)
    base_total = numel(base)
    config = ShadowConfig(num_shadow_layers=1, injection_hidden_size=16, gate_hidden_size=8, alpha=0.1, dropout=0.1)
    model = get_shadow_model(base, config)
    trainable, total = model.get_nb_trainable_parameters()
    expected = adapter_parameter_count(4, H, 16, 8) + implicit_shadow_params(arch, 1)
    assert expected == 3 * H * 16 * 2 + 3 * 4 * H * 8 + 2 * H + implicit_shadow_params(arch, 1)
    assert trainable == expected
    assert total == base_total + trainable
    assert not any(p.requires_grad for p in base.parameters())
    assert model.shadow_hidden_projection is None and model.embeddings_shared
    assert model.shadow_input_embeddings() is base.get_input_embeddings()
    out = io.StringIO()
    line = model.print_trainable_parameters(file=out)
    assert out.getvalue() == line + "\n"
    assert line.startswith(f"Trainable params: {trainable:,} || Total params: {total:,} || Trainable%: ")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_fresh_adapter_leaves_base_logits_unchanged(arch):
    base = causal_base(arch)
    reference = clone_base(base)
    ids = token_batch()
    model = get_shadow_model(base, ShadowConfig()).eval()
    torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=0, atol=0)


def test_trained_adapter_changes_logits_only_inside_the_shadow_forward():
    base = causal_base("qwen3")
    reference = clone_base(base)
    ids = token_batch()
    model = get_shadow_model(base, ShadowConfig(dropout=0.0)).eval()
    randomize_adapter(model)
    assert (model(input_ids=ids).logits - reference(input_ids=ids).logits).abs().max() > 1e-2
    # no hooks stay behind: the base alone is the plain base again
    torch.testing.assert_close(base(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=0, atol=0)
    assert all(not layer._forward_pre_hooks and not layer._forward_hooks for layer in model.decoder_layers)


def test_forward_matches_a_manual_layer_loop():
    """FORMAT.md steps 1-3 written out by hand over the plain base's layers."""
    base = causal_base("llama")
    model = get_shadow_model(base, ShadowConfig(dropout=0.0)).eval()
    randomize_adapter(model)
    ids = token_batch(1, 5)
    outputs = {}

    def keep(index):
        def hook(module, args, output):
            outputs[index] = output
        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(model.decoder_layers)]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        for handle in handles:
            handle.remove()
        state = model.shadow_hidden_states(input_ids=ids)
        plain = clone_base(base).model
        hidden = plain.embed_tokens(ids)
        positions = torch.arange(5)[None]
        rope = plain.rotary_emb(hidden, positions)
        for i, layer in enumerate(plain.layers):
            if i >= 1:
                hidden = model.shadow_injection_model(hidden, state, i - 1)
            hidden = layer(hidden, attention_mask=None, position_embeddings=rope, position_ids=positions)
            if i >= 1:
                state = model.shadow_update_model(hidden, state, i - 1)
            torch.testing.assert_close(outputs[i], hidden, rtol=1e-5, atol=1e-5)
    assert logits.shape == (1, 5, 256)


def test_base_with_one_layer_raises_config_error():
    with pytest.raises(ConfigError, match="at least 2 decoder layers"):
        get_shadow_model(causal_base("llama", num_hidden_layers=1), ShadowConfig())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_seed_usage_2_explicit_shadow_with_different_hidden_size_gets_a_projection(arch):
    base = causal_base(arch)
    shadow = causal_base(arch, hidden_size=32, num_hidden_layers=2, seed=5)
    shadow_backbone = find_decoder_stack(shadow).backbone
    shadow_backbone_params = numel(shadow_backbone)
    model = get_shadow_model(base, ShadowConfig(injection_hidden_size=16, gate_hidden_size=8), shadow_model=shadow)
    assert model.shadow_model is shadow_backbone
    projection = model.shadow_hidden_projection
    assert isinstance(projection, torch.nn.Linear) and projection.bias is None
    assert projection.weight.shape == (64, 32)
    assert not model.embeddings_shared
    assert model.shadow_input_embeddings() is shadow.get_input_embeddings()
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == adapter_parameter_count(4, H, 16, 8) + shadow_backbone_params + 32 * 64
    ids = token_batch()
    assert model.shadow_hidden_states(input_ids=ids).shape == (2, 7, 64)
    assert model(input_ids=ids).logits.shape == (2, 7, 256)
    assert model.shadow_config.shadow_model_config["model_type"] == arch


class _ProjectedShadow(torch.nn.Module):
    """Duck-typed projected model: .shadow_model (backbone) + .shadow_hidden_projection + .lm_head."""

    def __init__(self, backbone, base_hidden):
        super().__init__()
        self.shadow_model = backbone
        self.shadow_hidden_projection = torch.nn.Linear(backbone.config.hidden_size, base_hidden, bias=False)
        self.lm_head = torch.nn.Linear(base_hidden, 256, bias=False)


def test_trained_projection_carried_by_the_shadow_is_reused():
    base = causal_base("qwen3")
    projected = _ProjectedShadow(causal_base("qwen3", hidden_size=32, num_hidden_layers=1).model, 64)
    model = get_shadow_model(base, ShadowConfig(), shadow_model=projected)
    assert torch.equal(model.shadow_hidden_projection.weight, projected.shadow_hidden_projection.weight)
    assert model.shadow_hidden_projection is not projected.shadow_hidden_projection  # owned copy
    assert model.shadow_model is projected.shadow_model


def test_explicit_shadow_same_size_with_shared_embeddings():
    base = causal_base("llama")
    shadow = prepare_shadow_model(causal_base("llama", num_hidden_layers=1, seed=4), remove_embed_tokens=True)
    model = get_shadow_model(base, ShadowConfig(), shadow_model=shadow)
    assert model.embeddings_shared and model.shadow_hidden_projection is None
    assert input_embeddings_of(model.shadow_model) is None
    assert model.shadow_input_embeddings() is base.get_input_embeddings()
    assert model.shadow_config.shadow_embeddings_shared is True
    assert model(input_ids=token_batch()).logits.shape == (2, 7, 256)


def test_explicit_shadow_without_embeddings_must_match_the_base_hidden_size():
    shadow = prepare_shadow_model(causal_base("llama", hidden_size=32, num_hidden_layers=1), remove_embed_tokens=True)
    with pytest.raises(ConfigError, match="hidden size"):
        get_shadow_model(causal_base("llama"), ShadowConfig(), shadow_model=shadow)


def test_gradients_reach_only_the_adapter():
    base = causal_base("mistral")
    model = get_shadow_model(base, ShadowConfig(dropout=0.0))
    randomize_adapter(model)
    model(input_ids=token_batch()).logits.sum().backward()
    assert all(p.grad is None for p in base.parameters())
    assert model.shadow_injection_model.injection_downs.grad.abs().sum() > 0
    assert model.shadow_update_model.update_gates[0][0].weight.grad.abs().sum() > 0
    assert model.shadow_model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_state_dict_holds_only_adapter_keys():
    model = get_shadow_model(causal_base("qwen3"), ShadowConfig())
    keys = list(model.state_dict())
    assert keys and all(k.startswith(("shadow_model.", "shadow_injection_model.", "shadow_update_model.")) for k in keys)
    assert "shadow_model.norm.weight" in keys and not any("embed_tokens" in k for k in keys)
    assert list(model.state_dict(prefix="x.")) == ["x." + k for k in keys]


def test_export_shadow_returns_a_standalone_model_of_the_shadow_layers():
    base = causal_base("llama")
    model = get_shadow_model(base, ShadowConfig(num_shadow_layers=2))
    exported = model.export_shadow()
    assert type(exported) is type(base)
    assert exported.config.num_hidden_layers == 2
    # the peft model exports the base's head (the seed's behaviour)
    assert torch.equal(exported.get_output_embeddings().weight, base.get_output_embeddings().weight)


def test_gradient_checkpointing_is_forwarded_to_base_and_shadow():
    model = get_shadow_model(causal_base("llama"), ShadowConfig())
    def flags(module):
        return {layer.gradient_checkpointing for layer in find_decoder_stack(module).layers}

    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    assert flags(model.base_model) == {True} and flags(model.shadow_model) == {True}
    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    assert flags(model.base_model) == {False} and flags(model.shadow_model) == {False}


def test_gradient_checkpointing_gives_the_same_gradients():
    """Hooks run outside HF's checkpointed forward, so recomputation does not re-apply them."""
    grads = []
    for checkpointing in (False, True):
        model = get_shadow_model(causal_base("qwen3"), ShadowConfig(dropout=0.0))
        randomize_adapter(model)
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable({"use_reentrant": False})
        model(input_ids=token_batch()).logits.pow(2).mean().backward()
        grads.append(model.shadow_injection_model.injection_ups.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_shadow_peft_model_is_the_class_returned():
    assert isinstance(get_shadow_model(causal_base("gemma"), ShadowConfig()), ShadowPeftModel)


def test_two_threads_on_one_model_do_not_see_each_others_pass():
    """Why: the pass hooks live on the shared base layers while a forward runs. A barrier in
    layer 0 holds both threads inside their passes at once, so any leak would show."""
    import threading

    model = get_shadow_model(causal_base("llama"), ShadowConfig(dropout=0.0)).eval()
    randomize_adapter(model)
    inputs = [token_batch(1, 5, seed=s) for s in (1, 2)]
    with torch.no_grad():
        expected = [model(input_ids=ids).logits for ids in inputs]
    barrier = threading.Barrier(2, timeout=30)

    def wait_for_the_other_thread(module, args, output):
        barrier.wait()

    handle = model.decoder_layers[0].register_forward_hook(wait_for_the_other_thread)
    results, errors = [None, None], []

    def run(i):
        try:
            with torch.no_grad():
                results[i] = model(input_ids=inputs[i]).logits
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handle.remove()
    assert errors == []
    for got, want in zip(results, expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert all(not layer._forward_pre_hooks and not layer._forward_hooks for layer in model.decoder_layers)


def test_plain_base_in_another_thread_is_untouched_while_a_pass_is_open():
    import threading

    model = get_shadow_model(causal_base("qwen3"), ShadowConfig(dropout=0.0)).eval()
    randomize_adapter(model)
    reference = clone_base(model.base_model)
    ids = token_batch(1, 5)
    inside, release = threading.Event(), threading.Event()

    def hold(module, args, output):
        if threading.current_thread() is not threading.main_thread():
            inside.set()
            release.wait(30)

    handle = model.decoder_layers[0].register_forward_hook(hold)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("adapted", model(input_ids=ids).logits))
    with torch.no_grad():
        worker.start()
        assert inside.wait(30)  # the worker's pass hooks are on the layers now
        plain = model.base_model(input_ids=ids).logits
        release.set()
        worker.join()
        handle.remove()
        torch.testing.assert_close(plain, reference(input_ids=ids).logits, rtol=0, atol=0)
        torch.testing.assert_close(result["adapted"], model(input_ids=ids).logits, rtol=0, atol=1e-6)
