"""The action text a generation shadow writes: ``HassLightSet area: living room; brightness: 40``.

Format: the intent name, then (if it has slots) a space and ``key: value`` parts joined by
``"; "``, keys sorted, values bare (numbers as integers). ``none`` is the action of a
command that asks for nothing.

Why this shape and not ``area="living room"``: every value follows a space, as the words of
the command do, so its tokens are the command's own tokens (SmolLM2's BPE gives
``Ġliving Ġroom`` in both) and the model can copy a room or device it never saw in training.
After ``="`` the first word is tokenized without its space (``l ard er`` against the
command's ``Ġl ard er``), which measured as area F1 0.25 (free) / 0.68 (grammar) on the
test split (examples/robot_intent/README.md, data v3).

Standard library only: the runtime-only app imports it.
"""

from __future__ import annotations

PART_SEPARATOR = "; "
KEY_SEPARATOR = ": "


def format_value(value) -> str:
    """A slot value as written in an action: integral floats as integers, the rest as text.

    Raises:
        ValueError: the text is blank, starts or ends with a space, or contains ``";"`` or
            a line break (any of which :func:`parse_action` could not give back).
    """
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if ";" in text or "\n" in text:
        raise ValueError(f"slot value {text!r} contains ';' or a line break; "
                         "an action value cannot hold them")
    if not text.strip() or text != text.strip():
        raise ValueError(f"slot value {text!r} is blank or has spaces at its ends; trim it")
    return text


def format_action(intent: str, slots: dict) -> str:
    """``HassLightSet area: kitchen; brightness: 40`` (keys sorted; see the module docstring).

    Raises:
        ValueError: a value cannot be written (see :func:`format_value`).
    """
    if not slots:
        return intent
    parts = [f"{key}{KEY_SEPARATOR}{format_value(slots[key])}" for key in sorted(slots)]
    return f"{intent} {PART_SEPARATOR.join(parts)}"


def parse_action(text: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`format_action`: ``(intent, {key: value})``, values as strings.

    Raises:
        ValueError: the text is empty, a part is not ``key: value``, a value holds ``";"``,
            or a key repeats.
    """
    text = text.strip()
    if not text:
        raise ValueError("the model produced no action; expected '<Intent> key: value; ...'")
    intent, _, rest = text.partition(" ")
    slots: dict[str, str] = {}
    for part in rest.split(PART_SEPARATOR) if rest else ():
        key, sep, value = part.partition(KEY_SEPARATOR)
        value = value.strip()
        if not sep or not key or not value or " " in key or ";" in value:
            raise ValueError(f"{part!r} in {text!r} is not 'key: value'")
        if key in slots:
            raise ValueError(f"key {key!r} appears twice in {text!r}")
        slots[key] = value
    return intent, slots


def normalize_slots(slots: dict) -> dict[str, str]:
    """Slots as strings, as :func:`parse_action` returns them (for comparisons).

    Raises:
        ValueError: a value cannot be written (see :func:`format_value`).
    """
    return parse_action(format_action("X", slots))[1]
