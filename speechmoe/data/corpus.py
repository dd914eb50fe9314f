"""Which corpus a run was made on: the `corpus.json` a recipe's data stage writes; and
the corpus's text tables.

A corpus that changes (new speakers, new sets) changes every number measured on it, so
each run record carries the corpus and its version (`egs/synth_mandarin` writes
``{"corpus": "synth_mandarin", "version": 2, ...}`` to ``<data>/corpus.json``). Data dirs
without one (other recipes, synth_mandarin before version 2) record None.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

CORPUS_JSON = "corpus.json"


def corpus_record(data_dir: str | Path) -> Optional[dict]:
    """`data_dir`/corpus.json's content, or None where the data stage wrote none."""
    path = Path(data_dir) / CORPUS_JSON
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(record, dict) or "version" not in record:
        raise ValueError(f"{path}: expected an object with a 'version', got {record!r}")
    return record


def read_tsv(path: str | Path) -> list[list[str]]:
    """A corpus text table (<data>/text/<set>.tsv): one list of columns per non-blank line."""
    with Path(path).open(encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def corpus_of_cuts(cuts_path: str | Path) -> Optional[dict]:
    """The corpus of a set's cuts, <data>/<manifests or fbank>/cuts_<set>.jsonl.gz."""
    return corpus_record(Path(cuts_path).resolve().parent.parent)
