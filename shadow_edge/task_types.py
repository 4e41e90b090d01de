"""The task vocabulary shared by the core, the exporters and the CLI.

Canonical names are the pipeline names users know from transformers and optimum
(``text-generation``, ``text-classification``); checkpoints store PEFT's ``task_type``
names (``CAUSAL_LM``, ``SEQ_CLS``). :func:`normalize_task` accepts either, and a few
spellings of them.
"""

from __future__ import annotations

from .errors import ConfigError

GENERATION = "text-generation"
CLASSIFICATION = "text-classification"
TASKS = (GENERATION, CLASSIFICATION)

#: Canonical task -> PEFT ``task_type`` (what ``shadow_config.json`` stores).
PEFT_TASK_TYPES = {GENERATION: "CAUSAL_LM", CLASSIFICATION: "SEQ_CLS"}

TASK_ALIASES = {
    GENERATION: GENERATION, "causal-lm": GENERATION, "causal_lm": GENERATION,
    "CAUSAL_LM": GENERATION,
    CLASSIFICATION: CLASSIFICATION, "sequence-classification": CLASSIFICATION,
    "seq-cls": CLASSIFICATION, "seq_cls": CLASSIFICATION, "SEQ_CLS": CLASSIFICATION,
}


def normalize_task(task: str) -> str:
    """The canonical name (``text-generation`` / ``text-classification``) of ``task``.

    Raises:
        ConfigError: unknown task; the message lists the accepted names.
    """
    canonical = TASK_ALIASES.get(task)
    if canonical is None:
        raise ConfigError(f"unknown task {task!r}; use one of {list(TASKS)} (aliases: "
                          f"{sorted(set(TASK_ALIASES) - set(TASKS))})")
    return canonical


def peft_task_type(task: str) -> str:
    """PEFT's ``task_type`` (``CAUSAL_LM`` / ``SEQ_CLS``) of ``task`` or an alias."""
    return PEFT_TASK_TYPES[normalize_task(task)]
