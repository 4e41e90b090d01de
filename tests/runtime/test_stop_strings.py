"""Stop strings over a real BPE tokenizer (SmolLM2's): tokens that hold several characters, so
stop strings start, end and overlap inside tokens. Runs the stop logic without a model."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from runtime.stopping import StopMatcher
from runtime.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return Tokenizer.from_folder(smollm2_tokenizer_dir)


def _run(tok, text, stop):
    """(pieces, final text, stopped) after pushing text's ids one by one, as generation does."""
    matcher = StopMatcher(tok, tuple(stop))
    pieces = []
    for token in tok.encode(text):
        pieces.append(matcher.push(token))
        if matcher.stopped:
            break
    pieces.append(matcher.finish())
    return pieces, matcher.text, matcher.stopped


def test_one_token_completing_two_stops_cuts_at_the_earliest(tok):
    ids = tok.encode(" hello")
    assert len(ids) == 1  # " hello" is one token: both stop strings complete at once
    for stop in (["lo", "he"], ["he", "lo"]):
        pieces, text, stopped = _run(tok, " hello", stop)
        assert (text, stopped) == (" ", True)
        assert "".join(pieces) == " "


def test_stop_string_spanning_tokens_is_cut_and_never_streamed(tok):
    text = "Turn on the kitchen light, then the hall light."
    pieces, out, stopped = _run(tok, text, ["en light", "hall"])
    assert stopped and out == "Turn on the kitch"
    assert all("light" not in p for p in pieces)  # held back until the stop was ruled in


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffd"),
               min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(text=TEXT, data=st.data())
def test_text_ends_before_the_first_stop_string_to_complete(tok, text, data):
    ids = tok.encode(text)
    decoded = tok.decode(ids)
    start = data.draw(st.integers(0, max(len(decoded) - 1, 0)))
    stops = [decoded[start:start + data.draw(st.integers(1, 4))] or "\0",
             data.draw(st.text(min_size=1, max_size=3))]
    assume(not any("\ufffd" in s for s in stops))  # bytes that are no character: no stop
    pieces, out, stopped = _run(tok, text, stops)
    # oracle: the shortest decoded prefix (at a token boundary, whole characters) that holds
    # a stop string, cut before the earliest stop string in it (one token may complete several)
    prefixes = [tok.decode(ids[:k]) for k in range(1, len(ids) + 1)]
    prefixes = [p for p in prefixes[:-1] if not p.endswith("\ufffd")] + prefixes[-1:]
    hit = next((p for p in prefixes if any(s in p for s in stops)), None)
    assert out == (decoded if hit is None else hit[:min(hit.find(s) for s in stops if s in hit)])
    assert stopped == (hit is not None)
    assert "".join(pieces) == out


# ---- stop strings on what was generated, special tokens included ------------------------------

def _push_ids(tok, ids, stop):
    matcher = StopMatcher(tok, tuple(stop))
    pieces = []
    for token in ids:
        pieces.append(matcher.push(token))
        if matcher.stopped:
            break
    pieces.append(matcher.finish())
    assert "".join(pieces) == matcher.text  # streamed pieces equal the result
    return matcher.text, matcher.stopped


def _ids(tok, *parts):
    """Concatenate ids: strings are encoded, special token names become their id."""
    ids = []
    for part in parts:
        special = tok.token_to_id(part)
        ids += [special] if special is not None and part.startswith("<|") else tok.encode(part)
    return ids


@pytest.mark.parametrize(
    "parts, stop, text, stopped",
    [
        # the case: the ChatML guard is a special token the returned text skips
        (["Hi", "<|im_start|>", "user\nmore text"], ["<|im_start|>"], "Hi", True),
        (["Hi", "<|im_start|>", "user\nmore text"], ["zzz"], "Hiuser\nmore text", False),
        (["Sure.", "<|im_end|>", "\nmore"], ["<|im_end|>\n"], "Sure.", True),  # special + text
        (["Hi\n", "<|im_start|>", "user"], ["\n<|im_start|>"], "Hi", True),  # text + special
        (["Hi", "<|im_start|>", "user"], ["im_start"], "Hi", True),  # inside a special token
        (["Hi", "<|endoftext|>", " there"], ["<|im_end|>"], "Hi there", False),
        # what was generated is "a<|im_start|>b": "ab" was not generated
        (["a", "<|im_start|>", "b"], ["ab"], "ab", False),
        (["one", "<|im_end|>", "two", "<|im_start|>"], ["two<|im_start|>", "<|im_end|>"],
         "one", True),
    ],
)
def test_stop_strings_match_generated_special_tokens(tok, parts, stop, text, stopped):
    assert _push_ids(tok, _ids(tok, *parts), stop) == (text, stopped)


class _ScriptedRunner:
    """Stands in for CausalLMRunner: each step's logits pick the next scripted id."""

    def __init__(self, script, vocab_size):
        self.script, self.vocab_size, self.calls = list(script), vocab_size, 0

    def empty_cache(self, batch):
        return None

    def step(self, input_ids, mask, positions, cache):
        import numpy as np

        logits = np.zeros((input_ids.shape[0], self.vocab_size), np.float32)
        logits[:, self.script[min(self.calls, len(self.script) - 1)]] = 1.0
        self.calls += 1
        return logits, cache


def test_the_decode_loop_finishes_with_stop_at_a_special_token(tok):
    from runtime.generation import run_to_end, stream_generate
    from runtime.sampling import SamplingSettings

    script = _ids(tok, "Hi", "<|im_start|>", "user\nmore text")
    runner = _ScriptedRunner(script, tok.vocab_size)
    stream = stream_generate(runner, tok, [tok.encode("Hello")], max_new_tokens=len(script),
                             sampling=SamplingSettings(), eos_ids=[], pad_id=0, context=None,
                             stop=("<|im_start|>",))
    (result,) = run_to_end(stream)
    assert (result.text, result.finish_reason) == ("Hi", "stop")
    assert result.token_ids == _ids(tok, "Hi", "<|im_start|>")  # ids up to the stop
