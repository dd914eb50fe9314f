"""BPE units: sentencepiece model, tokens, lexicon, tokenizer, and a TLG over pieces."""

import json

import pytest

from speechmoe.lang.tokenizer import read_lang_info, scoring_tokens
from helpers import load_script

TEXT = ["the cat sat on the mat", "a dog ran in the park", "the dog sat on a log",
        "we went to the park today", "it is a good day to walk", "the cat and the dog",
        "she has a red hat", "he ran to the cat", "they sat in the sun all day",
        "a good dog is a happy dog"] * 3


@pytest.fixture(scope="module")
def bpe_lang(tmp_path_factory):
    d = tmp_path_factory.mktemp("bpe")
    (d / "lm.txt").write_text("\n".join(TEXT) + "\n")
    assert load_script("prepare_lang").main([
        "--lm-text", str(d / "lm.txt"), "--out-dir", str(d / "lang"), "--order", "2",
        "--unit-type", "bpe", "--bpe-vocab-size", "40"]) == 0
    return d / "lang"


def test_lang_dir_files(bpe_lang):
    from speechmoe.lang.symbols import read_lexicon, read_tokens

    for f in ("bpe.model", "tokens.txt", "lexicon.txt", "lm.arpa", "words.txt", "TLG.fst",
              "lang.json"):
        assert (bpe_lang / f).is_file(), f
    assert read_lang_info(bpe_lang) == {"unit_type": "bpe", "metric": "WER",
                                        "bpe_vocab_size": 40, "open_vocabulary": "uniform"}
    tokens = read_tokens(bpe_lang / "tokens.txt")
    assert tokens["<blk>"] == 0 and "<unk>" not in tokens
    assert 10 < len(tokens) <= 40
    entries = read_lexicon(bpe_lang / "lexicon.txt")
    lexicon = {w: p for w, p in entries if not w.startswith("\u2581")}
    assert set(lexicon) == {w for s in TEXT for w in s.split()}
    # the open vocabulary: every piece once more, as a fragment word of one piece
    fragments = {w: p for w, p in entries if w.startswith("\u2581")}
    assert sorted(p[0] for p in fragments.values()) == sorted(t for t in tokens if t != "<blk>")
    for word, (piece,) in fragments.items():
        assert word == (piece if piece.startswith("\u2581") else "\u2581+" + piece)
    # every piece is a token; pieces spell the word back
    for word, pieces in lexicon.items():
        assert all(p in tokens for p in pieces)
        assert "".join(pieces).lstrip("\u2581") == word


def test_tokenizer_segments_like_the_lexicon(bpe_lang):
    from speechmoe.lang.bpe import BpeModel, pieces_to_words
    from speechmoe.lang.tokenizer import BpeTokenizer, LexiconTokenizer, OOVError, \
        make_tokenizer

    tok = make_tokenizer(bpe_lang)
    assert isinstance(tok, BpeTokenizer)
    model = BpeModel(bpe_lang / "bpe.model")
    # the sentence-level segmentation equals the word-by-word one the lexicon uses
    sentence = "the dog sat in the park"
    assert tok.units(sentence.split()) == model.sp.encode(sentence, out_type=str)
    # a word not in the lexicon (not in the LM text) is segmented by the model too
    assert "cats" not in tok.lexicon
    assert tok.words_from_units(tok.units(["the", "cats"])) == ["the", "cats"]
    # a character the model never saw has no segmentation: OOV, not a crash
    with pytest.raises(OOVError):
        tok.encode(["the", "caté"])
    # the plain LexiconTokenizer of a BPE lang dir uses the same model
    assert LexiconTokenizer(bpe_lang).units(["cats"]) == tok.units(["cats"])
    assert pieces_to_words(["\u2581a", "b", "\u2581c"]) == ["ab", "c"]


def test_tlg_decodes_pieces_to_words(bpe_lang):
    """A peaked posterior over the pieces of a sentence decodes to its words through TLG."""
    import numpy as np

    from speechmoe.decode.wfst import WfstDecoder
    from speechmoe.lang.tokenizer import make_tokenizer

    tok = make_tokenizer(bpe_lang)
    words = "the cat sat on the mat".split()
    ids = tok.encode(words)
    frames = []
    for i in ids:  # each piece for two frames, then a blank
        frames += [i, i, 0]
    lp = np.full((len(frames), tok.vocab_size), -20.0, dtype=np.float32)
    lp[np.arange(len(frames)), frames] = 0.0
    dec = WfstDecoder(str(bpe_lang / "TLG.fst"), str(bpe_lang / "words.txt"), beam=10,
                      max_active=1000)
    assert dec.decode(lp) == words


def _peaked(tok, words):
    """Log-posteriors peaked on the pieces of ``words``, each two frames then a blank."""
    import numpy as np

    frames = []
    for i in tok.encode(words):
        frames += [i, i, 0]
    lp = np.full((len(frames), tok.vocab_size), -20.0, dtype=np.float32)
    lp[np.arange(len(frames)), frames] = 0.0
    return lp


@pytest.fixture(scope="module")
def closed_lang(bpe_lang, tmp_path_factory):
    d = tmp_path_factory.mktemp("closed")
    assert load_script("prepare_lang").main([
        "--lm-text", str(bpe_lang.parent / "lm.txt"), "--out-dir", str(d), "--order", "2",
        "--unit-type", "bpe", "--bpe-vocab-size", "40", "--open-vocabulary", "off"]) == 0
    return d


