"""Training rows -> task, labels, token ids and batches (``shadow_edge.training_data``)."""

from __future__ import annotations

import pytest
import torch

from shadow_edge.errors import DataError
from shadow_edge.task_types import CLASSIFICATION, GENERATION
from shadow_edge.training_data import (
    IGNORE_INDEX,
    PadCollator,
    encode_rows,
    infer_task,
    label_map,
    row_kind,
    supervised_positions,
)
from tests.cli.conftest import tiny_tokenizer


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        ({"text": "hello"}, "text"),
        ({"prompt": "p", "completion": "c"}, "prompt_completion"),
        ({"text": "hello", "label": "on"}, "labelled"),
        ({"text": "hello", "label": 3}, "labelled"),
    ],
)
def test_row_kinds(row, kind):
    assert row_kind(row, 1) == kind


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"question": "x"}, "unexpected keys ['question']"),
        ({"text": ""}, "non-empty string"),
        ({"text": 5}, "non-empty string"),
        ({"prompt": "p", "completion": ""}, "\"completion\" is empty"),
        ({"text": "t", "label": [1]}, "string or an int"),
        ({"text": "t", "label": True}, "string or an int"),
    ],
)
def test_bad_rows_name_the_row_and_the_accepted_shapes(row, problem):
    with pytest.raises(DataError) as info:
        row_kind(row, 7)
    message = str(info.value)
    assert "row 7" in message and problem in message and '{"text", "label"}' in message


def test_infer_task_from_rows_and_reject_mixtures():
    assert infer_task([{"text": "a"}, {"prompt": "p", "completion": "c"}]) == GENERATION
    assert infer_task([{"text": "a", "label": "x"}]) == CLASSIFICATION
    with pytest.raises(DataError, match="mixes labelled rows"):
        infer_task([{"text": "a", "label": "x"}, {"text": "b"}])
    with pytest.raises(DataError, match="does not fit the rows"):
        infer_task([{"text": "a"}], task=CLASSIFICATION)


def test_label_map_sorts_string_labels_and_keeps_int_ids():
    strings = label_map([{"label": "on"}, {"label": "dim"}, {"label": "on"}])
    assert strings.id2label == {0: "dim", 1: "on"}
    assert strings.ids == [1, 0, 1]
    ints = label_map([{"label": 2}, {"label": 0}])
    assert ints.id2label == {0: "0", 1: "1", 2: "2"} and ints.ids == [2, 0]
    assert ints.num_labels == 3
    with pytest.raises(DataError, match="at least 2 classes"):
        label_map([{"label": "on"}, {"label": "on"}])
    with pytest.raises(DataError, match="mix strings and ints"):
        label_map([{"label": "on"}, {"label": 1}])


def test_prompt_positions_are_masked_and_eos_ends_the_completion():
    tok = tiny_tokenizer()
    (raw,) = encode_rows([{"prompt": "ab", "completion": "cd"}], tok, task=GENERATION,
                         max_length=64, chat_template=False)
    # char-level tokenizer without special tokens: a b | c d </s>
    assert raw["input_ids"] == tok("abcd")["input_ids"] + [tok.eos_token_id]
    assert raw["labels"] == [IGNORE_INDEX] * 2 + raw["input_ids"][2:]
    (chat,) = encode_rows([{"prompt": "ab", "completion": "cd"}], tok, task=GENERATION,
                          max_length=64, chat_template=True)
    prompt_ids = tok.apply_chat_template([{"role": "user", "content": "ab"}],
                                         add_generation_prompt=True, tokenize=True,
                                         return_dict=False)
    assert chat["input_ids"][: len(prompt_ids)] == list(prompt_ids)
    assert chat["labels"].count(IGNORE_INDEX) == len(prompt_ids)


def test_rows_cut_before_their_completion_are_dropped():
    tok = tiny_tokenizer()
    rows = [{"prompt": "x" * 20, "completion": "y"}, {"text": "short"}]
    examples = encode_rows(rows, tok, task=GENERATION, max_length=10)
    assert len(examples) == 1 and len(examples[0]["input_ids"]) == 6  # "short" + eos
    with pytest.raises(DataError, match="no row fits max_length 10"):
        encode_rows(rows[:1], tok, task=GENERATION, max_length=10)


def test_collator_right_pads_ids_mask_and_labels():
    batch = PadCollator(pad_token_id=0)([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8], "labels": [8]},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    cls = PadCollator(pad_token_id=0)([{"input_ids": [5], "labels": 2},
                                       {"input_ids": [5, 6], "labels": 0}])
    assert cls["labels"].dtype == torch.long and cls["labels"].tolist() == [2, 0]


def test_collator_pads_segment_ids_with_zero_when_the_rows_have_them():
    # BERT-style pair rows: [CLS] a [SEP] | b [SEP] -> segments 0 0 0 1 1; a single sentence
    batch = PadCollator(pad_token_id=0)([
        {"input_ids": [101, 5, 102, 6, 102], "token_type_ids": [0, 0, 0, 1, 1],
         "attention_mask": [1, 1, 1, 1, 1], "labels": 1},
        {"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0], "attention_mask": [1, 1, 1],
         "labels": 0},
    ])
    assert batch["token_type_ids"].dtype == torch.long
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert sorted(batch) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    plain = PadCollator(pad_token_id=0)([{"input_ids": [5], "labels": 2}])
    assert "token_type_ids" not in plain


def test_collator_keeps_logits_only_where_a_row_has_a_next_token_target():
    batch = PadCollator(pad_token_id=0, supervised_logits_only=True)([
        {"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]},
        {"input_ids": [5, 6], "labels": [-100, 6]},
    ])
    # position p predicts p + 1: row 0 needs 1 and 2, row 1 needs 0
    assert batch["logits_to_keep"].tolist() == [0, 1, 2]
    assert supervised_positions(torch.full((2, 3), -100)).tolist() == []
