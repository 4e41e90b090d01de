"""An action grammar built at run time: the model can only write actions the home can do.

The generation shadow writes ``<Intent> key=value ...`` (``data.format_action``: keys sorted,
values with spaces in double quotes). Given the intents the app handles with their slot
keys, and the home's own entity names (areas, floors, device names...), :func:`action_grammar`
returns a :class:`runtime.Grammar` (Lark) that allows exactly:

- one of the intent names;
- then any subset of that intent's slot keys, in sorted order;
- for a key with an entity list, one of its values (quoted when it has a space);
- for other keys, a number (``40``, ``-2.5``), a word (``red``, ``on``) or a quoted text.

Every output of a generation under this grammar that finished with ``finish_reason ==
"grammar"`` parses with ``data.parse_action`` / ``app.Action.parse``. Runtime-only (imports
``runtime``, never torch):

    >>> grammar = action_grammar({"HassTurnOn": ["area", "name"], "HassNevermind": []},
    ...                          {"area": ["kitchen", "music room"], "name": ["desk lamp"]})
    >>> model.generate(prompt, grammar=grammar, max_new_tokens=32).text
    'HassTurnOn area="music room"'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from runtime import Grammar

# values of slots without an entity list: a number, a bare word, or a quoted text
FREE_VALUE_TERMINALS = r"""
NUMBER: /-?[0-9]{1,6}(\.[0-9]{1,4})?/
WORD: /[A-Za-z_][A-Za-z0-9_]{0,31}/
QUOTED: /"[^"\\\n]{1,40}"/
"""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _literal(text: str) -> str:
    """A Lark string literal for ``text`` (JSON escapes, which llguidance's Lark reads)."""
    return json.dumps(text, ensure_ascii=False)


def _value_text(value: str) -> str:
    """How ``data.format_action`` writes a value: quoted when it has a space or is empty."""
    return f'"{value}"' if (" " in value or not value) else value


def action_grammar(intents: Mapping[str, Iterable[str]],
                   entities: Mapping[str, Iterable[str]] | None = None) -> Grammar:
    """A Lark grammar of the actions ``intents`` allow, with ``entities`` as closed value lists.

    Args:
        intents: intent name -> its slot keys, e.g. ``{"HassLightSet": ["area", "brightness"]}``.
        entities: slot key -> allowed values, e.g. ``{"area": ["kitchen", "attic"]}``; keys
            not listed take free values (number, word or quoted text).

    Raises:
        ValueError: no intents, a name or key that is not an identifier, an empty entity
            list, or a value with a double quote, backslash or newline (it could not be
            written in the action format).
    """
    entities = {key: list(dict.fromkeys(values)) for key, values in (entities or {}).items()}
    if not intents:
        raise ValueError("action_grammar needs at least one intent, e.g. {'HassTurnOn': ['area']}")
    lines = []
    value_rules: dict[str, str] = {}
    for key, values in sorted(entities.items()):
        if not values:
            raise ValueError(f"the entity list for {key!r} is empty; pass its values or drop it")
        bad = [v for v in values if not isinstance(v, str) or re.search(r'["\\\n]', v)]
        if bad:
            raise ValueError(f"entity values for {key!r} must be strings without '\"', '\\' "
                             f"or newlines: {bad[:3]}")
    alternatives = []
    for index, (intent, keys) in enumerate(sorted(intents.items())):
        keys = sorted(set(keys))
        for name in [intent, *keys]:
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a valid intent or slot name (letters, digits, _)")
        parts = [_literal(intent)]
        for key in keys:
            rule = value_rules.setdefault(key, f"value_{len(value_rules)}")
            parts.append(f"({_literal(f' {key}=')} {rule})?")
        lines.append(f"intent_{index}: {' '.join(parts)}")
        alternatives.append(f"intent_{index}")
    for key, rule in value_rules.items():
        if key in entities:
            body = " | ".join(_literal(_value_text(v)) for v in entities[key])
        else:
            body = "NUMBER | WORD | QUOTED"
        lines.append(f"{rule}: {body}")
    source = "start: " + " | ".join(alternatives) + "\n" + "\n".join(lines) + "\n"
    return Grammar(lark=source + FREE_VALUE_TERMINALS)
