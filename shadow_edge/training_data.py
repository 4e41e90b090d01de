"""Training data: JSONL-style rows -> token ids, labels and padded batches.

Row shapes (one dict per example):

- ``{"text": ...}``: causal LM on the whole text (loss on every token, eos appended).
- ``{"prompt": ..., "completion": ...}``: causal LM with the loss on the completion only
  (prompt positions get label -100, the ignore index of ``torch.nn.CrossEntropyLoss``);
  eos is appended to the completion so the model learns to stop. With ``chat_template``
  the prompt is rendered as one user turn with the tokenizer's chat template and its
  generation prompt, as ``shadow-edge generate`` renders it.
- ``{"text": ..., "label": ...}``: sequence classification. Labels are strings (sorted to
  ids 0..n-1) or ints (used as ids).

The checks here are torch-free, so bad rows fail before any model loads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .errors import DataError
from .task_types import CLASSIFICATION, GENERATION

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss's default ignore_index


def row_kind(row: dict[str, Any], number: int) -> str:
    """``"text"``, ``"prompt_completion"`` or ``"labelled"`` for row ``number`` (1-based).

    Raises:
        DataError: the row has none of the three shapes, or a field of the wrong type.
    """
    def _fail(problem: str):
        return DataError(
            f"row {number}: {problem}. Rows must be {{\"text\"}}, {{\"prompt\", "
            "\"completion\"}} or {\"text\", \"label\"}."
        )

    keys = set(row)
    if {"prompt", "completion"} <= keys:
        if not isinstance(row["prompt"], str) or not isinstance(row["completion"], str):
            raise _fail("\"prompt\" and \"completion\" must be strings")
        if not row["completion"]:
            raise _fail("\"completion\" is empty")
        return "prompt_completion"
    if "text" in keys:
        if not isinstance(row["text"], str) or not row["text"].strip():
            raise _fail("\"text\" must be a non-empty string")
        if "label" in keys:
            label = row["label"]
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise _fail(f"\"label\" must be a string or an int, got {label!r}")
            return "labelled"
        return "text"
    raise _fail(f"unexpected keys {sorted(keys)}")


def infer_task(rows: list[dict[str, Any]], task: str | None = None) -> str:
    """The task the rows fit (``text-generation`` or ``text-classification``).

    Raises:
        DataError: mixed labelled and unlabelled rows, or rows that do not fit ``task``.
    """
    kinds = {row_kind(row, number) for number, row in enumerate(rows, 1)}
    if not kinds:
        raise DataError("the data has no rows; pass a file with at least one example.")
    if "labelled" in kinds and len(kinds) > 1:
        raise DataError(
            "the data mixes labelled rows {\"text\", \"label\"} with generation rows. Use one "
            "kind per file."
        )
    found = CLASSIFICATION if kinds == {"labelled"} else GENERATION
    if task is not None and task != found:
        raise DataError(
            f"task {task} does not fit the rows, which are for {found} "
            + ("(they have labels)." if found == CLASSIFICATION else "(they have no labels).")
            + " Drop the task or use matching rows."
        )
    return found


@dataclass(frozen=True)
class LabelMap:
    """Class ids <-> label names for classification."""

    id2label: dict[int, str]
    label2id: dict[str, int]
    ids: list[int]  # one per row

    @property
    def num_labels(self) -> int:
        return len(self.id2label)


def label_map(rows: list[dict[str, Any]]) -> LabelMap:
    """Ids for the rows' labels: int labels are ids (0..max), string labels sorted to ids.

    Raises:
        DataError: mixed int and string labels, negative ids or fewer than 2 classes.
    """
    labels = [row["label"] for row in rows]
    if all(isinstance(label, int) for label in labels):
        if min(labels) < 0:
            raise DataError("int labels must be >= 0 (they are class ids).")
        id2label = {i: str(i) for i in range(max(labels) + 1)}
        ids = list(labels)
    elif all(isinstance(label, str) for label in labels):
        names = sorted(set(labels))
        id2label = dict(enumerate(names))
        index = {name: i for i, name in id2label.items()}
        ids = [index[label] for label in labels]
    else:
        raise DataError("labels mix strings and ints. Use one type for all rows.")
    if len(id2label) < 2:
        raise DataError(
            f"all rows have the same label {labels[0]!r}; classification needs at least 2 "
            "classes."
        )
    return LabelMap(id2label, {v: k for k, v in id2label.items()}, ids)


def render_prompt(tokenizer, prompt: str | list[dict], *, chat_template: bool) -> list[int]:
    """Prompt token ids. With ``chat_template`` the prompt (a string = one user turn, or a
    list of chat messages) is rendered with the tokenizer's template and its generation
    prompt; otherwise it is tokenized with the tokenizer's special tokens."""
    if chat_template:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False,
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def causal_lm_example(prompt_ids: list[int], completion_ids: list[int], eos_token_id: int | None,
                      max_length: int) -> dict[str, list[int]] | None:
    """``{"input_ids", "labels"}`` for prompt + completion (+ eos unless it ends with it),
    labels -100 on the prompt, cut to ``max_length``; None when the cut leaves no target
    (it would give a loss of NaN)."""
    completion = list(completion_ids)
    if eos_token_id is not None and (not completion or completion[-1] != eos_token_id):
        completion.append(eos_token_id)
    ids = (list(prompt_ids) + completion)[:max_length]
    target = ([IGNORE_INDEX] * len(prompt_ids) + completion)[:max_length]
    if all(t == IGNORE_INDEX for t in target[1:]):  # position 0 is never predicted
        return None
    return {"input_ids": ids, "labels": target}


