"""No source folder can produce an export whose weights did not come from the source.

Why: transformers' ``from_pretrained`` fills missing weights with random ones and drops
unknown ones; such a model even passes our parity gate, because the gate compares the ONNX
file with that same torch model. peft's ``unload_shadow()`` folder (config "llama", keys
``backbone.*``) was exported that way as a random Llama. Every malformed or mismatched
source below must stop at load with a one-line error naming the keys, and write nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import shadow_edge as se
from exporters import detach
from exporters.testing import tiny_model, tiny_model_folder, tiny_tokenizer_files
from shadow_edge.cli import app
from shadow_edge.errors import CheckpointError, ConfigError
from tests.cli.conftest import assert_one_line_error
from tests.exporters.peft_helpers import peft_checkpoint

pytestmark = [pytest.mark.xdist_group("peft"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]
runner = CliRunner()


def _edit_weights(file: Path, edit) -> None:
    state = load_file(str(file))
    edit(state)
    save_file(state, str(file), metadata={"format": "pt"})


def _remove_and_rename(removed: str, renamed: str):
    def edit(state):
        state.pop(removed)
        state[renamed + "_old"] = state.pop(renamed)
    return edit


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    return tiny_model_folder(tmp_path_factory.mktemp("hf") / "llama", "llama")


@pytest.fixture(scope="module")
def peft_causal(tmp_path_factory):
    return peft_checkpoint(tmp_path_factory.mktemp("peft"), "CAUSAL_LM")


@pytest.fixture(scope="module")
def our_adapter(tmp_path_factory, hf_folder) -> Path:
    """A ShadowPEFT causal-LM adapter (our format) on ``hf_folder``."""
    import transformers as tf

    base = tf.AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32)
    model = se.ShadowForCausalLM(se.get_shadow_model(base, se.ShadowConfig(num_shadow_layers=1)))
    folder = tmp_path_factory.mktemp("ours") / "ckpt"
    model.save_pretrained(folder)
    return folder


def _copy(folder: Path, tmp_path: Path, name: str = "source") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


# ---- each case: (build the bad source in tmp_path) -> (cli args, exit code, fragments) ----
def hf_key_removed_and_renamed(tmp_path, hf_folder, **_):
    folder = _copy(hf_folder, tmp_path)
    _edit_weights(folder / "model.safetensors", _remove_and_rename(
        "model.layers.0.mlp.up_proj.weight", "model.layers.1.self_attn.q_proj.weight"))
    return [str(folder)], 1, (("missing keys: model.layers.0.mlp.up_proj.weight, "
                              "model.layers.1.self_attn.q_proj.weight"),
                              "unexpected keys: model.layers.1.self_attn.q_proj.weight_old")


def hf_wrong_shape(tmp_path, hf_folder, **_):
    folder = _copy(hf_folder, tmp_path)
    _edit_weights(folder / "model.safetensors",
                  lambda state: state.__setitem__("model.norm.weight", torch.ones(32)))
    return [str(folder)], 1, ("model.norm.weight is (32,) in the file but (64,) in the model",)


def hf_config_of_another_architecture(tmp_path, hf_folder, **_):
    """config.json says qwen3 (per-head q/k norms), the weights are Llama's."""
    folder = _copy(hf_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="qwen3", architectures=["Qwen3ForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    return [str(folder)], 1, ("missing keys:", "q_norm.weight")


def hf_backbone_without_head(tmp_path, **_):
    """A bare LlamaModel folder (untied): it has no lm_head to export."""
    folder = tmp_path / "backbone"
    tiny_model("llama").model.save_pretrained(folder)
    return [str(folder)], 1, ("missing keys: lm_head.weight",)


def hf_folder_with_base(tmp_path, hf_folder, **_):
    return [str(hf_folder), "--base", str(hf_folder)], 2, ("needs no base model", "drop --base")


def our_adapter_key_removed_and_renamed(tmp_path, our_adapter, **_):
    folder = _copy(our_adapter, tmp_path)
    _edit_weights(folder / "shadow_adapter.safetensors", _remove_and_rename(
        "shadow_model.norm.weight", "shadow_injection_model.injection_ups"))
    return [str(folder)], 1, ("missing keys:", "shadow_model.norm.weight",
                              "unexpected keys: shadow_injection_model.injection_ups_old")


def our_adapter_on_a_base_missing_a_weight(tmp_path, our_adapter, hf_folder, **_):
    base = _copy(hf_folder, tmp_path, "base")
    _edit_weights(base / "model.safetensors",
                  lambda state: state.pop("model.layers.1.mlp.down_proj.weight"))
    return [str(our_adapter), "--base", str(base)], 1, (
        "missing keys: model.layers.1.mlp.down_proj.weight",)


def our_classifier_without_heads_on_a_causal_base(tmp_path, our_adapter, **_):
    """A SEQ_CLS checkpoint whose heads file is gone: the shadow head would be random."""
    folder = _copy(our_adapter, tmp_path)
    config = json.loads((folder / "shadow_config.json").read_text())
    config["task_type"] = "SEQ_CLS"
    (folder / "shadow_config.json").write_text(json.dumps(config))
    return [str(folder)], 1, ("missing keys: score.weight",)


def peft_adapter_key_removed_and_renamed(tmp_path, peft_causal, **_):
    folder = _copy(peft_causal.adapter_dir, tmp_path)
    prefix = "base_model.shadow_backbone.default."
    _edit_weights(folder / "adapter_model.safetensors", _remove_and_rename(
        prefix + "norm.weight", prefix + "layers.0.mlp.up_proj.weight"))
    return [str(folder)], 1, ("missing keys: layers.0.mlp.up_proj.weight, norm.weight",
                              "unexpected keys: layers.0.mlp.up_proj.weight_old")


def peft_adapter_on_another_base(tmp_path, peft_causal, **_):
    other = tiny_model_folder(tmp_path / "other", "llama", hidden_size=32)
    return [str(peft_causal.adapter_dir), "--base", str(other)], 1, (
        "shape mismatches:", "in the file but", "in the model")


def peft_lora_adapter(tmp_path, peft_causal, **_):
    folder = _copy(peft_causal.adapter_dir, tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["peft_type"] = "LORA"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return [str(folder)], 1, ("peft LORA adapter", "merge_and_unload")


def peft_standalone_without_embeddings(tmp_path, peft_causal, **_):
    """``unload_shadow(copy=False).save_pretrained`` leaves the shared embeddings out."""
    folder = _copy(peft_causal.standalone_dir, tmp_path)
    _edit_weights(folder / "model.safetensors",
                  lambda state: state.pop("backbone.embed_tokens.weight"))
    return [str(folder)], 1, ("missing keys: embed_tokens.weight", "copy=True")


def peft_standalone_with_base(tmp_path, peft_causal, **_):
    return [str(peft_causal.standalone_dir), "--base", str(peft_causal.base_dir)], 2, (
        "DetachedShadowModel", "needs no base model")


def peft_gpt2_standalone(tmp_path, **_):
    """peft's GPT-2 ``copy=True`` save attaches ``embed_tokens``, which GPT2Model never uses
    (it runs its own random ``wte``): refuse it rather than export the wrong embeddings."""
    checkpoint = peft_checkpoint(tmp_path / "gpt2", "CAUSAL_LM", arch="gpt2")
    return [str(checkpoint.standalone_dir)], 1, ("unexpected keys: embed_tokens.weight",)


CASES = [hf_key_removed_and_renamed, hf_wrong_shape, hf_config_of_another_architecture,
         hf_backbone_without_head, hf_folder_with_base, our_adapter_key_removed_and_renamed,
         our_adapter_on_a_base_missing_a_weight, our_classifier_without_heads_on_a_causal_base,
         peft_adapter_key_removed_and_renamed, peft_adapter_on_another_base, peft_lora_adapter,
         peft_standalone_without_embeddings, peft_standalone_with_base, peft_gpt2_standalone]


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_malformed_source_is_a_one_line_error_and_writes_nothing(
        case, tmp_path, hf_folder, our_adapter, peft_causal):
    args, code, fragments = case(tmp_path / "src", hf_folder=hf_folder, our_adapter=our_adapter,
                                 peft_causal=peft_causal)
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", *args, "-o", str(out), "--no-verify"])
    assert_one_line_error(result, code, *fragments)
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_peft_standalone_folder_is_no_longer_a_random_llama(peft_causal):
    """The issue's folder: config.json says llama, keys are backbone.* and head.weight. It
    is recognised (also when its config lost ``architectures``) and holds peft's weights."""
    folder = peft_causal.standalone_dir
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["DetachedShadowModel"]
    ids = torch.randint(3, 259, (2, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    want = peft_causal.reference(input_ids=ids, attention_mask=mask).logits.detach()
    for architectures in (["DetachedShadowModel"], ["LlamaForCausalLM"], None):
        config["architectures"] = architectures
        (folder / "config.json").write_text(json.dumps(config))
        got = detach(folder).model.logits(ids, mask)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_python_api_raises_the_same_typed_errors(hf_folder, peft_causal, tmp_path):
    with pytest.raises(ConfigError, match="drop --base"):
        detach(peft_causal.standalone_dir, base=peft_causal.base_dir)
    with pytest.raises(ConfigError, match="drop --base"):
        detach(tiny_model("llama"), base=hf_folder)
    args, _, _ = hf_key_removed_and_renamed(tmp_path, hf_folder)
    with pytest.raises(CheckpointError, match="missing keys") as error:
        detach(args[0])
    assert "\n" not in str(error.value)


def test_standalone_tokenizer_files_are_optional(peft_causal, tmp_path):
    """Without tokenizer files the folder still exports (a warning says so)."""
    folder = _copy(peft_causal.standalone_dir, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink()
    assert detach(folder).asset_dirs == [folder]
    tiny_tokenizer_files(folder)
