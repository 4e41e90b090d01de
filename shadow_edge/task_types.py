"""The task vocabulary of shadow-edge: the one table the core, the exporters and the CLI use.

A task has two names:

- its **task type** (PEFT's ``task_type``: ``CAUSAL_LM``, ``SEQ_CLS``), which checkpoints
  store in ``shadow_config.json`` and the core's task wrappers declare
  (``ShadowForCausalLM.task_type``);
- its **export task** (the transformers / optimum pipeline name: ``text-generation``,
  ``text-classification``), which exports write to ``manifest.json`` and the runtime reads.
  These strings are the runtime's own constants (``runtime.manifest.TASKS``; the runtime
  never imports the core, and ``tests/core/test_task_types.py`` checks they agree).

:func:`normalize_task` and :func:`peft_task_type` map any accepted spelling (either name, or an
alias in :data:`TASK_ALIASES`) to one of them.
"""

from __future__ import annotations

from .errors import ConfigError

#: PEFT's task types (what ``shadow_config.json`` stores).
CAUSAL_LM = "CAUSAL_LM"
SEQ_CLS = "SEQ_CLS"
TASK_TYPES = (CAUSAL_LM, SEQ_CLS)

#: Export task names (``manifest.json``'s ``task``; equal to ``runtime.manifest.TASKS``).
GENERATION = "text-generation"
CLASSIFICATION = "text-classification"
TASKS = (GENERATION, CLASSIFICATION)

#: Export task -> task type, and back.
PEFT_TASK_TYPES = {GENERATION: CAUSAL_LM, CLASSIFICATION: SEQ_CLS}
EXPORT_TASKS = {CAUSAL_LM: GENERATION, SEQ_CLS: CLASSIFICATION}

#: The task wrappers' ``head_names`` ``(base head, shadow head)`` per task type, as saved in
#: ``shadow_modules.safetensors`` (FORMAT.md).
HEADS = {CAUSAL_LM: ("lm_head", "shadow_lm_head"),
         SEQ_CLS: ("classifier_head", "shadow_classifier_head")}

#: Every accepted spelling -> export task.
TASK_ALIASES = {
    GENERATION: GENERATION, CAUSAL_LM: GENERATION, "causal-lm": GENERATION,
    "causal_lm": GENERATION,
    CLASSIFICATION: CLASSIFICATION, SEQ_CLS: CLASSIFICATION, "sequence-classification": CLASSIFICATION,
    "seq-cls": CLASSIFICATION, "seq_cls": CLASSIFICATION,
}


def normalize_task(task: str) -> str:
    """The export task name (``text-generation`` / ``text-classification``) of ``task``.

    Args:
        task: a task type, an export task or an alias in :data:`TASK_ALIASES`.

    Raises:
        ConfigError: unknown task; the message lists the accepted names.
    """
    canonical = TASK_ALIASES.get(task)
    if canonical is None:
        raise ConfigError(f"unknown task {task!r}; use one of {list(TASKS)} (aliases: "
                          f"{sorted(set(TASK_ALIASES) - set(TASKS))})")
    return canonical


def peft_task_type(task: str) -> str:
    """PEFT's ``task_type`` (``CAUSAL_LM`` / ``SEQ_CLS``) of ``task`` or an alias.

    Raises:
        ConfigError: unknown task (see :func:`normalize_task`).
    """
    return PEFT_TASK_TYPES[normalize_task(task)]
