"""Batch inference for the robot-intent tasks: torch task models and runtime folders.

Both paths take the same token ids (``modeling.prompt_ids`` / ``classification_ids``), so
the ONNX results can be compared with torch example by example.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .modeling import pad_batch

MAX_NEW_TOKENS = 32


@dataclass
class Timed:
    """Predictions and how long they took (seconds; generated tokens for generation)."""

    outputs: list
    seconds: float
    new_tokens: int = 0


def _left_pad(rows: list[list[int]], pad_id: int):
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids, mask


def torch_generate(model, tokenizer, prompts: list[list[int]], *, batch_size: int = 16,
                   max_new_tokens: int = MAX_NEW_TOKENS) -> Timed:
    """Greedy decode each prompt with the task model's current inference mode."""
    import torch

    eos = tokenizer.eos_token_id
    texts, new_tokens = [], 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            ids, mask = _left_pad(prompts[i:i + batch_size], eos)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=eos)
            for row in out[:, ids.shape[1]:].tolist():
                if eos in row:
                    row = row[: row.index(eos)]
                new_tokens += len(row) + 1
                texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return Timed(texts, time.perf_counter() - start, new_tokens)


def torch_classify(model, rows: list[list[int]], pad_id: int, *, batch_size: int = 64) -> Timed:
    """Arg-max label ids with the task model's current inference mode (right padding)."""
    import torch

    preds = []
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            ids, mask = pad_batch(rows[i:i + batch_size], pad_id)
            logits = model(input_ids=ids, attention_mask=mask).logits
            preds += logits.argmax(-1).tolist()
    return Timed(preds, time.perf_counter() - start)


def runtime_generate(generator, prompts: list[list[int]], *, batch_size: int = 16,
                     max_new_tokens: int = MAX_NEW_TOKENS, grammars: list | None = None,
                     num_beams: int = 1, length_penalty: float = 1.0) -> Timed:
    """Decode token-id prompts with a ``runtime`` ShadowGenerator: greedy, or beam search
    with ``num_beams`` > 1.

    ``grammars``: one ``runtime.Grammar`` per batch of ``batch_size`` prompts (or None).
    """
    texts, new_tokens = [], 0
    start = time.perf_counter()
    for i in range(0, len(prompts), batch_size):
        grammar = grammars[i // batch_size] if grammars is not None else None
        results = generator.generate(prompts[i:i + batch_size], max_new_tokens=max_new_tokens,
                                     grammar=grammar, num_beams=num_beams,
                                     length_penalty=length_penalty)
        for result in results:
            texts.append(result.text)
            new_tokens += len(result.token_ids) if hasattr(result, "token_ids") else 0
    return Timed(texts, time.perf_counter() - start, new_tokens)


def runtime_classify(classifier, rows: list[list[int]], *, batch_size: int = 64) -> Timed:
    """Arg-max label ids with a ``runtime`` ShadowClassifier."""
    import numpy as np

    preds = []
    start = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        logits = classifier.runner.logits(rows[i:i + batch_size], classifier.pad_token_id)
        preds += np.asarray(logits).argmax(-1).tolist()
    return Timed(preds, time.perf_counter() - start)
