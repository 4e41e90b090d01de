"""Beam search: keep the ``num_beams`` most likely continuations of every prompt.

Greedy decoding commits to the likeliest token at every step. With a grammar that is a trap:
the likeliest *key* (say ``name:``) can leave only unlikely *values* (the home has no device
by that name), while the second key (``area:``) would have led to a likely one. Beam search
keeps several partial outputs and ranks them by their whole probability, so a choice is
judged by what follows it.

Scores, as in transformers' ``generate(num_beams=...)`` (Wu et al. 2016, "Google's Neural
Machine Translation System", section 7, length normalisation):

- a beam's score is the sum of its tokens' log-probabilities under the model, ``log_softmax``
  of the logits; a grammar then removes the ids it forbids but does not renormalise the
  others (as transformers applies logits processors after the log-softmax), so a path the
  grammar forces through unlikely tokens (a device name the command never said) keeps its
  low probability and loses to a path the model finds likely;
- a finished hypothesis (an eos id where allowed, or a grammar that can take no more) is
  ranked by ``sum / generated_tokens ** length_penalty`` (its eos id counted);
- each step keeps, per prompt, the ``num_beams`` best unfinished extensions among the
  ``2 * num_beams`` best candidates; a finishing candidate (an eos id, or a token after
  which the grammar can take no more: llguidance "stopped",
  :meth:`~runtime.constraint.GrammarConstraint.completes_with`) becomes a hypothesis only
  when it ranks within the first ``num_beams``, and never takes a running beam's place;
- a prompt is done when it has ``num_beams`` finished hypotheses and its best running beam,
  scored at its current length, does not beat the worst of them (transformers'
  ``early_stopping=False`` heuristic: exact for ``length_penalty <= 0``; with a positive
  penalty a longer running beam could in principle still score higher), or when no running
  beam is left.

At ``max_new_tokens`` (or the end of the context), running beams count as hypotheses with
finish_reason "length", as in transformers: under a grammar a cut-off prefix can then
outrank a complete match, so give ``max_new_tokens`` room for the longest output. Each
prompt returns its best hypothesis. The prompt is run once; its cache is then copied to the
beams, and every step reorders the cache (and the grammar matchers) by the beams' sources.
"""

from __future__ import annotations

import math

import numpy as np

from .causal_lm import CausalLMRunner, KVCache
from .constraint import GrammarConstraint
from .errors import InvalidSettingError
from .generation import GenerationResult, left_pad, positions_from_mask, step_budget
from .sampling import SamplingSettings
from .tokenizer import Tokenizer


def check_num_beams(value) -> int:
    """``num_beams`` as an int; InvalidSettingError unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidSettingError(
            f"num_beams must be an integer >= 1 (1 = no beam search), got {value!r}. "
            "Use e.g. num_beams=4."
        )
    return int(value)


def check_length_penalty(value) -> float:
    """``length_penalty`` as a float; InvalidSettingError unless it is a finite number."""
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or not math.isfinite(value)):
        raise InvalidSettingError(
            f"length_penalty must be a finite number, got {value!r}. Use e.g. length_penalty=1.0."
        )
    return float(value)


def check_beam_settings(sampling: SamplingSettings, stop: tuple[str, ...]) -> None:
    """Beam search is deterministic and ends on eos or the grammar: it takes no sampling
    settings, repetition penalty or stop strings (InvalidSettingError names the clash).
    Values that switch a setting off (``do_sample=False``, ``temperature=0``, ``top_k=0``,
    ``top_p=1``, ``repetition_penalty=1``) are accepted."""
    off = {"do_sample": False, "temperature": 0, "top_k": 0, "top_p": 1.0,
           "repetition_penalty": 1.0}
    clashes = [name for name, value in (
        ("do_sample", sampling.do_sample), ("temperature", sampling.temperature),
        ("top_k", sampling.top_k), ("top_p", sampling.top_p),
        ("repetition_penalty", sampling.repetition_penalty), ("seed", sampling.seed),
        ("stop", stop or None)) if value is not None and value != off.get(name)]
    if clashes:
        raise InvalidSettingError(
            f"num_beams > 1 (beam search) cannot be combined with {', '.join(clashes)}. "
            "Drop those settings, or use num_beams=1."
        )


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of float32 [rows, vocab] logits (-inf stays -inf)."""
    top = logits.max(axis=-1, keepdims=True)
    shifted = logits - top
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _Hypotheses:
    """The finished hypotheses of one prompt, best first (at most ``num_beams``)."""

    def __init__(self, num_beams: int, length_penalty: float):
        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.items: list[tuple[float, list[int], str]] = []

    def normalised(self, total: float, length: int) -> float:
        return total / max(length, 1) ** self.length_penalty

    def add(self, total: float, ids: list[int], reason: str) -> None:
        self.items.append((self.normalised(total, len(ids)), ids, reason))
        self.items.sort(key=lambda item: -item[0])
        del self.items[self.num_beams:]

    def done(self, best_running: float, length: int) -> bool:
        """``num_beams`` hypotheses, none worse than the best running beam (score
        ``best_running`` at ``length`` tokens), or no running beam left."""
        if not np.isfinite(best_running):
            return True
        return (len(self.items) >= self.num_beams
                and self.items[-1][0] >= self.normalised(best_running, length))


