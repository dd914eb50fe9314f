"""TLG construction (kaldifst + kaldilm) and CTC decoding (kaldi-decoder WFST, greedy).

A tiny lang: 5 tokens and a blank; words with shared prefixes (ab / abc), homophones
(ba / bah), a word that needs a blank between repeated tokens (dee), a word with two
pronunciations (eddy); a hand-written bigram ARPA.
"""

import subprocess
import sys

import numpy as np
import pytest

from speechmoe.decode.greedy import ctc_greedy
from speechmoe.decode.wfst import WfstDecoder, skip_blank_frames
from speechmoe.lang import graph, symbols

TOKENS = "<blk> 0\na 1\nb 2\nc 3\nd 4\ne 5\n"
LEXICON = """ab a b
abc a b c
ba b a
bah b a
cd c d
dee d e e
eddy e d
eddy e d d
"""
# log10 probabilities. Alone, "b a" is "ba" (unigram -0.6 against -1.2); after "cd" the
# bigram "cd bah" (-0.1) beats backing off to "ba" (-0.3 - 0.6 = -0.9).
ARPA = """
\\data\\
ngram 1=9
ngram 2=3

\\1-grams:
-1.0 </s>
-99 <s> -0.5
-0.7 ab -0.3
-0.8 abc -0.3
-0.6 ba -0.3
-1.2 bah -0.3
-0.8 cd -0.3
-1.0 dee -0.3
-1.0 eddy -0.3

\\2-grams:
-0.3 <s> ab
-0.1 cd bah
-0.3 dee eddy

\\end\\
"""
TOKEN_IDS = {"<blk>": 0, "a": 1, "b": 2, "c": 3, "d": 4, "e": 5}


def write_lang(d, tokens=True, lexicon=True):
    d.mkdir(parents=True, exist_ok=True)
    if tokens:
        (d / "tokens.txt").write_text(TOKENS)
    if lexicon:
        (d / "lexicon.txt").write_text(LEXICON)
    (d / "lm.arpa").write_text(ARPA)
    return d


@pytest.fixture(scope="module")
def lang(tmp_path_factory):
    d = write_lang(tmp_path_factory.mktemp("lang"))
    info = graph.build_tlg(d, d / "lm.arpa", order=2, topology="standard")
    return d, info


@pytest.fixture(scope="module")
def compact_lang(tmp_path_factory):
    d = write_lang(tmp_path_factory.mktemp("lang_compact"))
    info = graph.build_tlg(d, d / "lm.arpa", order=2, topology="compact")
    return d, info


@pytest.fixture(scope="module", params=["standard", "compact"])
def decoder(request, lang, compact_lang):
    d, _ = lang if request.param == "standard" else compact_lang
    return WfstDecoder(d / "TLG.fst", d / "words.txt")


def spell(tokens, rep=2, blanks=1, peak=0.9, noise=0.0, seed=0):
    """Peaked CTC log-posteriors for a token sequence: blanks, then each token for `rep`
    frames followed by `blanks` blank frames (so repeats of a token are separated);
    natural log, rows sum to 1."""
    frames = [0] * blanks
    for t in tokens:
        frames += [TOKEN_IDS[t]] * rep + [0] * blanks
    c = len(TOKEN_IDS)
    p = np.full((len(frames), c), (1 - peak) / (c - 1))
    p[np.arange(len(frames)), frames] = peak
    if noise:
        p = p * np.exp(noise * np.random.default_rng(seed).standard_normal(p.shape))
        p /= p.sum(1, keepdims=True)
    return np.log(p).astype(np.float32)


