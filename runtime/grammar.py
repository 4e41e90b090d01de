"""What a constrained generation may write: :class:`Grammar`, and whether an export supports it.

A grammar holds exactly one of (the four kinds onnxruntime-genai, vLLM and llama.cpp users
know):

- ``lark``: a Lark grammar in llguidance's dialect (Earley parser, ``start`` rule,
  ``"literal"`` and ``/regex/`` terminals, ``%json {...}`` for an inline JSON schema; see
  https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md);
- ``regex``: a regular expression the whole output must match (Rust ``regex`` syntax);
- ``json_schema``: a JSON schema the output must validate against (llguidance's JSON
  support, docs/json_schema.md there; its default allows flexible whitespace between
  tokens, ``"x-guidance": {"whitespace_flexible": false}`` in the schema asks for compact
  JSON);
- ``choice``: a list of strings; the output is exactly one of them.

This module only describes grammars and never imports llguidance; compiling and applying
them is :mod:`runtime.constraint`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as _HFTokenizer

from .errors import InvalidSettingError
from .tokenizer import Tokenizer

#: The grammar kinds, in the order of :class:`Grammar`'s fields.
GRAMMAR_KINDS = ("lark", "regex", "json_schema", "choice")
#: How to install the optional dependency (the extra in pyproject.toml).
INSTALL_HINT = "pip install 'shadow-edge[grammar]'"


def _bad(message: str) -> InvalidSettingError:
    return InvalidSettingError(
        f"{message}. Use e.g. Grammar(regex=r'[0-9]+'), Grammar(choice=['yes', 'no']), "
        "Grammar(json_schema={'type': 'object'}) or Grammar(lark='start: \"on\" | \"off\"')."
    )


@dataclass(frozen=True)
class Grammar:
    """A constraint on generated text: set exactly one field.

    Attributes:
        lark: Lark grammar source (llguidance dialect).
        regex: a regular expression for the whole output.
        json_schema: a JSON schema, as a dict or JSON text (kept as compact JSON text).
        choice: the allowed outputs (kept as a tuple of strings).

    Raises:
        InvalidSettingError: no field or several fields set, a field of the wrong type, an
            empty choice list, or a JSON schema that is not a JSON object.
    """

    lark: str | None = None
    regex: str | None = None
    json_schema: str | Mapping[str, Any] | None = None
    choice: Sequence[str] | None = None

    def __post_init__(self):
        given = [name for name in GRAMMAR_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise _bad(f"a Grammar takes exactly one of {', '.join(GRAMMAR_KINDS)}; got "
                       f"{', '.join(given) if given else 'none'}")
        if self.lark is not None and not (isinstance(self.lark, str) and self.lark.strip()):
            raise _bad(f"Grammar(lark=...) must be non-empty Lark source text, got {self.lark!r:.60}")
        if self.regex is not None and not isinstance(self.regex, str):
            raise _bad(f"Grammar(regex=...) must be a string, got {type(self.regex).__name__}")
        if self.json_schema is not None:
            object.__setattr__(self, "json_schema", _schema_text(self.json_schema))
        if self.choice is not None:
            options = self.choice
            if isinstance(options, str) or not isinstance(options, Sequence) or not options or \
                    not all(isinstance(o, str) for o in options):
                raise _bad(f"Grammar(choice=...) must be a non-empty list of strings, got "
                           f"{options!r:.60}")
            object.__setattr__(self, "choice", tuple(options))

    @property
    def kind(self) -> str:
        """Which field is set: "lark", "regex", "json_schema" or "choice"."""
        return next(name for name in GRAMMAR_KINDS if getattr(self, name) is not None)

    @property
    def text(self) -> str:
        """The grammar as text in the format ``llguidance.grammar_from(kind, text)`` reads
        (the choice list as a JSON array)."""
        if self.choice is not None:
            return json.dumps(list(self.choice), ensure_ascii=False)
        return getattr(self, self.kind)


def _schema_text(schema) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise _bad(f"Grammar(json_schema=...) is not valid JSON ({exc})") from None
    if not isinstance(schema, Mapping):
        raise _bad(f"Grammar(json_schema=...) must be a JSON object (a dict), got "
                   f"{type(schema).__name__}")
    try:
        return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise _bad(f"Grammar(json_schema=...) cannot be written as JSON ({exc})") from None


def as_grammar(value) -> Grammar | None:
    """The ``grammar=`` argument as a :class:`Grammar` (None stays None).

    Accepts a Grammar, a dict (a JSON schema) or a list/tuple of strings (choices). A bare
    string is refused: it could be Lark source or a regex.

    Raises:
        InvalidSettingError: anything else (the message shows the four ways to write one).
    """
    if value is None or isinstance(value, Grammar):
        return value
    if isinstance(value, Mapping):
        return Grammar(json_schema=value)
    if isinstance(value, (list, tuple)):
        return Grammar(choice=value)
    if isinstance(value, str):
        raise _bad("grammar= got a bare string, which could be Lark source or a regex; wrap it "
                   "as Grammar(lark=...) or Grammar(regex=...)")
    raise _bad(f"grammar= must be a Grammar, a dict (JSON schema) or a list of strings "
               f"(choices), got {type(value).__name__}")


def llguidance_installed() -> bool:
    """Whether the optional package llguidance can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("llguidance") is not None
    except (ImportError, ValueError):  # an import hook refusing it, or a broken install
        return False


def count_token_ids(tokenizer_json: str | os.PathLike) -> int:
    """:attr:`runtime.tokenizer.Tokenizer.num_ids` of a ``tokenizer.json`` file.

    Raises:
        ValueError: the file cannot be read or parsed.
    """
    try:
        backend = _HFTokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception on bad JSON
        raise ValueError(f"cannot read {str(tokenizer_json)!r}: {exc}") from None
    return Tokenizer(backend).num_ids


def constrained_decoding_status(manifest, folder: str | os.PathLike | None = None) -> dict:
    """Whether an export supports ``grammar=``: ``{"available": bool, "reason": str,
    "tokenizer_vocab_size": int | None, "llguidance_installed": bool}``.

    Needs a text-generation export with ``tokenizer.json`` whose token ids all have a logit
    (``tokens.tokenizer_vocab_size <= model.vocab_size``; a larger model vocabulary is fine,
    its ids without a token are never allowed). Exports written before the manifest recorded
    ``tokenizer_vocab_size`` are checked by reading ``folder/tokenizer.json``.
    """
    status = {"available": False, "reason": "", "tokenizer_vocab_size": None,
              "llguidance_installed": llguidance_installed()}
    if not manifest.is_generation:
        status["reason"] = "only text-generation exports generate text"
        return status
    count = manifest.tokens.tokenizer_vocab_size
    path = Path(folder) / "tokenizer.json" if folder is not None else None
    if count is None and path is not None and path.is_file():
        try:
            count = count_token_ids(path)
        except ValueError as exc:
            status["reason"] = f"tokenizer.json cannot be read ({exc})"
            return status
    if count is None:
        status["reason"] = ("no tokenizer.json" if "tokenizer.json" not in manifest.files
                            else "the tokenizer size is unknown; re-export the model")
        return status
    status["tokenizer_vocab_size"] = count
    logits = manifest.model.vocab_size
    if count > logits:
        status["reason"] = (f"tokenizer.json has {count} token ids but the model only {logits} "
                            "logits")
        return status
    status["available"] = True
    status["reason"] = f"tokenizer.json ids ({count}) fit the model's {logits} logits"
    if count < logits:
        status["reason"] += f"; the {logits - count} ids without a token are never allowed"
    return status
