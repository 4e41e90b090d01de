"""The robot-intent action grammar: built at run time from ``schema.json`` and a home's
entities, it accepts every real action of that home and nothing else; a command's grammar
also requires the entities the command names; on a generation export every constrained
output parses into a known intent with the home's entities."""

from __future__ import annotations

import json

import lark
import pytest

from examples.robot_intent import data, slots
from examples.robot_intent.app import SYSTEM_PROMPT, Action
from examples.robot_intent.evaluate import DATA, homes
from examples.robot_intent.grammar import (
    Home,
    action_grammar,
    command_grammar,
    load_schema,
    named_entities,
)


def _split(split: str) -> list[data.Example]:
    return data.read_split(DATA, split)


def _home_of(examples) -> Home:
    values = {k: {str(e.slots[k]) for e in examples if k in e.slots}
              for k in ("area", "floor", "name")}
    return Home(*(tuple(sorted(values[k])) for k in ("area", "floor", "name")))


def _parser(home: Home, command: str | None = None) -> lark.Lark:
    # an independent parser (Python's lark) of the same grammar text
    if command is None:
        return lark.Lark(action_grammar(load_schema(), home), parser="lalr")
    return lark.Lark(command_grammar(command, home).text, parser="lalr")


@pytest.fixture(scope="module")
def test_parser():
    return _parser(_home_of(_split("test")))


def test_every_test_action_is_accepted_in_a_home_with_its_entities(test_parser):
    for e in _split("test"):
        test_parser.parse(e.action)


def test_training_actions_are_accepted_too():
    examples = _split("train")[::8]
    parser = _parser(_home_of(examples))
    for e in examples:
        parser.parse(e.action)


@pytest.mark.parametrize("action", [
    "HassFlyToTheMoon",                                  # unknown intent
    "HassTurnOn area: moon base",                        # an area the home does not have
    "HassTurnOn area: nurser",                           # part of a name
    "HassTurnOn name: nursery lamp; area: nursery",      # keys out of order
    "HassGetCurrentTime area: nursery",                  # a key the intent does not take
    "HassTurnOn  area: nursery",                         # double space
    "HassTurnOn area=nursery",                           # not 'key: value'
    "HassLightSet brightness: forty; name: nursery lamp",  # a number in words
    "HassLightSet brightness: 40 name: nursery lamp",    # no '; ' between parts
    "HassTurnOn domain: toaster",                        # not a Home Assistant domain value
    "none area: nursery",                                # no action takes no slots
])
def test_malformed_or_foreign_actions_are_rejected(action):
    parser = _parser(Home(("nursery", "study"), ("top floor",), ("nursery lamp",)))
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse(action)


def test_a_home_without_floors_drops_the_slot_sets_that_need_one():
    parser = _parser(Home(("nursery",), (), ("nursery lamp",)))
    parser.parse("HassTurnOn area: nursery; domain: light")
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse("HassTurnOn domain: light; floor: top floor")


@pytest.mark.parametrize("name", ["nursery; study", "nursery ", " ", "top\nfloor"])
def test_entity_names_that_would_break_an_action_are_refused(name):
    with pytest.raises(ValueError, match="cannot be used"):
        action_grammar(load_schema(), Home((name,)))


def test_an_empty_home_is_refused():
    with pytest.raises(ValueError, match="no areas, floors or names"):
        action_grammar(load_schema(), Home())


HOME = Home(("kitchen", "nursery", "study", "garden"), ("top floor",),
            ("kitchen lamp", "nursery fan"))


@pytest.mark.parametrize("command, named", [
    ("turn on the kitchen lamp", Home((), (), ("kitchen lamp",))),       # longest match wins
    ("turn on the lights in the Nursery", Home(("nursery",))),         # any case
    ("the kitchen's lights off", Home(("kitchen",))),                   # a possessive
    ("water the gardens", Home()),                                       # whole words only
    ("nursery fan off in the study", Home(("study",), (), ("nursery fan",))),
    ("everything on the top floor off", Home((), ("top floor",))),
    ("what is the capital of france", Home()),
    ("turn on 'kitchen lamp'", Home((), (), ("kitchen lamp",))),          # quoted
])
def test_named_entities_are_the_longest_whole_word_matches(command, named):
    assert named_entities(command, HOME) == named


def test_a_command_grammar_requires_the_room_the_command_names():
    parser = _parser(HOME, "stop the kitchen timer")
    parser.parse("HassCancelTimer area: kitchen")
    parser.parse("HassCancelAllTimers area: kitchen")
    parser.parse("none")
    for action in ("HassCancelTimer", "HassCancelTimer area: study", "HassCancelAllTimers",
                   "HassGetCurrentTime"):  # the last cannot carry an area
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(action)


def test_a_command_grammar_leaves_kinds_the_command_does_not_name_open():
    parser = _parser(HOME, "turn on the nursery fan")
    parser.parse("HassTurnOn name: nursery fan")
    parser.parse("HassTurnOn area: study; name: nursery fan")   # areas: not named, all allowed
    for action in ("HassTurnOn name: kitchen lamp", "HassTurnOn area: study; domain: fan"):
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(action)


