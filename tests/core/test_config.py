"""ShadowConfig: shadow-peft 0.1.x fields and defaults, JSON I/O, validation."""

from __future__ import annotations

import json

import pytest

from shadow_edge import CheckpointError, ConfigError, ShadowConfig

ORIGINAL_FIELDS = {
    "num_shadow_layers": 1,
    "injection_hidden_size": 16,
    "gate_hidden_size": 10,
    "alpha": 0.1,
    "dropout": 0.2,
    "shadow_intermediate_size": None,
    "shadow_num_attention_heads": None,
    "shadow_num_key_value_heads": None,
    "shadow_head_dim": None,
    "modules_to_save": [],
}


def test_defaults_match_shadow_peft_0_1():
    data = ShadowConfig().to_dict()
    assert {k: data[k] for k in ORIGINAL_FIELDS} == ORIGINAL_FIELDS


def test_our_additions_default_to_none():
    data = ShadowConfig().to_dict()
    for key in ("base_model_name_or_path", "task_type", "num_labels", "id2label",
                "shadow_model_config", "shadow_embeddings_shared"):
        assert data[key] is None


def test_json_has_sorted_keys_and_round_trips(tmp_path):
    config = ShadowConfig(num_shadow_layers=2, injection_hidden_size=8, gate_hidden_size=4,
                          alpha=0.5, dropout=0.0, modules_to_save=["lm_head"],
                          task_type="SEQ_CLS", num_labels=2, id2label={0: "no", 1: "yes"})
    path = config.save_pretrained(tmp_path)
    assert path.name == "shadow_config.json"
    text = path.read_text()
    keys = list(json.loads(text))
    assert keys == sorted(keys)
    assert ShadowConfig.from_pretrained(tmp_path) == config


def test_id2label_keys_become_ints_after_json(tmp_path):
    ShadowConfig(id2label={0: "a", 1: "b"}).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "shadow_config.json").read_text())["id2label"] == {"0": "a", "1": "b"}
    assert ShadowConfig.from_pretrained(tmp_path).id2label == {0: "a", 1: "b"}


def test_unknown_keys_are_ignored(tmp_path):
    (tmp_path / "shadow_config.json").write_text(json.dumps({**ORIGINAL_FIELDS, "alpha": 0.3, "future_key": 7}))
    assert ShadowConfig.from_pretrained(tmp_path).alpha == 0.3


def test_reads_an_original_file_with_only_the_original_keys(tmp_path):
    (tmp_path / "shadow_config.json").write_text(json.dumps(ORIGINAL_FIELDS))
    config = ShadowConfig.from_pretrained(tmp_path)
    assert config.shadow_model_config is None and config.gate_hidden_size == 10


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_shadow_layers", 0),
        ("injection_hidden_size", -1),
        ("gate_hidden_size", 2.5),
        ("num_shadow_layers", True),
        ("alpha", float("nan")),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("shadow_head_dim", 0),
        ("modules_to_save", "lm_head"),
        ("modules_to_save", ["decoder"]),
        ("task_type", "TOKEN_CLS"),
        ("id2label", {"x": "a"}),
        ("problem_type", "multi_label"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        ShadowConfig(**{field: value})


def test_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="shadow_config.json"):
        ShadowConfig.from_pretrained(tmp_path)


def test_corrupt_json_raises_checkpoint_error(tmp_path):
    (tmp_path / "shadow_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ShadowConfig.from_pretrained(tmp_path)


def test_null_modules_to_save_means_none(tmp_path):
    (tmp_path / "shadow_config.json").write_text('{"modules_to_save": null, "num_shadow_layers": 2}')
    config = ShadowConfig.from_pretrained(tmp_path)
    assert config.modules_to_save == [] and config.num_shadow_layers == 2
