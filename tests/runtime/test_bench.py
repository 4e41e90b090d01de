"""runtime.bench returns well-formed measurements (no speed assertions: see benchmarks/)."""

from __future__ import annotations

import pytest

from runtime.bench import bench_classifier, bench_generator
from runtime.errors import InvalidSettingError

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")


def test_bench_generator_reports_prefill_and_decode(generator):
    out = bench_generator(generator, prompt_tokens=8, new_tokens=4, repeats=1)
    assert out["prompt_tokens"] == 8 and out["new_tokens"] == 4
    assert out["prefill_tokens_per_s"] == pytest.approx(8 / (out["prefill_ms"] / 1e3))
    assert out["decode_tokens_per_s"] == pytest.approx(1e3 / out["decode_ms_per_token"])


def test_bench_classifier_reports_percentiles(classifier):
    out = bench_classifier(classifier, sequence_length=8, repeats=5)
    assert 0 < out["p50_ms"] <= out["p95_ms"]


def test_bench_rejects_bad_sizes(generator):
    with pytest.raises(InvalidSettingError, match="exceeds the model's context"):
        bench_generator(generator, prompt_tokens=100, new_tokens=100)
    with pytest.raises(InvalidSettingError, match="repeats must be"):
        bench_generator(generator, repeats=0)
