"""Seeded random expansion of one hassil sentence template, recording the slot values.

``hassil.sample.sample_intents`` enumerates every expansion and yields text only. Our
templates expand to millions of strings (HassTurnOff alone: 7.7M with lists unexpanded),
and we need the slot values for the structured target. So we walk hassil's parsed
expression tree ourselves and draw one random path per sample:

- ``Alternative`` (``(a|b)``, optional ``[a]``): one item uniformly;
- ``Sequence``: all items, concatenated; ``Permutation`` (``(a;b)``): a random order;
- ``RuleReference`` (``<name>``): the rule's expression;
- ``ListReference`` (``{list}`` / ``{list:slot}``): a value from the list, recorded under
  the slot name. Text lists give ``value_out``; ranges give a number (digits, or words via
  ``unicode_rbnf`` as hassil does; large ranges keep a fifth of their values for
  validation and test, :func:`slots.draw_number`); ``area``/``floor``/``name`` come from
  our own pools in :mod:`slots`, for the split being drawn.
"""

from __future__ import annotations

import random
import re

from hassil.expression import (
    Alternative,
    ListReference,
    Permutation,
    RuleReference,
    Sequence,
    TextChunk,
)
from hassil.intents import RangeSlotList, TextSlotList, WildcardSlotList

from . import slots as own_slots

_SPACES = re.compile(r"\s+")
_NUMBER_WORDS_PROBABILITY = 0.2


class Expander:
    """Draw random (text, slots) expansions of hassil expressions.

    Args:
        slot_lists: hassil's slot lists (``Intents.slot_lists``).
        split: ``"train"``, ``"validation"`` or ``"test"``: whose areas, floors, names and
            numbers to use (:mod:`slots`).
        name_domains: domains allowed for ``{name}`` (from the template's
            ``requires_context``), or None for any domain.
        invented: training only: the RNG that decides which area, floor and name values get
            an invented word (:func:`slots.with_invented_word`, share
            ``slots.INVENTED_SHARE``). A separate RNG, so that turning invented words on or
            off does not shift the main RNG's draws of the training commands themselves.
            (Validation and test, drawn later from the same main RNG, still shift a little:
            fewer duplicate training texts means fewer training draws.)
    """

    def __init__(self, slot_lists, split: str, name_domains: list[str] | None,
                 invented: random.Random | None = None):
        self.slot_lists = slot_lists
        self.split = split
        self.invented = invented
        self.pick_area = own_slots.AreaPicker(split)
        self.pick_name = own_slots.NamePicker(name_domains, split)
        self.floors = own_slots.floor_pool(split)
        self._rbnf = None

    def sample(self, expression, rules, rng: random.Random) -> tuple[str, dict]:
        """One expansion: (normalised text, {slot: value})."""
        captured: dict = {}
        text = self._walk(expression, rules, rng, captured)
        return _SPACES.sub(" ", text).strip(), captured

    def _walk(self, expr, rules, rng, captured) -> str:
        if isinstance(expr, TextChunk):
            return expr.original_text
        if isinstance(expr, Alternative):
            return self._walk(rng.choice(expr.items), rules, rng, captured)
        if isinstance(expr, Permutation):
            items = list(expr.items)
            rng.shuffle(items)
            return " ".join(self._walk(i, rules, rng, captured) for i in items)
        if isinstance(expr, Sequence):
            return "".join(self._walk(i, rules, rng, captured) for i in expr.items)
        if isinstance(expr, RuleReference):
            return self._walk(rules[expr.rule_name].expression, rules, rng, captured)
        if isinstance(expr, ListReference):
            return self._list_value(expr, rules, rng, captured)
        raise TypeError(f"Unexpected hassil expression {type(expr).__name__}")

    def _list_value(self, ref: ListReference, rules, rng, captured) -> str:
        name, slot = ref.list_name, ref.slot_name
        if ref.is_inline_range:
            start, stop, step = ref.get_inline_range()
            number = own_slots.draw_number(start, stop, step, slot, self.split, rng)
            captured[slot] = number
            return self._number_text(number, rng)
        if name in ("area", "floor", "name"):
            if name == "area":
                value = self.pick_area(rng)
            elif name == "floor":
                value = rng.choice(self.floors)
            else:
                value, _domain = self.pick_name(rng)
            if self.invented is not None and self.invented.random() < own_slots.INVENTED_SHARE:
                value = own_slots.with_invented_word(value, name, self.invented)
            captured[slot] = value
            return value
        slot_list = self.slot_lists[name]
        if isinstance(slot_list, RangeSlotList):
            number = own_slots.draw_number(slot_list.start, slot_list.stop, slot_list.step,
                                           slot, self.split, rng)
            if slot_list.multiplier:
                captured[slot] = number * slot_list.multiplier
            else:
                captured[slot] = number
            return self._number_text(number, rng) if slot_list.words else str(number)
        if isinstance(slot_list, TextSlotList):
            value = rng.choice(slot_list.values)
            sub: dict = {}
            text = self._walk(value.text_in, rules, rng, sub)
            captured[slot] = value.value_out if value.value_out is not None else text.strip()
            return text
        if isinstance(slot_list, WildcardSlotList):
            raise TypeError(f"Wildcard list {{{name}}} cannot be sampled; skip its templates")
        raise TypeError(f"Unexpected slot list type {type(slot_list).__name__}")

    def _number_text(self, number: int, rng) -> str:
        if rng.random() >= _NUMBER_WORDS_PROBABILITY:
            return str(number)
        if self._rbnf is None:
            from unicode_rbnf import RbnfEngine

            self._rbnf = RbnfEngine.for_language("en")
        return self._rbnf.format_number(number).text
