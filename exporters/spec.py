"""What to export: the declarative ONNX I/O spec per task and per architecture.

This module only *describes* graphs (names, dtypes, named dynamic axes, default opset); the
conversion lives in ``exporters.onnx`` and the checks in ``exporters.parity`` (the split
optimum's exporters use). Tasks and architectures register with a decorator::

    @register_task("text-generation")
    class CausalLMSpec(TaskSpec): ...

    @register_architecture("llama", "mistral")
    class LlamaLikeSpec(ArchitectureSpec): ...

The I/O tables are the binding contract in ``docs/DESIGN.md`` ("ONNX I/O"); each graph
input and output is a :class:`runtime.manifest.TensorSpec`, the manifest's own type.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from runtime.manifest import TensorSpec
from shadow_edge import task_types
from shadow_edge.encoders import is_encoder_config
from shadow_edge.errors import ConfigError

logger = logging.getLogger(__name__)

#: Default ONNX opset. 23 brings the ``Attention``, ``RMSNormalization`` and
#: ``RotaryEmbedding`` operators, which the torch.onnx dynamo exporter emits for SDPA, RMS
#: norms and rotary embeddings (half the nodes of an opset-18 graph; see
#: ``exporters.attention``). onnxruntime runs them correctly from 1.24.1 (1.23 loads them
#: but gets grouped heads and padded rows wrong; ``runtime.session.MIN_ONNXRUNTIME``).
#: Opset 18 (``--opset 18``) is the lowest the dynamo exporter targets well and suits older
#: onnxruntime builds.
DEFAULT_OPSET = 23

#: The export task names and their aliases are the core's vocabulary (``shadow_edge.task_types``).
TEXT_GENERATION = task_types.GENERATION
TEXT_CLASSIFICATION = task_types.CLASSIFICATION


@dataclass(frozen=True)
class ModelDims:
    """The sizes of a detached backbone that the I/O spec depends on."""

    architecture: str
    model_type: str
    num_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None
    num_labels: int | None = None
    #: the graph takes ``token_type_ids`` (an encoder with segment embeddings, e.g. BERT)
    token_type_ids: bool = False


# ----------------------------------------------------------------------------- architectures


class ArchitectureSpec:
    """How to read a config's sizes. Subclasses override class attributes only.

    ``kv_heads_attr``: the config attribute with the number of KV heads (``None``: no GQA, use
    the attention heads). ``explicit_head_dim``: the config may carry ``head_dim`` that differs
    from ``hidden_size // num_attention_heads`` (Qwen3, Gemma). ``tasks``: the tasks the
    architecture exports to (encoders: classification only).
    """

    model_types: tuple[str, ...] = ()
    kv_heads_attr: str | None = "num_key_value_heads"
    explicit_head_dim: bool = True
    default_opset: int = DEFAULT_OPSET
    tasks: tuple[str, ...] = (TEXT_GENERATION, TEXT_CLASSIFICATION)

    @classmethod
    def attention_window(cls, config) -> int | None:
        """The sliding-window length the config puts in effect, else ``None``.

        With ``layer_types`` (Gemma 3, Qwen2/3): ``sliding_window`` when any layer is
        ``"sliding_attention"``. Without (Mistral): ``sliding_window`` unless
        ``use_sliding_window`` is false. A window that covers ``max_position_embeddings``
        is never reached, so it counts as none.
        """
        window = getattr(config, "sliding_window", None)
        layer_types = getattr(config, "layer_types", None)
        if layer_types is not None:
            in_effect = "sliding_attention" in layer_types
        else:
            in_effect = getattr(config, "use_sliding_window", None) is not False
        limit = getattr(config, "max_position_embeddings", None)
        if not in_effect or not isinstance(window, int) or window < 1:
            return None
        return None if isinstance(limit, int) and window >= limit else window

    @classmethod
    def dims(cls, config, *, num_labels: int | None = None) -> ModelDims:
        heads = int(config.num_attention_heads)
        kv = getattr(config, cls.kv_heads_attr, None) if cls.kv_heads_attr else None
        head_dim = getattr(config, "head_dim", None) if cls.explicit_head_dim else None
        return ModelDims(
            architecture=type(config).__name__.replace("Config", "Model"),
            model_type=config.model_type,
            num_layers=int(config.num_hidden_layers),
            num_attention_heads=heads,
            num_key_value_heads=int(kv or heads),
            head_dim=int(head_dim or config.hidden_size // heads),
            hidden_size=int(config.hidden_size),
            vocab_size=int(config.vocab_size),
            max_position_embeddings=getattr(config, "max_position_embeddings", None),
            num_labels=num_labels,
        )


_ARCHITECTURES: dict[str, type[ArchitectureSpec]] = {}


def register_architecture(*model_types: str):
    """Class decorator: register an :class:`ArchitectureSpec` for HF ``config.model_type``s."""

    def wrap(spec: type[ArchitectureSpec]) -> type[ArchitectureSpec]:
        spec.model_types = model_types
        for model_type in model_types:
            _ARCHITECTURES[model_type] = spec
        return spec

    return wrap


@register_architecture("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma3_text")
class DecoderSpec(ArchitectureSpec):
    """Llama-family decoders: rotary positions, GQA, optional explicit ``head_dim``.

    Gemma 3 (``gemma3_text``, e.g. Gemma 3 270M and 1B) adds sliding-window layers
    (``layer_types``); the window is part of the attention mask, and the parity gate probes
    a prompt longer than it (``exporters.parity``).
    """


@register_architecture("gpt2")
class GPT2Spec(ArchitectureSpec):
    """GPT-2: learned positions, no GQA, ``head_dim = n_embd / n_head``."""

    kv_heads_attr = None
    explicit_head_dim = False


@register_architecture("bert", "distilbert", "roberta", "xlm-roberta", "camembert")
class EncoderSpec(ArchitectureSpec):
    """Bidirectional encoders (BERT incl. MiniLM, DistilBERT, RoBERTa): classification only,
    no KV cache, no GQA; ``token_type_ids`` is an input where the backbone uses it."""

    kv_heads_attr = None
    explicit_head_dim = False
    tasks = (TEXT_CLASSIFICATION,)


def supported_architectures() -> list[str]:
    return sorted(_ARCHITECTURES)


@functools.cache
def _warn_unregistered(model_type: str | None) -> None:
    logger.warning(
        "architecture %r is not in the tested list %s; exporting it as a Llama-like decoder "
        "(the parity gate checks the result)", model_type, supported_architectures(),
    )


def architecture_spec(config) -> type[ArchitectureSpec]:
    """The registered spec for ``config.model_type``.

    Unregistered decoders fall back to :class:`DecoderSpec` with a warning (once per model
    type): the parity gate then decides whether the export is right.

    Raises:
        ConfigError: an unregistered encoder (there is no safe fallback for it).
    """
    model_type = getattr(config, "model_type", None)
    spec = _ARCHITECTURES.get(model_type)
    if spec is None:
        if is_encoder_config(config):
            raise ConfigError(
                f"the encoder type {model_type!r} cannot be exported; supported encoders are "
                f"{sorted(m for m, s in _ARCHITECTURES.items() if s is EncoderSpec)}"
            )
        _warn_unregistered(model_type)
        return DecoderSpec
    return spec


def check_architecture_task(config, task: str) -> None:
    """Raise ``ConfigError`` (one line) when ``config``'s architecture cannot serve ``task``,
    e.g. an encoder asked for text generation."""
    spec = architecture_spec(config)
    if task not in spec.tasks:
        raise ConfigError(
            f"{config.model_type} is an encoder model: it exports only as {spec.tasks[0]!r}, and "
            f"{task!r} needs a decoder-only model (Llama, Qwen, Gemma, GPT-2, ...)"
        )


# ----------------------------------------------------------------------------- tasks


class TaskSpec:
    """The ONNX graph contract of one task; subclasses are registered with :func:`register_task`."""

    task: str = ""

    @classmethod
    def inputs(cls, dims: ModelDims) -> list[TensorSpec]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def outputs(cls, dims: ModelDims) -> list[TensorSpec]:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def input_names(cls, dims: ModelDims) -> list[str]:
        return [spec.name for spec in cls.inputs(dims)]

    @classmethod
    def output_names(cls, dims: ModelDims) -> list[str]:
        return [spec.name for spec in cls.outputs(dims)]


_TASKS: dict[str, type[TaskSpec]] = {}


def register_task(task: str):
    """Class decorator: register a :class:`TaskSpec` under its task name."""

    def wrap(spec: type[TaskSpec]) -> type[TaskSpec]:
        spec.task = task
        _TASKS[task] = spec
        return spec

    return wrap


def past_key_names(num_layers: int) -> list[str]:
    return [f"past_key_values.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


def present_names(num_layers: int) -> list[str]:
    return [f"present.{i}.{kind}" for i in range(num_layers) for kind in ("key", "value")]


#: The optional causal-LM input selecting the positions that get logits (int64 scalar, default
#: 0 = all; k = the last k), as transformers' ``logits_to_keep`` (``exporters.head_graph``).
LOGITS_TO_KEEP = "logits_to_keep"


@register_task(TEXT_GENERATION)
class CausalLMSpec(TaskSpec):
    """Causal LM with a KV cache, shaped ``[batch, kv_heads, seq, head_dim]`` (DESIGN.md).

    The last input, ``logits_to_keep``, is optional (its default 0 is stored in the graph),
    so ``logits`` has ``logits_sequence_length`` = min(k, sequence_length) positions, or
    sequence_length for k = 0.
    """

    @classmethod
    def inputs(cls, dims: ModelDims) -> list[TensorSpec]:
        kv_shape = ("batch_size", dims.num_key_value_heads, "past_sequence_length", dims.head_dim)
        return [
            TensorSpec("input_ids", "int64", ("batch_size", "sequence_length")),
            TensorSpec("attention_mask", "int64", ("batch_size", "total_sequence_length")),
            TensorSpec("position_ids", "int64", ("batch_size", "sequence_length")),
            *(TensorSpec(name, "float32", kv_shape) for name in past_key_names(dims.num_layers)),
            TensorSpec(LOGITS_TO_KEEP, "int64", ()),
        ]

    @classmethod
    def outputs(cls, dims: ModelDims) -> list[TensorSpec]:
        kv_shape = ("batch_size", dims.num_key_value_heads, "total_sequence_length", dims.head_dim)
        logits = ("batch_size", "logits_sequence_length", dims.vocab_size)
        return [
            TensorSpec("logits", "float32", logits),
            *(TensorSpec(name, "float32", kv_shape) for name in present_names(dims.num_layers)),
        ]


@register_task(TEXT_CLASSIFICATION)
class SequenceClassificationSpec(TaskSpec):
    """Sequence classification: decoders pool the last non-padding token, encoders the first
    (``[CLS]`` / ``<s>``); encoders with segment embeddings also take ``token_type_ids``."""

    @classmethod
    def inputs(cls, dims: ModelDims) -> list[TensorSpec]:
        axes = ("batch_size", "sequence_length")
        specs = [TensorSpec("input_ids", "int64", axes), TensorSpec("attention_mask", "int64", axes)]
        if dims.token_type_ids:
            specs.append(TensorSpec("token_type_ids", "int64", axes))
        return specs

    @classmethod
    def outputs(cls, dims: ModelDims) -> list[TensorSpec]:
        return [TensorSpec("logits", "float32", ("batch_size", int(dims.num_labels or 0)))]


def supported_tasks() -> list[str]:
    return sorted(_TASKS)


def normalize_task(task: str) -> str:
    """Map a task name or alias (``"CAUSAL_LM"``, ``"SEQ_CLS"``, ...) to a registered task.

    The names and aliases are :data:`shadow_edge.task_types.TASK_ALIASES`.

    Raises:
        ConfigError: unknown task, or one with no registered :class:`TaskSpec`; the message
            lists the accepted names.
    """
    canonical = task_types.normalize_task(task)
    if canonical not in _TASKS:
        raise ConfigError(f"task {task!r} has no ONNX export spec; use one of {supported_tasks()}")
    return canonical


def task_spec(task: str) -> type[TaskSpec]:
    """The registered :class:`TaskSpec` for ``task`` or an alias (``ConfigError`` if unknown)."""
    return _TASKS[normalize_task(task)]