def encode_rows(
    rows: list[dict[str, Any]],
    tokenizer,
    *,
    task: str,
    max_length: int,
    chat_template: bool = False,
    labels: LabelMap | None = None,
) -> list[dict[str, list[int] | int]]:
    """Token ids (and labels) per row, truncated to ``max_length`` tokens.

    Causal-LM rows whose supervised tokens are all cut by the truncation are dropped (with a
    warning). Classification rows get their class id from ``labels``.

    Raises:
        DataError: no row fits ``max_length``.
    """
    examples: list[dict[str, Any]] = []
    dropped = 0
    for number, row in enumerate(rows):
        if task == CLASSIFICATION:
            ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"][:max_length]
            examples.append({"input_ids": list(ids), "labels": labels.ids[number]})
            continue
        if "completion" in row:
            prompt_ids = render_prompt(tokenizer, row["prompt"], chat_template=chat_template)
            completion = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        else:
            prompt_ids = []
            completion = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
        example = causal_lm_example(prompt_ids, completion, tokenizer.eos_token_id, max_length)
        if example is None:
            dropped += 1
            continue
        examples.append(example)
    if dropped:
        logger.warning("dropped %d rows whose completion does not fit max_length %d",
                       dropped, max_length)
    if not examples:
        raise DataError(
            f"no row fits max_length {max_length}. Raise it (--max-length) or shorten the "
            "prompts."
        )
    return examples


class PadCollator:
    """Right-pad a batch: ``input_ids`` with the pad id, ``attention_mask``, ``labels``.

    Causal-LM labels are padded with -100; classification labels become a 1-D tensor.
    Returns int64 tensors: input_ids/attention_mask/labels [batch, max_len] (labels [batch]
    for classification). When the examples carry ``token_type_ids`` (BERT-style encoders'
    segment ids, as their tokenizers return them) they are kept, padded with 0 (int64
    [batch, max_len]); an ``attention_mask`` in the examples is ignored (it is rebuilt). With ``supervised_logits_only`` (causal LM), the batch also holds
    ``logits_to_keep``: the sorted positions whose next token is a target in some row
    (int64 [n]); the task wrappers then compute logits and the loss only there, which
    skips the vocabulary-sized head on prompt positions (same loss, less work).
    """

    def __init__(self, pad_token_id: int, *, supervised_logits_only: bool = False):
        self.pad_token_id = pad_token_id
        self.supervised_logits_only = supervised_logits_only

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(ex["input_ids"]) for ex in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ex in enumerate(batch):
            n = len(ex["input_ids"])
            ids[i, :n] = torch.tensor(ex["input_ids"], dtype=torch.long)
            mask[i, :n] = 1
        out = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in batch[0]:
            types = torch.zeros((len(batch), width), dtype=torch.long)
            for i, ex in enumerate(batch):
                types[i, : len(ex["token_type_ids"])] = torch.tensor(ex["token_type_ids"],
                                                                     dtype=torch.long)
            out["token_type_ids"] = types
        if isinstance(batch[0]["labels"], int):
            out["labels"] = torch.tensor([ex["labels"] for ex in batch], dtype=torch.long)
            return out
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        for i, ex in enumerate(batch):
            labels[i, : len(ex["labels"])] = torch.tensor(ex["labels"], dtype=torch.long)
        out["labels"] = labels
        if self.supervised_logits_only:
            out["logits_to_keep"] = supervised_positions(labels)
        return out


def supervised_positions(labels):
    """Positions ``p`` whose next label ``labels[:, p + 1]`` is a target in some row.

    Args:
        labels: int64 ``[batch, seq]`` with -100 for ignored positions.

    Returns:
        int64 ``[n]``, sorted (``n`` may be 0 when nothing is supervised).
    """
    supervised = (labels[:, 1:] != IGNORE_INDEX).any(dim=0)
    return supervised.nonzero().flatten()
