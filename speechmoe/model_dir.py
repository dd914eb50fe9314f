"""Exported model directories: files listed with their size and SHA-256 in a manifest, each
checked when the directory is opened, so that a file changed or lost after the export is
named rather than silently used.

local/export.py writes the recognizer's directory (manifest.json beside model.pt, cmvn.pt,
features.json, tokens.txt, lang.json and, for WFST decoding, lexicon.txt, words.txt and
TLG.fst; speechmoe.recognizer opens it); speechmoe.sherpa writes sherpa-onnx's, whose
sherpa-onnx.json holds its settings and, under "files", the same listing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Union

from speechmoe.utils import atomic_write_text, sha256

MANIFEST = "manifest.json"
REQUIRED = ("model.pt", "cmvn.pt", "features.json", "tokens.txt", "lang.json")
GRAPH = ("lexicon.txt", "words.txt", "TLG.fst")  # for WFST decoding


class ModelDirError(ValueError):
    """A model directory that is incomplete or whose files do not match its manifest."""


def file_checksums(directory: Union[str, Path], leave_out: Iterable[str] = ()) -> dict:
    """{name: {"bytes", "sha256"}} of every file in a directory (not its subdirectories),
    in name order."""
    skip = set(leave_out)
    return {f.name: {"bytes": f.stat().st_size, "sha256": sha256(f)}
            for f in sorted(Path(directory).iterdir()) if f.is_file() and f.name not in skip}


def write_manifest(directory: Union[str, Path], fields: dict, name: str = MANIFEST) -> dict:
    """Write <directory>/<name>: ``fields`` and, under "files", the checksums of the files
    there now. Returns what it wrote."""
    manifest = {**fields, "files": file_checksums(directory, leave_out=[name])}
    atomic_write_text(Path(directory) / name,
                      json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def verify_model_dir(path: Union[str, Path], name: str = MANIFEST,
                     required: Iterable[str] = REQUIRED) -> dict:
    """The manifest of a model directory, after checking that it lists the required files
    and that every file it lists is there with its size and SHA-256; ModelDirError naming
    the first file that is missing or changed."""
    path = Path(path)
    if not path.is_dir():
        raise ModelDirError(f"{path}: not a directory (export a model with local/export.py)")
    try:
        manifest = json.loads((path / name).read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError):
        raise ModelDirError(f"{path}: no {name} (export a model with local/export.py)") \
            from None
    except json.JSONDecodeError as exc:
        raise ModelDirError(f"{path / name}: not valid JSON ({exc})") from None
    files = manifest.get("files", {})
    missing = [f for f in required if f not in files or not (path / f).is_file()]
    if missing:
        raise ModelDirError(f"{path}: incomplete, missing {missing}")
    for fname, meta in files.items():
        f = path / fname
        if not f.is_file():
            raise ModelDirError(f"{f}: listed in {name} but missing")
        if f.stat().st_size != meta["bytes"] or sha256(f) != meta["sha256"]:
            raise ModelDirError(f"{f}: does not match its checksum in {name} (changed "
                                "or damaged): export the model again")
    return manifest