def test_disambiguation_symbols_follow_kaldi():
    lex = [("ab", ["a", "b"]), ("abc", ["a", "b", "c"]), ("ba", ["b", "a"]),
           ("bah", ["b", "a"]), ("baa", ["b", "a"]), ("cd", ["c", "d"]),
           ("cd", ["c", "d"]), ("x", ["a"])]
    out, max_d = symbols.add_disambig_symbols(lex)
    assert out == [("ab", ["a", "b", "#1"]), ("abc", ["a", "b", "c"]),
                   ("ba", ["b", "a", "#1"]), ("bah", ["b", "a", "#2"]),
                   ("baa", ["b", "a", "#3"]), ("cd", ["c", "d"]),  # exact duplicate dropped
                   ("x", ["a", "#1"])]  # prefix of ab / abc
    assert max_d == 3
    assert symbols.add_disambig_symbols({"a": ["a"], "b": ["b"]}) == ([("a", ["a"]), ("b", ["b"])], 0)


def test_build_writes_words_and_graphs(lang):
    d, info = lang
    words = symbols.read_words(d / "words.txt")
    assert words == {"<eps>": 0, "ab": 1, "abc": 2, "ba": 3, "bah": 4, "cd": 5, "dee": 6,
                     "eddy": 7, "#0": 8, "<s>": 9, "</s>": 10}
    for name in ("TLG.fst", "L_disambig.fst", "G.fst"):
        assert (d / name).stat().st_size > 0
    assert not list(d.glob(".*.tmp"))
    assert info["num_tokens"] == 6 and info["max_disambig"] == 2
    states, arcs = info["sizes"]["TLG"]
    assert 0 < states < 200 and 0 < arcs < 1000
    # The decoder reads columns ilabel - 1: no disambiguation label may remain.
    assert WfstDecoder(d / "TLG.fst", d / "words.txt").max_ilabel == 6


@pytest.mark.parametrize("tokens, words", [
    ("a b", ["ab"]),
    ("a b c", ["abc"]),
    ("a b c c d", ["abc", "cd"]),
    ("a b b a", ["ab", "ba"]),
    ("d e e", ["dee"]),
    ("d e e e d", ["dee", "eddy"]),
    ("e d d", ["eddy"]),
    ("c d a b c e d", ["cd", "abc", "eddy"]),
])
def test_decoder_returns_the_spelled_words(decoder, tokens, words):
    assert decoder.decode(spell(tokens.split())) == words
    assert decoder.decode(spell(tokens.split(), rep=3, peak=0.6, noise=0.3)) == words


def test_language_model_breaks_the_homophone_tie(decoder):
    assert decoder.decode(spell("b a".split())) == ["ba"]
    assert decoder.decode(spell("c d b a".split())) == ["cd", "bah"]


def test_decode_batch_blank_skipping_and_scale(lang, decoder):
    d, _ = lang
    seqs = ["a b c c d", "d e e", "c d b a"]
    arrays = [spell(s.split(), rep=3, blanks=4) for s in seqs]
    expected = [decoder.decode(x) for x in arrays]
    assert decoder.decode_batch(arrays) == expected
    padded = np.zeros((3, max(len(x) for x in arrays), 6), np.float32)
    for b, x in enumerate(arrays):
        padded[b, : len(x)] = x
    assert decoder.decode_batch(padded, lengths=[len(x) for x in arrays]) == expected

    x = spell("d e e".split(), rep=3, blanks=4)
    y = skip_blank_frames(x, 0.5)
    assert len(y) == len(x) - 4 * 3 and ctc_greedy(y) == ctc_greedy(x)  # the e <blk> e blank stays
    fast = WfstDecoder(d / "TLG.fst", d / "words.txt", blank_skip_threshold=0.5,
                       beam=12.0, max_active=500)
    assert fast.decode_batch(arrays) == expected
    scaled = WfstDecoder(d / "TLG.fst", d / "words.txt", acoustic_scale=0.5)
    assert scaled.decode_batch(arrays) == expected
    # A scale per call, the decoder's own left alone (tuning decodes with one decoder).
    # "a b c" spelled clearly: at scale 1 the acoustics win (abc); at 0.2 the LM's
    # preference for ab (log10 -0.7 against -0.8) outweighs the c frames.
    abc = spell("a b c".split())
    lm_heavy = WfstDecoder(d / "TLG.fst", d / "words.txt", acoustic_scale=0.2)
    assert decoder.decode(abc) == ["abc"] and lm_heavy.decode(abc) == ["ab"]
    assert decoder.decode(abc, acoustic_scale=0.2) == ["ab"]
    assert lm_heavy.decode(abc, acoustic_scale=1.0) == ["abc"]
    assert lm_heavy.decode_aligned(abc, acoustic_scale=1.0)[0] == ["abc"]
    assert decoder.acoustic_scale == 1.0 and lm_heavy.acoustic_scale == 0.2
    assert decoder.decode(np.zeros((0, 6), np.float32)) == []
    torch = pytest.importorskip("torch")
    assert decoder.decode(torch.from_numpy(arrays[0])) == expected[0]
    with pytest.raises(ValueError, match="columns"):
        decoder.decode(spell(["a"])[:, :4])


