"""Error rates and the decoding artifacts."""

import json

from speechmoe.scoring import score


def test_error_counts_and_files(tmp_path):
    refs = {"u1": list("中国人民"), "u2": list("你好")}
    hyps = {"u1": list("中人民们"), "u2": list("你好")}
    stats = score(refs, hyps, tmp_path, "test")
    # u1: 国 deleted, 们 inserted
    assert (stats.ins, stats.dels, stats.subs, stats.ref_len) == (1, 1, 0, 6)
    assert abs(stats.rate - 100 * 2 / 6) < 1e-9
    assert stats.utts_with_errors == 1
    errs = (tmp_path / "errs.txt").read_text(encoding="utf-8")
    assert errs.startswith("u1\tS=0 D=1 I=1") and "(国->*)" in errs and "(*->们)" in errs
    assert json.loads((tmp_path / "summary.json").read_text())["errors"] == 2
    assert "u2\tref=你 好\thyp=你 好" in (tmp_path / "recogs.txt").read_text(encoding="utf-8")


def test_missing_hypothesis_counts_as_deletions():
    stats = score({"u1": ["a", "b"]}, {})
    assert stats.dels == 2 and stats.rate == 100.0
