"""Render chat messages with the tokenizer's Jinja chat template (no transformers).

The environment matches what transformers' ``apply_chat_template`` gives a template, so the
rendered text - and the ids from encoding it without special tokens - are the same:

- a sandboxed, immutable Jinja environment with ``trim_blocks`` and ``lstrip_blocks``, and
  the ``loopcontrols`` extension (``{% break %}``, ``{% continue %}``);
- variables ``messages``, ``add_generation_prompt``, ``tools``, ``documents`` and the special
  tokens by role (``bos_token``, ``eos_token``, ...), plus any extra keyword arguments;
- helpers ``raise_exception(msg)``, ``strftime_now(fmt)`` and a ``tojson`` filter that does
  not HTML-escape (``json.dumps`` with ``ensure_ascii=False``);
- ``{% generation %} ... {% endgeneration %}`` blocks render their body unchanged.

Messages whose keys hold ``None`` have those keys dropped first, as transformers does.

A tokenizer may carry several named templates; :func:`select_chat_template` picks one as
transformers' ``get_chat_template`` does (a name, ``tools`` -> "tool_use", else "default").
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import InvalidSettingError


class _GenerationBlock(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant text for training masks; at
    inference it only renders its body."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message: str):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template once (cached by source; compiled templates are thread-safe).

    Raises:
        InvalidSettingError: the template has a Jinja syntax error.
    """
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidSettingError(
            f"the chat template has a syntax error at line {exc.lineno}: {exc.message}. Fix "
            "chat_template in tokenizer_config.json (or chat_template.jinja)."
        ) from None


_NO_TEMPLATE = (
    "this model's tokenizer has no chat template, so messages cannot be rendered. Pass "
    "a plain prompt string instead, or add chat_template to tokenizer_config.json."
)


def select_chat_template(
    templates: str | Mapping[str, str] | None,
    chat_template: str | None = None,
    tools: list | None = None,
) -> str:
    """The template source to render, chosen as transformers 5's
    ``PreTrainedTokenizerBase.get_chat_template(chat_template, tools)`` chooses it.

    Args:
        templates: the tokenizer's template(s): a source, ``{name: source}`` or ``None``
            (``Tokenizer.chat_template``).
        chat_template: a template name (looked up in ``templates`` when it is a dict) or a
            Jinja source used as it is; ``None`` picks the tokenizer's.
        tools: when not ``None`` (even empty) and ``templates`` has "tool_use", that one is
            picked; otherwise "default".

    Raises:
        InvalidSettingError: no template at all, or named templates without "default" and
            no name given (the message lists the names).
    """
    if isinstance(templates, Mapping):
        if chat_template is not None:
            return templates.get(chat_template, chat_template)
        if tools is not None and "tool_use" in templates:
            return templates["tool_use"]
        if "default" in templates:
            return templates["default"]
        raise InvalidSettingError(
            f"this tokenizer has several chat templates {sorted(templates)} and none is named "
            "'default'; pass chat_template=<name> to choose one."
        )
    if chat_template is not None:
        return chat_template
    if templates is None:
        raise InvalidSettingError(_NO_TEMPLATE)
    return templates


def _check_messages(messages: Any) -> list[dict]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidSettingError(
            "messages must be a list of {'role': ..., 'content': ...} dicts, got "
            f"{type(messages).__name__}. Pass e.g. [{{'role': 'user', 'content': 'Hi'}}]."
        )
    cleaned = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "role" not in message:
            raise InvalidSettingError(
                f"messages[{i}] must be a dict with a 'role' (and usually 'content'), got "
                f"{message!r}."
            )
        cleaned.append({k: v for k, v in message.items() if v is not None})
    return cleaned


def render_chat(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = True,
    special_tokens: Mapping[str, str] | None = None,
    tools: list[dict] | None = None,
    documents: list[dict] | None = None,
    **template_kwargs: Any,
) -> str:
    """Render ``messages`` to the prompt text the model was trained on.

    Args:
        template: the Jinja source (``Tokenizer.get_chat_template()``).
        messages: [{"role": "system" | "user" | "assistant", "content": str}, ...].
        add_generation_prompt: append the assistant header so the model answers next.
        special_tokens: {"bos_token": ..., "eos_token": ...} as template variables.
        tools, documents, template_kwargs: passed to the template as variables.

    Raises:
        InvalidSettingError: no template, malformed messages, or the template raised
            (``raise_exception``, or a TypeError on a non-string role/content) - the
            message includes the template's own text.
    """
    if template is None:
        raise InvalidSettingError(_NO_TEMPLATE)
    compiled = compile_template(template)
    variables = dict(special_tokens or {})
    variables.update(template_kwargs)
    try:
        return compiled.render(
            messages=_check_messages(messages),
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **variables,
        )
    except (jinja2.TemplateError, TypeError) as exc:  # TypeError: e.g. content is not a str
        raise InvalidSettingError(
            f"the chat template rejected these messages: {exc}. Check the roles and their "
            "order (many templates require alternating user/assistant turns) and that each "
            "role and content is a string."
        ) from None
