"""Stop strings over a real BPE tokenizer (SmolLM2's): tokens that hold several characters, so
stop strings start, end and overlap inside tokens. Runs the stop logic without a model."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from runtime.generation import _StopMatcher
from runtime.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return Tokenizer.from_folder(smollm2_tokenizer_dir)


def _run(tok, text, stop):
    """(pieces, final text, stopped) after pushing text's ids one by one, as generation does."""
    matcher = _StopMatcher(tok.stream_decoder(), tuple(stop))
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
