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
                                        "bpe_vocab_size": 40, "open_vocabulary": "off"}
    tokens = read_tokens(bpe_lang / "tokens.txt")
    assert tokens["<blk>"] == 0 and "<unk>" not in tokens
    assert 10 < len(tokens) <= 40
    lexicon = dict(read_lexicon(bpe_lang / "lexicon.txt"))
    assert set(lexicon) == {w for s in TEXT for w in s.split()}
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
