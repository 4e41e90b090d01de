"""The decoding loop: prefill, then one token per step through the KV cache.

Batches are left-padded; ``position_ids = cumsum(attention_mask) - 1`` (clipped at 0 on
padding), so every row sees the same positions as when it runs alone. A row stops at an
eos id, at a stop string, after ``max_new_tokens`` tokens, or at the end of the context
(``max_position_embeddings``); finished rows keep riding along in the batch (their tokens
are ignored) until every row is done.

Stop strings end generation when the generated text contains one, special tokens included
(:mod:`runtime.stopping`); the returned text stops *before* the stop string (as in the
OpenAI API), while ``token_ids`` keep every generated id. Streaming holds back text that
could still become a stop string.

With a grammar, a :class:`~runtime.constraint.GrammarConstraint` is called at two marked
points of the loop: it masks the logits before the sampling processors, and it is fed the
chosen tokens; a row also ends when its grammar is complete (finish_reason "grammar").
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .causal_lm import CausalLMRunner
from .constraint import GrammarConstraint
from .errors import InvalidSettingError, PromptTooLongError
from .sampling import Sampler, SamplingSettings
from .stopping import StopMatcher
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass
class GenerationResult:
    """One row's output.

    Attributes:
        text: the generated text (special tokens skipped, cut before a stop string).
        token_ids: generated ids, including a final eos id when one ended the row.
        prompt_token_count: prompt length after any truncation.
        finish_reason: "eos", "stop" (a stop string), "length" (max_new_tokens or the
            context end), or, with a grammar, "grammar": the text is a complete match (the
            model ended it with eos where the grammar accepts, or the grammar allows nothing
            more). With a grammar, "length" means the text was cut off and is only a prefix
            of a match (as vLLM and OpenAI report truncated structured output).
    """

    text: str
    token_ids: list[int] = field(default_factory=list)
    prompt_token_count: int = 0
    finish_reason: str = "length"


def check_max_new_tokens(value) -> int:
    """``max_new_tokens`` as an int; InvalidSettingError unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidSettingError(
            f"max_new_tokens must be an integer >= 1, got {value!r}. Use e.g. max_new_tokens=64."
        )
    return int(value)


