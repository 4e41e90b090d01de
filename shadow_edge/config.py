"""``ShadowConfig``: the adapter's hyper-parameters and the ``shadow_config.json`` file.

The fields and their defaults are those of ``shadow-peft`` 0.1.x (see ``FORMAT.md``), so
its checkpoints load here and ours load there. Our own additions are optional and ``None``
when unknown; readers of 0.1.x ignore them, and we ignore keys we do not know.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError
from .task_types import HEADS, TASK_TYPES

logger = logging.getLogger(__name__)

CONFIG_NAME = "shadow_config.json"
#: The adapter weights and the optional task heads of a checkpoint folder (FORMAT.md).
ADAPTER_NAME = "shadow_adapter.safetensors"
MODULES_NAME = "shadow_modules.safetensors"

#: Task heads that ``modules_to_save`` may name (causal LM and sequence classification).
KNOWN_MODULES_TO_SAVE = tuple(name for heads in HEADS.values() for name in heads)
#: transformers' ``config.problem_type`` values (how a classifier is trained and scored).
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def _check_positive_int(name: str, value: Any, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " or None" if optional else ""
        raise ConfigError(
            f"ShadowConfig.{name} must be a positive int{hint}, got {value!r}. "
            f"Set {name} to a value >= 1{hint}."
        )


@dataclass
class ShadowConfig:
    """Hyper-parameters of a ShadowPEFT adapter.

    Adapter math (``FORMAT.md`` steps 2-3): injection ``h + alpha * dropout((h - s) @ D) @ U``
    with bottleneck ``injection_hidden_size`` (k); gated update with ``gate_hidden_size`` (g).

    Args:
        num_shadow_layers: decoder layers of an implicit shadow (ignored for explicit ones).
        injection_hidden_size: k, the injection bottleneck.
        gate_hidden_size: g, hidden size of the update gate and transform MLPs.
        alpha: scale of the injection delta.
        dropout: dropout probability inside the injection and the update transform, in [0, 1).
        shadow_intermediate_size, shadow_num_attention_heads, shadow_num_key_value_heads,
            shadow_head_dim: optional size overrides of an implicit shadow (``None`` = base's).
        modules_to_save: task heads to train and save, among ``KNOWN_MODULES_TO_SAVE``.
        base_model_name_or_path: path or Hub id of the base (ours, optional).
        task_type: ``"CAUSAL_LM"`` or ``"SEQ_CLS"`` when saved from a task wrapper (ours).
        num_labels, id2label: classification labels for ``SEQ_CLS`` (ours).
        problem_type: the classifier's ``config.problem_type`` for ``SEQ_CLS`` (ours), one of
            ``PROBLEM_TYPES`` or ``None``; set on the base when it is loaded again.
        shadow_model_config: an explicit shadow backbone's ``config.to_dict()`` (ours), used to
            rebuild it when ``shadow_model=`` is not passed.
        shadow_embeddings_shared: whether the shadow is fed the base's input embeddings (ours).

    Raises:
        ConfigError: a field has an invalid value; the message names the field.
    """

    num_shadow_layers: int = 1
    injection_hidden_size: int = 16
    gate_hidden_size: int = 10
    alpha: float = 0.1
    dropout: float = 0.2
    shadow_intermediate_size: int | None = None
    shadow_num_attention_heads: int | None = None
    shadow_num_key_value_heads: int | None = None
    shadow_head_dim: int | None = None
    modules_to_save: list[str] = field(default_factory=list)
    # Our additions (optional; readers of shadow-peft 0.1.x ignore them).
    base_model_name_or_path: str | None = None
    task_type: str | None = None
    num_labels: int | None = None
    id2label: dict[int, str] | None = None
    problem_type: str | None = None
    shadow_model_config: dict[str, Any] | None = None
    shadow_embeddings_shared: bool | None = None

    def __post_init__(self) -> None:
        for name in ("num_shadow_layers", "injection_hidden_size", "gate_hidden_size"):
            _check_positive_int(name, getattr(self, name), optional=False)
        for name in (
            "shadow_intermediate_size",
            "shadow_num_attention_heads",
            "shadow_num_key_value_heads",
            "shadow_head_dim",
            "num_labels",
        ):
            _check_positive_int(name, getattr(self, name), optional=True)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not math.isfinite(
            self.alpha
        ):
            raise ConfigError(f"ShadowConfig.alpha must be a finite number, got {self.alpha!r}.")
        self.alpha = float(self.alpha)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not (
            0.0 <= self.dropout < 1.0
        ):
            raise ConfigError(
                f"ShadowConfig.dropout must be a probability in [0, 1), got {self.dropout!r}."
            )
        self.dropout = float(self.dropout)
        if self.modules_to_save is None:  # a hand-edited file may hold null (PEFT's default)
            self.modules_to_save = []
        if isinstance(self.modules_to_save, str) or not isinstance(self.modules_to_save, (list, tuple)):
            raise ConfigError(
                "ShadowConfig.modules_to_save must be a list of head names, e.g. "
                f"['classifier_head'], got {self.modules_to_save!r}."
            )
        self.modules_to_save = list(self.modules_to_save)
        unknown = [m for m in self.modules_to_save if m not in KNOWN_MODULES_TO_SAVE]
        if unknown:
            raise ConfigError(
                f"ShadowConfig.modules_to_save names unknown modules {unknown}; "
                f"choose among {list(KNOWN_MODULES_TO_SAVE)}."
            )
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            raise ConfigError(
                f"ShadowConfig.task_type must be one of {list(TASK_TYPES)} or None, "
                f"got {self.task_type!r}."
            )
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(
                f"ShadowConfig.problem_type must be one of {list(PROBLEM_TYPES)} or None, "
                f"got {self.problem_type!r}."
            )
        if self.id2label is not None:
            if not isinstance(self.id2label, dict):
                raise ConfigError(
                    f"ShadowConfig.id2label must be a dict {{int: str}}, got {self.id2label!r}."
                )
            try:  # JSON stores int keys as strings
                self.id2label = {int(k): str(v) for k, v in self.id2label.items()}
            except ValueError as exc:
                raise ConfigError(
                    f"ShadowConfig.id2label keys must be integers, got {list(self.id2label)}."
                ) from exc
        if self.shadow_model_config is not None and not isinstance(self.shadow_model_config, dict):
            raise ConfigError(
                "ShadowConfig.shadow_model_config must be a dict (a backbone's config.to_dict()), "
                f"got {type(self.shadow_model_config).__name__}."
            )

    # ---- dict / JSON ----
    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (``id2label`` keys become strings, as in HF configs)."""
        data = asdict(self)
        if data["id2label"] is not None:
            data["id2label"] = {str(k): v for k, v in data["id2label"].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShadowConfig:
        """Build from a dict; unknown keys are ignored (logged at debug level)."""
        known = {f.name for f in fields(cls)}
        ignored = sorted(set(data) - known)
        if ignored:
            logger.debug("ShadowConfig: ignoring unknown keys %s", ignored)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json_string(self) -> str:
        """JSON text with sorted keys and a trailing newline (the ``shadow_config.json`` form)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write ``shadow_config.json`` into ``save_directory`` (created if needed); return its path."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_json_file(cls, path: str | Path) -> ShadowConfig:
        """Read a ``shadow_config.json`` file.

        Raises:
            CheckpointError: the file is missing or is not a JSON object.
            ConfigError: a field has an invalid value.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"Missing {path.name} at {path}. Point to a folder written by save_pretrained "
                "(it holds shadow_config.json and shadow_adapter.safetensors)."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc}). Re-save the checkpoint.") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}.")
        return cls.from_dict(data)

    @classmethod
    def from_pretrained(cls, pretrained_path: str | Path) -> ShadowConfig:
        """Read ``shadow_config.json`` from a local checkpoint folder."""
        return cls.from_json_file(Path(pretrained_path) / CONFIG_NAME)
