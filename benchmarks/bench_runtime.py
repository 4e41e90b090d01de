"""Benchmark the torch-free runtime against torch and onnxruntime-genai (NOT a test).

Model: a SmolLM2-sized detached shadow - SmolLM2-135M-Instruct's config and real weights
cut to its first ``--layers`` (default 2) decoder layers, i.e. what an explicit 2-layer
shadow initialised from the base ships as (backbone + tied head). Exported with
``exporters.export`` in fp32, int8 and int4 (parity gate skipped: speed only), plus a
35-label classifier of the same backbone (random head).

Measured at batch 1, one process, the same thread count everywhere:

- runtime (ours): prefill tokens/s over ``--prompt-tokens`` and greedy decode tokens/s over
  ``--new-tokens`` through the KV cache (``runtime.bench.bench_generator``);
- (a) torch eager: HF ``generate`` with its KV cache (greedy, ``min_new_tokens`` so every run
  makes the same number of tokens); decode time = generate time - prefill time;
- (b) torch shadow-only without cache, as the original shadow-peft 0.1.x does it
  (its task wrappers force ``use_cache=False``): a full forward over the whole sequence,
  all positions' logits, for every new token;
- (c) onnxruntime-genai (``onnxruntime_genai.models.builder`` on the same HF folder; its
  builder has fp32 and int4 but no int8), when the package imports;
- constrained decoding (``grammar=``, llguidance): ``generate`` time per token with a grammar
  vs without, same model (int8), same prompt, eos off so both make ``--new-tokens`` tokens,
  interleaved rounds (``bench_grammar``); the overhead is reported as a fraction of the
  unconstrained time per token (target: <= 0.15 at batch 1);
- classification latency p50/p95 (runtime vs torch eager) at ``--cls-tokens`` tokens;
- effective weight-read bandwidth = model file bytes x decode tokens/s, beside the
  machine's memory-copy rate (numpy copy of a 256 MiB array; bytes copied per second,
  each byte is read once and written once).

Usage (a few minutes; the model folders and exports are cached in ``--workdir``; the
onnxruntime-genai rows need ``pip install onnxruntime-genai``)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_runtime.py --json results.json

One thread by default: on a shared 2-core machine torch's OpenMP threads collapse under
contention (a 16-token forward went from 8 ms to 300 ms with 2 threads while other jobs
ran), which would flatter the runtime. Pass ``--threads 2`` on an idle machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("bench_runtime")
PRECISIONS = ("fp32", "int8", "int4")
NUM_LABELS = 35


# ---- models ----------------------------------------------------------------------------


def prepare_hf(workdir: Path, layers: int) -> Path:
    """SmolLM2-135M-Instruct cut to its first ``layers`` layers, saved as an HF folder."""
    folder = workdir / f"smollm2-{layers}l"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM

    from shadow_edge.assets import smollm2_hf_dir

    source = smollm2_hf_dir()
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model.model.layers = model.model.layers[:layers]
    model.config.num_hidden_layers = layers
    if hasattr(model.config, "layer_types") and model.config.layer_types:
        model.config.layer_types = model.config.layer_types[:layers]
    tmp = workdir / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                 "special_tokens_map.json", "generation_config.json"):
        if (source / name).is_file() and not (tmp / name).exists():
            shutil.copy(source / name, tmp / name)
    tmp.rename(folder)
    return folder


def prepare_classifier_hf(workdir: Path, hf: Path) -> Path:
    folder = workdir / f"{hf.name}-cls"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(hf), num_labels=NUM_LABELS, dtype=torch.float32)
    model.config.pad_token_id = model.config.eos_token_id
    tmp = workdir / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (hf / name).is_file():
            shutil.copy(hf / name, tmp / name)
    tmp.rename(folder)
    return folder


def prepare_export(workdir: Path, hf: Path, precision: str, tag: str) -> Path:
    out = workdir / f"export-{tag}-{precision}"
    if (out / "shadow_edge.json").is_file():
        return out
    from exporters import export

    logger.info("exporting %s %s", tag, precision)
    return export(hf, out, precision=precision, verify=False).output_dir


def prepare_genai(workdir: Path, hf: Path, precision: str, threads: int) -> Path | str:
    """Build an onnxruntime-genai folder; return it, or a string saying why it failed."""
    try:
        import onnxruntime_genai  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime-genai not importable ({exc}); pip install onnxruntime-genai"
    out = workdir / f"genai-{precision}"
    if not (out / "genai_config.json").is_file():
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf),
               "-o", str(out), "-p", precision, "-e", "cpu", "-c", str(workdir / "genai-cache")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"builder failed: {proc.stderr.strip().splitlines()[-1:]}"
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    session = config["model"]["decoder"].setdefault("session_options", {})
    session["intra_op_num_threads"] = threads
    session["inter_op_num_threads"] = 1
    config_path.write_text(json.dumps(config, indent=2))
    return out


def model_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir()
               if p.name.startswith("model") and p.suffix in (".onnx", ".data"))


def bytes_read_per_token(model_path: Path) -> int:
    """Bytes of weights a decode step must read: every initializer except tables that are
    only gathered from (the embedding table: one row per token), following one
    DequantizeLinear hop for quantized tables."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def gathered_only(name: str) -> bool:
        users = consumers.get(name, [])
        return bool(users) and all(
            n.op_type.startswith("Gather")
            or (n.op_type == "DequantizeLinear" and n.input[0] == name
                and all(gathered_only(out) for out in n.output))
            for n in users)

    total = 0
    for tensor in graph.initializer:
        if gathered_only(tensor.name):
            continue
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            total += int({e.key: e.value for e in tensor.external_data}.get("length", 0))
        else:
            total += len(tensor.raw_data) or onnx.numpy_helper.to_array(tensor).nbytes
    return total


