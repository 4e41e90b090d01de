"""Quick speed measurements of a loaded model (for ``shadow-edge bench`` and benchmarks/).

Timings use ``time.perf_counter`` around onnxruntime calls only (tokenization excluded).
Prompts are random token ids from a fixed-seed generator, so runs are comparable.
"""

from __future__ import annotations

import time

import numpy as np

from .api import ShadowClassifier, ShadowGenerator
from .errors import InvalidSettingError
from .generation import positions_from_mask


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidSettingError(f"{name} must be an integer >= 1, got {value!r}.")
    return value


def percentile_ms(seconds: list[float], q: float) -> float:
    """The q-th percentile (numpy 'linear' method) of durations, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1e3, q))


def bench_generator(
    model: ShadowGenerator, *, prompt_tokens: int = 128, new_tokens: int = 128,
    repeats: int = 3, seed: int = 0,
) -> dict:
    """Prefill and greedy-decode speed at batch 1 through the KV cache.

    Returns {"prefill_tokens_per_s", "decode_tokens_per_s", "prefill_ms", "decode_ms_per_token",
    "prompt_tokens", "new_tokens", "repeats"}; the best (fastest) of ``repeats`` runs after
    one warm-up run.
    """
    for name, value in (("prompt_tokens", prompt_tokens), ("new_tokens", new_tokens),
                        ("repeats", repeats)):
        _check_positive(name, value)
    runner = model.runner
    context = model.context
    if context is not None and prompt_tokens + new_tokens > context:
        raise InvalidSettingError(
            f"prompt_tokens + new_tokens = {prompt_tokens + new_tokens} exceeds the model's "
            f"context {context}; lower them."
        )
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, runner.vocab_size, size=(1, prompt_tokens), dtype=np.int64)
    prefill_times, decode_times = [], []
    for attempt in range(repeats + 1):
        mask = np.ones_like(ids)
        start = time.perf_counter()
        logits, cache = runner.step(ids, mask, positions_from_mask(mask), runner.empty_cache(1))
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(new_tokens):
            token = np.argmax(logits, axis=-1)[:, None].astype(np.int64)
            mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
            position = np.array([[mask.shape[1] - 1]], dtype=np.int64)
            logits, cache = runner.step(token, mask, position, cache)
        decode = time.perf_counter() - start
        if attempt:  # the first run warms up allocators and caches
            prefill_times.append(prefill)
            decode_times.append(decode)
    prefill, decode = min(prefill_times), min(decode_times)
    return {
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "repeats": repeats,
        "prefill_ms": prefill * 1e3,
        "prefill_tokens_per_s": prompt_tokens / prefill,
        "decode_ms_per_token": decode * 1e3 / new_tokens,
        "decode_tokens_per_s": new_tokens / decode,
    }


def bench_classifier(
    model: ShadowClassifier, *, sequence_length: int = 32, batch_size: int = 1,
    repeats: int = 50, seed: int = 0,
) -> dict:
    """Latency of one classification call on random ids: p50/p95/mean in ms (after 3 warm-ups)."""
    for name, value in (("sequence_length", sequence_length), ("batch_size", batch_size),
                        ("repeats", repeats)):
        _check_positive(name, value)
    rng = np.random.default_rng(seed)
    vocab = model.manifest.model.vocab_size
    rows = rng.integers(0, vocab, size=(batch_size, sequence_length)).tolist()
    times = []
    for attempt in range(repeats + 3):
        start = time.perf_counter()
        model.runner.logits(rows, model.pad_token_id)
        if attempt >= 3:
            times.append(time.perf_counter() - start)
    return {
        "sequence_length": sequence_length,
        "batch_size": batch_size,
        "repeats": repeats,
        "p50_ms": percentile_ms(times, 50),
        "p95_ms": percentile_ms(times, 95),
        "mean_ms": float(np.mean(times) * 1e3),
    }
