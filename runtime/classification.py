"""Sequence classification: batches of token ids -> logits, scores and labels.

The graph (docs/DESIGN.md) takes ``input_ids`` and ``attention_mask`` (int64 [batch, seq]),
plus ``token_type_ids`` for encoders with segment embeddings (BERT, when the manifest lists
it), and returns ``logits`` (float32 [batch, num_labels]), pooling a token itself (the last
non-padding one for decoders, the first for encoders). Rows are right-padded here: the real
tokens then keep the positions and attention they have when the row runs alone.

Scores follow the model's ``problem_type`` as transformers' ``TextClassificationPipeline``
(``postprocess``, transformers 5.24) computes them: raw logits for "regression", a sigmoid
for "multi_label_classification" and for one-logit models, else a softmax. The winning
label is the highest score's. Multi-label results also list every label whose score
reaches a threshold (0.5 by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from .errors import InvalidSettingError, ModelFolderError
from .manifest import Manifest

#: Score functions by name (the pipeline's ``ClassificationFunction`` values).
SCORE_FUNCTIONS = ("softmax", "sigmoid", "none")
#: Default score a multi-label model's label needs to be listed in ``Classification.labels``.
MULTI_LABEL_THRESHOLD = 0.5


@dataclass
class Classification:
    """The result for one text.

    Attributes:
        label: the winning label name (``id2label``; "LABEL_i" when the export has none).
        label_id: its index.
        score: its score (see the module docstring: a probability, or the raw value for
            regression).
        scores: float32 [num_labels] scores of every label.
        logits: float32 [num_labels] raw logits.
        labels: multi-label models: every label whose score reaches the threshold, best
            first (maybe none); other models: ``[label]``.
    """

    label: str
    label_id: int
    score: float
    scores: np.ndarray
    logits: np.ndarray
    labels: list[str] = field(default_factory=list)

    def as_dict(self, labels: Sequence[str]) -> dict:
        """JSON-ready view: label, score, labels and {label: score}."""
        return {
            "label": self.label,
            "score": self.score,
            "labels": list(self.labels),
            "scores": {name: float(p) for name, p in zip(labels, self.scores)},
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for stability, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function in float64 for stability, returned as float32."""
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


def score_function(problem_type: str | None, num_labels: int) -> str:
    """"softmax", "sigmoid" or "none", as ``TextClassificationPipeline.postprocess`` picks its
    default ``function_to_apply`` from ``config.problem_type`` and ``num_labels``."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def scores_of(logits: np.ndarray, function: str) -> np.ndarray:
    """Apply a :data:`SCORE_FUNCTIONS` name to float32 ``[..., num_labels]`` logits."""
    if function == "softmax":
        return softmax(logits)
    if function == "sigmoid":
        return sigmoid(logits)
    return logits.astype(np.float32)


def right_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id lists: (input_ids int64 [B, T], attention_mask int64 [B, T])."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


TOKEN_TYPE_IDS = "token_type_ids"


class ClassifierRunner:
    """Runs an exported sequence classifier; stateless, so safe to share between threads.

    ``takes_token_type_ids``: the graph has a ``token_type_ids`` input (as the manifest's
    ``inputs`` list says); :meth:`logits` then feeds the rows' segment ids.
    """

    def __init__(self, session: ort.InferenceSession, manifest: Manifest):
        inputs = {i.name for i in session.get_inputs()}
        outputs = {o.name for o in session.get_outputs()}
        missing = sorted({"input_ids", "attention_mask"} - inputs) + sorted({"logits"} - outputs)
        if missing:
            raise ModelFolderError(
                f"the ONNX classifier lacks {missing} (expected inputs input_ids, attention_mask "
                "and output logits). Re-export it with `shadow-edge export --task SEQ_CLS`."
            )
        self.takes_token_type_ids = TOKEN_TYPE_IDS in inputs
        listed = {t.name for t in manifest.inputs}
        if listed and (TOKEN_TYPE_IDS in listed) != self.takes_token_type_ids:
            raise ModelFolderError(
                f"shadow_edge.json {'lists' if TOKEN_TYPE_IDS in listed else 'does not list'} the "
                f"input {TOKEN_TYPE_IDS}, but the ONNX graph {'has' if self.takes_token_type_ids else 'lacks'} "
                "it. The folder is inconsistent: re-export the model with `shadow-edge export`."
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
        self.problem_type = manifest.model.problem_type
        self.score_function = score_function(self.problem_type, self.num_labels)

    def logits(
        self, rows: Sequence[Sequence[int]], pad_id: int,
        type_rows: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """float32 [len(rows), num_labels] logits for token-id rows (each non-empty).

        ``type_rows``: each row's ``token_type_ids`` (same lengths), fed when the graph takes
        them; default all 0 (one segment).
        """
        if any(len(r) == 0 for r in rows):
            raise InvalidSettingError(
                "a text encodes to zero tokens and cannot be classified; pass non-empty texts."
            )
        ids, mask = right_pad(rows, pad_id)
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.takes_token_type_ids:
            if type_rows is None:
                feed[TOKEN_TYPE_IDS] = np.zeros_like(ids)
            elif [len(t) for t in type_rows] != [len(r) for r in rows]:
                raise InvalidSettingError(
                    "token_type_ids rows must have the lengths of the token id rows; pass the "
                    "type ids the tokenizer returned with the ids."
                )
            else:
                feed[TOKEN_TYPE_IDS] = right_pad(type_rows, 0)[0]
        (logits,) = self.session.run(["logits"], feed)
        return logits

    def classify(
        self, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32,
        threshold: float = MULTI_LABEL_THRESHOLD,
        type_rows: Sequence[Sequence[int]] | None = None,
    ) -> list[Classification]:
        """Classify token-id rows (with their ``type_rows``, see :meth:`logits`) in chunks of
        ``batch_size``; ``threshold`` selects the ``labels`` of a multi-label model."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSettingError(
                f"batch_size must be an integer >= 1, got {batch_size!r}. Use e.g. batch_size=16."
            )
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0.0 <= threshold <= 1.0
        ):
            raise InvalidSettingError(
                f"threshold must be a number in [0, 1], got {threshold!r}. Use e.g. threshold=0.5."
            )
        multi_label = self.problem_type == "multi_label_classification"
        results: list[Classification] = []
        for start in range(0, len(rows), batch_size):
            types = None if type_rows is None else type_rows[start : start + batch_size]
            logits = self.logits(rows[start : start + batch_size], pad_id, types)
            scores = scores_of(logits, self.score_function)
            for row_logits, row_scores in zip(logits, scores):
                best = int(np.argmax(row_scores))
                if multi_label:
                    order = np.argsort(-row_scores, kind="stable")
                    chosen = [self.labels[i] for i in order if row_scores[i] >= threshold]
                else:
                    chosen = [self.labels[best]]
                results.append(
                    Classification(
                        self.labels[best], best, float(row_scores[best]), row_scores,
                        row_logits, chosen,
                    )
                )
        return results
