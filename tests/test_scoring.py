"""Error rates and the decoding artifacts."""

import json

import pytest

from speechmoe.lang.tokenizer import scoring_tokens
from speechmoe.scoring import EmptyScoreError, ErrorStats, MissingHypothesisError, score


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


def test_an_empty_hypothesis_is_all_deletions():
    stats = score({"u1": ["a", "b"]}, {"u1": []})
    assert stats.dels == 2 and stats.rate == 100.0


def test_a_missing_hypothesis_is_an_error_naming_it():
    with pytest.raises(MissingHypothesisError, match=r"1 of 2 utterances .*'u2'"):
        score({"u1": ["a"], "u2": ["b"]}, {"u1": ["a"]})


def test_a_rate_over_nothing_is_an_error_not_zero(tmp_path):
    with pytest.raises(EmptyScoreError, match="no utterances"):
        score({}, {})
    with pytest.raises(EmptyScoreError, match="all empty"):
        score({"u1": []}, {"u1": ["x"]}, tmp_path)
    with pytest.raises(EmptyScoreError):
        ErrorStats().rate


def test_cer_counts_a_chinese_character_and_an_english_word_as_one_token():
    assert scoring_tokens(["我们", "听", "BEAT", "IT", "T恤"], "CER") == \
        ["我", "们", "听", "BEAT", "IT", "T", "恤"]
    assert scoring_tokens(["hello", "world"], "WER") == ["hello", "world"]
    ref = scoring_tokens(["听", "BEAT", "IT"], "CER")
    hyp = scoring_tokens(["听", "BEAD", "IT"], "CER")
    stats = score({"u": ref}, {"u": hyp})
    assert (stats.subs, stats.ref_len) == (1, 3)  # one wrong word is one error, not two