def test_compact_topology_shares_the_grammar_states(lang, compact_lang):
    """O(N) arcs in T; in TLG one copy of each LM state instead of one per last token.
    Not exact CTC: a token may follow itself without a blank, so on noisy strings of
    random tokens (most spell no word) the two graphs sometimes differ (17 of 200 here,
    e.g. "e e" read as the two e's of "dee"); on clean spellings they agree (the
    parametrized tests above)."""
    import kaldifst

    n, d = 6, 3
    T = graph.make_compact_token_topology(n, d)
    assert T.num_states == n and graph._count(T)[1] == 1 + d + 3 * (n - 1)
    leave = n + 1 + d
    for k in range(1, n):
        arcs = sorted((a.ilabel, a.olabel, a.nextstate) for a in kaldifst.ArcIterator(T, k))
        assert arcs == [(k + 1, 0, k), (leave, 0, 0)]  # the repeat, and leaving the run
    assert graph._count(graph.make_token_topology(n, d))[1] == n * (n + d)

    (std_dir, std), (cmp_dir, cmp) = lang, compact_lang
    assert cmp["topology"] == "compact" and std["topology"] == "standard"
    assert cmp["sizes"]["TLG"][1] < std["sizes"]["TLG"][1]
    full = WfstDecoder(std_dir / "TLG.fst", std_dir / "words.txt")
    compact = WfstDecoder(cmp_dir / "TLG.fst", cmp_dir / "words.txt")
    assert compact.max_ilabel == n  # the leave label is epsilon, like the #k
    rng = np.random.default_rng(1)
    same = 0
    for k in range(200):
        toks = list(rng.choice(list("abcde"), size=int(rng.integers(1, 7))))
        x = spell(toks, rep=int(rng.integers(1, 4)), peak=0.7, noise=0.5, seed=k)
        words, aligned = compact.decode_aligned(x)
        same += words == full.decode(x)
        assert all(0 < t < n for t, _ in aligned)
    assert same >= 180, same
    with pytest.raises(ValueError, match="topology"):
        graph.build_tlg(std_dir, std_dir / "lm.arpa", std_dir / "x.fst", topology="mini")


def test_relabel_and_max_ilabel():
    import kaldifst

    fst = kaldifst.StdVectorFst()
    s, t = fst.add_state(), fst.add_state()
    fst.start = s
    fst.set_final(t, 0.0)
    for label in (9, 3, 12, 5):
        fst.add_arc(s, kaldifst.StdArc(label, label, 0.0, t))
    assert not fst.is_ilabel_sorted and graph.max_ilabel(fst) == 12  # the O(arcs) scan
    assert graph.relabel_high_ilabels(fst, 6) == 2
    arcs = [(a.ilabel, a.olabel) for a in kaldifst.ArcIterator(fst, s)]
    assert sorted(arcs) == [(0, 9), (0, 12), (3, 3), (5, 5)]
    assert [i for i, _ in arcs] == [0, 0, 3, 5]
    assert fst.is_ilabel_sorted and graph.max_ilabel(fst) == 5


