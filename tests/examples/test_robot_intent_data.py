"""The robot-intent data split: deterministic, template-disjoint, complete, parseable."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from examples.robot_intent import action, data, out_of_scope, slots
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


def test_all_35_intents_and_the_no_action_label_are_in_train_and_test(splits):
    labels = data.labels_of(splits)
    assert len(labels) == 36 and "none" in labels
    assert {"HassTurnOn", "HassLightSet", "HassStartTimer", "HassGetWeather"} <= set(labels)
    assert {e.intent for e in splits["test"]} == set(labels)


def test_sizes_and_caps(splits):
    for name in data.SPLITS:
        counts = Counter(e.intent for e in splits[name])
        assert counts.pop("none") == data.OUT_OF_SCOPE_CAPS[name]
        assert max(counts.values()) <= data.CAPS[name]
    assert len(splits["train"]) > 8000
    assert len(splits["test"]) > 1100
    assert len(splits["validation"]) > 500


def test_test_templates_are_held_out_unless_no_slot_signature_would_stay_in_train(splits):
    intents = data.load_intents()
    templates = data._templates(intents)
    train_templates = {e.template for e in splits["train"]}
    test_templates = {e.template for e in splits["test"]}
    shared_intents = {t.split("/")[0] for t in test_templates & train_templates}
    for intent in shared_intents - {"none"}:
        signatures = [data._signature(entry) for entry in templates[intent]]
        # nothing could be held out: every template's signature is unique
        assert len(set(signatures)) == len(signatures), intent
    held = {t.split("/")[0] for t in test_templates - train_templates}
    assert {"HassTurnOn", "HassLightSet", "HassGetState", "HassStartTimer"} <= held
    # every held-out template's signature is trained on for its intent
    by_id = {entry[0]: entry for entries in templates.values() for entry in entries}
    trained = {(t.split("/")[0], data._signature(by_id[t])) for t in train_templates
               if t in by_id}
    for template in test_templates - train_templates:
        if template in by_id:
            assert (template.split("/")[0], data._signature(by_id[template])) in trained


def test_out_of_scope_phrasings_are_held_out_for_test(splits):
    train = {e.template for e in splits["train"] if e.intent == "none"}
    test = {e.template for e in splits["test"] if e.intent == "none"}
    assert len(test) >= 20 and not train & test
    assert all(e.action == "none" and not e.slots for e in splits["test"] if e.intent == "none")
    categories = {out_of_scope.category_of(t.split("/", 1)[1]) for t in test}
    assert categories == set(out_of_scope.TEMPLATES)


def test_training_only_out_of_scope_phrasings_are_trained_on_and_never_evaluated(splits):
    extra = {f"none/{t}" for ts in out_of_scope.TRAIN_ONLY.values() for t in ts}
    assert len(extra) >= 60
    used = {e.template for e in splits["train"]} & extra
    assert used == extra  # every phrasing is drawn at least once
    for split in ("validation", "test"):
        assert not extra & {e.template for e in splits[split]}
    # the held-out phrasings are v4's: none is a training-only phrasing as well
    held = {t for ts in out_of_scope.TEMPLATES.values() for t in ts}
    assert len(held) > 100 and not held & {t.split("/", 1)[1] for t in extra}
    assert out_of_scope.category_of("pack my lunch") == "chore"


def test_no_command_text_leaks_from_train_to_evaluation(splits):
    train_texts = {e.text for e in splits["train"]}
    assert not train_texts & {e.text for e in splits["test"]}
    assert not train_texts & {e.text for e in splits["validation"]}
    assert not {e.text for e in splits["test"]} & {e.text for e in splits["validation"]}


def test_entity_and_number_values_of_evaluation_never_occur_in_training(splits):
    def values(split, keys):
        return {str(v) for e in splits[split] for k, v in e.slots.items() if k in keys}

    entity = set(data.ENTITY_SLOTS)
    train = values("train", entity)
    for split in ("validation", "test"):
        held = values(split, entity)
        assert len(held) > 300 and not held & train
    assert len(train) > 3000  # a large pool: names must be copied, not recalled
    # hand-picked held-out rooms never occur inside any training value
    for room in slots.ROOMS_TEST + slots.ROOMS_VALIDATION:
        assert not any(room in value for value in train), room
    assert {"nursery", "study"} <= values("test", {"area"})
    # large number ranges: evaluation numbers are never training numbers of the same slot
    # (numbers that fixed word lists give, e.g. "maximum" -> 100, are shared)
    from hassil.intents import TextSlotList

    fixed = {str(v.value_out) for lst in data.load_intents().slot_lists.values()
             if isinstance(lst, TextSlotList) for v in lst.values}
    for key in ("brightness", "temperature", "hours", "minutes", "volume_level"):
        train_numbers = values("train", {key}) - fixed
        test_numbers = values("test", {key}) - fixed
        assert test_numbers and not train_numbers & test_numbers, key


def test_slot_pools_are_disjoint_and_large():
    for split in ("validation", "test"):
        assert not set(slots.area_pool(split)) & set(slots.area_pool("train"))
        assert not set(slots.floor_pool(split)) & set(slots.floor_pool("train"))
        for domain in slots.DOMAINS:
            assert not set(slots.name_pool(domain, split)) & set(slots.name_pool(domain, "train"))
    assert len(slots.area_pool("train")) > 10_000
    assert sum(len(slots.name_pool(d, "train")) for d in slots.DOMAINS) > 20_000


def test_schema_lists_each_intents_slot_sets_and_kinds(splits):
    schema = data.schema_of(splits)
    turn_on = schema["intents"]["HassTurnOn"]
    assert ["area", "domain"] in turn_on["slot_sets"] and ["name"] in turn_on["slot_sets"]
    assert turn_on["slots"]["area"] == "entity:area"
    assert "light" in turn_on["slots"]["domain"]["enum"]
    assert schema["intents"]["HassLightSet"]["slots"]["brightness"] == {"number": True, "enum": []}
    step = schema["intents"]["HassSetVolumeRelative"]["slots"]["volume_step"]
    assert step["number"] and {"up", "down"} <= set(step["enum"])
    assert schema["intents"]["none"] == {"slot_sets": [[]], "slots": {}}
    for e in splits["test"]:  # every test action fits the schema
        intent, slot_values = action.parse_action(e.action)
        assert sorted(slot_values) in schema["intents"][intent]["slot_sets"]


@pytest.mark.parametrize(
    "intent, slot_values, expected",
    [
        ("HassLightSet", {"brightness": 40, "area": "kitchen"},
         "HassLightSet area: kitchen; brightness: 40"),
        ("HassTurnOn", {"name": "desk lamp"}, "HassTurnOn name: desk lamp"),
        ("HassSetVolumeRelative", {"volume_step": "-5"}, "HassSetVolumeRelative volume_step: -5"),
        ("HassSetVolumeRelative", {"volume_step": "up"}, "HassSetVolumeRelative volume_step: up"),
        ("HassNevermind", {}, "HassNevermind"),
        ("HassClimateSetTemperature", {"temperature": 21.0},
         "HassClimateSetTemperature temperature: 21"),
        ("HassTurnOn", {"area": "eva's roof deck", "domain": "light"},
         "HassTurnOn area: eva's roof deck; domain: light"),
    ],
)
def test_action_format_is_sorted_and_bare(intent, slot_values, expected):
    assert action.format_action(intent, slot_values) == expected
    name, parsed = action.parse_action(expected)
    assert name == intent
    assert parsed == action.normalize_slots(slot_values)


def test_every_action_parses_back(splits):
    for e in splits["train"] + splits["test"]:
        name, parsed = action.parse_action(e.action)
        assert name == e.intent
        assert parsed == action.normalize_slots(e.slots)


@pytest.mark.parametrize("text", ["HassTurnOn kitchen", "HassTurnOn area kitchen",
                                  "HassTurnOn area: kitchen; lamp", "HassTurnOn area: ",
                                  "HassTurnOn area:kitchen", "HassTurnOn : kitchen",
                                  "HassTurnOn area: kitchen;"])
def test_parse_action_rejects_parts_that_are_not_key_value(text):
    with pytest.raises(ValueError, match="is not 'key: value'"):
        action.parse_action(text)


def test_parse_action_rejects_empty_text_and_repeated_keys():
    with pytest.raises(ValueError, match="no action"):
        action.parse_action("  ")
    with pytest.raises(ValueError, match="appears twice"):
        action.parse_action("HassTurnOn area: den; area: hall")


@pytest.mark.parametrize("value", ["lamp; tv", "lamp\ntv", "", " lamp", "lamp "])
def test_format_refuses_values_parse_could_not_give_back(value):
    with pytest.raises(ValueError, match="slot value"):
        action.format_action("HassTurnOn", {"name": value})


def test_committed_data_is_what_the_code_writes(splits):
    from examples.robot_intent.evaluate import DATA

    for name in data.SPLITS:
        committed = data.read_split(DATA, name)
        assert [(e.text, e.intent, e.slots, e.template) for e in committed] == [
            (e.text, e.intent, e.slots, e.template) for e in splits[name]], name


def test_values_are_tokenized_as_in_the_command():
    """The reason for the format: a copied name is the same tokens as in the command."""
    from tokenizers import Tokenizer

    from shadow_edge.assets import smollm2_hf_dir

    tok = Tokenizer.from_file(str(smollm2_hf_dir() / "tokenizer.json"))
    for command, slot_values in [("unpause in my larder", {"area": "larder"}),
                                 ("return the roof deck cleaning robot to base",
                                  {"name": "roof deck cleaning robot"}),
                                 ("make eva's roof deck warmer", {"area": "eva's roof deck"})]:
        said = tok.encode(command).ids
        written = tok.encode(action.format_action("HassX", slot_values)).ids
        value = tok.encode(" " + next(iter(slot_values.values()))).ids
        assert _contains(said, value) and _contains(written, value)


def _contains(seq: list[int], part: list[int]) -> bool:
    return any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


def test_written_files_and_labels(tmp_path, splits):
    small = {name: rows[:20] for name, rows in splits.items()}
    small["train"] = splits["train"]  # labels come from train
    data.write_splits(tmp_path, small)
    labels = json.loads((tmp_path / "labels.json").read_text())["labels"]
    assert len(labels) == 36 and labels == sorted(labels)
    assert json.loads((tmp_path / "schema.json").read_text()) == data.schema_of(small)
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
        ["HassTurnOn name: tv", "HassTurnOf", "HassLightSet brightness: 6"],
        {"HassTurnOn", "HassTurnOff", "HassLightSet"},
    )
    assert g["intent_exact_match"] == pytest.approx(2 / 3)
    assert g["action_exact_match"] == pytest.approx(1 / 3)
    assert g["invalid_intent_rate"] == pytest.approx(1 / 3)


def test_slot_scores_and_out_of_scope_rates_on_known_values():
    g = generation_scores(
        ["HassTurnOn", "HassTurnOn", "none", "none", "HassLightSet"],
        [{"area": "nursery"}, {"name": "desk lamp"}, {}, {}, {"area": "attic", "brightness": 5}],
        ["HassTurnOn area: nursery", "HassTurnOn name: lamp", "none", "HassTurnOn area: den",
         "none"],
        {"HassTurnOn", "HassLightSet", "none"},
    )
    # area: right once (nursery), wrong once (den predicted for a none command), missed once
    assert g["slots"]["area"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert g["slots"]["name"]["precision"] == 0.0 and g["slots"]["name"]["support"] == 1
    assert g["slots"]["brightness"]["recall"] == 0.0
    assert g["out_of_scope_n"] == 2
    assert g["false_accept_rate"] == 0.5  # "none" #2 was answered HassTurnOn
    assert g["false_reject_rate"] == pytest.approx(1 / 3)  # HassLightSet answered none
    assert g["in_scope_accuracy"] == pytest.approx(2 / 3)
    c = classification_scores(["a", "none"], ["a", "a"])
    assert c["false_accept_rate"] == 1.0 and c["false_reject_rate"] == 0.0
