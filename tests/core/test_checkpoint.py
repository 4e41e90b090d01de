"""Checkpoint files (FORMAT.md), strict loading, Hub resolution and push, load_shadow_checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from shadow_edge import (
    CheckpointError,
    ShadowConfig,
    ShadowForCausalLM,
    ShadowForSequenceClassification,
    ShadowPeftModel,
    get_shadow_model,
    load_shadow_checkpoint,
    prepare_shadow_model,
)
from shadow_edge import checkpoint as checkpoint_module
from tests.core.shadow_helpers import (
    causal_base,
    clone_base,
    randomize,
    randomize_adapter,
    seq_cls_base,
    token_batch,
)
from tests.tiny_models import ARCHITECTURES


def trained_causal(arch="qwen3", shadow_model=None, **config):
    base = causal_base(arch)
    model = ShadowForCausalLM(get_shadow_model(base, ShadowConfig(dropout=0.0, **config), shadow_model=shadow_model))
    randomize_adapter(model.peft_model)
    return model.eval()


def outputs(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.logits, out.shadow_logits


def test_files_and_key_prefixes_follow_format(tmp_path):
    model = trained_causal("qwen3")
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shadow_adapter.safetensors", "shadow_config.json"]
    shapes = {k: tuple(v.shape) for k, v in load_file(tmp_path / "shadow_adapter.safetensors").items()}
    assert shapes["shadow_injection_model.injection_downs"] == (3, 64, 16)
    assert shapes["shadow_injection_model.injection_ups"] == (3, 16, 64)
    assert shapes["shadow_update_model.update_gates.2.0.weight"] == (10, 64)
    assert shapes["shadow_update_model.update_gates.2.2.weight"] == (64, 10)
    assert shapes["shadow_update_model.update_transforms.0.0.weight"] == (10, 64)
    assert shapes["shadow_update_model.update_transforms.0.3.weight"] == (64, 10)
    assert shapes["shadow_update_model.hidden_norm.weight"] == (64,)
    assert shapes["shadow_update_model.hidden_norm.bias"] == (64,)
    assert "shadow_model.layers.0.self_attn.q_proj.weight" in shapes and "shadow_model.norm.weight" in shapes
    assert not any("embed_tokens" in k for k in shapes)
    assert not any(k.startswith("shadow_hidden_projection") for k in shapes)
    config = json.loads((tmp_path / "shadow_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM" and config["shadow_embeddings_shared"] is True


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_save_reload_gives_identical_outputs(tmp_path, arch):
    model = trained_causal(arch)
    ids = token_batch()
    expected = outputs(model, ids)
    model.save_pretrained(tmp_path)
    loaded = ShadowForCausalLM.from_pretrained(clone_base(model.peft_model.base_model), tmp_path)
    for got, want in zip(outputs(loaded, ids), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training


def test_peft_model_save_reload_and_is_trainable(tmp_path):
    model = trained_causal("llama").peft_model
    model.save_pretrained(tmp_path)
    ids = token_batch()
    frozen = ShadowPeftModel.from_pretrained(clone_base(model.base_model), tmp_path, is_trainable=False)
    torch.testing.assert_close(frozen(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
    assert frozen.get_nb_trainable_parameters()[0] == 0
    trainable = ShadowPeftModel.from_pretrained(clone_base(model.base_model), tmp_path, is_trainable=True)
    assert trainable.get_nb_trainable_parameters()[0] == model.get_nb_trainable_parameters()[0]
    assert trainable.training and not any(p.requires_grad for p in trainable.base_model.parameters())


def explicit_shadow(arch="qwen3", hidden=32, layers=2, seed=7):
    return causal_base(arch, hidden_size=hidden, num_hidden_layers=layers, seed=seed)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_explicit_shadow_with_projection_reloads_with_shadow_model_or_from_its_config(tmp_path, arch):
    model = trained_causal(arch, shadow_model=explicit_shadow(arch))
    keys = load_file_after_save(model, tmp_path)
    embedding = "wte" if arch == "gpt2" else "embed_tokens"
    assert "shadow_hidden_projection.weight" in keys and f"shadow_model.{embedding}.weight" in keys
    saved = json.loads((tmp_path / "shadow_config.json").read_text())
    assert saved["shadow_model_config"]["model_type"] == arch and saved["shadow_embeddings_shared"] is False
    ids = token_batch()
    expected = outputs(model, ids)
    base = model.peft_model.base_model
    with_shadow = ShadowForCausalLM.from_pretrained(clone_base(base), tmp_path, shadow_model=explicit_shadow(arch, seed=99))
    rebuilt = ShadowForCausalLM.from_pretrained(clone_base(base), tmp_path)
    for loaded in (with_shadow, rebuilt):
        for got, want in zip(outputs(loaded, ids), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def load_file_after_save(model, folder):
    model.save_pretrained(folder)
    return set(load_file(folder / "shadow_adapter.safetensors"))


def test_explicit_shadow_with_shared_embeddings_round_trips(tmp_path):
    shadow = prepare_shadow_model(causal_base("qwen3", num_hidden_layers=1, seed=8), remove_embed_tokens=True)
    model = trained_causal("qwen3", shadow_model=shadow)
    keys = load_file_after_save(model, tmp_path)
    assert not any("embed_tokens" in k for k in keys)
    ids = token_batch()
    # passing a shadow that still has its embeddings: they are removed to match the checkpoint
    loaded = ShadowForCausalLM.from_pretrained(
        clone_base(model.peft_model.base_model), tmp_path, shadow_model=causal_base("qwen3", num_hidden_layers=1))
    assert loaded.peft_model.embeddings_shared
    for got, want in zip(outputs(loaded, ids), outputs(model, ids)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("modules_to_save", [[], ["shadow_classifier_head"]])
def test_seq_cls_heads_are_saved_and_restored(tmp_path, modules_to_save):
    base = seq_cls_base("qwen3")
    model = ShadowForSequenceClassification(
        get_shadow_model(base, ShadowConfig(dropout=0.0, modules_to_save=modules_to_save))).eval()
    randomize_adapter(model.peft_model)
    randomize(model.classifier_head, seed=5)
    randomize(model.shadow_classifier_head, seed=6)
    model.save_pretrained(tmp_path)
    heads = set(load_file(tmp_path / "shadow_modules.safetensors"))
    expected_heads = {"shadow_classifier_head.weight"} | (set() if modules_to_save else {"classifier_head.weight"})
    assert heads == expected_heads
    saved = json.loads((tmp_path / "shadow_config.json").read_text())
    assert saved["task_type"] == "SEQ_CLS" and saved["num_labels"] == 3
    assert saved["id2label"] == {"0": "label_0", "1": "label_1", "2": "label_2"}
    ids = token_batch(2, 5)
    fresh = seq_cls_base("qwen3")  # same backbone weights (seed 0); heads come from the file
    loaded = ShadowForSequenceClassification.from_pretrained(fresh, tmp_path)
    mask = torch.ones_like(ids)
    torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).shadow_logits,
                               model(input_ids=ids, attention_mask=mask).shadow_logits, rtol=0, atol=0)
    if not modules_to_save:
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits,
                                   model(input_ids=ids, attention_mask=mask).logits, rtol=0, atol=0)


def test_missing_adapter_file_raises(tmp_path):
    trained_causal().save_pretrained(tmp_path)
    (tmp_path / "shadow_adapter.safetensors").unlink()
    with pytest.raises(CheckpointError, match="Missing shadow_adapter.safetensors"):
        ShadowForCausalLM.from_pretrained(causal_base("qwen3"), tmp_path)


def test_missing_config_file_raises(tmp_path):
    trained_causal().save_pretrained(tmp_path)
    (tmp_path / "shadow_config.json").unlink()
    with pytest.raises(CheckpointError, match="shadow_config.json"):
        ShadowPeftModel.from_pretrained(causal_base("qwen3"), tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        ShadowPeftModel.from_pretrained(causal_base("qwen3"), tmp_path / "nope")


def test_corrupt_safetensors_raises(tmp_path):
    trained_causal().save_pretrained(tmp_path)
    (tmp_path / "shadow_adapter.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        ShadowPeftModel.from_pretrained(causal_base("qwen3"), tmp_path)


def test_shapes_that_do_not_fit_the_base_raise_naming_key_and_shapes(tmp_path):
    trained_causal("qwen3").save_pretrained(tmp_path)
    wider = causal_base("qwen3", hidden_size=32)
    with pytest.raises(CheckpointError) as info:
        ShadowPeftModel.from_pretrained(wider, tmp_path)
    message = str(info.value)
    assert "(3, 64, 16)" in message and "(3, 32, 16)" in message
    assert "injection" in message or "shadow_model" in message
    assert "base model" in message


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    trained_causal("llama").save_pretrained(tmp_path)
    path = tmp_path / "shadow_adapter.safetensors"
    state = load_file(path)
    state.pop("shadow_update_model.hidden_norm.bias")
    state["shadow_update_model.extra"] = torch.zeros(1)
    save_file(state, path)
    with pytest.raises(CheckpointError) as info:
        ShadowPeftModel.from_pretrained(causal_base("llama"), tmp_path)
    assert "shadow_update_model.hidden_norm.bias" in str(info.value)
    assert "shadow_update_model.extra" in str(info.value)


def test_deeper_base_reports_missing_slots(tmp_path):
    trained_causal("llama").save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="update_gates.3"):
        ShadowPeftModel.from_pretrained(causal_base("llama", num_hidden_layers=5), tmp_path)


def test_modules_of_the_other_task_raise(tmp_path):
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig()))
    model.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="saved from a SEQ_CLS wrapper"):
        ShadowForCausalLM.from_pretrained(causal_base("llama"), tmp_path)
    # a file without task_type (as shadow-peft 0.1.x writes) is caught by its heads
    config = json.loads((tmp_path / "shadow_config.json").read_text())
    del config["task_type"]
    (tmp_path / "shadow_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="classifier_head"):
        ShadowForCausalLM.from_pretrained(causal_base("llama"), tmp_path)


def test_hub_id_with_revision_resolves_through_snapshot_download(tmp_path, monkeypatch):
    import huggingface_hub

    trained_causal().save_pretrained(tmp_path)
    calls = []

    def fake_snapshot_download(**kwargs):
        calls.append(kwargs)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    folder = checkpoint_module.resolve_checkpoint_dir("my-org/my-adapter@v1.0")
    assert folder == tmp_path
    assert calls[0]["repo_id"] == "my-org/my-adapter" and calls[0]["revision"] == "v1.0"
    assert set(calls[0]["allow_patterns"]) == {"shadow_config.json", "shadow_adapter.safetensors",
                                               "shadow_modules.safetensors"}
    model = ShadowPeftModel.from_pretrained(causal_base("qwen3"), "my-org/my-adapter")
    assert calls[1]["revision"] is None and isinstance(model, ShadowPeftModel)


def test_hub_failure_becomes_checkpoint_error(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs):
        raise LocalEntryNotFoundError("offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="Hugging Face Hub") as info:
        checkpoint_module.resolve_checkpoint_dir("org/name")
    assert "'org/name' is not a local folder" in str(info.value)  # a typo in a relative path


def test_push_to_hub_uploads_the_checkpoint_files(monkeypatch):
    import huggingface_hub

    uploaded = {}

    class FakeApi:
        def __init__(self, token=None):
            uploaded["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            uploaded["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, *, repo_id, folder_path, commit_message, revision, create_pr):
            from pathlib import Path

            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["upload"] = (repo_id, commit_message, revision, create_pr)
            return type("Info", (), {"commit_url": "https://hub/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig()))
    url = model.push_to_hub("org/adapter", commit_message="Add adapter", private=True, token="hf_x")
    assert url == "https://hub/commit/1"
    assert uploaded["create"] == ("org/adapter", True, True) and uploaded["token"] == "hf_x"
    assert uploaded["files"] == ["shadow_adapter.safetensors", "shadow_config.json", "shadow_modules.safetensors"]
    assert uploaded["upload"] == ("org/adapter", "Add adapter", None, False)


def test_load_shadow_checkpoint_with_base_path_model_or_recorded_name(tmp_path):
    model = trained_causal("llama")
    base_dir = tmp_path / "base"
    model.peft_model.base_model.save_pretrained(base_dir)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    ids = token_batch()
    expected = outputs(model, ids)
    from_path = load_shadow_checkpoint(ckpt, base=base_dir)
    from_model = load_shadow_checkpoint(ckpt, base=clone_base(model.peft_model.base_model), task="text-generation")
    # record the base's location, as save_pretrained does for a base loaded from a folder
    config = json.loads((ckpt / "shadow_config.json").read_text())
    config["base_model_name_or_path"] = str(base_dir)
    (ckpt / "shadow_config.json").write_text(json.dumps(config))
    from_record = load_shadow_checkpoint(ckpt)
    for loaded in (from_path, from_model, from_record):
        assert isinstance(loaded, ShadowForCausalLM)
        for got, want in zip(outputs(loaded, ids), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_base_name_is_recorded_when_the_base_came_from_a_folder(tmp_path):
    model = trained_causal("llama")
    model.peft_model.base_model.save_pretrained(tmp_path / "base")
    import transformers as tf

    reloaded = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    wrapper = ShadowForCausalLM(get_shadow_model(reloaded, ShadowConfig()))
    wrapper.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "shadow_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(tmp_path / "base")


def test_load_shadow_checkpoint_seq_cls_uses_recorded_labels(tmp_path):
    model = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("qwen3"), ShadowConfig()))
    base_dir = tmp_path / "base"
    causal_base("qwen3").save_pretrained(base_dir)  # a causal LM folder: the score head comes from the file
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_shadow_checkpoint(tmp_path / "ckpt", base=base_dir)
    assert isinstance(loaded, ShadowForSequenceClassification)
    assert loaded.config.num_labels == 3 and loaded.config.id2label == {0: "label_0", 1: "label_1", 2: "label_2"}
    torch.testing.assert_close(loaded.classifier_head.weight, model.classifier_head.weight)


def test_load_shadow_checkpoint_without_base_raises(tmp_path):
    trained_causal().save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="base="):
        load_shadow_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="Cannot load the base model"):
        load_shadow_checkpoint(tmp_path, base=tmp_path / "missing-base")


def test_save_removes_a_stale_modules_file(tmp_path):
    seq = ShadowForSequenceClassification(get_shadow_model(seq_cls_base("llama"), ShadowConfig()))
    seq.save_pretrained(tmp_path)
    trained_causal("llama").peft_model.save_pretrained(tmp_path)
    assert not (tmp_path / "shadow_modules.safetensors").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_seed_usage_explicit_projected_shadow_train_save_and_reload(tmp_path):
    """Seed usage 2/3: a pre-trained AutoModelForCausalLMWithHiddenProjection as the shadow."""
    from shadow_edge import AutoModelForCausalLMWithHiddenProjection

    base = causal_base("qwen3")
    small = causal_base("qwen3", hidden_size=32, num_hidden_layers=2, seed=7)
    projected = AutoModelForCausalLMWithHiddenProjection.wrap(
        shadow_model=small, shadow_hidden_projection=torch.nn.Linear(32, 64, bias=False), lm_head=base.lm_head,
        init_optimal_projection=True, reference_lm_head=small.lm_head,
    )
    projected.save_pretrained(tmp_path / "projected")
    shadow = AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path / "projected")
    model = ShadowForCausalLM(get_shadow_model(base, ShadowConfig(dropout=0.0), shadow_model=shadow)).eval()
    # the trained projection is reused, not re-initialised
    torch.testing.assert_close(model.peft_model.shadow_hidden_projection.weight, shadow.shadow_hidden_projection.weight)
    randomize_adapter(model.peft_model)
    ids = token_batch()
    model.save_pretrained(tmp_path / "ckpt")
    again = AutoModelForCausalLMWithHiddenProjection.from_pretrained(tmp_path / "projected")
    loaded = ShadowForCausalLM.from_pretrained(
        clone_base(base), tmp_path / "ckpt", is_trainable=False, inference_mode="base_shadow", shadow_model=again)
    for got, want in zip(outputs(loaded, ids), outputs(model, ids)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_loading_on_a_differently_named_base_warns(tmp_path, caplog):
    model = trained_causal("llama")
    model.peft_model.base_model.config._name_or_path = "org/base-a"
    model.save_pretrained(tmp_path)
    other = causal_base("llama")
    other.config._name_or_path = "org/base-b"
    with caplog.at_level("WARNING", logger="shadow_edge.persistence"):
        ShadowForCausalLM.from_pretrained(other, tmp_path)
    assert "'org/base-a'" in caplog.text and "'org/base-b'" in caplog.text
    caplog.clear()
    other.config._name_or_path = "/some/cache/base-a"  # same model name from another folder
    with caplog.at_level("WARNING", logger="shadow_edge.persistence"):
        ShadowForCausalLM.from_pretrained(other, tmp_path)
    assert caplog.text == ""
