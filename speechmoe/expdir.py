"""The layout of an experiment directory, in one place.

    <exp>/epoch-N.pt, checkpoint-S.pt, avg-N-K.pt     training and averaging
                                                     (speechmoe/checkpoint.py)
    <exp>/log/                                       every stage's log
    <exp>/decode/<model>/                            one decoding of one averaged model
        .done                                        its inputs, written last
        timing.json                                  wall times per set
        <method>/<set>/hyp.txt                       hypotheses (ctc_greedy, wfst)
        <method>/<set>/recogs.txt, errs.txt, ...     scoring's files beside them
        wfst/acoustic_scale.json                     the scale chosen on the tuning sets
        summary.txt                                  the scoring stage's table
    <exp>/results.json, results_detail.json          every rate with its metric and count
    <exp>/export/                                    the self-contained model directory

Decoding (local/decode.py) writes a decode dir, scoring (local/score.py) and the tables'
runner (local/tables.py) read it, and export (local/export.py) takes the tuned scale
from it; all of them name its files through these classes, not by joining paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


class DecodeDir:
    """<exp>/decode/<model>/: the decoding of one averaged model (``model`` is its
    checkpoint's stem, e.g. avg-4-2)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def model(self) -> str:
        return self.root.name

    @property
    def done(self) -> Path:
        return self.root / ".done"

    @property
    def timing(self) -> Path:
        return self.root / "timing.json"

    @property
    def summary(self) -> Path:
        return self.root / "summary.txt"

    @property
    def acoustic_scale_file(self) -> Path:
        return self.root / "wfst" / "acoustic_scale.json"

    def set_dir(self, method: str, test_set: str) -> Path:
        """Where one set's hypotheses by one method are, and scoring puts its files."""
        return self.root / method / test_set

    def hyps(self, method: str, test_set: str) -> Path:
        return self.set_dir(method, test_set) / "hyp.txt"

    def tuned_scale(self) -> Optional[float]:
        """The WFST acoustic scale the decoding stage chose, or None when it chose none
        (not decoded yet, one candidate only, or greedy decoding alone)."""
        path = self.acoustic_scale_file
        if not path.is_file():
            return None
        try:
            return float(json.loads(path.read_text())["best"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not an acoustic-scale choice ({exc}); decode "
                             "again with --force") from None

    def write_scale_choice(self, choice: dict) -> None:
        self.acoustic_scale_file.parent.mkdir(parents=True, exist_ok=True)
        self.acoustic_scale_file.write_text(json.dumps(choice, indent=1))


class ExpDir:
    """An experiment directory: one model's training, decoding, scoring and export."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def log_file(self, stage: str) -> Path:
        return self.log_dir / f"{stage}.log"

    @property
    def decode_root(self) -> Path:
        return self.root / "decode"

    def decode_dir(self, checkpoint: str | Path) -> DecodeDir:
        """The decode dir of an averaged checkpoint (a path or its stem)."""
        return DecodeDir(self.decode_root / Path(checkpoint).stem)

    def finished_decodes(self) -> list[DecodeDir]:
        """Decode dirs whose decoding finished, oldest first."""
        done = sorted(self.decode_root.glob("*/.done"), key=lambda p: p.stat().st_mtime)
        return [DecodeDir(p.parent) for p in done]

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def results_detail(self) -> Path:
        return self.root / "results_detail.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"
