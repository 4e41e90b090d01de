"""Export folders whose tokenizer files look like users' real ones: saved truncation/padding
sections, named chat templates, and tokens the model has no embedding for."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import runtime
from runtime.errors import InvalidSettingError, ModelFolderError
from tests.runtime.folder_edits import copy_export, edit_tokenizer, refresh_manifest

pytestmark = pytest.mark.xdist_group("runtime")
TEXT = "Please turn on the kitchen light and dim the hallway lamp to forty percent."
CHAT = [{"role": "user", "content": TEXT}]


def _with_sections(tokenizer):
    tokenizer.enable_truncation(6)
    tokenizer.enable_padding(length=16, pad_id=0, pad_token="<|endoftext|>")


def test_saved_sections_do_not_change_prompt_chat_or_classify_ids(exports, generator,
                                                                  classifier, tmp_path):
    folder = edit_tokenizer(copy_export(exports["fp32"], tmp_path / "gen"), _with_sections)
    model = runtime.load(folder, threads=1)
    assert model.encode_prompt(TEXT) == generator.encode_prompt(TEXT)
    assert len(model.encode_prompt(TEXT)) > 6  # not cut at the saved truncation
    chat = model.encode_prompt(CHAT)
    assert chat == generator.encode_prompt(CHAT) and len(chat) > 16
    assert model.generate(TEXT, max_new_tokens=4).token_ids == generator.generate(
        TEXT, max_new_tokens=4).token_ids
    cls_folder = edit_tokenizer(copy_export(exports["cls"], tmp_path / "cls"), _with_sections)
    texts = [TEXT, "off", "dim the lights please"]
    got = runtime.load(cls_folder, threads=1).classify(texts)
    for ours, want in zip(got, classifier.classify(texts)):
        np.testing.assert_allclose(ours.logits, want.logits, atol=1e-5)


def test_saved_sections_give_transformers_ids(exports, tmp_path):
    transformers = pytest.importorskip("transformers", reason="compares with transformers")
    folder = edit_tokenizer(copy_export(exports["fp32"], tmp_path / "gen"), _with_sections)
    model = runtime.load(folder, threads=1)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert model.encode_prompt(TEXT) == hf(TEXT)["input_ids"]
    chat = hf.apply_chat_template(CHAT, add_generation_prompt=True, return_dict=False)
    assert model.encode_prompt(CHAT) == list(chat) and len(chat) > 16


TOOLS = [{"type": "function", "function": {"name": "lights"}}]
TEMPLATE_CALLS = ({}, {"tools": TOOLS}, {"chat_template": "default", "tools": TOOLS})


def _named_templates_export(exports, folder):
    """The fp32 export with its template as "default" and a "tool_use" one prefixed TOOLS."""
    folder = copy_export(exports["fp32"], folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    default = config["chat_template"]
    tool_use = "TOOLS {{ tools | tojson }}" + default
    config["chat_template"] = [{"name": "default", "template": default},
                               {"name": "tool_use", "template": tool_use}]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return refresh_manifest(folder)


def test_named_templates_in_an_export_choose_by_tools(exports, generator, tmp_path):
    model = runtime.load(_named_templates_export(exports, tmp_path / "gen"), threads=1)
    plain = generator.apply_chat_template(CHAT)  # the export's one template == "default"
    tool_text = model.apply_chat_template(CHAT, tools=TOOLS, tokenize=False)
    # transformers' tojson: json.dumps with its default separators
    assert tool_text == "TOOLS " + json.dumps(TOOLS) + generator.apply_chat_template(
        CHAT, tokenize=False)
    assert model.apply_chat_template(CHAT, tools=TOOLS) == model.tokenizer.encode(
        tool_text, add_special_tokens=False)
    for kwargs in (TEMPLATE_CALLS[0], TEMPLATE_CALLS[2]):  # no tools, or "default" by name
        assert model.apply_chat_template(CHAT, **kwargs) == plain


def test_named_templates_in_an_export_render_as_transformers(exports, tmp_path):
    transformers = pytest.importorskip("transformers", reason="compares with transformers")
    folder = _named_templates_export(exports, tmp_path / "gen")
    model = runtime.load(folder, threads=1)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    for kwargs in TEMPLATE_CALLS:
        expected = hf.apply_chat_template(CHAT, add_generation_prompt=True, return_dict=False,
                                          **kwargs)
        assert model.apply_chat_template(CHAT, **kwargs) == list(expected)
    assert model.apply_chat_template(CHAT, tools=TOOLS, tokenize=False).startswith("TOOLS [")


# ---- token ids the model has no embedding for ------------------------------------------------

def _add_extra_token(tokenizer):
    tokenizer.add_special_tokens(["<extra_0>"])  # id 259 == the tiny model's vocab size


@pytest.mark.parametrize("key", ["fp32", "cls"])
def test_a_tokenizer_token_beyond_the_embeddings_is_refused_at_load(exports, tmp_path, key):
    folder = edit_tokenizer(copy_export(exports[key], tmp_path / key), _add_extra_token)
    with pytest.raises(ModelFolderError, match=r"'<extra_0>' \(id 259\); the model takes ids "
                       r"0-258.*resize_token_embeddings"):
        runtime.load(folder)


def test_special_ids_beyond_the_embeddings_are_refused_at_load(exports, tmp_path):
    folder = refresh_manifest(copy_export(exports["fp32"], tmp_path / "gen"), pad_token_id=300)
    with pytest.raises(ModelFolderError, match="eos/pad/bos.*no embedding for: id 300"):
        runtime.load(folder)


def test_the_cli_reports_the_token_in_one_line(exports, tmp_path):
    app = pytest.importorskip("shadow_edge.cli", reason="the CLI is not installed").app
    assert_one_line_error = pytest.importorskip(
        "tests.cli.conftest", reason="the CLI tests are not here").assert_one_line_error

    folder = edit_tokenizer(copy_export(exports["fp32"], tmp_path / "gen"), _add_extra_token)
    result = CliRunner().invoke(app, ["generate", str(folder), "hi <extra_0>"])
    assert_one_line_error(result, 1, "'<extra_0>' (id 259)", "resize_token_embeddings")


@pytest.mark.parametrize("prompt, named", [([5, 259], "id 259"), ([-1, 5], "id -1"),
                                           ([[5, 6], [7, 300]], "id 300")])
def test_id_prompts_outside_the_vocabulary_name_the_ids(generator, prompt, named):
    with pytest.raises(InvalidSettingError, match=f"outside the vocabulary \\[0, 259\\).*{named}"):
        generator.generate(prompt, max_new_tokens=2)


def test_ids_in_range_name_their_token_text(generator):
    assert generator.tokenizer.describe_ids([2, 300]) == "'<|im_end|>' (id 2), id 300"
