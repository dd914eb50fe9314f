"""The fixed unit inventory, the open vocabulary and the lang stage's LM options."""

import json

import numpy as np
import pytest
from helpers import load_script

from speechmoe.lang.symbols import read_lexicon, read_tokens, write_tokens
from speechmoe.lang.symbols import BLANK
from speechmoe.lang.units import (ARPABET, character_entries, fixed_units,
                                  mandarin_pronunciation, open_vocabulary_lexicon,
                                  pypinyin_syllables, syllable_inventory)

LM_TEXT = ["今天 天气 很 好", "我们 一起 去 学校", "他 在 北京 工作", "大家 都 很 高兴",
           "孩子 们 喜欢 读书", "这 是 一个 好 消息", "我 想 喝 一 杯 茶"]


def test_the_shipped_inventory_is_what_pypinyin_gives():
    syl = syllable_inventory()
    assert list(syl) == pypinyin_syllables()  # a pypinyin upgrade that moves it fails here
    assert len(syl) == 1545 and len(set(syl)) == len(syl)
    units = fixed_units()
    assert units[0] == BLANK and units[-39:] == ARPABET and len(units) == 1 + 1545 + 39
    # the neutral tone is in (tone 5), and u-umlaut is spelled v
    assert {"de5", "men5", "lv4", "nv3"} <= set(syl)


def test_a_syllable_only_the_phrase_dictionary_has_becomes_the_characters_own():
    from pypinyin.contrib.tone_convert import to_tone3
    from pypinyin.phrases_dict import phrases_dict

    known = set(syllable_inventory())
    odd = [ph for ph, prons in phrases_dict.items()
           if any(to_tone3(r[0], neutral_tone_with_five=True) not in known for r in prons)]
    assert odd  # pypinyin 0.55.0: ten syllables (ge5, yi5, ...) live only in phrases
    for phrase in odd[:50]:
        pron = mandarin_pronunciation(phrase)
        assert pron is not None and len(pron) == len(phrase) and set(pron) <= known, phrase


def test_every_character_is_a_word_with_each_of_its_readings():
    entries = character_entries()
    chars = {c for c, _ in entries}
    assert len(chars) == 20924 and all(0x4E00 <= ord(c) <= 0x9FFF for c in chars)
    readings = {}
    for c, p in entries:
        readings.setdefault(c, []).append(p[0])
    assert readings["长"] == ["zhang3", "chang2"]  # the default reading first
    assert set(readings["的"]) == {"de5", "di1", "di2", "di4"}
    # the LM text's own pronunciation stays the first (the one training uses)
    lex = open_vocabulary_lexicon({"的": ["de5"], "中国": ["zhong1", "guo2"]})
    first = {}
    for w, p in lex:
        first.setdefault(w, p)
    assert first["的"] == ["de5"] and first["中国"] == ["zhong1", "guo2"]
    assert len([1 for w, _ in lex if w == "的"]) == 4


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    root = tmp_path_factory.mktemp("lang")
    text = root / "lm.txt"
    text.write_text("\n".join(LM_TEXT) + "\n", encoding="utf-8")
    assert load_script("prepare_lang").main(["--lm-text", str(text), "--out-dir",
                                             str(root / "lang"), "--order", "2",
                                             "--open-vocabulary", "freq"]) == 0
    return root


