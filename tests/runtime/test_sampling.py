"""Next-token choice: greedy, temperature, top-k, top-p, repetition penalty, seeds, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import InvalidSettingError
from runtime.sampling import Sampler, SamplingSettings


def _logits(batch=3, vocab=50, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, vocab)).astype(np.float32)


def test_default_is_greedy_argmax():
    logits = _logits()
    assert not SamplingSettings().sampling
    np.testing.assert_array_equal(Sampler(SamplingSettings())(logits), logits.argmax(-1))


def test_sampling_switches_on_with_any_sampling_setting_and_off_with_temperature_zero():
    assert SamplingSettings(temperature=0.7).sampling
    assert SamplingSettings(top_k=5).sampling
    assert SamplingSettings(top_p=0.9).sampling
    assert not SamplingSettings(temperature=0.0, do_sample=True).sampling
    assert not SamplingSettings(top_p=0.9, do_sample=False).sampling


def test_tiny_temperature_tends_to_greedy():
    logits = _logits(batch=4, vocab=100) * 100
    for temperature in (5e-324, 1e-300, 1e-8):
        sampler = Sampler(SamplingSettings(temperature=temperature, seed=0))
        np.testing.assert_array_equal(sampler(logits), logits.argmax(-1))


def test_top_k_one_equals_greedy():
    logits = _logits(batch=8, vocab=200)
    sampler = Sampler(SamplingSettings(top_k=1, temperature=1.5, seed=3))
    for _ in range(5):
        np.testing.assert_array_equal(sampler(logits), logits.argmax(-1))


def test_fixed_seed_reproduces_and_another_seed_differs():
    logits = np.zeros((4, 1000), dtype=np.float32)  # uniform: draws depend only on the RNG

    def draws(seed):
        sampler = Sampler(SamplingSettings(do_sample=True, seed=seed))
        return np.stack([sampler(logits) for _ in range(3)])

    np.testing.assert_array_equal(draws(7), draws(7))
    assert not np.array_equal(draws(7), draws(8))


def test_top_p_samples_only_from_the_nucleus():
    # probabilities 0.5, 0.3, 0.15, 0.05: top_p=0.7 keeps {0, 1} (0.5 < 0.7 <= 0.8)
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    sampler = Sampler(SamplingSettings(top_p=0.7, seed=0))
    drawn = {int(sampler(np.log(probs))[0]) for _ in range(300)}
    assert drawn == {0, 1}


def test_top_k_samples_only_from_the_k_best():
    logits = np.array([[0.0, 3.0, 1.0, 2.9, -1.0]], dtype=np.float32)
    sampler = Sampler(SamplingSettings(top_k=2, seed=1))
    assert {int(sampler(logits)[0]) for _ in range(300)} == {1, 3}


def test_repetition_penalty_follows_ctrl_formula():
    # seen positive logit 2.0 -> 2.0 / 2 = 1.0; seen negative -0.5 -> -1.0; unseen 1.5 stays
    logits = np.array([[2.0, 1.5, -0.5]], dtype=np.float32)
    seen = np.array([[True, False, True]])
    sampler = Sampler(SamplingSettings(repetition_penalty=2.0))
    assert sampler(logits, seen)[0] == 1  # 1.5 now beats the penalised 1.0
    assert Sampler(SamplingSettings())(logits, seen)[0] == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"seed": -3}, "seed"),
        ({"seed": True}, "seed"),
        ({"do_sample": "yes"}, "do_sample"),
    ],
)
def test_invalid_settings_name_the_field_and_an_example(kwargs, field):
    with pytest.raises(InvalidSettingError, match=f"{field} must be .* Use e.g. {field}="):
        SamplingSettings(**kwargs)


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    vocab=st.integers(1, 64),
    temperature=st.one_of(st.none(), st.floats(0, 5)),
    top_k=st.one_of(st.none(), st.integers(0, 80)),
    top_p=st.one_of(st.none(), st.floats(0.01, 1.0)),
    penalty=st.one_of(st.none(), st.floats(0.5, 3)),
    seed=st.integers(0, 2**32),
)
def test_any_valid_setting_returns_valid_ids(batch, vocab, temperature, top_k, top_p, penalty, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=10, size=(batch, vocab)).astype(np.float32)
    seen = rng.random((batch, vocab)) < 0.3
    s = SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p,
                         repetition_penalty=penalty, seed=seed)
    ids = Sampler(s)(logits, seen)
    assert ids.shape == (batch,) and ids.dtype == np.int64
    assert ((ids >= 0) & (ids < vocab)).all()
    np.testing.assert_array_equal(ids, Sampler(s)(logits, seen))  # same seed, same ids


@settings(max_examples=40, deadline=None)
@given(
    temperature=st.one_of(st.floats(allow_nan=True), st.text(max_size=2)),
    top_p=st.one_of(st.floats(allow_nan=True), st.integers(-5, 5)),
)
def test_arbitrary_values_either_validate_or_raise_invalid_setting(temperature, top_p):
    try:
        s = SamplingSettings(temperature=temperature, top_p=top_p)
    except InvalidSettingError as exc:
        assert "Use e.g." in str(exc)
    else:
        assert 0 <= s.temperature and 0 < s.top_p <= 1