def check_stop(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """Stop strings as a tuple. Raises InvalidSettingError unless ``stop`` is None, a
    non-empty string or an iterable of non-empty strings."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = (stop,)
    try:
        stop = tuple(stop)
    except TypeError:
        stop = (stop,)
    if not all(isinstance(s, str) and s for s in stop):
        raise InvalidSettingError(
            f"stop must be a non-empty string or a list of them, got {stop!r}. Use e.g. "
            "stop=['\\n\\n']."
        )
    return stop


def check_eos(eos_token_id, vocab_size: int) -> list[int]:
    """User-given eos ids (an int or an iterable of ints in [0, vocab_size)) as a list.

    Raises:
        InvalidSettingError: anything else (the message names the field and an example).
    """
    ids = [eos_token_id] if isinstance(eos_token_id, (int, np.integer)) else eos_token_id
    try:
        ids = list(ids)
    except TypeError:
        ids = None
    if ids is None or not all(
        isinstance(t, (int, np.integer)) and not isinstance(t, bool) and 0 <= t < vocab_size
        for t in ids
    ):
        raise InvalidSettingError(
            f"eos_token_id must be a token id or a list of ids in [0, {vocab_size}), got "
            f"{eos_token_id!r}. Use e.g. eos_token_id=[2], or eos_token_id=[] to ignore eos."
        )
    return [int(t) for t in ids]


def fit_prompt(ids: list[int], context: int | None, max_new_tokens: int, truncate: bool) -> list[int]:
    """Check (or left-truncate) a prompt against the context window.

    Without ``truncate`` a prompt that leaves room for at least one new token is kept whole
    (generation then ends at the context with finish_reason "length"). With ``truncate`` the
    prompt keeps its last ``context - min(max_new_tokens, context - 1)`` tokens whenever
    prompt + max_new_tokens would overflow, so the requested tokens fit.

    Raises:
        InvalidSettingError: the prompt is empty.
        PromptTooLongError: ``len(ids) >= context`` and ``truncate`` is false.
    """
    if not ids:
        raise InvalidSettingError(
            "the prompt is empty or encodes to zero tokens; pass some text (or token ids, or a "
            "non-empty list of prompts) to continue."
        )
    if context is None or len(ids) + (max_new_tokens if truncate else 1) <= context:
        return ids
    if not truncate:
        raise PromptTooLongError(
            f"the prompt has {len(ids)} tokens but the model's context is {context} "
            "(max_position_embeddings), leaving no room to generate. Shorten the prompt, or pass "
            "truncate=True to keep only its last tokens."
        )
    keep = max(1, context - min(max_new_tokens, context - 1))
    logger.info("prompt truncated from %d to its last %d tokens", len(ids), keep)
    return ids[-keep:]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad id lists: (input_ids int64 [B, T], attention_mask int64 [B, T])."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, width - len(row):] = row
            mask[i, width - len(row):] = 1
    return ids, mask


def positions_from_mask(mask: np.ndarray) -> np.ndarray:
    """``cumsum(mask) - 1`` clipped at 0 (docs/DESIGN.md): int64 [batch, seq] from an
    [batch, seq] 0/1 mask; the runtime's one definition (the numpy twin of
    ``shadow_edge.pooling.positions_from_mask``)."""
    return np.clip(np.cumsum(mask, axis=-1) - 1, 0, None).astype(np.int64)


def step_budget(max_new_tokens: int, context: int | None, mask: np.ndarray) -> int:
    """Decode steps a batch may take: ``max_new_tokens``, and no more than the context
    (``max_position_embeddings``) leaves after the longest prompt of the [batch, seq] 0/1
    ``mask``."""
    if context is None:
        return max_new_tokens
    return min(max_new_tokens, context - int(mask.sum(-1).max()))


def generate_tokens(
    runner: CausalLMRunner,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    sampling: SamplingSettings,
    eos_ids: Sequence[int],
    pad_id: int,
    context: int | None,
    constraint: GrammarConstraint | None = None,
) -> Iterator[np.ndarray]:
    """Yield the next token of every row, step by step (int64 [B]); the caller stops early
    by closing the iterator. Stops by itself when every row hit eos (or completed its
    grammar), after ``max_new_tokens`` steps, or at the end of the context."""
    batch = len(rows)
    input_ids, mask = left_pad(rows, pad_id)
    positions = positions_from_mask(mask)
    sampler = Sampler(sampling)
    seen = None
    if sampling.repetition_penalty not in (None, 1.0):
        seen = np.zeros((batch, runner.vocab_size), dtype=bool)
        for i, row in enumerate(rows):
            seen[i, [t for t in row if 0 <= t < runner.vocab_size]] = True
    eos = np.array(sorted(set(eos_ids)), dtype=np.int64)
    done = np.zeros(batch, dtype=bool)
    if constraint is not None:  # grammar: a row may be complete before its first token
        done |= constraint.complete
    steps = step_budget(max_new_tokens, context, mask)
    cache = runner.empty_cache(batch)
    logits, cache = runner.step(input_ids, mask, positions, cache)
    for step in range(steps):
        if constraint is not None:  # grammar: mask first, then the sampling processors
            logits = constraint.mask(logits)
        tokens = sampler(logits, seen)
        tokens = np.where(done, pad_id, tokens)
        ended = done | np.isin(tokens, eos)
        if constraint is not None:  # grammar: feed the tokens; complete rows end here
            constraint.advance(tokens, ended)
            ended |= constraint.complete
        yield tokens
        done = ended
        if done.all() or step == steps - 1:
            return
        if seen is not None:
            seen[np.arange(batch), tokens] = True
        mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        positions = positions_from_mask(mask)[:, -1:]
        logits, cache = runner.step(tokens[:, None], mask, positions, cache)


def stream_generate(
    runner: CausalLMRunner,
    tokenizer: Tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    sampling: SamplingSettings,
    eos_ids: Sequence[int],
    pad_id: int,
    context: int | None,
    stop: tuple[str, ...] = (),
    constraint: GrammarConstraint | None = None,
) -> Generator[tuple[int, str], None, list[GenerationResult]]:
    """Generate for a batch of token-id prompts (already fitted to the context).

    Yields ``(row, text_piece)`` as text becomes final; returns (``StopIteration.value``,
    or ``results = yield from ...``) one :class:`GenerationResult` per row. Joined pieces of
    a row equal its ``result.text``. ``constraint`` (one row per prompt) limits each row to
    its grammar.
    """
    matchers = [StopMatcher(tokenizer, stop) for _ in prompts]
    ids: list[list[int]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    active = [True] * len(prompts)
    if constraint is not None:  # grammar: rows complete before their first token
        for row in np.flatnonzero(constraint.complete).tolist():
            active[row], reasons[row] = False, "grammar"
    eos_set = {int(e) for e in eos_ids}
    eos_reason = "eos" if constraint is None else "grammar"  # eos only where the grammar accepts
    steps = generate_tokens(
        runner, prompts, max_new_tokens=max_new_tokens, sampling=sampling, eos_ids=eos_ids,
        pad_id=pad_id, context=context, constraint=constraint,
    )
    try:
        for tokens in steps:
            for row, token in enumerate(tokens.tolist()):
                if not active[row]:
                    continue
                ids[row].append(token)
                if token in eos_set:
                    active[row], reasons[row] = False, eos_reason
                    continue
                piece = matchers[row].push(token)
                if piece:
                    yield row, piece
                if matchers[row].stopped:
                    active[row], reasons[row] = False, "stop"
                elif constraint is not None and constraint.complete[row]:
                    active[row], reasons[row] = False, "grammar"
            if not any(active):
                break
    finally:
        steps.close()
    results = []
    for row, matcher in enumerate(matchers):
        tail = matcher.finish()
        if tail:
            yield row, tail
        if matcher.stopped:
            reasons[row] = "stop"
        results.append(GenerationResult(matcher.text, ids[row], len(prompts[row]), reasons[row]))
    return results


def run_to_end(stream: Generator[tuple[int, str], None, list[GenerationResult]]):
    """Drain a :func:`stream_generate` generator and return its results."""
    while True:
        try:
            next(stream)
        except StopIteration as stop:
            return stop.value
