"""How a :class:`~runtime.grammar.Grammar` constrains decoding, with llguidance.

llguidance (https://github.com/guidance-ai/llguidance, the engine onnxruntime-genai uses)
compiles a grammar against the model's tokenizer; its ``LLMatcher`` then gives, at every
step, the bitmask of token ids that keep the output a prefix of a string the grammar
accepts. llguidance is an optional dependency (``pip install 'shadow-edge[grammar]'``),
imported only when a grammar is used, so the base install works without it.

Per loaded model, :class:`GrammarCompiler` builds llguidance's tokenizer once (lazily, under
a lock; about 1 s for SmolLM2's 49k tokens) from the export's ``tokenizer.json`` through the
``tokenizers`` library (no transformers), and keeps the last compiled grammars (a JSON
schema takes a few ms to compile; a matcher is copied per row in microseconds).

Per call, :class:`GrammarConstraint` gives each batch row its own matcher. The decode loop
calls it at two points: :meth:`~GrammarConstraint.mask` before the sampling processors (so
greedy, top-k/top-p and the repetition penalty only see allowed ids) and
:meth:`~GrammarConstraint.advance` after a token is chosen; beam search
(:mod:`runtime.beam_search`) masks log-probabilities the same way and moves matchers between
rows with :meth:`~GrammarConstraint.reorder`. Rules:

- eos (the call's eos ids) is allowed exactly where the grammar accepts the text so far;
  llguidance's own eos ids are not used (``eos_token_id=`` may differ per call);
- a row is *complete* when the grammar can take no more tokens (llguidance's "stopped"), or
  when it accepts and no eos id is set: it ends there, without an eos token;
- logits beyond the tokenizer's ids (a model vocabulary padded past the tokenizer) are
  never allowed: llguidance's tokenizer is sized to the model's logits;
- a row whose grammar allows no token and does not accept (the grammar cannot be met with
  this tokenizer) raises :class:`~runtime.errors.GrammarError`.

Fast-forward tokens (llguidance can force several tokens without a model step) are not
used: every token comes from the model under the mask, so text and token ids are what the
model would sample, and rows of a batch stay in step.

Cost per step and row: llguidance's mask (about 20-25 us on SmolLM2's 49k vocabulary for
the benchmark's grammars, more the first time a lexer state is met), then a few branch-free
numpy passes over the vocabulary: ``np.unpackbits`` of the bitmask into 0/1 bytes, a bias
of 0 or -inf built from the bits (``(allowed - 1) & bits_of(-inf)``, viewed as float32) and
one addition to the logits. Measured on a loaded 2-core machine with a random 30% mask:
``np.where(allowed, logits, -inf)`` took about 270 us, the bias about 70 us (a boolean
select branches on every id); no Python loop runs over the vocabulary.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from types import ModuleType

import numpy as np

from .errors import GrammarError, MissingDependencyError
from .grammar import INSTALL_HINT, Grammar
from .tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# the int32 bit pattern of float32 -inf: (allowed - 1) & _NEG_INF_BITS is 0 where allowed
_NEG_INF_BITS = np.array(-np.inf, dtype=np.float32).view(np.int32)

_LLG_DOCS = "https://github.com/guidance-ai/llguidance/blob/main/docs"
#: Where each grammar kind's syntax is described (named in compile errors).
SYNTAX_DOCS = {
    "lark": f"{_LLG_DOCS}/syntax.md",
    "regex": "https://docs.rs/regex/latest/regex/#syntax",
    "json_schema": f"{_LLG_DOCS}/json_schema.md",
    "choice": f"{_LLG_DOCS}/syntax.md",
}


def load_llguidance() -> tuple[ModuleType, ModuleType]:
    """``(llguidance, llguidance.numpy)``, imported on first use.

    Raises:
        MissingDependencyError: llguidance is not installed (the message says how).
    """
    try:
        import llguidance
        import llguidance.numpy as llguidance_numpy
    except ImportError:
        raise MissingDependencyError(
            "grammar= (constrained decoding) needs the optional package llguidance, which is "
            f"not installed. Install it with: {INSTALL_HINT}"
        ) from None
    return llguidance, llguidance_numpy


def _one_line(text: str, limit: int = 300) -> str:
    """An llguidance error on one line: the message without the parser-state dump that
    follows ``<state>``, whitespace collapsed, at most ``limit`` characters."""
    message = " ".join(text.split("<state>")[0].split()) or "unknown error"
    return message if len(message) <= limit else message[:limit - 3] + "..."


def clear_token_bits(words: np.ndarray, tokens: Sequence[int]) -> None:
    """Clear the bits of ``tokens`` in an llguidance token bitmask (int32 [rows, words],
    changed in place): bit ``j`` of word ``w`` is token ``32 * w + j``. Works on a uint32
    view, so bit 31 needs no signed constant."""
    unsigned = words.view(np.uint32)
    for token in tokens:
        unsigned[:, token >> 5] &= np.uint32(0xFFFFFFFF ^ (1 << (token & 31)))


class GrammarCompiler:
    """Compiles grammars for one loaded model. Thread-safe; one per :class:`ShadowGenerator`.

    Args:
        tokenizer: the export's tokenizer (its ``tokenizer.json`` is handed to llguidance).
        vocab_size: the model's logits size (>= the tokenizer's ids, else GrammarError).
        eos_ids: the model's default eos ids (llguidance's tokenizer records them; calls may
            use others).
        cache_size: how many compiled grammars to keep (least recently used dropped).
    """

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, eos_ids: Sequence[int],
                 cache_size: int = 32):
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._eos_ids = list(eos_ids)
        self._cache_size = cache_size
        self._lock = threading.Lock()  # guards the cache
        self._build_lock = threading.Lock()  # one tokenizer build at a time
        self._lltokenizer = None
        self._cache: OrderedDict[str, CompiledGrammar] = OrderedDict()

    def lltokenizer(self):
        """llguidance's ``LLTokenizer`` for this model, built on first use.

        Raises:
            MissingDependencyError: no llguidance. GrammarError: the tokenizer has more ids
                than the model has logits, or llguidance cannot read it.
        """
        if self._lltokenizer is None:
            with self._build_lock:
                if self._lltokenizer is None:
                    self._lltokenizer = self._build_tokenizer()
        return self._lltokenizer

    def _build_tokenizer(self):
        llg, _ = load_llguidance()
        count = self._tokenizer.num_ids
        if count > self.vocab_size:
            raise GrammarError(
                f"constrained decoding is not available for this export: tokenizer.json has "
                f"{count} token ids but the model only {self.vocab_size} logits. Export the "
                "model with its own tokenizer."
            )
        # the tokenizer's JSON without padding or truncation (llguidance reads the vocabulary,
        # pre-tokenizer and decoder; padding/truncation settings would only get in the way)
        data = json.loads(self._tokenizer.backend.to_str())
        data["padding"], data["truncation"] = None, None
        try:
            built = llg.LLTokenizer(json.dumps(data), n_vocab=self.vocab_size,
                                    eos_token=self._eos_ids or None)
        except (ValueError, RuntimeError) as exc:
            raise GrammarError(
                "constrained decoding is not available for this export: llguidance cannot "
                f"use its tokenizer.json ({_one_line(str(exc))})."
            ) from None
        logger.info("llguidance tokenizer built (%d ids)", built.vocab_size)
        return built

    def compile(self, grammar: Grammar) -> CompiledGrammar:
        """Compile ``grammar`` for this model (cached).

        Raises:
            MissingDependencyError: llguidance is not installed.
            GrammarError: the grammar does not compile (the message quotes llguidance), or
                constrained decoding is not available for this export.
        """
        llg, llg_numpy = load_llguidance()
        tokenizer = self.lltokenizer()
        try:
            source = llg.grammar_from(grammar.kind, grammar.text)
        except ValueError as exc:
            raise GrammarError(f"the {grammar.kind} grammar cannot be compiled: "
                               f"{_one_line(str(exc))}") from None
        with self._lock:
            hit = self._cache.get(source)
            if hit is not None:
                self._cache.move_to_end(source)
                return hit
        matcher = llg.LLMatcher(tokenizer, source, log_level=0)
        if matcher.is_error():
            raise GrammarError(
                f"the {grammar.kind} grammar cannot be compiled: "
                f"{_one_line(matcher.get_error())}. Fix the grammar (syntax: "
                f"{SYNTAX_DOCS[grammar.kind]})."
            )
        for warning in matcher.get_grammar_warnings():
            logger.warning("grammar: %s", warning)
        compiled = CompiledGrammar(grammar, matcher, llg_numpy, tokenizer)
        with self._lock:
            self._cache[source] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled


class CompiledGrammar:
    """A grammar compiled for one model's tokenizer; :meth:`constraint` starts a call."""

    def __init__(self, grammar: Grammar, matcher, llg_numpy: ModuleType, lltokenizer):
        self.grammar = grammar
        self._matcher = matcher  # the initial state; copied, never advanced
        self._llg_numpy = llg_numpy
        self._lltokenizer = lltokenizer

    def constraint(self, batch_size: int, eos_ids: Sequence[int]) -> GrammarConstraint:
        """A fresh :class:`GrammarConstraint` with one matcher per row."""
        matchers = [self._matcher.deep_copy() for _ in range(batch_size)]
        return GrammarConstraint(matchers, eos_ids, self._llg_numpy, self._lltokenizer,
                                 self.grammar.kind)


