"""Next-token choice: greedy or sampling, with HF ``generate``'s settings and order.

Order of the logit processors (as in transformers' ``generate``): repetition penalty, then
temperature, top-k, top-p, then softmax and a draw. Formulas:

- repetition_penalty p (CTRL, Keskar et al. 2019, eq. in section 4.1): for every token id
  already in the row (prompt and generated), a logit l becomes ``l / p`` if ``l > 0`` else
  ``l * p``.
- temperature T: ``logits / T``.
- top_k k: keep the k largest logits (ties at the k-th value kept).
- top_p q (nucleus sampling, Holtzman et al. 2020): keep the smallest set of most likely
  tokens whose probabilities sum to at least q (always at least one token).

``do_sample=None`` (the default) samples when any of temperature, top_k or top_p is given,
else decodes greedily; ``temperature=0`` always means greedy. Draws come from
``numpy.random.Generator``s seeded by ``seed``, so a fixed seed reproduces the output. Each
batch row has its own generator with that seed, so a row of a batch draws exactly what it
draws alone (rows with equal prompts and a fixed seed therefore get equal samples; use
separate calls with different seeds, or ``seed=None``, for varied samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InvalidSettingError


def _bad(name: str, value, rule: str, example: str) -> InvalidSettingError:
    return InvalidSettingError(f"{name} must be {rule}, got {value!r}. Use e.g. {name}={example}.")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SamplingSettings:
    """Validated decoding settings (``None`` = not set).

    Raises:
        InvalidSettingError: any value out of range; the message names the field and a fix.
    """

    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.do_sample is not None and not isinstance(self.do_sample, bool):
            raise _bad("do_sample", self.do_sample, "True, False or None", "True")
        t = self.temperature
        if t is not None and (not _is_number(t) or not math.isfinite(t) or t < 0):
            raise _bad("temperature", t, "a finite number >= 0 (0 = greedy)", "0.7")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0):
            raise _bad("top_k", k, "an integer >= 0 (0 = off)", "40")
        p = self.top_p
        if p is not None and (not _is_number(p) or not 0.0 < p <= 1.0):
            raise _bad("top_p", p, "a number in (0, 1]", "0.9")
        r = self.repetition_penalty
        if r is not None and (not _is_number(r) or not math.isfinite(r) or r <= 0):
            raise _bad("repetition_penalty", r, "a finite number > 0 (1 = off)", "1.1")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0):
            raise _bad("seed", s, "an integer >= 0 or None", "0")

    @property
    def sampling(self) -> bool:
        """Whether tokens are drawn at random (else the argmax is taken)."""
        if self.temperature is not None and self.temperature == 0:
            return False
        if self.do_sample is not None:
            return self.do_sample
        return any(v is not None for v in (self.temperature, self.top_k, self.top_p))


class Sampler:
    """Choose next tokens for a batch. One instance per generation call (holds one RNG per
    batch row, each seeded with ``settings.seed``)."""

    def __init__(self, settings: SamplingSettings):
        self.settings = settings
        self.rngs: list[np.random.Generator] = []

    def _rng(self, row: int) -> np.random.Generator:
        while len(self.rngs) <= row:
            self.rngs.append(np.random.default_rng(self.settings.seed))
        return self.rngs[row]

    def __call__(self, logits: np.ndarray, seen: np.ndarray | None = None) -> np.ndarray:
        """Pick one token per row.

        Args:
            logits: float32 [batch, vocab] for the last position.
            seen: bool [batch, vocab], True for ids already in each row (for the repetition
                penalty); may be None when the penalty is off.

        Returns:
            int64 [batch] chosen ids.
        """
        s = self.settings
        logits = np.asarray(logits, dtype=np.float32)
        if s.repetition_penalty is not None and s.repetition_penalty != 1.0 and seen is not None:
            penalised = np.where(logits > 0, logits / s.repetition_penalty,
                                 logits * s.repetition_penalty)
            logits = np.where(seen, penalised, logits)
        if not s.sampling:
            return np.argmax(logits, axis=-1).astype(np.int64)
        return np.array([self._draw(row, self._rng(i)) for i, row in enumerate(logits)],
                        dtype=np.int64)

    def _draw(self, row: np.ndarray, rng: np.random.Generator) -> int:
        s = self.settings
        row = row.astype(np.float64)
        if s.temperature is not None:
            with np.errstate(over="ignore"):
                scaled = row / s.temperature
            if not np.isfinite(scaled.max()):  # a tiny temperature overflows: the limit is argmax
                return int(np.argmax(row))
            row = scaled
        if s.top_k:
            k = min(int(s.top_k), row.shape[-1])
            kth = np.partition(row, -k)[-k]
            row = np.where(row < kth, -np.inf, row)
        probs = np.exp(row - row.max())
        probs /= probs.sum()
        if s.top_p is not None and s.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            before = np.cumsum(probs[order]) - probs[order]  # mass of strictly likelier tokens
            keep = order[before < s.top_p]
            masked = np.zeros_like(probs)
            masked[keep] = probs[keep]
            probs = masked / masked.sum()
        return int(rng.choice(probs.shape[-1], p=probs))
