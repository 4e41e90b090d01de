"""Load an export folder for one task, with a usage error that points to the right command.

Torch-free: only ``runtime`` is imported, inside the function.
"""

from __future__ import annotations

from pathlib import Path

from .options import usage_error

#: The command that runs each task, for the "wrong model" error.
COMMAND_FOR_TASK = {
    "text-generation": "shadow-edge generate {folder} PROMPT",
    "text-classification": "shadow-edge classify {folder} TEXT",
}
NOUN_FOR_TASK = {"text-generation": "generation model", "text-classification": "classifier"}


def load_for_task(model_dir: Path, task: str, provider: list[str] | None,
                  threads: int | None, use_ort: bool = False):
    """``runtime.load`` the export folder ``model_dir`` and check that it serves ``task``.

    Raises:
        typer.BadParameter: the folder holds a model of another task (exit code 2); the
            message names the command for that task.
        runtime.errors.ShadowRuntimeError: the folder cannot be loaded (exit code 1).
    """
    import runtime

    model = runtime.load(model_dir, providers=provider, threads=threads, use_ort_format=use_ort)
    actual = model.manifest.task
    if actual != task:
        command = COMMAND_FOR_TASK.get(actual, "shadow-edge info {folder}")
        raise usage_error(
            f"'{model_dir}' is a {actual} model, not a {NOUN_FOR_TASK[task]}. Use "
            f"'{command.format(folder=model_dir)}' instead.",
            param_hint="'MODEL_DIR'",
        )
    return model
