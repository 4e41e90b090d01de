"""The export folder a user gets: every file the README's layout names (or the README says
when it is absent), permissions that follow the umask, nothing left behind by a killed
export, and a tokenizer the model can embed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from exporters import export
from exporters.errors import ExportError
from exporters.package import staged_output

pytestmark = pytest.mark.xdist_group("exporters")
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_layout() -> dict[str, str]:
    """{name: comment} of the README's ``out/`` code block (folders end with "/")."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```\n\s*out/\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no ``out/`` layout block"
    entries = {}
    for line in block.group(1).splitlines():
        name, _, comment = line.strip().partition("#")
        if name.strip():
            entries[name.strip()] = comment.strip()
    return entries


def expected_presence(comment: str, *, task: str, ort: bool) -> bool | None:
    """What the README promises for one entry: True (present), False (absent), None (it
    depends on the source, which the README states)."""
    if "only for text-generation" in comment:
        return task == "text-generation"
    if "only with --ort" in comment:
        return ort
    if "only when" in comment:
        return None
    return True


def _entries(folder: Path) -> set[str]:
    return {p.name + ("/" if p.is_dir() else "") for p in folder.iterdir()}


def _source_of(folder: Path) -> Path:
    return folder.parent / f"{folder.name}-source"


@pytest.fixture
def rich_source(exports, tmp_path):
    """The llama generation source with transformers 5's template files, plus the ONNX file
    of its export for :func:`reuse_onnx`."""
    folder = exports.get("llama")
    source = shutil.copytree(_source_of(folder), tmp_path / "source")
    config = json.loads((source / "tokenizer_config.json").read_text())
    (source / "chat_template.jinja").write_text(config.pop("chat_template"))
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    (source / "special_tokens_map.json").unlink()  # transformers 5 does not write it
    (source / "additional_chat_templates").mkdir()
    (source / "additional_chat_templates" / "tool_use.jinja").write_text("{{ tools }}")
    return source, folder / "model.onnx"


def test_readme_layout_is_parsed():
    layout = readme_layout()
    assert {"model.onnx", "shadow_edge.json", "special_tokens_map.json", "model.ort"} <= set(layout)
    assert expected_presence(layout["generation_config.json"], task="text-classification",
                             ort=False) is False


def test_every_readme_file_is_in_a_full_export(rich_source, reuse_onnx, tmp_path):
    source, onnx_file = rich_source
    reuse_onnx.source = onnx_file
    out = export(source, tmp_path / "out", ort=True).output_dir
    layout = readme_layout()
    present = _entries(out)
    for name, comment in layout.items():
        want = expected_presence(comment, task="text-generation", ort=True)
        if want is not None:
            assert (name in present) == want, (name, comment)
    # the source had every optional file but the external data: all of them came along
    assert present == set(layout) - {"model.onnx.data"}
    special = json.loads((out / "special_tokens_map.json").read_text())
    assert special == {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                       "pad_token": "<|endoftext|>"}


@pytest.mark.parametrize("task", ["text-generation", "text-classification"])
def test_plain_exports_match_the_readme(exports, task):
    folder = exports.get("llama", task)
    layout = readme_layout()
    present = _entries(folder)
    assert present <= set(layout), present - set(layout)  # nothing the README does not name
    for name, comment in layout.items():
        want = expected_presence(comment, task=task, ort=False)
        if want is not None:
            assert (name in present) == want, (name, comment)


def test_exported_templates_resolve_as_in_the_source(rich_source, reuse_onnx, tmp_path):
    from transformers import AutoTokenizer

    source, onnx_file = rich_source
    reuse_onnx.source = onnx_file
    out = export(source, tmp_path / "out").output_dir
    before, after = (AutoTokenizer.from_pretrained(str(f)) for f in (source, out))
    assert after.chat_template == before.chat_template
    assert set(before.chat_template) == {"default", "tool_use"}


# ---- permissions follow the umask -------------------------------------------------------------

