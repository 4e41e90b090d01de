"""onnxruntime-genai (>= 0.18, dev extra) runs our causal-LM exports from the
``genai_config.json`` every one of them carries, with our runtime's greedy tokens.

Why: genai users point ``onnxruntime_genai.Model`` at a folder and expect it to run; its
config is written from our manifest (sizes, token ids, I/O names).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnxruntime_genai as og
import pytest

import runtime
from exporters import quantize_export
from exporters.package import GENAI_CONFIG, genai_config
from runtime.manifest import Manifest, ModelInfo, TokenInfo

pytestmark = pytest.mark.xdist_group("exporters")  # reuses the session's llama shadow export

STEPS = 12


@pytest.fixture(scope="module")
def shadow_folder(shadow_exports):
    """The session's tiny llama shadow adapter export (fp32, verified)."""
    return shadow_exports("llama").folder


def genai_greedy(folder, rows: list[list[int]], steps: int, pad_id: int) -> list[list[int]]:
    """Greedy tokens from onnxruntime-genai for right-padded ``rows``, cut after an eos."""
    model = og.Model(str(folder))
    width = max(len(row) for row in rows)
    batch = np.array([row + [pad_id] * (width - len(row)) for row in rows], dtype=np.int32)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=width + steps, do_sample=False, batch_size=len(rows))
    generator = og.Generator(model, params)
    generator.append_tokens(batch)
    while not generator.is_done():
        generator.generate_next_token()
    eos = json.loads((folder / GENAI_CONFIG).read_text())["model"]["eos_token_id"]
    out = []
    for i in range(len(rows)):
        tokens = [int(t) for t in generator.get_sequence(i)][width:]
        if eos in tokens:
            tokens = tokens[:tokens.index(eos) + 1]
        out.append(tokens)
    return out


def test_genai_greedy_tokens_equal_ours_for_a_prompt(shadow_folder):
    ours = runtime.load(shadow_folder)
    prompt = "The robot turns on the light"
    tokenizer = og.Tokenizer(og.Model(str(shadow_folder)))
    ids = [int(t) for t in tokenizer.encode(prompt)]
    assert ids == ours.encode_prompt(prompt)  # genai reads our tokenizer files the same way
    want = ours.generate(prompt, max_new_tokens=STEPS).token_ids
    assert genai_greedy(shadow_folder, [ids], STEPS, ours.pad_token_id) == [want]


def test_genai_right_padded_batch_equals_rows_alone(shadow_folder):
    ours = runtime.load(shadow_folder)
    rows = [[1, 72, 101, 108, 108, 111, 44, 32, 119, 111], [1, 87, 104, 121], [1, 65]]
    want = [ours.generate(row, max_new_tokens=STEPS).token_ids for row in rows]
    assert genai_greedy(shadow_folder, rows, STEPS, ours.pad_token_id) == want


def test_genai_runs_an_int4_export(shadow_folder, tmp_path):
    folder = quantize_export(shadow_folder, tmp_path / "int4", "int4").output_dir
    assert (folder / GENAI_CONFIG).is_file()
    ours = runtime.load(folder)
    row = [1, 84, 104, 101, 32, 114, 111, 98, 111, 116]
    want = ours.generate(row, max_new_tokens=STEPS).token_ids
    assert genai_greedy(folder, [row], STEPS, ours.pad_token_id) == [want]


def test_genai_config_is_written_from_the_manifest(shadow_folder):
    config = json.loads((shadow_folder / GENAI_CONFIG).read_text())
    manifest = json.loads((shadow_folder / "shadow_edge.json").read_text())
    model, decoder = config["model"], config["model"]["decoder"]
    assert (model["type"], model["vocab_size"], model["context_length"]) == (
        "llama", manifest["model"]["vocab_size"], manifest["model"]["max_position_embeddings"])
    assert (model["eos_token_id"], model["pad_token_id"], model["bos_token_id"]) == (2, 0, 1)
    assert (decoder["filename"], decoder["head_size"], decoder["num_key_value_heads"],
            decoder["num_hidden_layers"]) == ("model.onnx", 16, 2, 2)
    assert decoder["inputs"]["past_key_names"] == "past_key_values.%d.key"
    assert decoder["outputs"]["present_value_names"] == "present.%d.value"
    assert config["search"]["past_present_share_buffer"] is False
    assert GENAI_CONFIG in manifest["files"]


def test_no_genai_config_for_classifiers_or_unknown_model_types():
    manifest = Manifest(task="text-generation", model_file="model.onnx",
                        model=ModelInfo(architecture="GPT2Model", vocab_size=10,
                                        max_position_embeddings=8, head_dim=4, hidden_size=8,
                                        num_layers=1, num_key_value_heads=1),
                        tokens=TokenInfo(eos_token_id=[3, 4]))
    gpt2 = genai_config(manifest, {"model_type": "gpt2", "n_head": 2})
    assert gpt2["model"]["decoder"]["num_attention_heads"] == 2
    assert gpt2["model"]["eos_token_id"] == [3, 4] and gpt2["model"]["pad_token_id"] == 3
    assert "bos_token_id" not in gpt2["model"]
    assert genai_config(manifest, {"model_type": "bert", "num_attention_heads": 2}) is None
    classifier = dataclasses.replace(manifest, task="text-classification",
                                     model=dataclasses.replace(manifest.model, num_labels=2))
    assert genai_config(classifier,
                        {"model_type": "llama", "num_attention_heads": 2}) is None