class GrammarConstraint:
    """Per-call grammar state: one llguidance matcher per batch row.

    Attributes:
        complete: bool [batch]; True for rows whose grammar is complete and that ended
            without an eos token (see the module docstring).

    Raises (at construction):
        GrammarError: a row's grammar allows no first token (it cannot be met).
    """

    def __init__(self, matchers: list, eos_ids: Sequence[int], llg_numpy: ModuleType,
                 lltokenizer, kind: str):
        self._matchers = matchers
        self._numpy = llg_numpy
        self._lltokenizer = lltokenizer
        self._kind = kind
        batch, vocab = len(matchers), lltokenizer.vocab_size
        self._vocab = vocab
        self._bitmask = llg_numpy.allocate_token_bitmask(batch, vocab)
        self._bias = np.zeros((batch, vocab), dtype=np.float32)  # 0 allowed, -inf forbidden
        self._llg_eos = sorted({int(t) for t in lltokenizer.eos_tokens if 0 <= t < vocab})
        self._eos = np.array(sorted({int(e) for e in eos_ids}), dtype=np.int64)
        self._tokens: list[list[int]] = [[] for _ in matchers]
        self._dead: list[int] = []
        self.complete = np.zeros(batch, dtype=bool)
        self._prepare(list(range(batch)))
        self._raise_if_dead()

    def mask(self, logits: np.ndarray) -> np.ndarray:
        """Set ``logits`` (float32 [batch, vocab], changed in place and returned) to -inf at
        the ids each row's grammar forbids; rows that have ended are left as they are.

        Raises:
            GrammarError: a row reached a state where no token can continue its grammar.
        """
        self._raise_if_dead()
        return np.add(logits, self._bias, out=logits)

    def advance(self, tokens: np.ndarray, ended: np.ndarray) -> None:
        """Feed each running row's chosen token (int64 [batch]) to its matcher and prepare
        the next masks; ``ended`` (bool [batch]) marks rows that stop here (eos, or done
        before), whose tokens are not fed. Updates :attr:`complete`."""
        rows = []
        for row in np.flatnonzero(~ended & ~self.complete).tolist():
            token = int(tokens[row])
            if not self._matchers[row].consume_token(token):
                raise GrammarError(
                    f"llguidance refused token {token}, which its own mask allowed "
                    f"({_one_line(self._matchers[row].get_error())}); please report this "
                    "with the grammar."
                )
            self._tokens[row].append(token)
            rows.append(row)
        self._bias[ended] = 0.0  # ended rows ride along unconstrained (tokens ignored)
        self._prepare(rows)

    def completes_with(self, row: int, token: int) -> bool:
        """Whether ``token`` (not an eos id) would leave ``row``'s grammar complete: it can
        take no more tokens (llguidance's "stopped"), or it accepts, no eos id is set and
        no token may follow. Beam search ranks such a candidate as it ranks eos. Works on a
        copy of the row's matcher (``deep_copy``, microseconds); the row is not changed."""
        matcher = self._matchers[row].deep_copy()
        if not matcher.consume_token(int(token)):
            return False
        if matcher.is_stopped():
            return True
        if len(self._eos) or not matcher.is_accepting():
            return False
        scratch = self._numpy.allocate_token_bitmask(1, self._vocab)
        self._numpy.fill_next_token_bitmask(matcher, scratch, 0)
        clear_token_bits(scratch, self._llg_eos)
        return not scratch.any()

    def reorder(self, sources: np.ndarray) -> None:
        """Row ``i`` takes over the state of row ``sources[i]`` (int [batch]; beam search,
        :mod:`runtime.beam_search`). A source used twice is copied (llguidance's
        ``deep_copy``, microseconds)."""
        self._raise_if_dead()  # rows are renumbered below; a dead row must not move
        sources = [int(s) for s in sources]
        if sources == list(range(len(self._matchers))):
            return
        self._matchers = [self._matchers[s].deep_copy() for s in sources]
        self._tokens = [list(self._tokens[s]) for s in sources]
        self._bias = self._bias[sources]
        self.complete = self.complete[sources]

    def _prepare(self, rows: list[int]) -> None:
        """Compute the next allowed ids of ``rows`` (or mark them complete or dead)."""
        running = []
        for row in rows:
            matcher = self._matchers[row]
            if matcher.is_error():
                raise GrammarError(f"the {self._kind} grammar failed: "
                                   f"{_one_line(matcher.get_error())}")
            if matcher.is_stopped():  # accepts, and nothing but eos may follow
                self.complete[row] = True
                self._bias[row] = 0.0
                continue
            self._numpy.fill_next_token_bitmask(matcher, self._bitmask, row)
            running.append(row)
        if not running:
            return
        # bit j of 32-bit word w is token 32*w + j (little-endian words, as llguidance writes)
        words = self._bitmask if len(running) == len(self._matchers) else self._bitmask[running]
        clear_token_bits(words, self._llg_eos)  # llguidance's eos: this call's eos ids decide
        any_token = words.any(axis=1)
        allowed = np.unpackbits(words.astype("<i4", copy=False).view(np.uint8), axis=1,
                                count=self._vocab, bitorder="little")  # 0/1 per id
        for i, row in enumerate(running):
            accepting = self._matchers[row].is_accepting()
            if len(self._eos):
                allowed[i, self._eos] = accepting
            if not (any_token[i] or (accepting and len(self._eos))):
                if accepting:  # complete, and no eos id to end with
                    self.complete[row] = True
                    allowed[i] = 1
                else:
                    self._dead.append(row)
        every_row = len(running) == len(self._matchers)
        # 0 where allowed, -1 (all bits set) where not, then & the bits of -inf
        bias = np.subtract(allowed, 1, dtype=np.int32,
                           out=self._bias.view(np.int32) if every_row else None)
        bias &= _NEG_INF_BITS
        if not every_row:
            self._bias[running] = bias.view(np.float32)

    def _raise_if_dead(self) -> None:
        if self._dead:
            row = self._dead[0]
            text = self._lltokenizer.decode_str(self._tokens[row])
            raise GrammarError(
                f"the {self._kind} grammar cannot be met: after {text!r} (row {row}) no token "
                "can continue it and it is not complete. Check the grammar (e.g. an empty "
                "set of strings, or characters the tokenizer cannot write)."
            )
