"""``shadow-edge export`` and ``shadow-edge verify``: drive ``exporters`` with progress.

``export`` turns a ShadowPEFT checkpoint (or a standalone shadow model folder) into an
export folder (ONNX, optionally int8/int4 and .ort) and gates it on parity. ``verify``
re-runs the parity gate on a folder later, on the machine where it runs: against the torch
reference stored in the folder (``runtime`` only, so it works on a device without torch),
or with ``--against CKPT`` against the checkpoint (imports torch through ``exporters``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shadow_edge.errors import ShadowEdgeError

from . import console
from .options import BaseOpt, CheckpointArg, JsonOpt, ModelDirArg, Task, usage_error
from .progress import StageProgress

OpsetOpt = Annotated[
    int | None,
    typer.Option("--opset", help="ONNX opset (18 or newer); default: the exporter's (23; 18 "
                 "for older onnxruntime).", show_default=False),
]
TrustRemoteCodeOpt = Annotated[
    bool,
    typer.Option("--trust-remote-code",
                 help="Allow model classes from outside transformers named in the checkpoint."),
]


def choose_precision(int8: bool, int4: bool) -> str:
    """``"fp32"``, ``"int8"`` or ``"int4"`` from the flags; ``BadParameter`` when both are
    given. Every other option is checked once, by ``exporters.export``."""
    if int8 and int4:
        raise usage_error("--int8 and --int4 exclude each other. Pass only one of them.",
                          param_hint="'--int8' / '--int4'")
    return "int8" if int8 else "int4" if int4 else "fp32"


def summarize(result) -> dict[str, Any]:
    """What the summary shows, from the ``exporters.api.ExportResult`` (its manifest is the
    one written into the folder)."""
    manifest = result.manifest
    files = {name: info.bytes for name, info in manifest.files.items()}
    return {
        "output": str(Path(result.output_dir).resolve()),
        "task": manifest.task,
        "precision": manifest.precision,
        "verified": manifest.verified,
        "files": files,
        "total_bytes": sum(files.values()),
        "parity": manifest.parity,
        "manifest": manifest.to_dict(),
    }


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_value(v) for v in value[:6]) + (
            ", ..." if len(value) > 6 else "") + "]"
    return str(value)


def parity_rows(parity: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(check, result, value vs threshold) rows of a parity report dict (pure).

    Checks are ``{"name", "value", "threshold", "comparison", "passed", "detail"}`` as
    written by ``exporters.verify.ParityReport.to_dict``.
    """
    rows = []
    for check in (parity or {}).get("checks") or []:
        measured = f"{_format_value(check.get('value'))} {check.get('comparison', '')} " \
                   f"{_format_value(check.get('threshold'))}"
        if check.get("detail"):
            measured += f" ({check['detail']})"
        rows.append((str(check.get("name")), "ok" if check.get("passed") else "FAIL", measured))
    return rows


def print_summary(summary: dict[str, Any], *, title: str) -> None:
    from rich.table import Table

    out = console.out()
    from rich.markup import escape

    out.print(f"[bold]{title}[/bold] {escape(summary['output'])}")
    files = Table(show_header=True, title_justify="left")
    files.add_column("file")
    files.add_column("size", justify="right")
    for name, size in summary["files"].items():
        console.add_row(files, name, console.human_bytes(size))
    console.add_row(files, "total", console.human_bytes(summary["total_bytes"]))
    out.print(files)
    rows = parity_rows(summary["parity"])
    if rows:
        parity = Table(title="parity", show_header=True, title_justify="left")
        for col in ("check", "result", "details"):
            parity.add_column(col)
        for row in rows:
            console.add_row(parity, *row)
        out.print(parity)
    if not summary["verified"]:
        out.print("not verified (--no-verify): run 'shadow-edge verify OUT --against CKPT'")
    elif summary["parity"] and summary["parity"].get("platform"):
        out.print(f"parity measured on {platform_note(summary['parity']['platform'])}",
                  markup=False)


def platform_note(platform: dict[str, Any] | None) -> str:
    """One line naming where a parity report was measured (pure)."""
    if not platform:
        return "an unrecorded machine"
    flags = ", ".join(platform.get("cpu_flags") or []) or "no flags known"
    cpu = f"{platform['cpu']}, " if platform.get("cpu") else ""
    return (f"{platform.get('machine')} ({cpu}{flags}), onnxruntime "
            f"{platform.get('onnxruntime')}")