def test_token_graph_decodes_without_a_lexicon():
    fst = graph.make_token_graph(TOKEN_IDS)
    dec = WfstDecoder(fst, {i: t for t, i in TOKEN_IDS.items()})
    seq = "c a a b e d d".split()  # no word spells this; repeated tokens survive
    assert dec.decode(spell(seq)) == seq
    x = spell(seq, rep=3, peak=0.7, noise=0.5, seed=3)
    assert dec.decode_ids(x) == ctc_greedy(x)[0]  # T alone: Viterbi = best path


def test_greedy_collapses_repeats_and_drops_blanks():
    import torch

    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0, 3, 3], [0, 4, 4, 4, 0, 0, 5, 5, 3, 1]])
    logits = torch.nn.functional.one_hot(ids, 6).float().log_softmax(-1)
    assert ctc_greedy(logits) == [[1, 1, 2, 3], [4, 5, 3, 1]]
    assert ctc_greedy(logits, torch.tensor([5, 4])) == [[1, 1, 2], [4]]
    assert ctc_greedy(logits[0].numpy()) == [[1, 1, 2, 3]]
    assert ctc_greedy(logits, [0, 10]) == [[], [4, 5, 3, 1]]


def test_missing_or_bad_lang_files_are_named(tmp_path):
    d = write_lang(tmp_path / "no_tokens", tokens=False)
    with pytest.raises(FileNotFoundError, match=r"tokens\.txt"):
        graph.build_tlg(d, d / "lm.arpa")
    d = write_lang(tmp_path / "no_lexicon", lexicon=False)
    with pytest.raises(FileNotFoundError, match=r"lexicon\.txt"):
        graph.build_tlg(d, d / "lm.arpa")
    d = write_lang(tmp_path / "bad_token")
    (d / "lexicon.txt").write_text(LEXICON + "zed z e d\n")
    with pytest.raises(ValueError, match=r"lexicon\.txt.*'z'"):
        graph.build_tlg(d, d / "lm.arpa")
    with pytest.raises(FileNotFoundError, match=r"missing\.arpa"):
        graph.build_tlg(d, d / "missing.arpa")
    d = write_lang(tmp_path / "bad_arpa")
    (d / "lm.arpa").write_text("not an ARPA file\n")
    with pytest.raises(ValueError, match=r"lm\.arpa.*data"):  # kaldilm aborts: a child runs it
        graph.build_tlg(d, d / "lm.arpa")
    assert not (d / "TLG.fst").exists()


def test_text_files_round_trip(tmp_path):
    symbols.write_tokens(["<blk>", "a", "b"], tmp_path / "tokens.txt")
    assert symbols.read_tokens(tmp_path / "tokens.txt") == {"<blk>": 0, "a": 1, "b": 2}
    lex = [("ab", ["a", "b"]), ("ab", ["b"]), ("中国", ["zhong1", "guo2"])]
    symbols.write_lexicon(lex, tmp_path / "lexicon.txt")
    assert symbols.read_lexicon(tmp_path / "lexicon.txt") == lex
    (tmp_path / "gap.txt").write_text("<blk> 0\na 2\n")
    with pytest.raises(ValueError, match="without gaps"):
        symbols.read_tokens(tmp_path / "gap.txt")


def test_cli_builds_a_graph_the_decoder_reads(tmp_path):
    d = write_lang(tmp_path / "lang")
    subprocess.run([sys.executable, "-m", "speechmoe.lang.graph", "--lang-dir", str(d),
                    "--arpa", str(d / "lm.arpa"), "--order", "2", "--minimize-tlg"],
                   check=True, capture_output=True)
    assert (d / "TLG.fst").is_file() and (d / "words.txt").is_file()
    dec = WfstDecoder(d / "TLG.fst", d / "words.txt")
    assert dec.decode(spell("c d b a".split())) == ["cd", "bah"]


