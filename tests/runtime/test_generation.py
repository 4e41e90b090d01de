"""The decoding loop: batches, streaming, stop strings, eos, context limits, sampling, chat."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from runtime.errors import InvalidSettingError, PromptTooLongError
from runtime.generation import left_pad, positions_from_mask

# one xdist worker builds the session-scoped exports once (`make test` runs -n 2 --dist loadgroup)
pytestmark = pytest.mark.xdist_group("runtime")

PROMPTS = ["Hello", "The robot turns on the kitchen light", "é", "日本語のテキスト 😀", "x y z"]


def test_left_pad_and_positions():
    ids, mask = left_pad([[5, 6, 7], [9]], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [0, 0, 9]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(positions_from_mask(mask), [[0, 1, 2], [0, 0, 0]])


def test_generated_tokens_are_diverse(generator):
    # guards the fixture: a degenerate model (one repeated token) would make tests vacuous
    result = generator.generate(PROMPTS[1], max_new_tokens=32, eos_token_id=[])
    assert len(set(result.token_ids)) >= 8


def test_batch_equals_each_row_alone(generator):
    batch = generator.generate(PROMPTS, max_new_tokens=24, eos_token_id=[])
    assert isinstance(batch, list) and len(batch) == len(PROMPTS)
    for prompt, row in zip(PROMPTS, batch):
        alone = generator.generate(prompt, max_new_tokens=24, eos_token_id=[])
        assert row.token_ids == alone.token_ids
        assert row.text == alone.text
        assert row.prompt_token_count == len(generator.tokenizer.encode(prompt))


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_quantized_batch_rows_equal_rows_alone(exports, precision):
    """int4 and int8 (MatMulNBits, accuracy level 4) quantize activations per row and block
    of 32, so a row's logits do not depend on its batch-mates: equal to running it alone up
    to float rounding of the padded attention (the fp32 gate's bound), same argmax, and the
    same greedy tokens."""
    model = runtime.load(exports[precision], threads=1)
    runner = model.runner
    ids = [[5, 9, 11, 30, 31, 32, 33], [7, 1], [40, 41, 42, 43]]
    input_ids, mask = left_pad(ids, 0)
    batch, _ = runner.step(input_ids, mask, positions_from_mask(mask),
                           runner.empty_cache(len(ids)))
    for row, logits in zip(ids, batch):
        alone, _ = runner.step(np.array([row]), np.ones((1, len(row)), np.int64),
                               np.arange(len(row))[None], runner.empty_cache(1))
        assert np.abs(alone[0] - logits).max() <= 1e-4 * np.abs(alone).max()
        assert alone[0, -1].argmax() == logits[-1].argmax()
    rows = model.generate(PROMPTS, max_new_tokens=16, eos_token_id=[])
    for prompt, row in zip(PROMPTS, rows):
        assert row.token_ids == model.generate(prompt, max_new_tokens=16,
                                               eos_token_id=[]).token_ids


def test_batch_rows_stop_independently(generator):
    alone = generator.generate(PROMPTS[1], max_new_tokens=12, eos_token_id=[])
    eos = alone.token_ids[4]  # make the 5th token of row 1 an "eos" for this call
    rows = generator.generate(PROMPTS, max_new_tokens=12, eos_token_id=eos)
    assert rows[1].token_ids == alone.token_ids[: alone.token_ids.index(eos) + 1]
    assert rows[1].finish_reason == "eos"
    assert rows[1].text == generator.tokenizer.decode(rows[1].token_ids[:-1])
    for prompt, row in zip(PROMPTS, rows):
        assert row.token_ids == generator.generate(prompt, max_new_tokens=12,
                                                   eos_token_id=eos).token_ids


@pytest.mark.parametrize("prompt", PROMPTS)
def test_stream_joined_equals_generate_text(generator, prompt):
    full = generator.generate(prompt, max_new_tokens=40, eos_token_id=[])
    pieces = list(generator.stream(prompt, max_new_tokens=40, eos_token_id=[]))
    assert "".join(pieces) == full.text == generator.tokenizer.decode(full.token_ids)
    assert all(p and not p.endswith("\ufffd") or p == pieces[-1] for p in pieces)


def test_stop_string_cuts_text_before_it_and_streams_the_same(generator):
    full = generator.generate(PROMPTS[0], max_new_tokens=40, eos_token_id=[]).text
    stop = full[10:13]
    assert len(stop) == 3 and full.find(stop) >= 0
    result = generator.generate(PROMPTS[0], max_new_tokens=40, eos_token_id=[], stop=[stop, "\0"])
    assert result.finish_reason == "stop"
    assert result.text == full[: full.find(stop)]
    streamed = "".join(generator.stream(PROMPTS[0], max_new_tokens=40, eos_token_id=[], stop=stop))
    assert streamed == result.text


def test_eos_from_manifest_ends_generation(generator):
    assert generator.eos_token_ids == [2]
    ids = generator.tokenizer.encode(PROMPTS[2])
    result = generator.generate(ids, max_new_tokens=64)
    free = generator.generate(ids, max_new_tokens=64, eos_token_id=[]).token_ids
    # the default eos ids are the manifest's: the run is the eos-free run cut after the first 2
    expected = free[: free.index(2) + 1] if 2 in free else free
    assert result.token_ids == expected
    assert result.finish_reason == ("eos" if 2 in free else "length")


def test_chat_messages_equal_their_template_ids(generator):
    messages = [{"role": "system", "content": "short"}, {"role": "user", "content": "hi"}]
    ids = generator.apply_chat_template(messages)
    text = generator.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>system\nshort<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n" \
                   "<|im_start|>assistant\n"
    assert ids == generator.tokenizer.encode(text, add_special_tokens=False)
    a = generator.generate(messages, max_new_tokens=8, eos_token_id=[])
    b = generator.generate(ids, max_new_tokens=8, eos_token_id=[])
    assert a.token_ids == b.token_ids and a.prompt_token_count == len(ids)


def test_batch_of_conversations_equals_each_alone(generator):
    chats = [[{"role": "user", "content": "hi"}],
             [{"role": "system", "content": "be brief"}, {"role": "user", "content": "lamp on"}]]
    batch = generator.generate(chats, max_new_tokens=6, eos_token_id=[])
    assert [r.token_ids for r in batch] == [
        generator.generate(chat, max_new_tokens=6, eos_token_id=[]).token_ids for chat in chats
    ]


def test_prompt_longer_than_context_errors_or_truncates(generator):
    context = generator.context
    assert context == 128
    long_ids = list(range(3, 3 + 100)) * 2  # 200 tokens
    with pytest.raises(PromptTooLongError, match="truncate=True"):
        generator.generate(long_ids, max_new_tokens=4)
    result = generator.generate(long_ids, max_new_tokens=4, truncate=True, eos_token_id=[])
    assert result.prompt_token_count == context - 4
    assert result.token_ids == generator.generate(long_ids[-(context - 4):], max_new_tokens=4,
                                                  eos_token_id=[]).token_ids


def test_generation_stops_at_the_end_of_the_context(generator):
    result = generator.generate(list(range(3, 123)), max_new_tokens=50, eos_token_id=[])
    assert len(result.token_ids) == 128 - 120 and result.finish_reason == "length"


def test_fixed_seed_sampling_reproduces_and_top_k_one_is_greedy(generator):
    kwargs = {"max_new_tokens": 16, "eos_token_id": []}
    a = generator.generate(PROMPTS[1], temperature=1.3, top_p=0.95, seed=11, **kwargs)
    b = generator.generate(PROMPTS[1], temperature=1.3, top_p=0.95, seed=11, **kwargs)
    assert a.token_ids == b.token_ids
    greedy = generator.generate(PROMPTS[1], **kwargs)
    assert generator.generate(PROMPTS[1], top_k=1, temperature=2.0, seed=5,
                              **kwargs).token_ids == greedy.token_ids


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"top_p": 2.0}, "top_p must be"),
        ({"stop": [""]}, "stop must be a non-empty string"),
        ({"temperature": "hot"}, "temperature must be"),
    ],
)
def test_invalid_generation_settings_raise_before_running(generator, kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        generator.generate("hi", **kwargs)
    with pytest.raises(InvalidSettingError, match=message):
        generator.stream("hi", **kwargs)  # raised at the call, not at the first next()


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("", "zero tokens"),
        ([], "zero tokens"),
        ([5, 999], "outside the vocabulary"),
        (3.5, "a prompt must be a string"),
        ([[1], "mixed", 3], "a prompt must be"),
        ("bad \ud800 bytes", r"unpaired surrogate '\\ud800' at index 4"),
        (["fine", "\udcff"], "unpaired surrogate"),
    ],
)
def test_bad_prompts_give_clear_errors(generator, prompt, message):
    with pytest.raises(InvalidSettingError, match=message):
        generator.generate(prompt, max_new_tokens=2)


def test_stream_takes_one_prompt(generator):
    with pytest.raises(InvalidSettingError, match="stream\\(\\) takes one prompt"):
        generator.stream(["a", "b"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(st.integers(0, 258), min_size=1, max_size=12), min_size=1, max_size=4),
    max_new_tokens=st.integers(1, 6),
    temperature=st.one_of(st.none(), st.floats(0, 3)),
    top_k=st.one_of(st.none(), st.integers(0, 300)),
    top_p=st.one_of(st.none(), st.floats(0.05, 1)),
    repetition_penalty=st.one_of(st.none(), st.floats(0.5, 2)),
    seed=st.integers(0, 1000),
)
def test_random_batches_and_settings_never_crash(generator, rows, max_new_tokens, temperature,
                                                 top_k, top_p, repetition_penalty, seed):
    kwargs = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k,
                  "top_p": top_p, "repetition_penalty": repetition_penalty, "seed": seed}
    results = generator.generate(rows, **kwargs)
    assert len(results) == len(rows)
    for row, result in zip(rows, results):
        assert 1 <= len(result.token_ids) <= max_new_tokens
        assert all(0 <= t < 259 for t in result.token_ids)
        assert result.prompt_token_count == len(row)
        assert result.finish_reason in ("eos", "length")
        # greedy or seeded sampling (one RNG per row): each row equals its run alone
        assert generator.generate(row, **kwargs).token_ids == result.token_ids


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    max_new_tokens=st.one_of(st.integers(-3, 3), st.floats(-1, 3), st.none()),
    top_k=st.one_of(st.integers(-3, 5), st.floats(-1, 5), st.text(max_size=1)),
    top_p=st.one_of(st.floats(-1, 2), st.just(float("nan")), st.none()),
    seed=st.one_of(st.integers(-5, 5), st.booleans()),
)
def test_arbitrary_settings_run_or_raise_invalid_setting(generator, max_new_tokens, top_k,
                                                         top_p, seed):
    kwargs = {"max_new_tokens": max_new_tokens, "top_k": top_k, "top_p": top_p, "seed": seed}
    try:
        result = generator.generate([5, 6, 7], **kwargs)
    except InvalidSettingError as exc:
        assert "must be" in str(exc)
    else:
        assert 1 <= len(result.token_ids) <= max_new_tokens