def _reorder_cache(cache: KVCache, sources: np.ndarray) -> KVCache:
    return KVCache([values[sources] for values in cache.values], cache.length)


def beam_search(
    runner: CausalLMRunner,
    tokenizer: Tokenizer,
    prompts: list[list[int]],
    *,
    num_beams: int,
    length_penalty: float,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    context: int | None,
    constraint: GrammarConstraint | None = None,
) -> list[GenerationResult]:
    """Beam-search every prompt (token ids, already fitted to the context).

    Args:
        num_beams: beams per prompt (>= 2; 1 is greedy decoding, done elsewhere).
        length_penalty: exponent of the length in the hypothesis score (see the module
            docstring; > 0 favours longer outputs, < 0 shorter).
        constraint: a :class:`GrammarConstraint` with ``len(prompts) * num_beams`` rows (the
            beams of prompt ``b`` are rows ``b * num_beams ...``), or None.

    Returns:
        One :class:`GenerationResult` per prompt: the best hypothesis. finish_reason "eos"
        ("grammar" with a constraint) or "length", as in greedy decoding.

    Raises:
        GrammarError: a beam reached a point its grammar cannot continue.
    """
    batch, k = len(prompts), num_beams
    rows = batch * k
    input_ids, prompt_mask = left_pad(prompts, pad_id)
    eos = frozenset(int(e) for e in eos_ids)
    eos_reason = "eos" if constraint is None else "grammar"
    hypotheses = [_Hypotheses(k, length_penalty) for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    # beam b*k + 0 starts each prompt; the others wait at -inf until the first step fills them
    scores = np.full((batch, k), -np.inf)
    scores[:, 0] = 0.0
    ids: list[list[int]] = [[] for _ in range(rows)]
    if constraint is not None:  # a grammar complete before any token: the empty output
        for b in range(batch):
            if constraint.complete[b * k]:
                hypotheses[b].add(0.0, [], "grammar")
                done[b] = True
    steps = step_budget(max_new_tokens, context, prompt_mask)
    logits, cache = runner.step(input_ids, prompt_mask, positions_from_mask(prompt_mask),
                                runner.empty_cache(batch))
    logits = np.repeat(logits, k, axis=0)
    cache = _reorder_cache(cache, np.repeat(np.arange(batch), k))
    mask = np.repeat(prompt_mask, k, axis=0)
    vocab = logits.shape[-1]
    for step in range(steps):
        logprobs = log_softmax(logits)
        if constraint is not None:  # forbidden ids -inf; the allowed ones keep their model
            logprobs = constraint.mask(logprobs)  # log-probability (not renormalised)
        # a prompt's 2k best candidates are among its beams' own 2k best tokens each
        wanted = min(2 * k, vocab)
        row_top = np.argpartition(-logprobs, wanted - 1, axis=1)[:, :wanted]
        totals = (scores.reshape(rows, 1) + np.take_along_axis(logprobs, row_top, axis=1)
                  ).reshape(batch, k * wanted)
        candidates = row_top.reshape(batch, k * wanted)
        sources = np.repeat(np.arange(batch) * k, k)  # dead beams copy the prompt's first
        tokens = np.full(rows, pad_id, dtype=np.int64)
        new_scores = np.full((batch, k), -np.inf)
        for b in np.flatnonzero(~done).tolist():
            kept = 0
            for rank, at in enumerate(np.argsort(-totals[b], kind="stable")[:2 * k].tolist()):
                total = float(totals[b, at])
                if not np.isfinite(total) or kept == k:
                    break
                source, token = b * k + at // wanted, int(candidates[b, at])
                if token in eos:
                    if rank < k:
                        hypotheses[b].add(total, ids[source] + [token], eos_reason)
                    continue
                if constraint is not None and constraint.completes_with(source, token):
                    if rank < k:  # a grammar-complete output ranks as an eos output does
                        hypotheses[b].add(total, ids[source] + [token], "grammar")
                    continue
                sources[b * k + kept], tokens[b * k + kept] = source, token
                new_scores[b, kept] = total
                kept += 1
        ids = [ids[s] + [int(t)] for s, t in zip(sources.tolist(), tokens.tolist(), strict=True)]
        scores = new_scores
        if constraint is not None:
            constraint.reorder(sources)
            constraint.advance(tokens, ~np.isfinite(scores.reshape(rows)))
        length = step + 1
        for b in np.flatnonzero(~done).tolist():
            done[b] = hypotheses[b].done(float(scores[b].max()), length)
        if done.all() or step == steps - 1:
            break
        cache = _reorder_cache(cache, sources)
        mask = np.concatenate([mask, np.ones((rows, 1), dtype=np.int64)], axis=1)
        logits, cache = runner.step(tokens[:, None], mask, positions_from_mask(mask)[:, -1:],
                                    cache)
    results = []
    for b, found in enumerate(hypotheses):
        if not done[b]:  # out of steps: running beams compete as they are
            for beam in range(k):
                if np.isfinite(scores[b, beam]):
                    found.add(float(scores[b, beam]), ids[b * k + beam], "length")
        _, best, reason = found.items[0]
        text_ids = [t for t in best if t not in eos]
        results.append(GenerationResult(tokenizer.decode(text_ids), list(best),
                                        len(prompts[b]), reason))
    return results