@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
def test_private_files_written_by_a_library_get_ordinary_modes(tmp_path, umask, file_mode,
                                                                dir_mode):
    # onnxruntime's quantizer writes an external model.onnx.data as 0600 (measured on a
    # Gemma-sized int8 export), which another user of a device could not read
    previous = os.umask(umask)
    try:
        with staged_output(tmp_path / "out") as staging:
            fd = os.open(staging / "model.onnx.data", os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            (staging / "sub").mkdir(mode=0o700)
            (staging / "sub" / "x.json").write_text("{}")
            (staging / "sub" / "x.json").chmod(0o600)
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    assert stat.S_IMODE((out / "model.onnx.data").stat().st_mode) == file_mode
    assert stat.S_IMODE((out / "sub" / "x.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((out / "sub").stat().st_mode) == dir_mode


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
def test_files_and_folders_follow_the_umask(rich_source, reuse_onnx, tmp_path, umask,
                                            file_mode, dir_mode):
    source, onnx_file = rich_source
    reuse_onnx.source = onnx_file
    previous = os.umask(umask)
    try:
        out = export(source, tmp_path / "out", ort=True).output_dir
    finally:
        os.umask(previous)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
             for p in [out, *out.rglob("*")]}
    assert "out/shadow_edge.json" in modes and "out/additional_chat_templates" in modes
    for name, mode in modes.items():
        want = dir_mode if (tmp_path / name).is_dir() else file_mode
        assert mode == want, (name, oct(mode), oct(want))


# ---- a killed export ---------------------------------------------------------------------------

KILLED_EXPORT = textwrap.dedent("""
    import sys, tempfile, time
    from pathlib import Path
    from exporters.package import staged_output

    with staged_output(Path(sys.argv[1]), force=True) as staging:
        (staging / "model.onnx").write_bytes(b"half" * 1000)
        fd, big = tempfile.mkstemp(suffix=".onnx")  # a library intermediate
        Path(big).write_bytes(b"x" * (1 << 20))
        print(big, flush=True)
        time.sleep(600)
""")


def _start_killed_export(out: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(out)],
                               stdout=subprocess.PIPE, text=True, env=env)
    intermediate = Path(process.stdout.readline().strip())
    return process, intermediate


def test_a_killed_export_leaves_nothing_once_the_next_export_runs(exports, reuse_onnx,
                                                                   tmp_path):
    folder = exports.get("llama")
    reuse_onnx.source = folder / "model.onnx"
    out = tmp_path / "out"
    process, intermediate = _start_killed_export(out)
    try:
        leftovers = [p.name for p in tmp_path.iterdir()]
        assert len(leftovers) == 1 and re.fullmatch(r"\.out\.[0-9a-f]{8}\.tmp", leftovers[0])
        assert intermediate.is_relative_to(tmp_path / leftovers[0])  # inside the staging
        export(_source_of(folder), out)  # the owner is alive: its folder is kept
        assert (tmp_path / leftovers[0]).is_dir()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
    assert intermediate.exists()  # a kill cannot clean up
    export(_source_of(folder), out, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not intermediate.exists()


# ---- a tokenizer the model cannot embed --------------------------------------------------------

def test_a_token_beyond_the_embeddings_is_refused_before_any_work(exports, tmp_path):
    from tokenizers import Tokenizer

    source = shutil.copytree(_source_of(exports.get("llama")), tmp_path / "source")
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.add_special_tokens(["<extra_0>", "<extra_1>"])  # ids 259, 260; vocab 259
    tokenizer.save(str(source / "tokenizer.json"))
    with pytest.raises(ExportError, match=r"'<extra_0>' \(id 259\), '<extra_1>' \(id 260\); "
                       r"the model takes ids 0-258.*resize_token_embeddings"):
        export(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_a_quantized_copy_keeps_the_named_templates(rich_source, reuse_onnx, tmp_path):
    from exporters import quantize_export

    source, onnx_file = rich_source
    reuse_onnx.source = onnx_file
    out = export(source, tmp_path / "out").output_dir
    int4 = quantize_export(out, tmp_path / "int4", "int4").output_dir
    # without a checkpoint the copy is not re-verified, so it has no stored torch reference
    assert _entries(int4) == _entries(out) - {"parity_reference.npz"}
    assert (int4 / "additional_chat_templates" / "tool_use.jinja").read_text() == "{{ tools }}"
