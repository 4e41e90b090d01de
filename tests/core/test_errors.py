"""Bad input raises a clear error of the shadow-edge family, naming the problem and the fix."""

from __future__ import annotations

import json

import pytest
import torch

from shadow_edge import (
    CheckpointError,
    ConfigError,
    ShadowConfig,
    ShadowEdgeError,
    ShadowForCausalLM,
    ShadowPeftModel,
    get_shadow_model,
    load_shadow_checkpoint,
)
from tests.core.shadow_helpers import causal_base, token_batch


def saved_checkpoint(folder, arch="llama", **config):
    model = ShadowForCausalLM(get_shadow_model(causal_base(arch), ShadowConfig(**config)))
    model.save_pretrained(folder)
    return model


def test_base_with_one_layer():
    with pytest.raises(ConfigError) as info:
        get_shadow_model(causal_base("qwen3", num_hidden_layers=1), ShadowConfig())
    assert "has 1" in str(info.value) and "deeper base" in str(info.value)
    assert isinstance(info.value, ShadowEdgeError) and info.value.exit_code == 2


@pytest.mark.parametrize("missing", ["shadow_adapter.safetensors", "shadow_config.json"])
def test_checkpoint_folder_with_a_missing_file(tmp_path, missing):
    saved_checkpoint(tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(CheckpointError, match=missing) as info:
        ShadowForCausalLM.from_pretrained(causal_base("llama"), tmp_path)
    assert "save_pretrained" in str(info.value)
    assert info.value.exit_code == 1


def test_declared_head_missing_from_the_modules_file(tmp_path):
    saved_checkpoint(tmp_path, modules_to_save=["shadow_lm_head"])
    (tmp_path / "shadow_modules.safetensors").unlink()
    with pytest.raises(CheckpointError, match="shadow_lm_head"):
        ShadowForCausalLM.from_pretrained(causal_base("llama"), tmp_path)


def test_weights_that_do_not_fit_the_base(tmp_path):
    saved_checkpoint(tmp_path, arch="qwen3")
    with pytest.raises(CheckpointError) as info:
        ShadowPeftModel.from_pretrained(causal_base("qwen3", hidden_size=48), tmp_path)
    message = str(info.value)
    assert "shape" in message and "(3, 64, 16)" in message and "(3, 48, 16)" in message
    assert "trained with" in message


def test_unknown_inference_mode():
    model = ShadowForCausalLM(get_shadow_model(causal_base("llama"), ShadowConfig()))
    with pytest.raises(ConfigError) as info:
        model.set_inference_mode("edge")
    assert "'edge'" in str(info.value) and "shadow_only" in str(info.value)


def test_config_naming_a_model_type_outside_transformers(tmp_path):
    saved_checkpoint(tmp_path)
    config = json.loads((tmp_path / "shadow_config.json").read_text())
    config["shadow_model_config"] = {"model_type": "evil_remote_model", "hidden_size": 64}
    (tmp_path / "shadow_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="shadow_model="):
        load_shadow_checkpoint(tmp_path, base=causal_base("llama"))


def test_projected_config_naming_a_class_outside_transformers(tmp_path):
    from shadow_edge import AutoModelForCausalLMWithHiddenProjection

    base = causal_base("qwen3")
    small = causal_base("qwen3", hidden_size=32, num_hidden_layers=1)
    projected = AutoModelForCausalLMWithHiddenProjection.wrap(
        shadow_model=small, shadow_hidden_projection=torch.nn.Linear(32, 64, bias=False), lm_head=base.lm_head)
    projected.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["shadow_model_class"] = "collections:OrderedDict"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="trust_remote_code=True"):
        AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path)


def test_explicit_shadow_needs_input_ids():
    model = get_shadow_model(causal_base("llama"), ShadowConfig(),
                             shadow_model=causal_base("llama", hidden_size=32, num_hidden_layers=1))
    with pytest.raises(ValueError, match="input_ids"):
        model.shadow_hidden_states(inputs_embeds=torch.zeros(1, 3, 64))


def test_generate_rejects_a_1d_prompt():
    model = ShadowForCausalLM(get_shadow_model(causal_base("llama"), ShadowConfig()))
    with pytest.raises(ValueError, match="batch"):
        model.generate(token_batch(1, 4)[0], max_new_tokens=2)


def test_checkpoint_of_the_other_task_names_the_right_class(tmp_path):
    from shadow_edge import ShadowForSequenceClassification
    from tests.core.shadow_helpers import seq_cls_base

    saved_checkpoint(tmp_path / "causal")
    with pytest.raises(CheckpointError, match="ShadowForCausalLM.from_pretrained") as info:
        ShadowForSequenceClassification.from_pretrained(seq_cls_base("llama"), tmp_path / "causal")
    assert "CAUSAL_LM" in str(info.value) and "ShadowPeftModel.from_pretrained" in str(info.value)
    ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig())).save_pretrained(
        tmp_path / "cls")
    with pytest.raises(CheckpointError, match="ShadowForSequenceClassification.from_pretrained"):
        load_shadow_checkpoint(tmp_path / "cls", base=causal_base("llama"), task="text-generation")
    # the adapter alone still loads for another task
    peft = ShadowPeftModel.from_pretrained(seq_cls_base("llama"), tmp_path / "causal")
    assert ShadowForSequenceClassification(peft)(input_ids=token_batch(1, 4)).logits.shape == (1, 3)


def test_a_dict_instead_of_a_shadow_config():
    with pytest.raises(ConfigError, match="ShadowConfig.from_dict"):
        get_shadow_model(causal_base("llama"), {"num_shadow_layers": 1})


def test_wrapping_a_shadow_model_again():
    peft = get_shadow_model(causal_base("llama"), ShadowConfig())
    for wrapped in (peft, ShadowForCausalLM(peft)):
        with pytest.raises(ConfigError, match="already carries a shadow adapter"):
            get_shadow_model(wrapped, ShadowConfig())


def test_the_exporter_errors_live_in_the_exporters_and_the_package_re_exports_them():
    import exporters
    import exporters.errors
    import shadow_edge

    assert shadow_edge.ExportError is exporters.errors.ExportError is exporters.ExportError
    assert shadow_edge.ParityError is exporters.errors.ParityError
    assert issubclass(shadow_edge.ParityError, shadow_edge.ExportError)
    assert issubclass(shadow_edge.ExportError, ShadowEdgeError)
    assert shadow_edge.ParityError("gate failed", {"passed": False}).report == {"passed": False}
    with pytest.raises(AttributeError, match="ManifestError"):  # nothing raised it: removed
        shadow_edge.ManifestError  # noqa: B018