# ---- measurements ----------------------------------------------------------------------


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # not Linux
        return platform.processor()
    return platform.processor()


def memcopy_bytes_per_s(size_mib: int = 256, repeats: int = 5) -> float:
    src = np.ones(size_mib * (1 << 20) // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return src.nbytes / best


def prompt_ids(vocab: int, n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


def bench_torch_cached(model, ids: list[int], new_tokens: int, repeats: int) -> dict:
    import torch

    x = torch.tensor([ids])
    prefill, total = [], []
    with torch.no_grad():
        for attempt in range(repeats + 1):
            start = time.perf_counter()
            model(input_ids=x, use_cache=True)
            p = time.perf_counter() - start
            start = time.perf_counter()
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=model.config.eos_token_id)
            t = time.perf_counter() - start
            assert out.shape[1] == len(ids) + new_tokens
            if attempt:
                prefill.append(p)
                total.append(t)
    p, t = min(prefill), min(total)
    return {"prefill_tokens_per_s": len(ids) / p,
            "decode_tokens_per_s": new_tokens / max(t - p, 1e-9)}


def bench_torch_uncached(model, ids: list[int], new_tokens: int) -> dict:
    """Original shadow-peft shadow-only decoding: full recompute, all logits, every step."""
    import torch

    x = torch.tensor([ids])
    with torch.no_grad():
        model(input_ids=x, use_cache=False)  # warm-up
        start = time.perf_counter()
        for _ in range(new_tokens):
            logits = model(input_ids=x, use_cache=False).logits
            x = torch.cat([x, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        total = time.perf_counter() - start
    return {"decode_tokens_per_s": new_tokens / total}


def bench_genai(folder: Path, ids: list[int], new_tokens: int, repeats: int) -> dict:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    prefill, decode = [], []
    for attempt in range(repeats + 1):
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + new_tokens,
                                  min_length=len(ids) + new_tokens, do_sample=False)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(ids)
        p = time.perf_counter() - start
        start = time.perf_counter()
        steps = 0
        while not generator.is_done():
            generator.generate_next_token()
            steps += 1
        d = time.perf_counter() - start
        if attempt:
            prefill.append(p)
            decode.append(d / steps)
    return {"prefill_tokens_per_s": len(ids) / min(prefill),
            "decode_tokens_per_s": 1 / min(decode)}


def bench_iobinding(model, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    """The runtime's decode loop, but carrying the cache with IO binding (``OrtValue``
    outputs bound as the next step's inputs, only logits copied out): the alternative to
    the plain ``session.run`` the runtime uses, kept here to re-check that choice."""
    import onnxruntime as ort

    runner = model.runner
    ids = np.array([prompt_ids(runner.vocab_size, prompt_tokens)], dtype=np.int64)
    empty = np.zeros((1, runner.kv_heads, 0, runner.head_dim), dtype=np.float32)

    def step(input_ids, mask, positions, past):
        binding = runner.session.io_binding()
        binding.bind_cpu_input("input_ids", input_ids)
        binding.bind_cpu_input("attention_mask", mask)
        binding.bind_cpu_input("position_ids", positions)
        for name, value in zip(runner.past_names, past):
            binding.bind_ortvalue_input(name, value)
        for name in runner.output_names:
            binding.bind_output(name)
        runner.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        return outputs[0].numpy()[:, -1], outputs[1:]

    best = float("inf")
    for attempt in range(repeats + 1):
        mask = np.ones_like(ids)
        past = [ort.OrtValue.ortvalue_from_numpy(empty) for _ in runner.past_names]
        logits, past = step(ids, mask, np.arange(prompt_tokens, dtype=np.int64)[None], past)
        start = time.perf_counter()
        for _ in range(new_tokens):
            token = logits.argmax(-1)[:, None].astype(np.int64)
            mask = np.concatenate([mask, np.ones((1, 1), dtype=np.int64)], axis=1)
            position = np.array([[mask.shape[1] - 1]], dtype=np.int64)
            logits, past = step(token, mask, position, past)
        if attempt:
            best = min(best, time.perf_counter() - start)
    return {"decode_tokens_per_s": new_tokens / best}


#: Grammars for the overhead measurement. Unbounded, so with eos off every run makes the
#: same number of tokens: an array of JSON objects, and one line of free text.
BENCH_GRAMMARS = {
    "json_schema": {"type": "array", "items": {
        "type": "object", "properties": {
            "intent": {"enum": ["HassTurnOn", "HassTurnOff", "HassLightSet"]},
            "area": {"type": "string"}, "brightness": {"type": "integer"}},
        "required": ["intent", "area"]}},
    "regex": "[^\\n]*",
}


def bench_grammar(model, prompt_tokens: int, new_tokens: int, repeats: int,
                  grammars: dict | None = None) -> dict:
    """Per-token cost of constrained decoding at batch 1 (``runtime`` + llguidance).

    For each grammar: ``generate`` with and without it in interleaved rounds (greedy, eos
    off, the same id prompt), medians of ``repeats`` rounds after one warm-up;
    ``overhead = (ms/token with grammar) / (ms/token without) - 1``. Also the one-off costs:
    building llguidance's tokenizer (first grammar call of a model) and compiling each
    grammar (cached per model afterwards).
    """
    import runtime

    ids = prompt_ids(model.runner.vocab_size, prompt_tokens, seed=2)
    settings = {"max_new_tokens": new_tokens, "eos_token_id": []}
    start = time.perf_counter()
    model.grammars.lltokenizer()
    out = {"tokenizer_build_s": time.perf_counter() - start, "grammars": {}}
    for name, spec in (grammars or BENCH_GRAMMARS).items():
        grammar = (runtime.Grammar(json_schema=spec) if name == "json_schema"
                   else runtime.Grammar(regex=spec))
        start = time.perf_counter()
        model.grammars.compile(grammar)
        compile_ms = (time.perf_counter() - start) * 1e3
        plain, constrained = [], []
        for attempt in range(repeats + 1):
            start = time.perf_counter()
            free = model.generate(ids, **settings)
            t_plain = time.perf_counter() - start
            start = time.perf_counter()
            masked = model.generate(ids, grammar=grammar, **settings)
            t_grammar = time.perf_counter() - start
            assert len(free.token_ids) == len(masked.token_ids) == new_tokens
            if attempt:
                plain.append(t_plain / new_tokens)
                constrained.append(t_grammar / new_tokens)
        p, g = float(np.median(plain)), float(np.median(constrained))
        out["grammars"][name] = {"compile_ms": compile_ms, "ms_per_token_plain": p * 1e3,
                                 "ms_per_token_grammar": g * 1e3, "overhead": g / p - 1,
                                 "rounds": repeats}
    return out


def bench_torch_classifier(model, n_tokens: int, repeats: int) -> dict:
    import torch

    x = torch.tensor([prompt_ids(model.config.vocab_size, n_tokens, seed=1)])
    times = []
    with torch.no_grad():
        for attempt in range(repeats + 3):
            start = time.perf_counter()
            model(input_ids=x)
            if attempt >= 3:
                times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


# ---- main ------------------------------------------------------------------------------


def median_row(rows: list[dict]) -> dict:
    """Per-key median of the numeric fields of ``rows`` (one dict per round), plus
    ``rounds`` and ``decode_tokens_per_s_best``. Medians, not best rounds: on a shared
    machine one lucky round of one engine would otherwise decide a ratio."""
    merged = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            merged[key] = float(np.median([row[key] for row in rows]))
    merged["rounds"] = len(rows)
    merged["decode_tokens_per_s_best"] = max(row["decode_tokens_per_s"] for row in rows)
    return merged


def model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark of the cut SmolLM2 shares: cache folder, layers kept,
    intra-op threads and prompt length (tokens)."""
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/shadow-edge-bench"))
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=128)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved rounds per engine; the median is kept")
    parser.add_argument("--cls-tokens", type=int, default=16)
    parser.add_argument("--cls-repeats", type=int, default=100)
    parser.add_argument("--skip-genai", action="store_true")
    parser.add_argument("--skip-grammar", action="store_true",
                        help="skip the constrained-decoding overhead (needs llguidance)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build and cache the model folders and exports, measure nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    import runtime
    from runtime.bench import bench_classifier, bench_generator

    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    hf = prepare_hf(args.workdir, args.layers)
    cls_hf = prepare_classifier_hf(args.workdir, hf)
    gen_exports = {p: prepare_export(args.workdir, hf, p, "gen") for p in PRECISIONS}
    cls_exports = {p: prepare_export(args.workdir, cls_hf, p, "cls") for p in PRECISIONS}
    if args.prepare_only:
        for precision in ("fp32", "int4"):
            if not args.skip_genai:
                logger.info("genai %s: %s", precision,
                            prepare_genai(args.workdir, hf, precision, args.threads))
        return {}

    torch_lm = AutoModelForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()
    vocab = torch_lm.config.vocab_size
    ids = prompt_ids(vocab, args.prompt_tokens)
    results: dict = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": cpu_name(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version()},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "versions": {"torch": torch.__version__, "onnxruntime": __import__("onnxruntime").__version__},
        "model": {"layers": args.layers, "hidden": torch_lm.config.hidden_size, "vocab": vocab,
                  "parameters": sum(p.numel() for p in torch_lm.parameters())},
        "memcopy_GBps": memcopy_bytes_per_s() / 1e9,
    }
    # Generation engines are measured in interleaved rounds (each engine once per round, the
    # median round kept), so that load drift on a shared machine biases no engine.
    engines = {"torch_cached": lambda: bench_torch_cached(torch_lm, ids, args.new_tokens, 1)}
    generators = {p: runtime.load(gen_exports[p], threads=args.threads) for p in PRECISIONS}
    for precision, model in generators.items():
        engines[f"runtime/{precision}"] = (
            lambda m=model: bench_generator(m, prompt_tokens=args.prompt_tokens,
                                            new_tokens=args.new_tokens, repeats=1))
        engines[f"iobinding/{precision}"] = (
            lambda m=model: bench_iobinding(m, args.prompt_tokens, args.new_tokens, 1))
    results["genai"] = {}
    for precision in ("fp32", "int4"):
        folder = ("skipped (--skip-genai)" if args.skip_genai
                  else prepare_genai(args.workdir, hf, precision, args.threads))
        if isinstance(folder, str):
            results["genai"][precision] = folder
            continue
        engines[f"genai/{precision}"] = (
            lambda f=folder: bench_genai(f, ids, args.new_tokens, 1))
    rounds: dict[str, list[dict]] = {name: [] for name in engines}
    for round_index in range(args.repeats):
        for name, run in engines.items():
            logger.info("round %d: %s", round_index + 1, name)
            rounds[name].append(run())
    measured = {name: median_row(rows) for name, rows in rounds.items()}
    results["torch_cached"] = measured.pop("torch_cached")
    logger.info("torch without cache (b)")
    results["torch_uncached"] = bench_torch_uncached(torch_lm, ids, args.new_tokens)
    results["runtime"], results["classification"] = {}, {}
    for precision in generators:
        row = measured.pop(f"runtime/{precision}")
        row["model_bytes"] = model_bytes(gen_exports[precision])
        row["bytes_read_per_token"] = bytes_read_per_token(gen_exports[precision] / "model.onnx")
        row["weight_read_GBps"] = row["bytes_read_per_token"] * row["decode_tokens_per_s"] / 1e9
        row["iobinding"] = measured.pop(f"iobinding/{precision}")
        results["runtime"][precision] = row
        clf = runtime.load(cls_exports[precision], threads=args.threads)
        results["classification"][precision] = bench_classifier(
            clf, sequence_length=args.cls_tokens, repeats=args.cls_repeats)
    for name, row in measured.items():
        results["genai"][name.split("/")[1]] = row
    if not args.skip_grammar:
        logger.info("grammar overhead (int8)")
        results["grammar"] = bench_grammar(generators["int8"], args.prompt_tokens,
                                           args.new_tokens, args.repeats)
    torch_cls = AutoModelForSequenceClassification.from_pretrained(str(cls_hf)).eval()
    results["classification"]["torch"] = bench_torch_classifier(
        torch_cls, args.cls_tokens, args.cls_repeats)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def print_table(r: dict) -> None:
    a = r["torch_cached"]["decode_tokens_per_s"]
    b = r["torch_uncached"]["decode_tokens_per_s"]
    lines = [
        (f"# shadow-edge runtime benchmark - {r['date']} - {r['machine']['platform']}, "
        f"{r['machine']['cpu_count']} CPUs, {r['settings']['threads']} threads"),
        (f"# model: SmolLM2-135M-Instruct config cut to {r['model']['layers']} layers "
        f"({r['model']['parameters'] / 1e6:.1f}M params), batch 1, prompt "
        f"{r['settings']['prompt_tokens']}, {r['settings']['new_tokens']} new tokens"),
        "",
        ("| engine | precision | prefill tok/s | decode tok/s | vs (a) torch+cache | "
        "vs (b) torch no cache | vs (c) ort-genai | file MB | MB read/token | weight-read GB/s |"),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        (f"| (a) torch eager HF generate | fp32 | {r['torch_cached']['prefill_tokens_per_s']:.0f} "
        f"| {a:.1f} | 1.00 | {a / b:.2f} | | | |"),
        (f"| (b) torch, no cache (shadow-peft 0.1.x) | fp32 | | {b:.2f} | {b / a:.2f} | 1.00 "
        "| | | | |"),
    ]
    for precision in ("fp32", "int4"):
        g = r["genai"].get(precision)
        if isinstance(g, dict):
            lines.append(
                f"| (c) onnxruntime-genai | {precision} | {g['prefill_tokens_per_s']:.0f} | "
                f"{g['decode_tokens_per_s']:.1f} | {g['decode_tokens_per_s'] / a:.2f} | "
                f"{g['decode_tokens_per_s'] / b:.1f} | 1.00 | | | |")
        else:
            lines.append(f"| (c) onnxruntime-genai | {precision} | {g} | | | | | | | |")
    for precision, row in r["runtime"].items():
        g = r["genai"].get(precision)
        vs_c = f"{row['decode_tokens_per_s'] / g['decode_tokens_per_s']:.2f}" \
            if isinstance(g, dict) else "n/a"
        lines.append(
            f"| **shadow-edge runtime** | {precision} | {row['prefill_tokens_per_s']:.0f} | "
            f"{row['decode_tokens_per_s']:.1f} | {row['decode_tokens_per_s'] / a:.2f} | "
            f"{row['decode_tokens_per_s'] / b:.1f} | {vs_c} | {row['model_bytes'] / 1e6:.0f} | "
            f"{row['bytes_read_per_token'] / 1e6:.0f} | {row['weight_read_GBps']:.1f} |")
    lines.append("")
    for precision, row in r["runtime"].items():
        bound = row["iobinding"]["decode_tokens_per_s"]
        lines.append(f"cache via session.run (used) vs IO binding ({precision}): "
                     f"{row['decode_tokens_per_s']:.1f} vs {bound:.1f} decode tok/s "
                     f"({row['decode_tokens_per_s'] / bound:.2f}x)")
    grammar = r.get("grammar")
    if grammar:
        lines.append("")
        lines.append(f"constrained decoding (int8, batch 1; llguidance tokenizer built in "
                     f"{grammar['tokenizer_build_s']:.2f} s once per model):")
        for name, row in grammar["grammars"].items():
            lines.append(f"  {name}: {row['ms_per_token_grammar']:.2f} vs "
                         f"{row['ms_per_token_plain']:.2f} ms/token without -> overhead "
                         f"{row['overhead'] * 100:+.1f}% (compile {row['compile_ms']:.1f} ms)")
    lines += [
        "",
        (f"memory copy (numpy, 256 MiB): {r['memcopy_GBps']:.1f} GB/s copied "
        "(each byte read + written)"),
        "",
        (f"| classification ({r['settings']['cls_tokens']} tokens, batch 1) | p50 ms | p95 ms | "
        "p50 vs torch |"),
        "| --- | ---: | ---: | ---: |",
    ]
    t50 = r["classification"]["torch"]["p50_ms"]
    for name, row in r["classification"].items():
        lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
                     f"{t50 / row['p50_ms']:.2f}x |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
