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


def test_two_sets_scored_together_equal_the_sum_of_their_scorings():
    """The acoustic scale is tuned on the errors of several sets pooled (decode.py)."""
    a = score({"u1": list("中国人民"), "u2": list("你好")}, {"u1": list("中人民们"), "u2": list("你")})
    b = score({"v1": list("天气")}, {"v1": list("天汽")})
    both = score({"u1": list("中国人民"), "u2": list("你好"), "v1": list("天气")},
                 {"u1": list("中人民们"), "u2": list("你"), "v1": list("天汽")})
    assert a + b == both
    assert (both.errors, both.ref_len, both.utts, both.utts_with_errors) == (4, 8, 3, 3)
    assert abs((a + b).rate - 50.0) < 1e-9 and ErrorStats() + a == a


def test_cer_counts_a_chinese_character_and_an_english_word_as_one_token():
    assert scoring_tokens(["我们", "听", "BEAT", "IT", "T恤"], "CER") == \
        ["我", "们", "听", "BEAT", "IT", "T", "恤"]
    assert scoring_tokens(["hello", "world"], "WER") == ["hello", "world"]
    ref = scoring_tokens(["听", "BEAT", "IT"], "CER")
    hyp = scoring_tokens(["听", "BEAD", "IT"], "CER")
    stats = score({"u": ref}, {"u": hyp})
    assert (stats.subs, stats.ref_len) == (1, 3)  # one wrong word is one error, not two


def test_the_command_line_scores_text_files(tmp_path, capsys):
    from speechmoe.scoring import main

    ref = tmp_path / "text"
    ref.write_text("u1 今天 天气 很 好\nu2 hello 世界\n", encoding="utf-8")
    hyp = tmp_path / "hyp.tsv"  # speechmoe-transcribe's output
    hyp.write_text("u1\t今天天汽很好\nu2\thello 世界 啊\n", encoding="utf-8")
    assert main([str(ref), str(hyp), "--out-dir", str(tmp_path / "score")]) == 0
    out = capsys.readouterr().out
    # u1: 6 characters, 1 substitution; u2: hello + 世 + 界, 1 insertion
    assert out.strip() == "CER 22.22% [ 2 / 9, 1 ins, 0 del, 1 sub ] over 2 utterances"
    assert (tmp_path / "score" / "utt_errors.tsv").read_text() == "u1\t1\t6\nu2\t1\t3\n"
    hyp.write_text("u1\t今天天气很好\n", encoding="utf-8")
    assert main([str(ref), str(hyp)]) == 2
    assert "no hypothesis" in capsys.readouterr().err
    hyp.write_text("u1\t今天\nu2\t世界\nu3\t多\n", encoding="utf-8")
    assert main([str(ref), str(hyp)]) == 2
    assert "1 utterances are not in" in capsys.readouterr().err