def test_tokens_are_byte_identical_whatever_the_text(lang, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("中国 人民\nhello world\n", encoding="utf-8")
    assert load_script("prepare_lang").main(["--lm-text", str(other), "--out-dir",
                                             str(tmp_path / "lang"), "--order", "1",
                                             "--open-vocabulary", "off"]) == 0
    write_tokens(fixed_units(), tmp_path / "fixed.txt")
    expected = (tmp_path / "fixed.txt").read_bytes()
    assert (lang / "lang" / "tokens.txt").read_bytes() == expected
    assert (tmp_path / "lang" / "tokens.txt").read_bytes() == expected


def test_the_lexicon_and_lm_hold_every_character(lang):
    lexicon = read_lexicon(lang / "lang" / "lexicon.txt")
    words = {w for w, _ in lexicon}
    assert {"今天", "学校", "学", "校", "魑"} <= words
    from speechmoe.lang.arpa import load_arpa

    arpa = load_arpa(lang / "lang" / "lm.arpa")
    # an unseen character has mass, more if the text uses it inside its words
    p_xue, p_chi = arpa.logprob("学"), arpa.logprob("魑")
    assert -12 < p_chi < p_xue < arpa.logprob("很")
    info = json.loads((lang / "lang" / "lang.json").read_text())
    assert info["open_vocabulary"] == "freq"


def test_a_word_never_in_the_lm_text_decodes_character_by_character(lang):
    """大学 is not in the LM text (大家 and 学校 are): CTC posteriors that say da4 xue2
    decode to the characters 大 学 through the open vocabulary."""
    from speechmoe.decode.wfst import WfstDecoder

    tokens = read_tokens(lang / "lang" / "tokens.txt")
    seq = ["<blk>", "da4", "da4", "<blk>", "xue2", "<blk>", "hen3", "<blk>", "hao3", "<blk>"]
    lp = np.full((len(seq), len(fixed_units())), -20.0, dtype=np.float32)
    for t, u in enumerate(seq):
        lp[t, tokens[u]] = 0.0
    dec = WfstDecoder(lang / "lang" / "TLG.fst", lang / "lang" / "words.txt", beam=16)
    assert dec.decode(lp) == ["大", "学", "很", "好"]


def test_lm_settings_change_rebuilds_the_lm_and_graph(lang):
    from speechmoe.lang.arpa import load_arpa

    args = ["--lm-text", str(lang / "lm.txt"), "--out-dir", str(lang / "lang"),
            "--open-vocabulary", "freq"]
    prepare = load_script("prepare_lang")
    assert prepare.main(args + ["--order", "2"]) == 0  # unchanged: nothing rebuilt
    assert load_arpa(lang / "lang" / "lm.arpa").order == 2
    assert prepare.main(args + ["--order", "3", "--prune", "1e-9"]) == 0
    assert load_arpa(lang / "lang" / "lm.arpa").order == 3
    assert json.loads((lang / "lang" / "lm.json").read_text())["order"] == 3
    graph_json = lang / "lang" / "graph.json"
    assert json.loads(graph_json.read_text())["topology"] == "compact"  # the default
    arcs = json.loads(graph_json.read_text())["sizes"]["TLG"][1]
    lm_mtime = (lang / "lang" / "lm.arpa").stat().st_mtime_ns
    assert prepare.main(args + ["--order", "3", "--prune", "1e-9", "--topology",
                                "standard"]) == 0  # the graph alone is rebuilt
    built = json.loads(graph_json.read_text())
    assert built["topology"] == "standard" and built["sizes"]["TLG"][1] > arcs
    assert (lang / "lang" / "lm.arpa").stat().st_mtime_ns == lm_mtime
    with pytest.raises(ValueError, match="open-vocabulary"):
        prepare.main(args[:-2] + ["--order", "3", "--open-vocabulary", "off"])


def test_a_lang_dir_with_corpus_dependent_tokens_is_refused(tmp_path):
    text = tmp_path / "lm.txt"
    text.write_text("中国 人民\n", encoding="utf-8")
    out = tmp_path / "lang"
    out.mkdir()
    write_tokens([BLANK, "guo2", "min2", "ren2", "zhong1"], out / "tokens.txt")
    with pytest.raises(ValueError, match="older version"):
        load_script("prepare_lang").main(["--lm-text", str(text), "--out-dir", str(out)])


def test_third_tone_sandhi_variants_follow_the_citation_form():
    from speechmoe.lang.units import third_tone_sandhi, with_sandhi_variants

    assert third_tone_sandhi(["ni3", "hao3"]) == ["ni2", "hao3"]
    assert third_tone_sandhi(["zhan3", "lan3", "guan3"]) == ["zhan2", "lan2", "guan3"]
    assert third_tone_sandhi(["ta1", "hao3"]) == ["ta1", "hao3"]
    assert third_tone_sandhi(["HH", "EH"]) == ["HH", "EH"]  # English phones: no tones
    lex = with_sandhi_variants([("你好", ["ni3", "hao3"]), ("好", ["hao3"]), ("好", ["hao4"]),
                                ("他", ["ta1"])])
    assert lex == [("你好", ["ni3", "hao3"]), ("你好", ["ni2", "hao3"]),
                   ("你好", ["ni2", "hao2"]), ("好", ["hao3"]), ("好", ["hao4"]),
                   ("好", ["hao2"]), ("他", ["ta1"])]
