"""The robot-intent data split: deterministic, template-disjoint, complete, parseable."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from examples.robot_intent import data, slots
from examples.robot_intent.metrics import classification_scores, generation_scores


@pytest.fixture(scope="module")
def splits():
    return data.build_splits()


def test_split_is_deterministic(splits):
    again = data.build_splits()
    for name in data.SPLITS:
        assert [(e.text, e.intent, e.template) for e in again[name]] == [
            (e.text, e.intent, e.template) for e in splits[name]
        ]


def test_all_35_intents_are_in_train_and_test(splits):
    labels = data.labels_of(splits)
    assert len(labels) == 35
    assert {"HassTurnOn", "HassLightSet", "HassStartTimer", "HassGetWeather"} <= set(labels)
    assert {e.intent for e in splits["test"]} == set(labels)


def test_sizes_and_caps(splits):
    for name in data.SPLITS:
        counts = Counter(e.intent for e in splits[name])
        assert max(counts.values()) <= data.CAPS[name]
    assert len(splits["train"]) > 7000
    assert len(splits["test"]) > 900
    assert len(splits["validation"]) > 400


def test_test_templates_are_held_out_when_an_intent_has_several(splits):
    train_templates = {e.template for e in splits["train"]}
    shared = {e.template for e in splits["test"]} & train_templates
    # only intents with a single template may share it (they are split by slot values)
    for template in shared:
        intent = template.split("/")[0]
        assert len({e.template for e in splits["train"] if e.intent == intent}) == 1
        assert len({e.template for e in splits["test"] if e.intent == intent}) == 1
    assert len(shared) <= 2


def test_no_command_text_leaks_from_train_to_evaluation(splits):
    train_texts = {e.text for e in splits["train"]}
    assert not train_texts & {e.text for e in splits["test"]}
    assert not train_texts & {e.text for e in splits["validation"]}
    assert not {e.text for e in splits["test"]} & {e.text for e in splits["validation"]}


def test_held_out_areas_and_names_appear_only_outside_train(splits):
    held = set(slots.AREAS_HELDOUT) | set(slots.FLOORS_HELDOUT)
    held |= {n for _, heldout in slots.NAMES.values() for n in heldout}
    train_values = {str(v) for e in splits["train"] for v in e.slots.values()}
    assert not held & train_values
    test_values = {str(v) for e in splits["test"] for v in e.slots.values()}
    assert {"nursery", "reading lamp"} & test_values


@pytest.mark.parametrize(
    "intent, slot_values, expected",
    [
        ("HassLightSet", {"brightness": 40, "area": "kitchen"}, "HassLightSet area=kitchen brightness=40"),
        ("HassTurnOn", {"name": "desk lamp"}, 'HassTurnOn name="desk lamp"'),
        ("HassNevermind", {}, "HassNevermind"),
        ("HassClimateSetTemperature", {"temperature": 21.0}, "HassClimateSetTemperature temperature=21"),
    ],
)
def test_action_format_is_sorted_and_quoted(intent, slot_values, expected):
    assert data.format_action(intent, slot_values) == expected
    name, parsed = data.parse_action(expected)
    assert name == intent
    assert parsed == data.normalize_slots(slot_values)


def test_every_action_parses_back(splits):
    for e in splits["train"] + splits["test"]:
        name, parsed = data.parse_action(e.action)
        assert name == e.intent
        assert parsed == data.normalize_slots(e.slots)


def test_parse_action_rejects_bad_text():
    with pytest.raises(ValueError, match="key=value"):
        data.parse_action("HassTurnOn kitchen")
    with pytest.raises(ValueError, match="Empty"):
        data.parse_action("  ")


def test_written_files_and_labels(tmp_path, splits):
    small = {name: rows[:20] for name, rows in splits.items()}
    small["train"] = splits["train"]  # labels come from train
    data.write_splits(tmp_path, small)
    labels = json.loads((tmp_path / "labels.json").read_text())["labels"]
    assert len(labels) == 35 and labels == sorted(labels)
    gen = [json.loads(x) for x in (tmp_path / "test.generation.jsonl").read_text().splitlines()]
    assert gen[0]["prompt"][0] == {"role": "system", "content": data.SYSTEM_PROMPT}
    assert gen[0]["prompt"][1] == {"role": "user", "content": small["test"][0].text}
    assert gen[0]["completion"] == [{"role": "assistant", "content": small["test"][0].action}]
    cls = [json.loads(x) for x in (tmp_path / "test.classification.jsonl").read_text().splitlines()]
    assert labels[cls[0]["label"]] == small["test"][0].intent
    assert [e.text for e in data.read_split(tmp_path, "test")] == [e.text for e in small["test"]]
    with pytest.raises(FileExistsError, match="--overwrite"):
        data.write_splits(tmp_path, small)


def test_metrics_on_known_values():
    s = classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "c"])
    assert s["accuracy"] == 0.75
    # F1: a = 2/3 (p 1, r .5), b = 2/3 (p .5, r 1), c = 1
    assert s["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    g = generation_scores(
        ["HassTurnOn", "HassTurnOff", "HassLightSet"],
        [{"name": "tv"}, {}, {"brightness": 5}],
        ['HassTurnOn name=tv', "HassTurnOf", "HassLightSet brightness=6"],
        {"HassTurnOn", "HassTurnOff", "HassLightSet"},
    )
    assert g["intent_exact_match"] == pytest.approx(2 / 3)
    assert g["action_exact_match"] == pytest.approx(1 / 3)
    assert g["invalid_intent_rate"] == pytest.approx(1 / 3)
