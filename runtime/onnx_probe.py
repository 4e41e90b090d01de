"""Minimal drivers that run an exported graph on probe inputs for the parity gate.

They speak the ONNX I/O of docs/DESIGN.md directly with numpy (full passes, teacher-forced
decoding through the KV cache, greedy decoding), so a check needs only the ``.onnx`` file:
the exporter runs them on a model before its folder exists, and ``runtime.parity`` runs
them on a device. Sessions use one thread (deterministic, and kind to shared CPUs) and the
runtime's graph optimisation level, so the kernels checked are the kernels that run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .causal_lm import LOGITS_TO_KEEP, takes_logits_to_keep
from .errors import ModelFolderError
from .generation import positions_from_mask
from .session import _ORT_LOAD_ERRORS, create_session


def _run(session, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``session.run`` with onnxruntime's failures raised as ``ModelFolderError``."""
    try:
        return session.run(output_names, feed)
    except (*_ORT_LOAD_ERRORS, RuntimeError, ValueError) as error:
        raise ModelFolderError(f"the model fails in onnxruntime: {error}. The export is "
                               "broken: re-export it, or report the model") from error


class OnnxCausalLM:
    """Run an exported text-generation graph: full passes, KV-cached steps, greedy decoding.

    Raises:
        ModelFolderError: onnxruntime cannot load ``path`` (or, later, run it).
    """

    def __init__(self, path: str | Path):
        self.session = create_session(path, threads=1)
        inputs = self.session.get_inputs()
        self.past_names = [i.name for i in inputs if i.name.startswith("past_key_values.")]
        shape = inputs[3].shape if self.past_names else [None, 1, None, 1]
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.output_names = [o.name for o in self.session.get_outputs()]
        #: the graph computes logits for the last k positions only when asked (issue 17)
        self.keeps_logits = takes_logits_to_keep(self.session)

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Past tensors of length 0: float32 [batch, kv_heads, 0, head_dim] per key/value."""
        return [np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32)
                for _ in self.past_names]

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray,
             past: list[np.ndarray] | None = None, *,
             logits_to_keep: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward: ``attention_mask`` covers past + new tokens. Returns (logits float32
        [batch, seq or min(seq, logits_to_keep), vocab], present).

        ``logits_to_keep`` > 0 returns the last k positions only; a graph with the
        ``logits_to_keep`` input then computes no others (a long probe's full logits are
        [seq, vocab] float32: 545 MB at 520 x 262,144). 0 returns every position.

        Raises:
            ValueError: ``logits_to_keep`` is negative.
            ModelFolderError: onnxruntime cannot run the graph.
        """
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0 (0 = every position), got "
                             f"{logits_to_keep}")
        input_ids = np.asarray(input_ids, np.int64)
        attention_mask = np.asarray(attention_mask, np.int64)
        past = past if past is not None else self.empty_past(input_ids.shape[0])
        feed = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": positions_from_mask(attention_mask)[:, -input_ids.shape[1]:],
        }
        feed.update(zip(self.past_names, past))
        if logits_to_keep and self.keeps_logits:
            feed[LOGITS_TO_KEEP] = np.array(logits_to_keep, np.int64)
        outputs = _run(self.session, self.output_names, feed)
        logits = outputs[0][:, -logits_to_keep:] if logits_to_keep else outputs[0]
        return logits, outputs[1:]

    def prefill_then_decode(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                            prefill: int, *, scored_from: int = 0) -> np.ndarray:
        """Teacher-forced logits: prefill ``prefill`` tokens (at most seq), then one token per
        step through the KV cache. Returns float32 [batch, seq - scored_from, vocab], the
        positions from ``scored_from`` (0 <= scored_from <= seq) on; the prefill computes no
        logits before it."""
        prefill = min(prefill, input_ids.shape[1])
        kept = max(prefill - scored_from, 0)  # prefill positions returned
        logits, past = self.step(input_ids[:, :prefill], attention_mask[:, :prefill],
                                 logits_to_keep=max(kept, 1) if scored_from else 0)
        pieces = [logits[:, logits.shape[1] - kept:]]
        for t in range(prefill, input_ids.shape[1]):
            logits, past = self.step(input_ids[:, t:t + 1], attention_mask[:, :t + 1], past)
            pieces.append(logits)
        return np.concatenate(pieces, axis=1)[:, max(scored_from - prefill, 0):]

    def greedy(self, input_ids: np.ndarray, steps: int) -> list[int]:
        """Greedy tokens for one row (batch 1) through the KV cache."""
        ids = np.asarray(input_ids, np.int64).reshape(1, -1)
        mask = np.ones_like(ids)
        logits, past = self.step(ids, mask)
        tokens = []
        for _ in range(steps):
            token = int(logits[0, -1].argmax())
            tokens.append(token)
            mask = np.concatenate([mask, np.ones((1, 1), np.int64)], axis=1)
            logits, past = self.step(np.array([[token]], np.int64), mask, past)
        return tokens


class OnnxClassifier:
    """Run an exported text-classification graph.

    Raises:
        ModelFolderError: onnxruntime cannot load ``path`` (or, later, run it).
    """

    def __init__(self, path: str | Path):
        self.session = create_session(path, threads=1)
        #: the graph takes ``token_type_ids`` (an encoder with segment embeddings, e.g. BERT)
        self.takes_token_type_ids = any(i.name == "token_type_ids"
                                        for i in self.session.get_inputs())

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray,
               token_type_ids: np.ndarray | None = None) -> np.ndarray:
        """int64 [batch, seq] ids and mask (and segment ids for a graph that takes them,
        zeros by default) -> float32 logits [batch, num_labels]."""
        feed = {"input_ids": np.asarray(input_ids, np.int64),
                "attention_mask": np.asarray(attention_mask, np.int64)}
        if self.takes_token_type_ids:
            feed["token_type_ids"] = (np.zeros_like(feed["input_ids"]) if token_type_ids is None
                                      else np.asarray(token_type_ids, np.int64))
        return _run(self.session, ["logits"], feed)[0]
