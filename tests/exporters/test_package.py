"""Atomic folder writes, file copies and hashes (no ONNX export needed)."""

from __future__ import annotations

import json

import pytest

from exporters.package import (
    check_output,
    checkpoint_sha256,
    copy_tokenizer,
    sha256_file,
    staged_output,
)
from exporters.testing import tiny_tokenizer_files
from shadow_edge.errors import ExportError


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
    with pytest.raises(ExportError, match="already exists.*--force"), staged_output(out):
        pytest.fail("must not start")
    assert (out / "keep.txt").read_text() == "old" and _siblings(out) == ["out"]


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
