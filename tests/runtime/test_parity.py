"""fp32 parity with torch: the runtime's greedy tokens and classifier outputs equal the HF model's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

PROMPTS = ["Hello", "The robot turns on the kitchen light", "héllo wörld 😀", "x"]


def _torch_greedy(model, ids: list[int], steps: int) -> list[int]:
    """Full recomputation each step (no cache): the plainest possible reference."""
    x = torch.tensor([ids])
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=x).logits[:, -1]
            x = torch.cat([x, logits.argmax(-1, keepdim=True)], dim=1)
    return x[0, len(ids):].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_32_tokens_equal_torch(generator, torch_lm, prompt):
    ids = generator.tokenizer.encode(prompt)
    result = generator.generate(prompt, max_new_tokens=32, eos_token_id=[])
    assert result.token_ids == _torch_greedy(torch_lm, ids, 32)
    assert len(result.token_ids) == 32 and result.finish_reason == "length"


def test_prefill_logits_match_torch(generator, torch_lm):
    ids = generator.tokenizer.encode(PROMPTS[1])
    runner = generator.runner
    mask = np.ones((1, len(ids)), dtype=np.int64)
    logits, cache = runner.step(np.array([ids]), mask, np.arange(len(ids))[None],
                                runner.empty_cache(1), all_logits=True)
    with torch.no_grad():
        expected = torch_lm(input_ids=torch.tensor([ids])).logits.numpy()
    scale = np.abs(expected).max()
    assert logits.shape == expected.shape == (1, len(ids), 259)
    assert np.abs(logits - expected).max() <= 1e-4 * scale
    assert cache.length == len(ids)
    assert cache.values[0].shape == (1, 2, len(ids), 16)


def test_classification_equals_torch(classifier, torch_classifier):
    texts = ["turn on the light", "what's the weather", "a", "set a timer for ten minutes ⏲"]
    results = classifier.classify(texts)
    for text, result in zip(texts, results):
        ids = classifier.tokenizer.encode(text)
        with torch.no_grad():
            expected = torch_classifier(input_ids=torch.tensor([ids])).logits[0].numpy()
        assert result.label_id == int(expected.argmax())
        assert result.label == f"label_{result.label_id}"
        np.testing.assert_allclose(result.logits, expected, atol=1e-4 * np.abs(expected).max())
        np.testing.assert_allclose(result.scores.sum(), 1.0, rtol=1e-6)
        assert result.score == pytest.approx(float(result.scores.max()))


@pytest.fixture(scope="module")
def shadow_adapter(tmp_path_factory):
    """A real ShadowPEFT checkpoint: 3-layer Llama base + implicit 1-layer shadow, exported.

    Why the perturbation: a fresh adapter's shadow equals the base's first layer; random
    offsets and a scaled shadow head make the shadow-only model distinct and confident.
    """
    from transformers import AutoModelForCausalLM

    import shadow_edge as se
    from exporters import export
    from exporters.testing import tiny_model_folder

    root = tmp_path_factory.mktemp("runtime-adapter")
    base_dir = tiny_model_folder(root / "base", "llama", num_layers=3, seed=3)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = se.ShadowForCausalLM(se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=1)))
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in model.peft_model.shadow_model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
        model.shadow_lm_head.weight.mul_(30.0)
    model.peft_model.shadow_config.modules_to_save = ["shadow_lm_head"]
    model.save_pretrained(root / "ckpt")
    folder = export(root / "ckpt", root / "out").output_dir
    model.set_inference_mode("shadow_only")
    return model.eval(), folder


def test_shadow_adapter_export_greedy_equals_torch_shadow_only(shadow_adapter):
    import runtime

    torch_model, folder = shadow_adapter
    model = runtime.load(folder, threads=1)
    assert model.manifest.source.kind == "adapter" and model.manifest.model.num_layers == 1
    for prompt in ["Turn on the lamp", "é😀"]:
        ids = model.tokenizer.encode(prompt)
        result = model.generate(prompt, max_new_tokens=32, eos_token_id=[])
        expected = _torch_greedy(torch_model, ids, 32)
        assert result.token_ids == expected
        assert len(set(expected)) >= 4  # not a degenerate repetition