def sherpa_words(graph_path, log_probs) -> list[int]:
    """Word ids as sherpa-onnx's offline CTC FST decoder reads the best path
    (offline-ctc-fst-decoder.cc, DecodeOne): an arc's word only where a new non-blank
    token starts; epsilon, blank and repeated-token arcs are skipped, words and all."""
    import kaldi_decoder
    import kaldifst

    fst = kaldifst.StdVectorFst.read(str(graph_path))  # the decoder only points to it
    dec = kaldi_decoder.FasterDecoder(fst, kaldi_decoder.FasterDecoderOptions(max_active=7000))
    dec.decode(kaldi_decoder.DecodableCtc(log_probs))
    ok, best = dec.get_best_path()
    assert ok
    arcs = {}  # the best path is linear: state -> (next state, ilabel, olabel)
    for line in best.to_str().splitlines():
        f = line.split()
        if len(f) >= 4:
            arcs[int(f[0])] = (int(f[1]), int(f[2]), int(f[3]))
    words, prev, state = [], -1, best.start
    while state in arcs:
        state, ilabel, olabel = arcs[state]
        if ilabel != prev and ilabel not in (0, 1) and olabel:
            words.append(olabel)
        prev = ilabel
    return words


SPELLINGS = ["b a", "c d b a", "a b b a", "e d d", "d e e e d", "a b c c d", "c d a b c e d"]


@pytest.mark.parametrize("topology", ["standard", "compact"])
def test_token_start_graph_puts_words_where_sherpa_onnx_reads_them(tmp_path, topology):
    """TLG.fst's homophones (ba, bah) and prefix words (ab in abc) get their words on
    word-end arcs that are epsilon, and a reader like sherpa-onnx's loses them; the
    token-start graph puts every word on its last token and is read the same by both
    decoders."""
    import kaldifst

    from speechmoe.lang.symbols import read_words
    from speechmoe.lang.token_start import build_token_start_tlg, token_start_violations
    from speechmoe.sherpa import check_token_starts

    d = write_lang(tmp_path)
    graph.build_tlg(d, d / "lm.arpa", order=2, topology=topology)
    info = build_token_start_tlg(d, d / "ts.fst", topology=topology)
    assert info["sizes"]["TLG"][0] > 0
    assert token_start_violations(kaldifst.StdVectorFst.read(str(d / "TLG.fst")), 6) > 0
    ts = kaldifst.StdVectorFst.read(str(d / "ts.fst"))
    assert token_start_violations(ts, 6) == 0
    # each word label on the arc of one of its pronunciations' last token (ilabel: id + 1)
    # ("eddy e d d": its last token is d all the same, the first of the run)
    last_tokens: dict[int, set[int]] = {}
    words = read_words(d / "words.txt")
    for line in LEXICON.strip().splitlines():
        word, *pron = line.split()
        last_tokens.setdefault(words[word], set()).add(TOKEN_IDS[pron[-1]] + 1)
    labelled = [(arc.ilabel, arc.olabel) for state in range(ts.num_states)
                for arc in kaldifst.ArcIterator(ts, state) if arc.olabel]
    assert {w for _, w in labelled} == set(last_tokens)
    assert all(i in last_tokens[w] for i, w in labelled), labelled
    with pytest.raises(ValueError, match="TLG.fst: .* word labels"):
        check_token_starts(d / "TLG.fst", 6)
    check_token_starts(d / "ts.fst", 6)
    plain = WfstDecoder(d / "TLG.fst", d / "words.txt")
    tsd = WfstDecoder(d / "ts.fst", d / "words.txt")
    lost = 0
    for k, toks in enumerate(SPELLINGS):
        for x in (spell(toks.split()), spell(toks.split(), rep=3, peak=0.6, noise=0.3,
                                                seed=k)):
            want = plain.decode_ids(x)
            assert tsd.decode_ids(x) == want == sherpa_words(d / "ts.fst", x), toks
            lost += sherpa_words(d / "TLG.fst", x) != want
    if topology == "compact":  # "b a" alone: ba's word label sits on its word-end arc
        assert lost > 0
    with pytest.raises(FileNotFoundError, match="G.fst"):
        (d / "G.fst").unlink()
        build_token_start_tlg(d, d / "x.fst")
