"""A minimal onnxruntime driver for exported graphs, used by the parity gate.

It speaks the ``exporters.spec`` I/O directly with numpy; the product runtime lives in
``runtime/``. Kept separate so verification does not depend on runtime features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shadow_edge.errors import ExportError


def ort_errors() -> tuple[type[BaseException], ...]:
    """The exceptions onnxruntime raises for a model it cannot load or run. Its pybind error
    types (``InvalidArgument``, ``Fail``, ...) do not derive from ``RuntimeError``."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (RuntimeError, ValueError, state.Fail, state.InvalidArgument, state.InvalidGraph,
            state.InvalidProtobuf, state.NoSuchFile, state.NotImplemented,
            state.RuntimeException)


def session(path: str | Path):
    """An onnxruntime CPU session, one thread (deterministic and friendly to shared CPUs).

    Raises:
        ExportError: onnxruntime cannot load the file.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except ort_errors() as error:
        raise ExportError(f"onnxruntime cannot load {path}: {error}") from error


def run(sess, output_names: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    """``sess.run`` with onnxruntime's failures raised as ``ExportError`` (a broken graph)."""
    try:
        return sess.run(output_names, feed)
    except ort_errors() as error:
        raise ExportError(f"the exported graph fails in onnxruntime: {error}; the export is "
                          "broken - report the model") from error


def positions(mask: np.ndarray) -> np.ndarray:
    """``cumsum(mask) - 1`` clipped at 0 (DESIGN.md), int64."""
    return np.clip(np.cumsum(mask, axis=-1) - 1, 0, None).astype(np.int64)


class OnnxCausalLM:
    """Run an exported text-generation graph: full passes, KV-cached steps, greedy decoding."""

    def __init__(self, path: str | Path):
        self.session = session(path)
        inputs = self.session.get_inputs()
        self.past_names = [i.name for i in inputs if i.name.startswith("past_key_values.")]
        shape = inputs[3].shape if self.past_names else [None, 1, None, 1]
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.output_names = [o.name for o in self.session.get_outputs()]

    def empty_past(self, batch: int) -> list[np.ndarray]:
        """Past tensors of length 0: float32 [batch, kv_heads, 0, head_dim] per key/value."""
        return [np.zeros((batch, self.kv_heads, 0, self.head_dim), np.float32)
                for _ in self.past_names]

    def step(self, input_ids: np.ndarray, attention_mask: np.ndarray,
             past: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward: ``attention_mask`` covers past + new tokens. Returns (logits, present)."""
        input_ids = np.asarray(input_ids, np.int64)
        attention_mask = np.asarray(attention_mask, np.int64)
        past = past if past is not None else self.empty_past(input_ids.shape[0])
        feed = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": positions(attention_mask)[:, -input_ids.shape[1]:],
        }
        feed.update(zip(self.past_names, past))
        outputs = run(self.session, self.output_names, feed)
        return outputs[0], outputs[1:]

    def prefill_then_decode(self, input_ids: np.ndarray, attention_mask: np.ndarray,
                            prefill: int) -> np.ndarray:
        """Teacher-forced logits for all positions: prefill ``prefill`` tokens, then one token
        per step through the KV cache. Returns float32 [batch, seq, vocab]."""
        logits, past = self.step(input_ids[:, :prefill], attention_mask[:, :prefill])
        pieces = [logits]
        for t in range(prefill, input_ids.shape[1]):
            logits, past = self.step(input_ids[:, t:t + 1], attention_mask[:, :t + 1], past)
            pieces.append(logits)
        return np.concatenate(pieces, axis=1)

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
    """Run an exported text-classification graph."""

    def __init__(self, path: str | Path):
        self.session = session(path)

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """int64 [batch, seq] ids and mask -> float32 logits [batch, num_labels].

        Raises:
            ExportError: onnxruntime fails to run the graph.
        """
        feed = {"input_ids": np.asarray(input_ids, np.int64),
                "attention_mask": np.asarray(attention_mask, np.int64)}
        return run(self.session, ["logits"], feed)[0]