def test_open_vocabulary_decodes_a_word_the_lm_text_lacks(bpe_lang, closed_lang):
    """"cats" and "mats" are not in the LM text: the open vocabulary spells them from
    fragments and joins them back; the closed one cannot output them at all."""
    from speechmoe.decode.wfst import WfstDecoder
    from speechmoe.lang.symbols import read_lexicon
    from speechmoe.lang.tokenizer import make_tokenizer

    words = "the cats sat on the mats".split()
    tok = make_tokenizer(bpe_lang)
    lp = _peaked(tok, words)
    for lang, expect in ((bpe_lang, words), (closed_lang, None)):
        dec = WfstDecoder(str(lang / "TLG.fst"), str(lang / "words.txt"), beam=10,
                          max_active=1000)
        out = dec.decode(lp)
        if expect:
            assert out == expect
        else:
            assert "cats" not in out and "mats" not in out
    assert all(not w.startswith("\u2581") for w, _ in read_lexicon(closed_lang / "lexicon.txt"))
    # the LM's unigram level holds every fragment (a floor), the closed LM none
    arpa = (bpe_lang / "lm.arpa").read_text(encoding="utf-8")
    assert "\u2581+" in arpa
    assert "\u2581+" not in (closed_lang / "lm.arpa").read_text(encoding="utf-8")


def test_join_fragments():
    from speechmoe.lang.bpe import fragment_word, join_fragments

    s = "\u2581"
    assert fragment_word(s + "he") == s + "he" and fragment_word("llo") == s + "+llo"
    assert join_fragments(["the", s + "he", s + "+llo", "world"]) == ["the", "hello", "world"]
    assert join_fragments(["cat", s + "+s"]) == ["cats"]  # a continuation extends a word
    assert join_fragments([s, s + "+a", s + "+b"]) == ["ab"]  # a lone start piece
    assert join_fragments([s + "+x", "y"]) == ["x", "y"]  # a continuation first: a word
    assert join_fragments([s]) == []
    assert join_fragments(["plain", "words"]) == ["plain", "words"]


def test_too_large_bpe_vocabulary_is_warned_about():
    from speechmoe.lang.bpe import BpeModel

    prepare_lang = load_script("prepare_lang")

    class Log:
        messages = []

        def warning(self, fmt, *args):
            self.messages.append(fmt % args)

    class Model(BpeModel):
        def __init__(self):
            pass

        def pieces(self):
            return ["<unk>"] + [f"p{i}" for i in range(499)]

    log = Log()
    whole = {f"w{i}": [f"\u2581w{i}"] for i in range(60)}
    prepare_lang.warn_bpe_size(Model(), whole, log)
    assert len(log.messages) == 1 and "60 of the LM text's 60 words" in log.messages[0]
    assert "--bpe-vocab-size, e.g. 30" in log.messages[0]
    split = {f"w{i}": ["\u2581w", f"{i}"] for i in range(60)}
    prepare_lang.warn_bpe_size(Model(), split, log)
    assert len(log.messages) == 1  # most words in several pieces: no warning
    assert prepare_lang.suggested_bpe_size(3000) == 300
    assert prepare_lang.suggested_bpe_size(100_000) == 500


def test_unit_type_mismatch_is_refused(bpe_lang):
    with pytest.raises(ValueError, match="unit type 'bpe'"):
        load_script("prepare_lang").main(["--lm-text", str(bpe_lang.parent / "lm.txt"),
                                          "--out-dir", str(bpe_lang), "--unit-type", "syllable"])


def test_lang_info_defaults_and_scoring_tokens(tmp_path):
    assert read_lang_info(tmp_path) == {"unit_type": "syllable", "metric": "CER"}
    (tmp_path / "lang.json").write_text(json.dumps({"unit_type": "words"}))
    with pytest.raises(ValueError, match="unit_type"):
        read_lang_info(tmp_path)
    assert scoring_tokens(["中国", "人民"], "CER") == ["中", "国", "人", "民"]
    assert scoring_tokens(["the", "cat"], "WER") == ["the", "cat"]


def test_a_new_lm_text_rebuilds_lexicon_and_lm_but_keeps_the_units(bpe_lang, tmp_path):
    """Another LM text (e.g. the LibriSpeech LM corpus added later) reaches the lexicon, the
    LM and TLG on a rerun; the BPE model and tokens, which trained models depend on, stay."""
    import shutil

    from speechmoe.lang.symbols import read_lexicon

    lang = tmp_path / "lang"
    shutil.copytree(bpe_lang, lang)
    tokens = (lang / "tokens.txt").read_bytes()
    model = (lang / "bpe.model").read_bytes()
    text = tmp_path / "lm.txt"
    text.write_text("\n".join(TEXT + ["the dogs sat on the mat"]) + "\n")
    assert load_script("prepare_lang").main([
        "--lm-text", str(text), "--out-dir", str(lang), "--order", "2",
        "--unit-type", "bpe", "--bpe-vocab-size", "40"]) == 0
    assert "dogs" in dict(read_lexicon(lang / "lexicon.txt"))
    assert (lang / "tokens.txt").read_bytes() == tokens
    assert (lang / "bpe.model").read_bytes() == model
    assert " dogs" in (lang / "lm.arpa").read_text(encoding="utf-8").replace("\t", " ")
    assert json.loads((lang / "lm.json").read_text())["lm_text_sha256"]
