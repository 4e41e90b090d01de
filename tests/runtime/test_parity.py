"""fp32 parity with torch: the runtime's greedy tokens and logits equal the HF / ShadowPEFT
models' outputs, recorded when the fixtures were built (``tests/runtime/fixtures/build.py``;
``test_fixtures.py`` checks a rebuild reproduces them), so these run without torch."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from tests.runtime.fixtures import (
    ADAPTER_PROMPTS,
    CLASSIFICATION_TEXTS,
    GENERATION_PROMPTS,
    GREEDY_TOKENS,
)

# one xdist worker loads the session-scoped fixtures once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")


@pytest.mark.parametrize("index", range(len(GENERATION_PROMPTS)), ids=GENERATION_PROMPTS)
def test_greedy_32_tokens_equal_torch(generator, fixture_references, index):
    expected = fixture_references["generation"][index]
    assert generator.tokenizer.encode(expected["prompt"]) == expected["input_ids"]
    result = generator.generate(expected["prompt"], max_new_tokens=GREEDY_TOKENS, eos_token_id=[])
    assert result.token_ids == expected["greedy_ids"]
    assert len(result.token_ids) == GREEDY_TOKENS and result.finish_reason == "length"


def test_prefill_logits_match_torch(generator, fixture_references):
    ids = fixture_references["prefill"]["input_ids"]
    expected = fixture_references["prefill"]["logits"]
    runner = generator.runner
    mask = np.ones((1, len(ids)), dtype=np.int64)
    logits, cache = runner.step(np.array([ids]), mask, np.arange(len(ids))[None],
                                runner.empty_cache(1), all_logits=True)
    scale = np.abs(expected).max()
    assert logits.shape == expected.shape == (1, len(ids), 259)
    assert np.abs(logits - expected).max() <= 1e-4 * scale
    assert cache.length == len(ids)
    assert cache.values[0].shape == (1, 2, len(ids), 16)


def test_classification_equals_torch(classifier, fixture_references):
    references = fixture_references["classification"]
    assert references["texts"] == list(CLASSIFICATION_TEXTS)
    results = classifier.classify(references["texts"])
    for result, expected in zip(results, references["logits"], strict=True):
        assert result.label_id == int(expected.argmax())
        assert result.label == f"label_{result.label_id}"
        np.testing.assert_allclose(result.logits, expected, atol=1e-4 * np.abs(expected).max())
        np.testing.assert_allclose(result.scores.sum(), 1.0, rtol=1e-6)
        assert result.score == pytest.approx(float(result.scores.max()))


def test_shadow_adapter_export_greedy_equals_torch_shadow_only(exports, fixture_references):
    """A real ShadowPEFT checkpoint (3-layer Llama base + implicit 1-layer shadow), exported:
    the runtime's greedy ids equal the torch model's in ``"shadow_only"`` mode."""
    model = runtime.load(exports["adapter"], threads=1)
    assert model.manifest.source.kind == "adapter" and model.manifest.model.num_layers == 1
    references = fixture_references["adapter"]
    assert [r["prompt"] for r in references] == list(ADAPTER_PROMPTS)
    for expected in references:
        assert model.tokenizer.encode(expected["prompt"]) == expected["input_ids"]
        result = model.generate(expected["prompt"], max_new_tokens=GREEDY_TOKENS,
                                eos_token_id=[])
        assert result.token_ids == expected["greedy_ids"]
        assert len(set(expected["greedy_ids"])) >= 4  # not a degenerate repetition
