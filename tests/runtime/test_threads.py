"""One loaded model called from several threads gives the same results as serial calls."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

PROMPTS = ["Hello", "The robot", "é 😀", "kitchen light on", "x", "timer ten minutes"]


def test_concurrent_generation_equals_serial(generator):
    def run(i):
        kwargs = {"max_new_tokens": 12, "eos_token_id": []}
        if i % 2:  # mix greedy and seeded sampling, single prompts and batches
            return generator.generate(PROMPTS[i], temperature=0.9, seed=i, **kwargs).token_ids
        return [r.token_ids for r in generator.generate(PROMPTS[i:i + 2], **kwargs)]

    serial = [run(i) for i in range(len(PROMPTS))]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(run, list(range(len(PROMPTS))) * 2))
    assert parallel == serial * 2


def test_concurrent_streams_equal_serial(generator):
    def run(prompt):
        return "".join(generator.stream(prompt, max_new_tokens=16, eos_token_id=[]))

    serial = [run(p) for p in PROMPTS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(run, PROMPTS)) == serial


def test_concurrent_classification_equals_serial(classifier):
    texts = [f"command number {i} {'é' * i}" for i in range(12)]
    serial = [classifier.classify(texts[i:i + 3]) for i in range(0, 12, 3)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda i: classifier.classify(texts[i:i + 3]), range(0, 12, 3)))
    for got, want in zip(parallel, serial):
        assert [r.label for r in got] == [r.label for r in want]
        np.testing.assert_array_equal(np.stack([r.logits for r in got]),
                                      np.stack([r.logits for r in want]))
