"""The torch-free tokenizer: special tokens, chat template lookup, streaming detokenization."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.chat import render_chat
from runtime.errors import ModelFolderError
from runtime.tokenizer import Tokenizer
from tests.runtime.fixtures import tiny_tokenizer_files


@pytest.fixture(scope="module")
def tok(smollm2_tokenizer_dir):
    return Tokenizer.from_folder(smollm2_tokenizer_dir)


def test_special_tokens_and_ids_match_transformers(tok, hf_smollm2_tokenizer):
    hf = hf_smollm2_tokenizer
    assert tok.special_tokens == {k: v for k, v in hf.special_tokens_map.items() if isinstance(v, str)}
    assert tok.special_token_id("eos_token") == hf.eos_token_id == 2
    assert tok.special_token_id("bos_token") == hf.bos_token_id == 1
    assert tok.vocab_size == len(hf) == 49152


@pytest.mark.parametrize("text", ["Hello world", "  spaced  out ", "héllo 日本語 😀", "a\nb\tc"])
def test_encode_decode_equal_transformers(tok, hf_smollm2_tokenizer, text):
    ids = tok.encode(text)
    assert ids == hf_smollm2_tokenizer(text)["input_ids"]
    assert tok.decode(ids) == hf_smollm2_tokenizer.decode(ids, skip_special_tokens=True) == text


def test_chat_template_from_jinja_file_or_tokenizer_config(tmp_path, smollm2_tokenizer_dir, tok):
    # transformers 5 writes chat_template.jinja; older exports keep it in tokenizer_config.json
    assert "im_start" in tok.chat_template
    shutil.copy(smollm2_tokenizer_dir / "tokenizer.json", tmp_path)
    config = {"eos_token": {"content": "<|im_end|>"}, "chat_template": [
        {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    old = Tokenizer.from_folder(tmp_path)
    assert old.chat_template == {"tool_use": "T", "default": "D"}
    assert old.get_chat_template() == "D" and old.get_chat_template(tools=[]) == "T"
    assert old.special_tokens == {"eos_token": "<|im_end|>"}


def test_missing_and_corrupt_tokenizer_give_clear_errors(tmp_path):
    with pytest.raises(ModelFolderError, match="no tokenizer.json"):
        Tokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{\"version\": ")
    with pytest.raises(ModelFolderError, match="cannot parse"):
        Tokenizer.from_folder(tmp_path)


def _streamed(tok, ids, skip=True):
    decoder = tok.stream_decoder(skip_special_tokens=skip)
    pieces = [decoder.push(i) for i in ids]
    pieces.append(decoder.flush())
    return pieces


def test_stream_never_splits_a_multibyte_character(tok):
    text = "naïve café 日本語 😀🚀 done"
    ids = tok.encode(text)
    pieces = _streamed(tok, ids)
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(ids) > len([p for p in pieces if p])  # some ids completed no character alone


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.integers(0, 49151), min_size=0, max_size=40), skip=st.booleans())
def test_stream_of_random_ids_equals_full_decode(tok, ids, skip):
    assert "".join(_streamed(tok, ids, skip)) == tok.decode(ids, skip_special_tokens=skip)


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=40))
def test_stream_of_any_text_round_trips(tok, text):
    ids = tok.encode(text)
    assert "".join(_streamed(tok, ids)) == tok.decode(ids)


# ---- tokenizer.json saved with truncation / padding sections ---------------------------------

PROMPT_25 = "Please turn on the kitchen light and dim the hallway lamp to forty percent, thanks!"
TEXTS = [PROMPT_25, "hi", "Turn off the fan in the bedroom"]
CHAT = [{"role": "system", "content": "You control a smart home."},
        {"role": "user", "content": PROMPT_25}]


def _tokenizer_folder(source: str, smollm2_tokenizer_dir, folder):
    """A tokenizer folder: SmolLM2's (BPE, chat_template.jinja) or the tiny byte-level one."""
    if source == "tiny":
        return tiny_tokenizer_files(folder)
    return shutil.copytree(smollm2_tokenizer_dir, folder,
                           ignore=shutil.ignore_patterns("*.safetensors"))


def _save_sections(folder, sections):
    from tokenizers import Tokenizer as Backend

    backend = Backend.from_file(str(folder / "tokenizer.json"))
    if "truncation" in sections:
        backend.enable_truncation(sections["truncation"])
    if "padding" in sections:
        length = sections["padding"]
        backend.enable_padding(length=None if length == "longest" else length, pad_id=0,
                               pad_token=backend.id_to_token(0))
    backend.save(str(folder / "tokenizer.json"))
    saved = json.loads((folder / "tokenizer.json").read_text())
    assert ("truncation" in sections) == (saved["truncation"] is not None)
    assert ("padding" in sections) == (saved["padding"] is not None)


def _chat_ids(tok: Tokenizer) -> list[int]:
    text = render_chat(tok.get_chat_template(), CHAT, special_tokens=tok.special_tokens)
    return tok.encode(text, add_special_tokens=False)


SECTIONS = [{"truncation": 6, "padding": 16}, {"truncation": 6}, {"padding": "longest"},
            {"padding": 64}]


@pytest.mark.parametrize("sections", SECTIONS)
@pytest.mark.parametrize("source", ["smollm2", "tiny"])
def test_saved_truncation_and_padding_change_no_ids(tmp_path, smollm2_tokenizer_dir, source,
                                                    sections):
    """The ids of the same folder without the sections: those of the `tokenizers` backend
    called with truncation and padding off (what transformers does per call)."""
    from tokenizers import Tokenizer as Backend

    plain = _tokenizer_folder(source, smollm2_tokenizer_dir, tmp_path / "plain")
    backend = Backend.from_file(str(plain / "tokenizer.json"))
    folder = _tokenizer_folder(source, smollm2_tokenizer_dir, tmp_path / source)
    _save_sections(folder, sections)
    ours = Tokenizer.from_folder(folder)
    for text in TEXTS:
        assert ours.encode(text) == backend.encode(text).ids
    assert len(ours.encode(PROMPT_25)) > 16  # the case: cut to 6 ids, or padded to 16
    assert ours.encode_batch(TEXTS) == [e.ids for e in backend.encode_batch(TEXTS)]
    chat = _chat_ids(ours)
    assert chat == _chat_ids(Tokenizer.from_folder(plain)) and len(chat) > 16


@pytest.mark.parametrize("sections", SECTIONS)
@pytest.mark.parametrize("source", ["smollm2", "tiny"])
def test_saved_truncation_and_padding_are_ignored_as_transformers_does(
        tmp_path, smollm2_tokenizer_dir, source, sections):
    transformers = pytest.importorskip("transformers", reason="compares with transformers")
    folder = _tokenizer_folder(source, smollm2_tokenizer_dir, tmp_path / source)
    _save_sections(folder, sections)
    ours = Tokenizer.from_folder(folder)
    hf = transformers.AutoTokenizer.from_pretrained(str(folder))
    for text in TEXTS:
        assert ours.encode(text) == hf(text)["input_ids"]
    assert len(ours.encode(PROMPT_25)) > 16  # the case: cut to 6 ids, or padded to 16
    assert ours.encode_batch(TEXTS) == hf(TEXTS)["input_ids"]  # classify's path: no padding
    text = render_chat(ours.get_chat_template(), CHAT, special_tokens=ours.special_tokens)
    expected = hf.apply_chat_template(CHAT, add_generation_prompt=True, return_dict=False)
    assert ours.encode(text, add_special_tokens=False) == list(expected)
    assert len(expected) > 16
