"""Beam search (num_beams > 1) on the tiny random export, against brute force.

The tiny tokenizer writes one byte per token, so a choice grammar's strings have one token
path each and every hypothesis can be scored independently: one teacher-forced pass over
prompt + output gives each output token's log-probability (log-softmax of the raw logits,
not renormalised over the grammar's ids, as runtime.beam_search documents).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime import Grammar, InvalidSettingError

pytestmark = pytest.mark.xdist_group("runtime")

EOS = 2
CHOICES = ["kitchen", "k", "attic", "living room", "kit"]
PROMPTS = ["hello", "turn on", "x", "a much longer prompt about rooms", "zz top", "q"]


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = row.astype(np.float64)
    return row - row.max() - np.log(np.exp(row - row.max()).sum())


def path_logprob(generator, prompt_ids: list[int], output_ids: list[int]) -> float:
    """Sum of log p(output token | everything before), one teacher-forced forward pass."""
    from runtime.generation import positions_from_mask

    ids = np.array([prompt_ids + output_ids], dtype=np.int64)
    mask = np.ones_like(ids)
    runner = generator.runner
    logits, _ = runner.step(ids, mask, positions_from_mask(mask), runner.empty_cache(1),
                            all_logits=True)
    start = len(prompt_ids) - 1
    return sum(_log_softmax(logits[0, start + i])[token] for i, token in enumerate(output_ids))


def choice_paths(generator) -> list[list[int]]:
    """Token paths of the choices: eos after a choice that another choice extends (the
    grammar may go on there), none after a choice that ends the grammar."""
    paths = []
    for choice in CHOICES:
        ids = generator.tokenizer.encode(choice, add_special_tokens=False)
        extended = any(other != choice and other.startswith(choice) for other in CHOICES)
        paths.append(ids + [EOS] if extended else ids)
    return paths


def best_choice(generator, prompt: str, length_penalty: float) -> list[int]:
    prompt_ids = generator.encode_prompt(prompt)
    scored = [(path_logprob(generator, prompt_ids, p) / len(p) ** length_penalty, p)
              for p in choice_paths(generator)]
    return max(scored)[1]


class TestAgainstBruteForce:
    @pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
    def test_enough_beams_find_the_best_choice(self, generator, length_penalty):
        # len(CHOICES) beams hold every live prefix, so the search is exhaustive here
        for prompt in PROMPTS:
            result = generator.generate(prompt, max_new_tokens=16, grammar=CHOICES,
                                        num_beams=len(CHOICES), length_penalty=length_penalty)
            assert result.token_ids == best_choice(generator, prompt, length_penalty), prompt
            assert result.text in CHOICES
            assert result.finish_reason == "grammar"

    def test_length_penalty_changes_the_winner_somewhere(self, generator):
        # guards the test above: short and long choices really compete on this model
        winners = {(p, lp): tuple(best_choice(generator, p, lp)) for p in PROMPTS
                   for lp in (0.0, 2.0)}
        assert any(winners[(p, 0.0)] != winners[(p, 2.0)] for p in PROMPTS)

    def test_two_free_tokens_are_the_best_over_the_kept_first_tokens(self, generator):
        # no eos, two tokens: beam search keeps the k likeliest first tokens, then takes the
        # best pair through them; brute force scores every second token after each
        k = 3
        for prompt in PROMPTS[:4]:
            prompt_ids = generator.encode_prompt(prompt)
            first = next_logprobs(generator, prompt_ids)
            candidates = []
            for t1 in np.argsort(-first)[:k].tolist():
                second = next_logprobs(generator, prompt_ids + [t1])
                t2 = int(np.argmax(second))
                candidates.append((first[t1] + second[t2], [t1, t2]))
            best = max(candidates)[1]
            result = generator.generate(prompt, max_new_tokens=2, num_beams=k, eos_token_id=[])
            assert result.token_ids == best, prompt
            assert result.finish_reason == "length"
            greedy = generator.generate(prompt, max_new_tokens=2, eos_token_id=[])
            assert (path_logprob(generator, prompt_ids, result.token_ids)
                    >= path_logprob(generator, prompt_ids, greedy.token_ids) - 1e-9)


def next_logprobs(generator, ids: list[int]) -> np.ndarray:
    """float64 log-softmax of the next-token logits after ``ids`` (one forward pass)."""
    from runtime.generation import positions_from_mask

    mask = np.ones((1, len(ids)), dtype=np.int64)
    logits, _ = generator.runner.step(np.array([ids]), mask, positions_from_mask(mask),
                                      generator.runner.empty_cache(1))
    return _log_softmax(logits[0])


def reference_beam_search(generator, prompt: str, choices: list[str], k: int,
                          length_penalty: float, *,
                          complete_holds_a_beam: bool = False) -> list[int]:
    """A plain beam search over a choice grammar with transformers' rules: each step ranks
    every extension of every beam and keeps the first ``2k``; a finished candidate (eos, or
    a choice nothing extends) is a hypothesis only at a rank < k and never holds a beam; the
    other candidates fill the ``k`` beams. Hypotheses score ``sum / len ** length_penalty``;
    the search ends when no beam is left or the ``k`` best hypotheses all score at least the
    best running beam at its length (transformers' ``early_stopping=False``).
    ``complete_holds_a_beam=True`` is the rule this module had before: a grammar-complete
    candidate is kept like any other and becomes a hypothesis after the step.

    Returns the best hypothesis's token ids."""
    paths = [generator.tokenizer.encode(c, add_special_tokens=False) for c in choices]
    prompt_ids = generator.encode_prompt(prompt)

    def extends(ids):
        return {p[len(ids)] for p in paths if len(p) > len(ids) and p[:len(ids)] == ids}

    def normalised(item):
        return item[0] / len(item[1]) ** length_penalty

    beams, found, length = [([], 0.0)], [], 0
    while beams:
        candidates = []
        for ids, score in beams:
            logprobs = next_logprobs(generator, prompt_ids + ids)
            allowed = extends(ids) | ({EOS} if ids in paths else set())
            candidates += [(score + logprobs[t], ids + [t]) for t in allowed]
        candidates = sorted(candidates, key=lambda c: -c[0])[:2 * k]
        length += 1
        beams = []
        for rank, (score, ids) in enumerate(candidates):
            complete = ids[-1] != EOS and not extends(ids)
            if ids[-1] == EOS or (complete and not complete_holds_a_beam):
                if rank < k:
                    found.append((score, ids))
                continue
            if len(beams) < k:
                beams.append((ids, score))
        found += [(score, ids) for ids, score in beams if not extends(ids)]
        beams = [(ids, score) for ids, score in beams if extends(ids)]
        kept = sorted(map(normalised, found), reverse=True)[:k]
        if beams and len(kept) == k and kept[-1] >= max(s for _, s in beams) / length ** length_penalty:
            break
    return max(found, key=normalised)[1]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_a_grammar_complete_candidate_ranks_as_eos_does(generator, length_penalty):
    # with 2 beams, a choice that ends the grammar must not take a running beam's place
    choices = ["q", "j", "e", "xy", "xz", "wv", "wu", "kit", "kitchen"]
    prompts = PROMPTS + ["robot", "lights on", "mop the hall", "a", "bb", "status"]
    differs = 0
    for prompt in prompts:
        expected = reference_beam_search(generator, prompt, choices, 2, length_penalty)
        result = generator.generate(prompt, max_new_tokens=16, grammar=choices, num_beams=2,
                                    length_penalty=length_penalty)
        assert result.token_ids == expected, prompt
        differs += expected != reference_beam_search(generator, prompt, choices, 2,
                                                     length_penalty, complete_holds_a_beam=True)
    # with length penalty 0 the two rules cannot give different outputs (a kept complete
    # candidate outranks the beam it displaces, and a sum of log-probabilities only falls);
    # with 2 they do on this model, which guards the test
    if length_penalty == 0.0:
        assert not differs
    if length_penalty == 2.0:
        assert differs


class TestBehaviour:
    def test_a_batch_equals_its_rows_run_alone(self, generator):
        for grammar in (None, CHOICES, Grammar(regex=r"[a-z]{1,6}( [0-9]{1,2})?")):
            together = generator.generate(PROMPTS, max_new_tokens=10, num_beams=3,
                                          grammar=grammar)
            alone = [generator.generate(p, max_new_tokens=10, num_beams=3, grammar=grammar)
                     for p in PROMPTS]
            assert together == alone

    def test_outputs_obey_the_grammar_and_text_matches_the_ids(self, generator):
        import re

        pattern = r"[a-z]{1,6}( [0-9]{1,2})?"
        for prompt in PROMPTS:
            result = generator.generate(prompt, max_new_tokens=12, num_beams=4,
                                        grammar=Grammar(regex=pattern))
            assert re.fullmatch(pattern, result.text), result
            body = [t for t in result.token_ids if t != EOS]
            assert generator.tokenizer.decode(body) == result.text
            assert EOS not in result.token_ids[:-1]

    def test_length_when_max_new_tokens_cuts_every_beam(self, generator):
        result = generator.generate("x", max_new_tokens=5, num_beams=3,
                                    grammar=Grammar(regex="[0-9]{40}"))
        assert result.finish_reason == "length"
        assert len(result.token_ids) == 5 and result.text.isdigit()

    def test_stops_at_the_end_of_the_context(self, generator):
        result = generator.generate("p" * 120, max_new_tokens=50, num_beams=2, eos_token_id=[])
        assert len(result.token_ids) == 128 - 120 and result.finish_reason == "length"


def test_settings_that_are_switched_off_are_accepted_with_beams(generator):
    plain = generator.generate("hello", max_new_tokens=4, num_beams=2)
    off = generator.generate("hello", max_new_tokens=4, num_beams=2, do_sample=False,
                             temperature=0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    assert off == plain


def test_a_grammar_of_only_the_empty_string_writes_nothing_as_greedy_does(generator):
    grammar = Grammar(lark='start: ""')
    for eos in (None, []):  # eos allowed at once; no eos id: complete before any token
        beams = generator.generate(["x", "yy"], max_new_tokens=4, num_beams=3,
                                   grammar=grammar, eos_token_id=eos)
        greedy = generator.generate(["x", "yy"], max_new_tokens=4, grammar=grammar,
                                    eos_token_id=eos)
        assert beams == greedy
        assert [(r.text, r.token_ids) for r in beams] == [("", [] if eos == [] else [EOS])] * 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_beams": 0}, "num_beams must be an integer >= 1"),
    ({"num_beams": 2.0}, "num_beams must be an integer >= 1"),
    ({"num_beams": True}, "num_beams must be an integer >= 1"),
    ({"num_beams": 2, "length_penalty": math.nan}, "length_penalty must be a finite number"),
    ({"num_beams": 2, "length_penalty": "1"}, "length_penalty must be a finite number"),
    ({"num_beams": 2, "do_sample": True}, "cannot be combined with do_sample"),
    ({"num_beams": 2, "temperature": 0.7, "top_p": 0.9}, "temperature, top_p"),
    ({"num_beams": 2, "repetition_penalty": 1.2}, "repetition_penalty"),
    ({"num_beams": 3, "stop": "\n"}, "cannot be combined with stop"),
])
def test_invalid_beam_settings_raise_before_running(generator, kwargs, message):
    with pytest.raises(InvalidSettingError, match=message):
        generator.generate("hello", max_new_tokens=4, **kwargs)