def export_command(
    checkpoint: CheckpointArg,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Export folder to write (refused if it exists, see --force).",
        show_default=False)],
    onnx: Annotated[bool, typer.Option(
        "--onnx", help="Export to ONNX. ONNX is the only format, so this is always on; the "
        "flag is accepted as in optimum-cli.")] = False,
    int8: Annotated[bool, typer.Option(
        "--int8", help="Quantize weights and embeddings to 8 bits (block-wise, MatMulNBits; "
        "exact per row on every CPU).")] = False,
    int4: Annotated[bool, typer.Option(
        "--int4", help="Quantize MatMul weights to int4 (MatMulNBits, block 32), embeddings "
        "included.")] = False,
    int4_keep_embeddings: Annotated[bool, typer.Option(
        "--int4-keep-embeddings", help="With --int4: keep the embedding table in fp32.")] = False,
    ort: Annotated[bool, typer.Option(
        "--ort", help="Also write model.ort (onnxruntime mobile format) and the operator "
        "config for a reduced build; with --int4 it needs --int4-keep-embeddings (the ORT "
        "format cannot hold a 4-bit embedding table).")] = False,
    task: Annotated[Task | None, typer.Option(
        "--task", help="Override the task inferred from what the checkpoint holds (needed "
        "only when it says nothing).", show_default=False)] = None,
    base: BaseOpt = None,
    opset: OpsetOpt = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing output folder (only once the new one is complete).")
    ] = False,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Gate the export on parity with the torch model (on by "
        "default; --no-verify skips it and says so in the manifest).")] = True,
    calibration_text: Annotated[Path | None, typer.Option(
        "--calibration-text", help="A UTF-8 text file from your domain; the parity gate "
        "probes windows of it besides its built-in English sample and random ids.",
        show_default=False, exists=True, dir_okay=False)] = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a checkpoint to a verified ONNX folder.

    Detaches the shadow, folds the projection into the head, exports to ONNX, optionally
    quantizes (--int8, --int4) and converts to .ort, checks parity with the torch model and
    writes the folder atomically. Example: shadow-edge export ckpt -o out --onnx --int8
    """
    precision = choose_precision(int8, int4)
    del onnx  # ONNX is the only format
    from exporters.api import export

    with StageProgress(enabled=not as_json) as progress:
        result = export(
            checkpoint, output, base=base, task=task.value if task else None,
            precision=precision, int4_keep_embeddings=int4_keep_embeddings, ort=ort,
            opset=opset, force=force, verify=verify, trust_remote_code=trust_remote_code,
            progress=progress, calibration_text=calibration_text,
        )
    summary = summarize(result)
    if as_json:
        console.echo_json(summary)
    else:
        print_summary(summary, title="exported")


def verify_command(
    model_dir: ModelDirArg,
    against: Annotated[Path | None, typer.Option(
        "--against", help="The checkpoint the folder was exported from: recompute the "
        "reference in torch. Default: the torch reference stored in the folder (no torch "
        "needed).", show_default=False, exists=True)] = None,
    base: BaseOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run an export folder's parity gate on this machine.

    Without --against it compares with the torch reference stored at export time, using the
    runtime only (works on a device without torch). Exit code 1 when a check fails.
    """
    if against is None:
        from runtime.parity import verify_folder

        report = verify_folder(model_dir).to_dict()
    else:
        from exporters.api import verify

        report = verify(model_dir, against, base=base, raise_on_failure=False,
                        trust_remote_code=trust_remote_code).to_dict()
    if as_json:
        console.echo_json(report)
    else:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(f"parity of {model_dir} ({report['precision']})"),
                      title_justify="left")
        for col in ("check", "result", "value vs threshold"):
            table.add_column(col)
        for row in parity_rows(report):
            console.add_row(table, *row)
        out = console.out()
        out.print(table)
        out.print(f"measured on {platform_note(report.get('platform'))}", markup=False)
    if not report["passed"]:
        failed = [row[0] for row in parity_rows(report) if row[1] == "FAIL"]
        what = f"'{against}'" if against is not None else "its stored torch reference"
        fix = (f"Re-export it with 'shadow-edge export {against} -o OUT --force'"
               if against is not None else "Re-export it, or export at a higher precision")
        # ShadowEdgeError, not the exporters' ParityError: importing the exporters imports
        # torch, and this command runs on devices without it (the report is printed above)
        raise ShadowEdgeError(
            f"parity check failed ({', '.join(failed)}): '{model_dir}' does not match {what} "
            f"on this machine. {fix}."
        )
