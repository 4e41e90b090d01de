"""BERT-style tokenizer.json files in the runtime: token_type_ids, and no padding of its own.

all-MiniLM-L6-v2's tokenizer.json (sentence-transformers) fixes padding to 128 tokens and
truncation at 128; the runtime pads with an attention mask and truncates itself, as
transformers does per call, so both settings must be off.
"""

from __future__ import annotations

import shutil

import pytest

from runtime.tokenizer import Tokenizer

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="module")
def minilm_tokenizer_dir(tmp_path_factory):
    from shadow_edge.assets import minilm_dir

    folder = tmp_path_factory.mktemp("minilm-tokenizer")
    for name in FILES:
        shutil.copyfile(minilm_dir() / name, folder / name)
    return folder


def test_ids_equal_transformers_without_fixed_padding_or_truncation(minilm_tokenizer_dir):
    from transformers import AutoTokenizer

    ours = Tokenizer.from_folder(minilm_tokenizer_dir)
    theirs = AutoTokenizer.from_pretrained(str(minilm_tokenizer_dir))
    texts = ["Turn on the kitchen light!", "stop", " ".join(["lamp"] * 300)]
    ids = ours.encode_batch(texts)
    assert ids[0] == theirs(texts[0])["input_ids"] == [101, 2735, 2006, 1996, 3829, 2422, 999, 102]
    assert ids[1] == [101, 2644, 102]  # not padded to 128
    assert len(ids[2]) == 302  # not cut at 128: the runtime decides (PromptTooLongError / truncate)


def test_token_type_ids_come_with_the_ids(minilm_tokenizer_dir):
    ours = Tokenizer.from_folder(minilm_tokenizer_dir)
    ids, types = ours.encode_batch_with_type_ids(["dim the lights", "hello"])
    assert [len(t) for t in types] == [len(i) for i in ids] == [5, 3]
    assert all(t == 0 for row in types for t in row)  # one segment