def test_a_command_grammar_drops_intents_that_cannot_carry_every_named_entity():
    # HassVacuumStart takes a name or a floor, never an area with a name
    parser = _parser(HOME, "clean the study with the kitchen lamp")
    parser.parse("HassVacuumCleanArea area: study; name: kitchen lamp")
    for action in ("HassVacuumStart name: kitchen lamp", "HassVacuumCleanArea area: study"):
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(action)


def test_a_name_listed_under_two_kinds_can_be_carried_by_either():
    home = Home(("upstairs", "hall"), ("upstairs",), ("hall lamp",))
    assert named_entities("lights off upstairs", home) == Home(("upstairs",), ("upstairs",))
    parser = _parser(home, "lights off upstairs")
    parser.parse("HassTurnOff domain: light; floor: upstairs")
    parser.parse("HassTurnOff area: upstairs; domain: light")
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse("HassTurnOff domain: light")


def test_an_entity_after_a_possessive_s_is_not_named():
    assert named_entities("emily's den lights", Home(("s den", "den"))) == Home(("den",))


def test_named_values_must_be_the_home_s():
    with pytest.raises(ValueError, match="not all the home's"):
        action_grammar(load_schema(), HOME, named=Home(("moon base",)))


def test_a_schema_the_home_cannot_fill_is_refused():
    schema = {"intents": {"HassTurnOn": {"slot_sets": [["floor"]],
                                         "slots": {"floor": "entity:floor"}}}}
    with pytest.raises(ValueError, match="no intent this home can fill"):
        action_grammar(schema, Home(("nursery",)))


def test_a_command_naming_nothing_gets_the_home_grammar():
    assert (command_grammar("set a timer for 5 minutes", HOME).text
            == action_grammar(load_schema(), HOME))


@pytest.mark.parametrize("split, step", [("test", 1), ("validation", 1), ("train", 8)])
def test_the_entities_a_command_names_are_its_entity_slots(split, step):
    """What grammar.py's docstring states about the data: in each evaluation home, the
    entities an in-scope command names are exactly its area, floor and name slots."""
    examples = _split(split)[::step]
    for home, start in zip(homes(examples, split), range(0, len(examples), 16), strict=True):
        for e in examples[start:start + 16]:
            if e.intent == "none":  # "grandma says hi" names a distractor device "grandma"
                continue
            slots_of = {k: (str(e.slots[k]),) if k in e.slots else ()
                        for k in ("area", "floor", "name")}
            assert named_entities(e.text, home) == Home(
                slots_of["area"], slots_of["floor"], slots_of["name"]), e.text


def test_evaluation_homes_hold_their_commands_entities_and_unseen_distractors():
    examples = _split("test")[:40]
    built = homes(examples, "test", batch_size=16)
    assert len(built) == 3
    for start, home in zip(range(0, 40, 16), built, strict=True):
        for e in examples[start:start + 16]:
            for key in ("area", "floor", "name"):
                if key in e.slots:
                    assert str(e.slots[key]) in home.values(key)
        assert len(home.areas) >= 16 and len(home.names) >= 24
        assert not set(home.areas) & set(slots.area_pool("train"))


def test_home_json_names_mostly_unseen_rooms_and_devices():
    home = Home.load()
    train = slots._all_values("train")
    unseen = [v for v in home.areas + home.floors + home.names if v not in train]
    assert len(unseen) >= 0.8 * (len(home.areas) + len(home.floors) + len(home.names))
    assert {"nursery", "study"} <= set(home.areas)
    assert json.loads(json.dumps(home.areas)) == list(home.areas)


@pytest.mark.slow
@pytest.mark.xdist_group("robot_intent")
def test_constrained_actions_on_the_generation_export_always_parse(robot_exports):
    """The committed generation shadow through ONNX with the home grammar and with each
    command's grammar, on real held-out commands (unseen rooms and devices), greedy: every
    action is complete, parses, names a known intent with one of its slot sets, and uses
    only the home's entity values; with the command's grammar, every entity the command
    names (unless the action is ``none``)."""
    import runtime
    from examples.robot_intent.grammar import home_grammar

    schema = load_schema()
    model = runtime.load(robot_exports["generation-int8"], threads=1)
    examples = _split("test")[::16][:64]
    for batch, home in zip([examples[i:i + 16] for i in range(0, 64, 16)],
                           homes(examples, "test", batch_size=16), strict=True):
        prompts = [[{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": e.text}] for e in batch]
        results = model.generate(prompts, max_new_tokens=32, grammar=home_grammar(home, schema))
        per_command = [model.generate(p, max_new_tokens=32,
                                      grammar=command_grammar(e.text, home, schema))
                       for p, e in zip(prompts, batch, strict=True)]
        for e, result, own in zip(batch, results, per_command, strict=True):
            for r in (result, own):
                assert r.finish_reason == "grammar", (e.text, r)
                action = Action.parse(r.text)
                assert sorted(action.slots) in schema["intents"][action.intent]["slot_sets"]
                for key in ("area", "floor", "name"):
                    if key in action.slots:
                        assert action.slots[key] in home.values(key), (e.text, r.text)
            action, named = Action.parse(own.text), named_entities(e.text, home)
            if action.intent != "none":
                for value in named.areas + named.floors + named.names:
                    assert value in action.slots.values(), (e.text, own.text)
