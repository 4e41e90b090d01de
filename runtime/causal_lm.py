"""The exported causal LM's step runner (:class:`CausalLMRunner`): one forward step, with the
KV cache (:class:`KVCache`) carried between steps.

The graph's contract (docs/DESIGN.md, "ONNX I/O"): inputs ``input_ids``, ``attention_mask``
(past + new), ``position_ids`` and ``past_key_values.{i}.key/value`` [batch, kv_heads,
past_len, head_dim]; outputs ``logits`` and ``present.{i}.key/value`` (past + new). The
graph itself concatenates past and new keys, so the cache cannot be preallocated in place
(that needs a fused attention op with a shared past/present buffer, as in
onnxruntime-genai's GroupQueryAttention graphs).

How the cache is carried was measured (benchmarks/bench_runtime.py prints "cache via
session.run vs IO binding"; 2-layer SmolLM2-sized shadow, int8 and fp32, 1 thread, shared
2-core machine): feeding the ``present`` arrays that ``InferenceSession.run`` returns
straight back as the next ``past`` inputs (onnxruntime wraps C-contiguous numpy inputs
without a copy) was as fast as IO binding with ``OrtValue`` outputs, within run-to-run
noise, at 128 + 128 tokens (0.89-1.06x) and at an 1800-token context (0.9-1.6x). IO
binding did not pay, so the plain ``run`` path is used: it is the least code.

Graphs exported since issue 17 take an optional int64 scalar ``logits_to_keep`` (default 0 =
every position, k = the last k; transformers' name): a step that needs only the last
position feeds 1, so the prefill skips the head on the other prompt positions. Older graphs
without it still run (all positions, the last one taken here).

All state of a generation lives in a :class:`KVCache` owned by the caller, so one
:class:`CausalLMRunner` (one InferenceSession) serves many threads at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .errors import ModelFolderError
from .manifest import Manifest

LOGITS_TO_KEEP = "logits_to_keep"
_LAST_POSITION = np.array(1, dtype=np.int64)


@dataclass
class KVCache:
    """The past keys and values of one generation: ``values[2*i]`` key, ``[2*i+1]`` value of
    layer i, each float32 [batch, kv_heads, length, head_dim] (as onnxruntime returned it)."""

    values: list[np.ndarray]
    length: int


def takes_logits_to_keep(session: ort.InferenceSession) -> bool:
    """Whether the graph has the optional ``logits_to_keep`` input (exports since issue 17;
    an input with a default, so onnxruntime lists it as an overridable initializer)."""
    names = {i.name for i in session.get_inputs()}
    names |= {i.name for i in session.get_overridable_initializers()}
    return LOGITS_TO_KEEP in names


class CausalLMRunner:
    """Runs prefill and decode steps of an exported causal LM session.

    Raises ModelFolderError at construction if the session's inputs and outputs do not
    follow the ONNX I/O contract for ``manifest.model.num_layers`` layers.
    """

    def __init__(self, session: ort.InferenceSession, manifest: Manifest):
        model = manifest.model
        self.session = session
        self.num_layers = model.num_layers
        self.kv_heads = model.num_key_value_heads
        self.head_dim = model.head_dim
        self.vocab_size = model.vocab_size
        self.past_names = [
            f"past_key_values.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")
        ]
        self.present_names = [
            f"present.{i}.{kind}" for i in range(self.num_layers) for kind in ("key", "value")
        ]
        inputs = {i.name for i in session.get_inputs()}
        outputs = [o.name for o in session.get_outputs()]
        expected_in = {"input_ids", "attention_mask", "position_ids", *self.past_names}
        expected_out = {"logits", *self.present_names}
        missing_in = sorted(expected_in - inputs)
        missing_out = sorted(expected_out - set(outputs))
        if missing_in or missing_out:
            raise ModelFolderError(
                f"the ONNX model does not follow the shadow-edge causal-LM contract for "
                f"{self.num_layers} layers: missing inputs {missing_in}, outputs {missing_out}. "
                "Re-export it with `shadow-edge export`, or fix model.num_layers in shadow_edge.json."
            )
        self.output_names = ["logits", *self.present_names]
        #: the graph takes ``logits_to_keep`` (an overridable initializer; older exports do not)
        self.keeps_logits = takes_logits_to_keep(session)
        self._check_sizes(session)

    def _check_sizes(self, session: ort.InferenceSession) -> None:
        """Compare the graph's fixed sizes with the manifest, so a mismatch fails at load
        with a clear message instead of as an onnxruntime shape error mid-generation."""
        want = {"num_key_value_heads": (1, self.kv_heads), "head_dim": (3, self.head_dim)}
        wrong: dict[str, str] = {}  # field -> first disagreement
        for arg in session.get_inputs():
            if arg.name in self.past_names and len(arg.shape) == 4:
                for field, (axis, value) in want.items():
                    dim = arg.shape[axis]
                    if isinstance(dim, int) and dim != value:
                        wrong.setdefault(field, f"model.{field} is {value} but {arg.name} has {dim}")
        logits = next(o for o in session.get_outputs() if o.name == "logits")
        vocab = logits.shape[-1] if logits.shape else None
        if isinstance(vocab, int) and vocab != self.vocab_size:
            wrong["vocab_size"] = f"model.vocab_size is {self.vocab_size} but logits have {vocab}"
        if wrong:
            raise ModelFolderError(
                f"shadow_edge.json disagrees with the ONNX graph: {'; '.join(wrong.values())}. "
                "Re-export the model with `shadow-edge export`, or fix those fields."
            )

    def empty_cache(self, batch_size: int) -> KVCache:
        """A cache with past length 0 (the first step's past inputs)."""
        shape = (batch_size, self.kv_heads, 0, self.head_dim)
        empty = np.zeros(shape, dtype=np.float32)
        return KVCache([empty] * len(self.past_names), 0)

    def step(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        position_ids: np.ndarray,
        cache: KVCache,
        *,
        all_logits: bool = False,
    ) -> tuple[np.ndarray, KVCache]:
        """Run one forward pass.

        Args:
            input_ids: int64 [batch, seq].
            attention_mask: int64 [batch, cache.length + seq] (1 = real token, 0 = padding).
            position_ids: int64 [batch, seq].
            cache: the past; not modified (a new KVCache is returned).
            all_logits: return logits for every position instead of only the last.

        Returns:
            (logits float32 [batch, vocab] or [batch, seq, vocab], the new KVCache).
        """
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
            "position_ids": np.ascontiguousarray(position_ids, dtype=np.int64),
        }
        feeds.update(zip(self.past_names, cache.values))
        if self.keeps_logits and not all_logits:
            feeds[LOGITS_TO_KEEP] = _LAST_POSITION
        outputs = self.session.run(self.output_names, feeds)
        logits = outputs[0]
        if not all_logits:
            logits = np.ascontiguousarray(logits[:, -1, :])
        new_cache = KVCache(list(outputs[1:]), cache.length + input_ids.shape[1])
        return logits, new_cache
