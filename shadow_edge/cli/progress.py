"""Per-stage progress of an export (load, fold, export, quantize, verify, write).

:class:`StageProgress` is the ``progress(stage, info)`` callback of ``exporters.api.export``.
The exporter calls it when a stage begins; the previous stage ends there. Each stage is one
line on stderr: a spinner while it runs, then its duration and a short note from ``info``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import console

if TYPE_CHECKING:
    from typing_extensions import Self


def stage_note(stage: str, info: dict[str, Any]) -> str:
    """A short human note for a stage's ``info`` dict (pure; empty when nothing to say)."""
    if stage == "load":
        base = f" on base {info['base']}" if info.get("base") else ""
        return f"{info.get('checkpoint', '')}{base}"
    if stage == "fold":
        parts = []
        if info.get("parameters") is not None:
            parts.append(f"{info['parameters']:,} parameters")
        if info.get("bytes") is not None:
            parts.append(console.human_bytes(info["bytes"]))
        if info.get("fold_max_rel_diff") is not None:
            parts.append(f"fold max rel diff {info['fold_max_rel_diff']:.1e}")
        return ", ".join(parts)
    if stage == "export" and info.get("opset"):
        return f"opset {info['opset']}"
    if stage in ("quantize", "verify") and info.get("precision"):
        keep = " (embeddings kept fp32)" if info.get("keep_embeddings") else ""
        return f"{info['precision']}{keep}"
    if stage == "write":
        return str(info.get("output_dir", "")) + (" + model.ort" if info.get("ort") else "")
    return ""


class StageProgress:
    """Progress callback; with ``enabled=False`` (``--json``) it draws nothing.

    :attr:`stages` records ``(stage, seconds)`` of every finished stage.
    """

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.stages: list[tuple[str, float]] = []
        self._current: tuple[str, float, Any, str] | None = None  # stage, start, task id, note
        self._progress = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓[/green]"), TextColumn("{task.description}"),
                TimeElapsedColumn(), console=console.err(), transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._finish(failed=exc_type is not None)
        if self._progress is not None:
            if exc_type is not None:  # the error line says what failed; clear the display
                for task in list(self._progress.task_ids):
                    self._progress.remove_task(task)
            self._progress.stop()

    def _finish(self, failed: bool = False) -> None:
        if self._current is None:
            return
        stage, start, task, note = self._current
        self._current = None
        self.stages.append((stage, time.perf_counter() - start))
        if self._progress is not None:
            text = f"{stage}" + (f" ({note})" if note else "") + (" failed" if failed else "")
            self._progress.update(task, description=text, total=1, completed=0 if failed else 1)
            self._progress.stop_task(task)

    def __call__(self, stage: str, info: dict[str, Any] | None = None) -> None:
        self._finish()
        note = stage_note(stage, info or {})
        task = None
        if self._progress is not None:
            task = self._progress.add_task(f"{stage} ..." + (f" ({note})" if note else ""),
                                           total=None)
        self._current = (stage, time.perf_counter(), task, note)
