"""Atomic folder writes, file copies and hashes (no ONNX export needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporters.errors import ExportError
from exporters.package import (
    check_output,
    checkpoint_sha256,
    copy_tokenizer,
    sha256_file,
    staged_output,
)
from exporters.testing import tiny_tokenizer_files
from shadow_edge.errors import ConfigError


def _siblings(path):
    return sorted(p.name for p in path.parent.iterdir())


def test_staged_output_moves_the_folder_into_place(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.")
        (staging / "model.onnx").write_bytes(b"new")
    assert (out / "model.onnx").read_bytes() == b"new"
    assert _siblings(out) == ["out"]


def test_existing_output_is_refused_without_force_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(ExportError, match="already exists.*--force") as info, \
            staged_output(out):
        pytest.fail("must not start")
    assert (out / "keep.txt").read_text() == "old" and _siblings(out) == ["out"]
    # a usage error too: the CLI exits with 2, as for its other bad options
    assert isinstance(info.value, ConfigError) and info.value.exit_code == 2


def test_force_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with staged_output(out, force=True) as staging:
        (staging / "model.onnx").write_bytes(b"new")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx"]
    assert _siblings(out) == ["out"]


def test_failure_inside_the_block_leaves_no_output_and_no_temp(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ZeroDivisionError), staged_output(out) as staging:
        (staging / "half.onnx").write_bytes(b"x")
        raise ZeroDivisionError("simulated failure")
    assert list(tmp_path.iterdir()) == []


def test_failure_removes_the_parent_folders_it_created(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ZeroDivisionError), staged_output(tmp_path / "a" / "b" / "c" / "out"):
        assert (tmp_path / "a" / "b" / "c").is_dir()
        raise ZeroDivisionError("simulated failure")
    assert [p.name for p in tmp_path.rglob("*")] == ["a"]


def test_failure_with_force_keeps_the_previous_output_intact(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"old")
    with pytest.raises(RuntimeError), staged_output(out, force=True) as staging:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("boom")
    assert (out / "model.onnx").read_bytes() == b"old" and _siblings(out) == ["out"]


def test_unwritable_output_path_is_an_export_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="not a writable folder"):
        check_output(blocker / "out")
    with pytest.raises(ExportError, match="is a file"):
        check_output(blocker, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_checkpoint_hash_covers_names_and_contents(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ignored")
    first = checkpoint_sha256(tmp_path)
    assert len(first) == 64 and first == checkpoint_sha256(tmp_path)
    (tmp_path / ".git" / "HEAD").write_text("still ignored")
    assert checkpoint_sha256(tmp_path) == first
    (tmp_path / "a.json").write_text('{"x": 1}')
    assert checkpoint_sha256(tmp_path) != first
    assert checkpoint_sha256(None) is None


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    file = tmp_path / "f"
    file.write_bytes(b"shadow" * 1000)
    assert sha256_file(file, chunk=7) == hashlib.sha256(b"shadow" * 1000).hexdigest()


def test_chat_template_file_is_folded_into_tokenizer_config(tmp_path):
    source = tiny_tokenizer_files(tmp_path / "src")
    config = json.loads((source / "tokenizer_config.json").read_text())
    template = config.pop("chat_template")
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    (source / "chat_template.jinja").write_text(template)  # transformers 5 layout
    target = tmp_path / "dst"
    target.mkdir()
    copied = copy_tokenizer([tmp_path / "missing", source], target)
    assert copied == ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                      "chat_template.jinja"]
    assert json.loads((target / "tokenizer_config.json").read_text())["chat_template"] == template


# ---- leftovers of interrupted exports ---------------------------------------------------------

def _leftover(parent, name, size=1 << 16):
    folder = parent / name
    folder.mkdir()
    (folder / "model.onnx.data").write_bytes(b"\0" * size)
    return folder


def test_stale_staging_and_aside_folders_of_the_output_are_swept(tmp_path):
    from exporters.package import sweep_stale

    out = tmp_path / "out"
    out.mkdir()
    stale = [_leftover(tmp_path, n) for n in (".out.0a1b2c3d.tmp", ".out.x_9y8z7w.tmp",
                                              ".out.old-0123abcd")]
    others = [_leftover(tmp_path, n) for n in (".out.v2.0a1b2c3d.tmp", ".other.0a1b2c3d.tmp",
                                               ".out.notes")]
    assert sorted(sweep_stale(out)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", *(p.name for p in others)])


def test_a_folder_locked_by_a_running_export_is_kept(tmp_path):
    from exporters.package import _lock, _unlock, sweep_stale

    live = _leftover(tmp_path, ".out.0a1b2c3d.tmp")
    fd = _lock(live, wait=True)  # another open file description: as another process holds it
    try:
        assert sweep_stale(tmp_path / "out") == [] and live.is_dir()
    finally:
        _unlock(fd)
    assert sweep_stale(tmp_path / "out") == [live] and not live.exists()


def test_an_interrupted_swap_restores_the_previous_output(tmp_path):
    from exporters.package import sweep_stale

    aside = _leftover(tmp_path, ".out.old-0123abcd")  # killed between the two renames
    check_output(tmp_path / "out", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "model.onnx.data").stat().st_size == 1 << 16
    assert sweep_stale(tmp_path / "out") == [] and not aside.exists()


def test_the_next_export_sweeps_before_it_checks_the_output(tmp_path):
    _leftover(tmp_path, ".out.0a1b2c3d.tmp")
    with staged_output(tmp_path / "out") as staging:
        assert sorted(p.name for p in tmp_path.iterdir()) == [staging.name]
    assert _siblings(tmp_path / "out") == ["out"]


def test_library_temp_files_live_in_the_staging_folder(tmp_path):
    import tempfile

    before = tempfile.gettempdir()
    with staged_output(tmp_path / "out") as staging:
        assert Path(tempfile.gettempdir()).parent == staging
        with tempfile.NamedTemporaryFile() as handle:
            assert Path(handle.name).parent.parent == staging
        nested_root = None
        with staged_output(tmp_path / "other") as other:
            nested_root = tempfile.gettempdir()
        assert Path(nested_root).parent == other and Path(tempfile.gettempdir()).parent == staging
    assert tempfile.gettempdir() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # scratch removed
    with pytest.raises(ZeroDivisionError), staged_output(tmp_path / "failed"):
        raise ZeroDivisionError
    assert tempfile.gettempdir() == before


# ---- tokenizer side files ---------------------------------------------------------------------

def test_special_tokens_map_is_written_when_the_source_has_none(tmp_path):
    source = tiny_tokenizer_files(tmp_path / "src")
    (source / "special_tokens_map.json").unlink()  # transformers 5 does not save it
    config = json.loads((source / "tokenizer_config.json").read_text())
    config["additional_special_tokens"] = ["<|im_start|>"]
    (source / "tokenizer_config.json").write_text(json.dumps(config))
    target = tmp_path / "dst"
    target.mkdir()
    assert "special_tokens_map.json" in copy_tokenizer([source], target)
    assert json.loads((target / "special_tokens_map.json").read_text()) == {
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "additional_special_tokens": ["<|im_start|>"]}


def test_named_chat_templates_are_copied(tmp_path):
    source = tiny_tokenizer_files(tmp_path / "src")
    (source / "additional_chat_templates").mkdir()
    (source / "additional_chat_templates" / "tool_use.jinja").write_text("T")
    (source / "additional_chat_templates" / "notes.txt").write_text("not a template")
    target = tmp_path / "dst"
    target.mkdir()
    copy_tokenizer([source], target)
    assert [p.name for p in (target / "additional_chat_templates").iterdir()] == ["tool_use.jinja"]
