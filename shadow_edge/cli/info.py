"""``shadow-edge info``: what is in an export folder and what this device offers.

Reads only the manifest and the file sizes (plus SHA-256 with ``--check``); it does not load
the model, so it is instant even for large folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from . import console
from .options import JsonOpt, ModelDirArg


def _file_rows(folder: Path, manifest) -> list[dict[str, Any]]:
    rows = []
    for name, recorded in manifest.files.items():
        path = folder / name
        on_disk = path.stat().st_size if path.is_file() else None
        rows.append({
            "name": name,
            "bytes": on_disk,
            "recorded_bytes": recorded.bytes,
            "sha256": recorded.sha256,
            "present": on_disk is not None,
            "size_matches": on_disk == recorded.bytes,
        })
    return rows


def describe(folder: Path, *, check: bool = False) -> dict[str, Any]:
    """The data ``info`` prints: manifest, per-file sizes, total size, the providers and
    whether constrained decoding (``--grammar`` etc.) is available.

    Raises:
        runtime.errors.ModelFolderError: missing or invalid manifest; with ``check``, a file
            that is missing or whose size or SHA-256 differs from the manifest.
    """
    from runtime.grammar import constrained_decoding_status
    from runtime.manifest import check_files, read_manifest
    from runtime.session import available_providers

    manifest = read_manifest(folder)
    if check:
        check_files(folder, manifest, hashes=True)
    files = _file_rows(folder, manifest)
    return {
        "folder": str(folder),
        "manifest": manifest.to_dict(),
        "files": files,
        "total_bytes": sum(f["bytes"] or 0 for f in files),
        "available_providers": available_providers(),
        "constrained_decoding": constrained_decoding_status(manifest, folder),
        "checked": check,
    }


def _print_tables(data: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    m = data["manifest"]
    model = m["model"]
    out = console.out()
    summary = Table(title=escape(data["folder"]), show_header=False, title_justify="left")
    summary.add_column("field", style="bold")
    summary.add_column("value")
    console.add_row(summary, "task", m["task"])
    console.add_row(summary, "precision", m["precision"])
    console.add_row(summary, "opset", str(m["opset"]))
    console.add_row(summary, "architecture", str(model["architecture"]))
    console.add_row(summary, "layers / hidden / vocab",
                    f"{model['num_layers']} / {model['hidden_size']} / {model['vocab_size']}")
    if m["task"] == "text-generation":
        console.add_row(summary, "kv heads / head dim",
                        f"{model['num_key_value_heads']} / {model['head_dim']}")
        console.add_row(summary, "context", str(model.get("max_position_embeddings")))
    else:
        labels = model.get("id2label") or {}
        names = ", ".join(str(v) for v in list(labels.values())[:8])
        more = " ..." if len(labels) > 8 else ""
        console.add_row(summary, "labels", f"{model['num_labels']}: {names}{more}")
    source = m.get("source") or {}
    console.add_row(summary, "source", f"{source.get('kind')} {source.get('checkpoint')}")
    console.add_row(summary, "base", str(source.get("base")))
    parity = m.get("parity") or {}
    verified = "yes" if m.get("verified") else "no (exported with --no-verify)"
    if parity:
        verified += f", parity {'passed' if parity.get('passed') else 'FAILED'}"
    console.add_row(summary, "verified", verified)
    console.add_row(summary, "total size", console.human_bytes(data["total_bytes"]))
    console.add_row(summary, "constrained decoding", grammar_summary(data["constrained_decoding"]))
    console.add_row(summary, "providers here", ", ".join(data["available_providers"]))
    out.print(summary)

    files = Table(title="files", title_justify="left")
    for col in ("file", "size", "status"):
        files.add_column(col)
    for f in data["files"]:
        status = ("missing" if not f["present"]
                  else "ok" if f["size_matches"] else f"size differs ({f['recorded_bytes']})")
        if data["checked"] and f["present"] and f["size_matches"]:
            status += ", sha256 ok"
        console.add_row(files, f["name"], console.human_bytes(f["bytes"]), status)
    out.print(files)

    io = Table(title="inputs / outputs", title_justify="left")
    for col in ("", "name", "dtype", "shape"):
        io.add_column(col)
    shown = {"inputs": m["inputs"], "outputs": m["outputs"]}
    for kind, specs in shown.items():
        for spec in _abbreviate_kv(specs):
            shape = "[" + ", ".join(str(d) for d in spec["shape"]) + "]"
            console.add_row(io, "input" if kind == "inputs" else "output", spec["name"],
                            spec["dtype"], shape)
    out.print(io)


def grammar_summary(status: dict[str, Any]) -> str:
    """One line for ``runtime.grammar.constrained_decoding_status``."""
    from runtime.grammar import INSTALL_HINT

    if not status["available"]:
        return f"no: {status['reason']}"
    if not status["llguidance_installed"]:
        return f"yes, after {INSTALL_HINT} ({status['reason']})"
    return f"yes ({status['reason']})"


def _abbreviate_kv(specs: list[dict]) -> list[dict]:
    """Show the per-layer KV tensors as one row each for key and value (``.{0..N}.``)."""
    plain, grouped = [], {}
    for spec in specs:
        parts = spec["name"].split(".")
        if len(parts) == 3 and parts[1].isdigit():
            grouped.setdefault((parts[0], parts[2]), []).append((int(parts[1]), spec))
            continue
        plain.append(spec)
    for (prefix, kind), items in grouped.items():
        items.sort(key=lambda item: item[0])
        first = items[0][1]
        index = str(items[0][0]) if len(items) == 1 else f"{{0..{items[-1][0]}}}"
        plain.append({**first, "name": f"{prefix}.{index}.{kind}"})
    return plain


def info_command(
    model_dir: ModelDirArg,
    check: Annotated[
        bool,
        typer.Option("--check", help="Also verify every file's SHA-256 against the manifest "
                     "(reads every byte); exit 1 on a mismatch."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show an export folder's manifest, files and I/O.

    Also lists the onnxruntime execution providers available on this device.
    """
    data = describe(model_dir, check=check)
    if as_json:
        console.echo_json(data)
    else:
        _print_tables(data)
