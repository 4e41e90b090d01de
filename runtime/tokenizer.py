"""Tokenizer files of an export folder, read with the `tokenizers` library (no transformers).

Reads ``tokenizer.json`` (the fast tokenizer), special tokens from ``tokenizer_config.json``
(falling back to ``special_tokens_map.json``) and the chat templates from wherever
transformers 5 reads them (:func:`read_chat_templates`).

Ids equal transformers' for the same folder: a ``truncation`` or ``padding`` section saved in
``tokenizer.json`` is switched off, as transformers does for every call that does not ask
for truncation or padding (``TokenizersBackend.set_truncation_and_padding``).

:class:`StreamDecoder` turns token ids into text pieces one id at a time. It holds back a
piece while its bytes are an incomplete UTF-8 character (the decoder yields U+FFFD there),
so streamed pieces joined equal ``decode(all_ids)``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer

from .chat import select_chat_template
from .errors import InvalidSettingError, ModelFolderError

logger = logging.getLogger(__name__)

SPECIAL_TOKEN_NAMES = (
    "bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token",
)
_REPLACEMENT = "\ufffd"


def _token_text(value) -> str | None:
    """Special tokens are stored as a string or as an AddedToken dict {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(
            f"{str(path)!r} is not valid JSON ({exc}). Re-export the model or copy the file again."
        ) from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{str(path)!r} must hold a JSON object. Re-export the model.")
    return data


#: Where transformers 5 keeps chat templates besides ``tokenizer_config.json``
#: (``transformers.utils.hub.CHAT_TEMPLATE_FILE`` / ``CHAT_TEMPLATE_DIR``).
CHAT_TEMPLATE_FILE = "chat_template.jinja"
CHAT_TEMPLATE_DIR = "additional_chat_templates"


def read_chat_templates(folder: str | os.PathLike, config: dict | None = None
                        ) -> str | dict[str, str] | None:
    """The chat template(s) of a tokenizer folder, found as transformers 5 finds them.

    Source: ``PreTrainedTokenizerBase.from_pretrained`` / ``_from_pretrained`` / ``__init__``
    (transformers 5.24), for a local folder:

    1. Template files win, and when any exists ``tokenizer_config.json``'s templates are
       ignored: ``chat_template.jinja`` is the one named "default",
       ``additional_chat_templates/<name>.jinja`` the one named ``<name>``. Only "default"
       gives a string, anything more a dict ``{name: source}``.
    2. Otherwise ``tokenizer_config.json["chat_template"]``: a string, or a list of
       ``{"name": ..., "template": ...}`` that becomes a dict.

    ``chat_template.json`` belongs to processors; transformers' tokenizers do not read it, so
    neither does this. :func:`runtime.chat.select_chat_template` picks one of a dict.

    Args:
        folder: the tokenizer folder.
        config: parsed ``tokenizer_config.json`` (read from ``folder`` when ``None``).

    Raises:
        ModelFolderError: a template file is unreadable or a list entry is malformed.
    """
    folder = Path(folder)
    if config is None:
        path = folder / "tokenizer_config.json"
        config = _read_json(path) if path.is_file() else {}
    files = {}
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        files["default"] = folder / CHAT_TEMPLATE_FILE
    extra_dir = folder / CHAT_TEMPLATE_DIR
    if extra_dir.is_dir():
        for file in sorted(extra_dir.glob("*.jinja")):
            files[file.name.removesuffix(".jinja")] = file
    if files:
        templates = {name: _read_text(file) for name, file in files.items()}
        return templates["default"] if list(templates) == ["default"] else templates
    template = config.get("chat_template")
    if isinstance(template, list):
        if not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                   and isinstance(t.get("template"), str) for t in template):
            raise ModelFolderError(
                f"{str(folder / 'tokenizer_config.json')!r}: chat_template must be a string or a "
                'list of {"name": ..., "template": ...} objects. Fix the file or re-save the '
                "tokenizer with transformers."
            )
        return {t["name"]: t["template"] for t in template}
    if template is None or isinstance(template, str):
        return template
    raise ModelFolderError(
        f"{str(folder / 'tokenizer_config.json')!r}: chat_template must be a string or a list "
        f"of named templates, got {type(template).__name__}. Fix the file or re-save the "
        "tokenizer with transformers."
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(
            f"cannot read {str(path)!r} ({exc}). Copy the file again or re-export the model."
        ) from None


class Tokenizer:
    """Encode and decode text with an export folder's tokenizer.

    Attributes:
        special_tokens: {"bos_token": "<s>", ...} for the special tokens that are set.
        chat_template: as transformers' ``tokenizer.chat_template``: the Jinja source, a
            dict ``{name: source}`` of named templates, or ``None``
            (:func:`read_chat_templates`; :meth:`get_chat_template` picks one).
    """

    def __init__(
        self,
        backend: _HFTokenizer,
        special_tokens: dict[str, str] | None = None,
        chat_template: str | dict[str, str] | None = None,
    ):
        self.backend = backend
        self.special_tokens = dict(special_tokens or {})
        self.chat_template = chat_template

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> Tokenizer:
        """Load ``tokenizer.json`` (+ ``tokenizer_config.json``) from ``folder``.

        Raises:
            ModelFolderError: ``tokenizer.json`` is missing or cannot be parsed.
        """
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise ModelFolderError(
                f"{str(folder)!r} has no tokenizer.json. Re-export the model so the tokenizer is "
                "saved with it, or copy tokenizer.json from the base model into the folder."
            )
        try:
            backend = _HFTokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises bare Exception on bad JSON
            raise ModelFolderError(
                f"cannot parse {str(path)!r}: {exc}. The file is corrupt or from a newer "
                "`tokenizers`; copy it again or upgrade tokenizers."
            ) from None
        # A tokenizer.json may fix padding and truncation (sentence-transformers' MiniLM pads
        # every text to 128 [PAD] tokens and cuts at 128). As transformers does per call, the
        # runtime pads (with an attention mask) and truncates itself, so both are turned off.
        backend.no_padding()
        backend.no_truncation()
        config: dict = {}
        if (folder / "tokenizer_config.json").is_file():
            config = _read_json(folder / "tokenizer_config.json")
        special_map: dict = {}
        if (folder / "special_tokens_map.json").is_file():
            special_map = _read_json(folder / "special_tokens_map.json")
        special: dict[str, str] = {}
        for name in SPECIAL_TOKEN_NAMES:
            text = _token_text(config.get(name)) or _token_text(special_map.get(name))
            if text is not None:
                special[name] = text
        return cls(backend, special, read_chat_templates(folder, config))

    def get_chat_template(self, chat_template: str | None = None,
                          tools: list | None = None) -> str:
        """The template source to render, chosen as transformers'
        ``tokenizer.get_chat_template(chat_template, tools)`` chooses
        (:func:`runtime.chat.select_chat_template`)."""
        return select_chat_template(self.chat_template, chat_template, tools)

    # ---- ids of special tokens -------------------------------------------------------------

    def token_to_id(self, token: str) -> int | None:
        """Id of a token string (e.g. "<|im_end|>"), or None if it is not in the vocabulary."""
        return self.backend.token_to_id(token)

    def special_token_id(self, name: str) -> int | None:
        """Id of a special token by role, e.g. ``special_token_id("eos_token")``; None if unset."""
        text = self.special_tokens.get(name)
        return None if text is None else self.backend.token_to_id(text)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added (special) tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    @property
    def num_ids(self) -> int:
        """1 + the largest token id (added tokens included): the logits a model needs so
        that every token has one (differs from :attr:`vocab_size` when ids have gaps)."""
        return 1 + max(self.backend.get_vocab(with_added_tokens=True).values(), default=-1)

    def tokens_from(self, first_id: int) -> list[tuple[int, str]]:
        """``(id, token)`` of every token whose id is >= ``first_id``, by id (e.g. the tokens
        a model with ``first_id`` embedding rows cannot take)."""
        size = self.backend.get_vocab_size(with_added_tokens=False)
        found = {i: self.backend.id_to_token(i) for i in range(first_id, size)}
        for token_id, token in self.backend.get_added_tokens_decoder().items():
            if token_id >= first_id:
                found[token_id] = token.content
        return sorted(found.items())

    def describe_ids(self, ids: Sequence[int], limit: int = 5) -> str:
        """``"'<extra_0>' (id 259), id 300"`` for error messages: each id with its token
        text when the tokenizer has one; at most ``limit`` ids, then a count."""
        shown = []
        for token_id in list(ids)[:limit]:
            text = self.backend.id_to_token(token_id) if token_id >= 0 else None
            shown.append(f"{text!r} (id {token_id})" if text is not None else f"id {token_id}")
        more = len(ids) - limit
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")

    # ---- encode / decode --------------------------------------------------------------------

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``. ``add_special_tokens`` applies the tokenizer's post-processor
        (e.g. a BOS token); chat prompts are encoded without it, as transformers does.

        Raises:
            InvalidSettingError: ``text`` holds a lone UTF-16 surrogate (not valid Unicode).
        """
        try:
            return self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        except TypeError:
            _check_encodable([text])
            raise

    def encode_batch(self, texts: Sequence[str], *, add_special_tokens: bool = True) -> list[list[int]]:
        """:meth:`encode` for several texts (the Rust tokenizer runs them in parallel)."""
        return [e.ids for e in self._encodings(texts, add_special_tokens)]

    def encode_batch_with_type_ids(
        self, texts: Sequence[str], *, add_special_tokens: bool = True
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and ``token_type_ids`` (segment ids set by the tokenizer's post-processor,
        e.g. BERT's; 0 for every token of a single text) for several texts."""
        encodings = self._encodings(texts, add_special_tokens)
        return [e.ids for e in encodings], [e.type_ids for e in encodings]

    def _encodings(self, texts: Sequence[str], add_special_tokens: bool):
        try:
            return self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        except TypeError:
            _check_encodable(texts)
            raise

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``; bytes that form no complete UTF-8 character decode to U+FFFD."""
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def stream_decoder(self, *, skip_special_tokens: bool = True) -> StreamDecoder:
        """A new :class:`StreamDecoder` (one per generated sequence; not shared by threads)."""
        return StreamDecoder(self, skip_special_tokens=skip_special_tokens)


class StreamDecoder:
    """Incremental detokenizer: ``push(id)`` returns the new text (maybe ""), ``flush()`` the rest.

    Two offsets into the ids seen so far: text is decoded from ``prefix`` (a few tokens of
    context, so decoders that strip a leading space see the same context as a full decode),
    and ``read`` marks what has been emitted. A piece is emitted only when it does not end
    in U+FFFD, i.e. its last UTF-8 character is complete.
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = True):
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._ids: list[int] = []
        self._prefix = 0
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip)

    def _step(self, final: bool) -> str:
        prefix_text = self._decode(self._ids[self._prefix:self._read])
        new_text = self._decode(self._ids[self._prefix:])
        if len(new_text) > len(prefix_text) and (final or not new_text.endswith(_REPLACEMENT)):
            if not new_text.startswith(prefix_text):  # decoder rewrote the context; stay in sync
                logger.debug("stream decoder context changed: %r -> %r", prefix_text, new_text)
            piece = new_text[len(prefix_text):]
            self._prefix, self._read = self._read, len(self._ids)
            return piece
        return ""

    def push(self, token_id: int) -> str:
        """Add one id; return the text it completes ("" while a character is incomplete)."""
        self._ids.append(int(token_id))
        return self._step(final=False)

    def flush(self) -> str:
        """Return any held-back text (e.g. an incomplete character at the end, as U+FFFD)."""
        return self._step(final=True) if self._read < len(self._ids) else ""


def _check_encodable(texts: Sequence[str]) -> None:
    """Raise a clear error for a string the Rust tokenizer rejects: a lone UTF-16 surrogate
    (e.g. from bytes decoded with ``errors="surrogateescape"``) cannot be UTF-8 encoded."""
    for text in texts:
        if not isinstance(text, str):
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidSettingError(
                f"the text has an unpaired surrogate {text[error.start]!r} at index "
                f"{error.start}, which is not valid Unicode; remove it, or decode the input "
                "bytes with errors='replace'."
            ) from None
