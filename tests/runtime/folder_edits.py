"""Edit a copy of an export folder and keep its manifest's file sizes and hashes true, so
the runtime's own checks (``check_files``) do not hide the behaviour a test is after."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from runtime.manifest import MANIFEST_NAME, FileInfo


def copy_export(folder: Path, target: Path) -> Path:
    return Path(shutil.copytree(folder, target))


def refresh_manifest(folder: Path, **token_fields) -> Path:
    """Re-measure every file the manifest lists; ``token_fields`` update ``tokens``."""
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    for name in data["files"]:
        data["files"][name] = FileInfo.of(folder / name).to_dict()
    data["tokens"].update(token_fields)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return folder


def edit_tokenizer(folder: Path, edit) -> Path:
    """Load ``tokenizer.json`` with `tokenizers`, call ``edit(tokenizer)``, save, refresh."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    edit(tokenizer)
    tokenizer.save(str(folder / "tokenizer.json"))
    return refresh_manifest(folder)
