"""Sequence classification: batches of token ids -> logits, softmax scores and labels.

The graph (docs/DESIGN.md) takes ``input_ids`` and ``attention_mask`` (int64 [batch, seq])
and returns ``logits`` (float32 [batch, num_labels]), pooling the last non-padding token
itself. Rows are right-padded here: under causal attention the real tokens then keep the
positions and attention they have when the row runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .errors import InvalidSettingError, ModelFolderError
from .manifest import Manifest


@dataclass
class Classification:
    """The result for one text.

    Attributes:
        label: the winning label name (``id2label``; "LABEL_i" when the export has none).
        label_id: its index.
        score: its softmax probability.
        scores: float32 [num_labels] softmax probabilities.
        logits: float32 [num_labels] raw logits.
    """

    label: str
    label_id: int
    score: float
    scores: np.ndarray
    logits: np.ndarray

    def as_dict(self, labels: Sequence[str]) -> dict:
        """JSON-ready view: label, score and {label: probability}."""
        return {
            "label": self.label,
            "score": self.score,
            "scores": {name: float(p) for name, p in zip(labels, self.scores)},
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists: (input_ids int64 [B, T], attention_mask int64 [B, T])."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


class ClassifierRunner:
    """Runs an exported sequence classifier; stateless, so safe to share between threads."""

    def __init__(self, session: ort.InferenceSession, manifest: Manifest):
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        missing = sorted({"input_ids", "attention_mask"} - inputs) + sorted({"logits"} - outputs)
        if missing:
            raise ModelFolderError(
                f"the ONNX classifier lacks {missing} (expected inputs input_ids, attention_mask "
                "and output logits). Re-export it with `shadow-edge export --task SEQ_CLS`."
            )
        self.session = session
        self.num_labels = manifest.model.num_labels
        width = next(o for o in session.get_outputs() if o.name == "logits").shape[-1:]
        if width and isinstance(width[0], int) and width[0] != self.num_labels:
            raise ModelFolderError(
                f"shadow_edge.json says model.num_labels is {self.num_labels} but the ONNX "
                f"classifier's logits have {width[0]}. Re-export the model with "
                "`shadow-edge export`, or fix model.num_labels and model.id2label."
            )
        id2label = manifest.model.id2label or {}
        self.labels = [id2label.get(i, f"LABEL_{i}") for i in range(self.num_labels)]

    def logits(self, rows: Sequence[Sequence[int]], pad_id: int) -> np.ndarray:
        """float32 [len(rows), num_labels] logits for token-id rows (each non-empty)."""
        if any(len(r) == 0 for r in rows):
            raise InvalidSettingError(
                "a text encodes to zero tokens and cannot be classified; pass non-empty texts."
            )
        ids, mask = right_pad(rows, pad_id)
        (logits,) = self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})
        return logits

    def classify(
        self, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32
    ) -> list[Classification]:
        """Classify token-id rows in chunks of ``batch_size``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSettingError(
                f"batch_size must be an integer >= 1, got {batch_size!r}. Use e.g. batch_size=16."
            )
        results: list[Classification] = []
        for start in range(0, len(rows), batch_size):
            logits = self.logits(rows[start : start + batch_size], pad_id)
            scores = softmax(logits)
            for row_logits, row_scores in zip(logits, scores):
                best = int(np.argmax(row_logits))
                results.append(
                    Classification(
                        self.labels[best], best, float(row_scores[best]), row_scores, row_logits
                    )
                )
        return results
