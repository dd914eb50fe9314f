"""The Kneser-Ney n-gram estimator, its pruning, ARPA output and reader (speechmoe.lang.ngram)."""

import math
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

import speechmoe.lang.arpa as arpa_module
from speechmoe.lang.arpa import load_arpa
from speechmoe.lang.kneser_ney import (FALLBACK_DISCOUNTS, estimate_kneser_ney,
                                       kneser_ney_discounts)

LN10 = math.log(10.0)


def markov_corpus(n_sent, seed, n_words=10, max_len=8):
    """Sentences from a sparse random Markov chain: plenty of repeated n-grams of every
    order, and also unseen ones."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(n_words)]
    succ = {w: rng.sample(words, 3) for w in words + ["<s>"]}
    out = []
    for _ in range(n_sent):
        sent, prev = [], "<s>"
        for _ in range(rng.randint(0, max_len)):
            prev = rng.choice(succ[prev]) if rng.random() < 0.8 else rng.choice(words)
            sent.append(prev)
        out.append(sent)
    return out


def template_corpus(n_sent, seed):
    """A repetitive corpus: long-span structure that a higher order captures."""
    rng = random.Random(seed)
    subj = ["the cat", "the dog", "a bird", "my friend"]
    verb = ["sat on", "looked at", "ran to"]
    obj = ["the mat", "the log", "a tree", "the house"]
    return [f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)} today".split()
            for _ in range(n_sent)]


def predicted_vocab(arpa):
    return [w for w in arpa.vocab if w != "<s>"]


def histories(arpa, extra=()):
    """Every history the model lists (n-grams below its top order that do not end in
    </s>), plus a few it does not."""
    hs = [k for k in arpa.ngram_logprobs() if len(k) < arpa.order and k[-1] != "</s>"]
    return hs + list(extra)


def assert_normalised(arpa, extra=(), tol=2e-6):
    vocab = predicted_vocab(arpa)
    hs = histories(arpa, extra)
    assert hs
    for h in hs:
        total = sum(10.0 ** arpa.logprob(w, h) for w in vocab)
        assert abs(total - 1.0) < tol, (h, total)


def assert_well_formed(arpa):
    """The prefix (the history) and the suffix (the backoff n-gram) of every listed n-gram
    are listed too, and only listed histories with continuations carry a backoff weight."""
    probs, bows = arpa.ngram_logprobs(), arpa.backoff_weights()
    for k in probs:
        if len(k) > 1:
            assert k[:-1] in probs and k[1:] in probs, k
    prefixes = {k[:-1] for k in probs if len(k) > 1}
    assert set(bows) == prefixes


def write_and_load(lm, tmp_path, name="lm.arpa"):
    path = tmp_path / name
    lm.write_arpa(path)
    return path, load_arpa(path)


# ---------------------------------------------------------------------------------------------
# the estimate itself, by hand
# ---------------------------------------------------------------------------------------------

def test_bigram_probabilities_by_hand(tmp_path):
    sents = [s.split() for s in ["a b", "a", "b c", "a b", "a c", "c c"]]
    lm = estimate_kneser_ney(sents, order=2, unk=True)
    _, arpa = write_and_load(lm, tmp_path)

    # Counted by hand from  <s> a b </s> | <s> a </s> | <s> b c </s> | <s> a b </s> |
    #                       <s> a c </s> | <s> c c </s>
    bigram = {("<s>", "a"): 4, ("<s>", "b"): 1, ("<s>", "c"): 1, ("a", "b"): 2,
              ("a", "</s>"): 1, ("a", "c"): 1, ("b", "</s>"): 2, ("b", "c"): 1,
              ("c", "</s>"): 3, ("c", "c"): 1}
    # continuation counts N1+(. w): the distinct words seen before w
    cont = {"a": 1,  # <s>
            "b": 2,  # <s> a
            "c": 4,  # <s> a b c
            "</s>": 3,  # a b c
            "<unk>": 0}

    def discounts(c):  # Chen & Goodman (1998) eq. 26
        n = [sum(1 for v in c.values() if v == k) for k in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1])
        return {1: 1 - 2 * y * n[1] / n[0], 2: 2 - 3 * y * n[2] / n[1],
                3: 3 - 4 * y * n[3] / n[2]}

    d2, d1 = discounts(bigram), discounts(cont)
    assert (d2[1], d2[2], d2[3]) == pytest.approx((0.6, 1.1, 0.6))  # n = 6, 2, 1, 1
    assert (d1[1], d1[2], d1[3]) == pytest.approx((1 / 3, 1.0, 5 / 3))  # n = 1, 1, 1, 1
    assert lm.discounts[0] == pytest.approx(tuple(d1.values()))
    assert lm.discounts[1] == pytest.approx(tuple(d2.values()))

    def disc(d, c):
        return 0.0 if c == 0 else d[min(c, 3)]

    # unigrams: interpolated with the uniform distribution over a, b, c, </s>, <unk>
    total1 = sum(cont.values())
    gamma0 = sum(disc(d1, c) for c in cont.values()) / total1
    p1 = {w: (c - disc(d1, c)) / total1 + gamma0 / 5 for w, c in cont.items()}
    assert sum(p1.values()) == pytest.approx(1.0)
    assert p1["<unk>"] == pytest.approx(gamma0 / 5) and p1["<unk>"] > 0

    def p2(w, h):
        children = {v: c for (g, v), c in bigram.items() if g == h}
        total = sum(children.values())
        gamma = sum(disc(d2, c) for c in children.values()) / total
        c = children.get(w, 0)
        return (c - disc(d2, c)) / total + gamma * p1[w]

    for w, p in p1.items():
        assert arpa.logprob(w, ()) == pytest.approx(math.log10(p), abs=1e-6)
    for h in ["<s>", "a", "b", "c"]:
        for w in ["a", "b", "c", "</s>", "<unk>"]:  # seen and unseen (backed-off) bigrams
            assert arpa.logprob(w, [h]) == pytest.approx(math.log10(p2(w, h)), abs=1e-6)
    # a few numbers written out: p(b | a) = (2 - 1.1) / 4 + 0.575 p(b), p(b) = 1/10 + 7/75
    assert 10 ** arpa.logprob("b", ["a"]) == pytest.approx(0.225 + 0.575 * (0.1 + 7 / 75),
                                                             rel=1e-6)
    # an unseen bigram backs off: p(a | a) = gamma(a) p(a) = 0.575 * (2/3 / 10 + 7/75)
    assert 10 ** arpa.logprob("a", ["a"]) == pytest.approx(0.575 * (1 / 15 + 7 / 75), rel=1e-6)
    assert arpa.ngram_logprobs()[("<s>",)] == -99.0
    # an OOV maps to <unk>
    assert arpa.logprob("zebra", ["a"]) == arpa.logprob("<unk>", ["a"])
    assert lm.num_ngrams() == [6, 10]  # <s> </s> <unk> a b c; the ten bigrams


def reference_kneser_ney(sents, order, unk):
    """Interpolated modified KN written straight from the formulas with dicts: slow and
    simple, for checking the vectorised estimator at orders 3-4."""
    counts = [Counter() for _ in range(order + 1)]
    for s in sents:
        t = ["<s>"] + list(s) + ["</s>"]
        for n in range(1, order + 1):
            for i in range(max(n - 1, 1), len(t)):  # never predict <s>
                counts[n][tuple(t[i - n + 1:i + 1])] += 1
    adj = [None] * (order + 1)
    adj[order] = counts[order]
    for n in range(1, order):
        adj[n] = Counter(g[1:] for g in counts[n + 1])  # N1+(. g)
        for g, c in counts[n].items():
            if g[0] == "<s>":
                adj[n][g] = c
    disc = [None] + [kneser_ney_discounts([sum(1 for c in adj[n].values() if c == k)
                                           for k in (1, 2, 3, 4)])[0]
                     for n in range(1, order + 1)]
    children = [None] + [{} for _ in range(order)]
    for n in range(1, order + 1):
        for g, c in adj[n].items():
            children[n].setdefault(g[:-1], {})[g[-1]] = c
    vocab = {w for s in sents for w in s} | {"</s>"} | ({"<unk>"} if unk else set())

    def p(w, h):
        h = tuple(h)[-(order - 1):] if order > 1 else ()
        kids = children[len(h) + 1].get(h)
        if kids is None:
            return p(w, h[1:])  # an unseen history: the lower order alone
        d = disc[len(h) + 1]
        total = sum(kids.values())
        gamma = sum(d[min(c, 3) - 1] for c in kids.values()) / total
        c = kids.get(w, 0)
        own = (c - d[min(c, 3) - 1]) / total if c else 0.0
        return own + gamma * (p(w, h[1:]) if h else 1.0 / len(vocab))

    return p


@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("unk", [True, False])
def test_matches_a_direct_implementation(order, unk, tmp_path):
    sents = markov_corpus(150, seed=30 + order)
    _, arpa = write_and_load(estimate_kneser_ney(sents, order=order, unk=unk), tmp_path)
    p = reference_kneser_ney(sents, order, unk)
    hs = histories(arpa, extra=[("w3", "w3", "w3"), ("<s>", "w0", "w0")])
    for h in hs:
        for w in predicted_vocab(arpa):
            assert arpa.logprob(w, h) == pytest.approx(math.log10(p(w, h)), abs=1e-6)


def test_discount_fallback_never_nan():
    assert kneser_ney_discounts([0, 0, 0, 0]) == (FALLBACK_DISCOUNTS, True)
    d, fell_back = kneser_ney_discounts([5, 0, 0, 0])  # no n2: Y = 1, D1 = 1 is invalid
    assert fell_back and d == FALLBACK_DISCOUNTS
    d, fell_back = kneser_ney_discounts([10, 4, 0, 0])  # D1 from the formula, D2/D3 fall back
    assert fell_back and d[0] == pytest.approx(1 - 2 * (10 / 18) * 4 / 10)
    assert d[1:] == FALLBACK_DISCOUNTS[1:]
    d, fell_back = kneser_ney_discounts([100, 40, 20, 10])
    assert not fell_back and all(0 < x < k for k, x in enumerate(d, 1))


def test_open_vocabulary_base_distribution_by_hand(tmp_path):
    """Extra vocabulary words (never in the text) get the unigram floor gamma0 p0(w), with
    p0(w) ~ 1 + base_counts[w]; seen words keep their discounted counts; the model stays
    normalised at every history."""
    sents = [s.split() for s in ["a b", "a", "b c", "a b", "a c", "c c"]]
    base = {"x": 3, "y": 0, "a": 1}
    lm = estimate_kneser_ney(sents, order=2, unk=False, vocabulary=["x", "y", "a"],
                             base_counts=base)
    _, arpa = write_and_load(lm, tmp_path)
    cont = {"a": 1, "b": 2, "c": 4, "</s>": 3, "x": 0, "y": 0}
    d1 = lm.discounts[0]

    def disc(c):
        return 0.0 if c == 0 else d1[min(c, 3) - 1]

    total1 = sum(cont.values())
    gamma0 = sum(disc(c) for c in cont.values()) / total1
    weight = {w: 1 + base.get(w, 0) for w in cont}  # p0: 2, 1, 1, 1, 4, 1 -> / 10
    p1 = {w: (c - disc(c)) / total1 + gamma0 * weight[w] / sum(weight.values())
          for w, c in cont.items()}
    for w, p in p1.items():
        assert arpa.logprob(w, ()) == pytest.approx(math.log10(p), abs=1e-6)
    assert p1["x"] == pytest.approx(4 * p1["y"])
    assert_normalised(arpa, extra=[("x",), ("<s>",), ("a",)])
    with pytest.raises(ValueError, match="base_counts"):
        estimate_kneser_ney(sents, order=2, vocabulary=["x"], base_counts={"x": -2})
    with pytest.raises(ValueError, match="vocabulary"):
        estimate_kneser_ney(sents, order=2, vocabulary=["</s>"])


# ---------------------------------------------------------------------------------------------
# normalisation, pruning
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("pruning", ["none", "cutoffs", "entropy", "both"])
def test_every_history_sums_to_one(order, pruning, tmp_path):
    sents = markov_corpus(300, seed=order)
    cutoffs = [0] + [2] * (order - 1) if pruning in ("cutoffs", "both") else None
    prune = 1e-4 if pruning in ("entropy", "both") else 0.0
    lm = estimate_kneser_ney(sents, order=order, cutoffs=cutoffs, prune_threshold=prune)
    _, arpa = write_and_load(lm, tmp_path)
    assert arpa.order == order
    assert_well_formed(arpa)
    assert_normalised(arpa, extra=[("<s>", "w1", "w1"), ("w9", "w9", "w9"), ("oov",),
                                   ("<s>", "oov", "w2")])


@pytest.mark.parametrize("order", [2, 3, 4])
def test_pruning_shrinks_the_model(order, tmp_path):
    sents = markov_corpus(300, seed=10 + order)
    full = estimate_kneser_ney(sents, order=order)
    cut = estimate_kneser_ney(sents, order=order, cutoffs=[0] + [2] * (order - 1))
    pruned = estimate_kneser_ney(sents, order=order, prune_threshold=1e-4)
    n_full, n_cut, n_pruned = full.num_ngrams(), cut.num_ngrams(), pruned.num_ngrams()
    assert n_cut[0] == n_pruned[0] == n_full[0]  # unigrams are never pruned
    assert sum(n_cut) < sum(n_full) and sum(n_pruned) < sum(n_full)
    assert all(c <= f for c, f in zip(n_cut + n_pruned, n_full + n_full))
    # (count cutoffs can even lower the training perplexity: a dropped n-gram's discounted
    # mass raises the backoff weight of its history, and so the probability of every kept
    # n-gram there; Stolcke pruning removes what the training text needs least)
    assert full.training_perplexity < pruned.training_perplexity
    for lm in (cut, pruned):
        _, arpa = write_and_load(lm, tmp_path)
        counts = lm.num_ngrams()
        assert arpa.num_ngrams() == counts[:arpa.order] and not any(counts[arpa.order:])
        # the in-memory training perplexity is the written model's
        assert arpa.perplexity(sents) == pytest.approx(lm.training_perplexity, rel=1e-5)


def test_cutoffs_drop_exactly_the_rare_ngrams(tmp_path):
    sents = markov_corpus(200, seed=3)
    lm = estimate_kneser_ney(sents, order=3, cutoffs=[0, 2, 3])
    _, arpa = write_and_load(lm, tmp_path)
    counts = Counter()
    for s in sents:
        t = ["<s>"] + s + ["</s>"]
        for n in (2, 3):
            for i in range(n - 1, len(t)):
                counts[tuple(t[i - n + 1:i + 1])] += 1
    expected = {g for g, c in counts.items() if c >= (2 if len(g) == 2 else 3)}
    # monotone cutoffs: the prefix and suffix of a kept n-gram are always kept too
    assert {k for k in arpa.ngram_logprobs() if len(k) > 1} == expected

    # non-monotone cutoffs: a trigram seen often enough whose bigram prefix or suffix was
    # dropped goes too
    lm = estimate_kneser_ney(sents, order=3, cutoffs=[0, 3, 1])
    _, arpa = write_and_load(lm, tmp_path)
    assert_well_formed(arpa)
    assert_normalised(arpa)
    kept = {k for k in arpa.ngram_logprobs() if len(k) > 1}
    bigrams = {g for g, c in counts.items() if len(g) == 2 and c >= 3}
    trigrams = {g for g, c in counts.items()
                if len(g) == 3 and g[:2] in bigrams and g[1:] in bigrams}
    assert kept == bigrams | trigrams
    assert len(trigrams) < len([g for g in counts if len(g) == 3])


def test_entropy_pruning_removes_what_stolckes_criterion_says(tmp_path):
    """Order 2, brute force: remove each bigram alone, recompute its history's backoff
    weight, sum the KL divergence over the whole vocabulary; the pruned model must have lost
    exactly the bigrams whose relative perplexity change exp(D) - 1 is below the
    threshold."""
    sents = markov_corpus(150, seed=7)
    _, full = write_and_load(estimate_kneser_ney(sents, order=2), tmp_path, "full.arpa")
    vocab = predicted_vocab(full)
    bigrams = [k for k in full.ngram_logprobs() if len(k) == 2]
    crit = {}
    for h, w in bigrams:
        p = {v: 10 ** full.logprob(v, [h]) for v in vocab}
        seen = [v for (g, v) in bigrams if g == h and v != w]
        bow = (1 - sum(p[v] for v in seen)) / (1 - sum(10 ** full.logprob(v) for v in seen))
        p_new = {v: p[v] if v in seen else bow * 10 ** full.logprob(v) for v in vocab}
        p_h = 1.0 if h == "<s>" else 10 ** full.logprob(h)
        kl = p_h * sum(p[v] * math.log(p[v] / p_new[v]) for v in vocab)
        crit[(h, w)] = math.expm1(kl)
    values = sorted(crit.values())
    # a threshold in the middle of a clear gap near the median
    i = max(range(len(values) // 4, 3 * len(values) // 4),
            key=lambda j: values[j + 1] / values[j])
    assert values[i + 1] / values[i] > 1.01
    thr = math.sqrt(values[i] * values[i + 1])
    lm = estimate_kneser_ney(sents, order=2, prune_threshold=thr)
    _, pruned = write_and_load(lm, tmp_path, "pruned.arpa")
    kept = {k for k in pruned.ngram_logprobs() if len(k) == 2}
    assert kept == {g for g, c in crit.items() if c >= thr}
    assert len(kept) == len(bigrams) - (i + 1)
    assert_normalised(pruned)


def test_a_huge_threshold_leaves_a_unigram_model(tmp_path):
    sents = markov_corpus(100, seed=5)
    lm = estimate_kneser_ney(sents, order=3, prune_threshold=1e9)
    assert lm.num_ngrams()[1:] == [0, 0]
    _, arpa = write_and_load(lm, tmp_path)
    assert arpa.order == 1 and not arpa.backoff_weights()
    assert_normalised(arpa, extra=[("w1",), ("<s>",)])
    unigram = estimate_kneser_ney(sents, order=3)
    _, full = write_and_load(unigram, tmp_path, "full.arpa")
    for w in predicted_vocab(arpa):  # the unigram probabilities are untouched
        assert arpa.logprob(w) == pytest.approx(full.logprob(w), abs=1e-7)


# ---------------------------------------------------------------------------------------------
# the ARPA file: Kaldi accepts it, and it turns into the expected FST
# ---------------------------------------------------------------------------------------------

def _parse_fst_text(text):
    arcs, finals = [], []
    for line in text.strip().splitlines():
        f = line.split()
        if len(f) >= 4:
            arcs.append((int(f[0]), int(f[1]), int(f[2]), int(f[3]),
                         float(f[4]) if len(f) > 4 else 0.0))
        else:
            finals.append((int(f[0]), float(f[1]) if len(f) > 1 else 0.0))
    return arcs, finals


@pytest.mark.parametrize("order,cutoffs,prune", [(2, None, 0.0), (3, None, 0.0),
                                                 (4, [0, 1, 2, 2], 1e-5)])
def test_kaldilm_compiles_the_arpa_file(order, cutoffs, prune, tmp_path, capfd):
    kaldilm = pytest.importorskip("kaldilm")
    sents = markov_corpus(200, seed=20 + order)
    lm = estimate_kneser_ney(sents, order=order, cutoffs=cutoffs, prune_threshold=prune)
    path, arpa = write_and_load(lm, tmp_path)
    words = tmp_path / "words.txt"
    table = ["<eps>"] + sorted(arpa.vocab) + ["#0"]
    words.write_text("".join(f"{w} {i}\n" for i, w in enumerate(table)))
    sym = {w: i for i, w in enumerate(table)}
    capfd.readouterr()
    text = kaldilm.arpa2fst(input_arpa=str(path), output_fst=str(tmp_path / "G.fst"),
                            disambig_symbol="#0", read_symbol_table=str(words),
                            max_order=arpa.order)
    err = capfd.readouterr().err
    assert "[W]" not in err and "[E]" not in err, err
    assert (tmp_path / "G.fst").stat().st_size > 0

    # every n-gram is one word arc (or, for those ending in </s>, one final weight) with
    # weight -ln p, and every listed history gets a #0 backoff arc of weight -ln bow
    arcs, finals = _parse_fst_text(text)
    word_arcs = sorted(round(w, 3) for (_, _, i, _, w) in arcs if i != sym["#0"])
    expected = sorted(round(-LN10 * lp, 3) for k, lp in arpa.ngram_logprobs().items()
                      if k[-1] != "</s>" and k != ("<s>",))
    assert len(word_arcs) == len(expected)
    assert word_arcs == pytest.approx(expected, abs=2e-3)
    final_w = sorted(round(w, 3) for _, w in finals)
    expected_final = sorted(round(-LN10 * lp, 3) for k, lp in arpa.ngram_logprobs().items()
                            if k[-1] == "</s>")
    assert final_w == pytest.approx(expected_final, abs=2e-3)
    assert all(o == 0 for (_, _, i, o, _) in arcs if i == sym["#0"])


# ---------------------------------------------------------------------------------------------
# perplexity, vocabulary, degenerate corpora
# ---------------------------------------------------------------------------------------------

def test_heldout_perplexity_drops_with_the_order(tmp_path):
    train, test = template_corpus(400, seed=1), template_corpus(100, seed=2)
    ppl = []
    for order in (1, 2, 3, 4):
        _, arpa = write_and_load(estimate_kneser_ney(train, order=order), tmp_path,
                                 f"o{order}.arpa")
        ppl.append(arpa.perplexity(test))
    assert all(math.isfinite(p) and p > 1 for p in ppl)
    assert ppl[0] > ppl[1] > ppl[2] > ppl[3], ppl
    assert ppl[3] < 3.0  # "the cat sat on the mat today": about 4 x 3 x 4 choices / 8 tokens


def test_unk_option_and_oov_scoring(tmp_path):
    sents = markov_corpus(100, seed=9)
    heldout = [["w1", "zebra", "w2"], ["giraffe"]]
    _, with_unk = write_and_load(estimate_kneser_ney(sents, order=3), tmp_path, "u.arpa")
    _, no_unk = write_and_load(estimate_kneser_ney(sents, order=3, unk=False), tmp_path,
                               "n.arpa")
    assert "<unk>" in with_unk.vocab and "<unk>" not in no_unk.vocab
    assert_normalised(no_unk)
    total, n_tok, n_oov = with_unk.evaluate(heldout)
    assert (n_tok, n_oov) == (6, 0) and math.isfinite(total)
    total, n_tok, n_oov = no_unk.evaluate(heldout)
    assert (n_tok, n_oov) == (4, 2) and math.isfinite(total)  # OOVs skipped, SRILM style
    assert no_unk.logprob("zebra", ["w1"]) == -math.inf
    assert math.isfinite(no_unk.perplexity(heldout))
    # the sentence score is the sum of the conditional scores, </s> included
    s = ["w1", "w2", "w3"]
    expected = sum(with_unk.logprob(w, h) for w, h in [
        ("w1", ["<s>"]), ("w2", ["<s>", "w1"]), ("w3", ["<s>", "w1", "w2"]),
        ("</s>", ["w1", "w2", "w3"])])
    assert with_unk.sentence_logprob(s) == pytest.approx(expected)


@pytest.mark.parametrize("sents", [[["a"]], [[]], [["a", "a", "a"]], [["a"], ["b"]],
                                   [[], ["x", "y"]]])
@pytest.mark.parametrize("order", [1, 2, 3, 5])
@pytest.mark.parametrize("unk", [True, False])
def test_degenerate_corpora(sents, order, unk, tmp_path):
    for pruning in ({}, {"cutoffs": [0] + [2] * (order - 1), "prune_threshold": 1e-3}):
        lm = estimate_kneser_ney(sents, order=order, unk=unk, **pruning)
        assert all(math.isfinite(d) for ds in lm.discounts for d in ds)
        path, arpa = write_and_load(lm, tmp_path)
        text = path.read_text()
        assert "nan" not in text.lower() and "inf" not in text.lower()
        assert_normalised(arpa, extra=[("<s>",), ("q",), ("<s>", "q", "q", "q")])
        ppl = arpa.perplexity(sents)
        assert math.isfinite(ppl) and ppl >= 1.0
        assert ppl == pytest.approx(lm.training_perplexity, rel=1e-5)


def test_degenerate_corpora_compile_with_kaldilm(tmp_path, capfd):
    kaldilm = pytest.importorskip("kaldilm")
    for i, sents in enumerate([[["a"]], [[]], [["a", "b"]] * 3]):
        path, arpa = write_and_load(estimate_kneser_ney(sents, order=5), tmp_path, f"{i}.arpa")
        capfd.readouterr()
        kaldilm.arpa2fst(input_arpa=str(path), disambig_symbol="#0",
                         write_symbol_table=str(tmp_path / f"{i}.txt"), max_order=arpa.order)
        err = capfd.readouterr().err
        assert "[W]" not in err and "[E]" not in err, err


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        estimate_kneser_ney([])
    with pytest.raises(TypeError):
        estimate_kneser_ney(["a b c"])  # a string, not a list of words
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a", "<s>", "b"]])
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a"]], order=0)
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a"]], order=2, cutoffs=[0, 1, 1])
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a"]], order=2, cutoffs=[3, 1])  # no unigram cutoffs
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a"]], order=2, prune_threshold=-1.0)
    with pytest.raises(ValueError):
        estimate_kneser_ney([["a", "b c"]])  # a word with a space
    # boundary symbols at the ends are stripped, not doubled
    assert (estimate_kneser_ney([["<s>", "a", "</s>"]]).num_ngrams()
            == estimate_kneser_ney([["a"]]).num_ngrams())


# ---------------------------------------------------------------------------------------------
# files, CLI, imports
# ---------------------------------------------------------------------------------------------

def test_write_is_atomic(tmp_path, monkeypatch):
    lm = estimate_kneser_ney(markov_corpus(50, seed=1), order=2)
    path = tmp_path / "lm.arpa"
    path.write_text("old\n")

    def broken(lm, f, chunk=1):
        f.write("\\data\\\npartial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(arpa_module, "_write_arpa_text", broken)
    with pytest.raises(RuntimeError):
        lm.write_arpa(path)
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["lm.arpa"]
    monkeypatch.undo()
    lm.write_arpa(path)
    assert os.listdir(tmp_path) == ["lm.arpa"]
    assert load_arpa(path).num_ngrams() == lm.num_ngrams()


def test_cli(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(s) for s in markov_corpus(200, seed=4)) + "\n\n")
    out = tmp_path / "lm.arpa"
    res = subprocess.run([sys.executable, "-m", "speechmoe.lang.ngram", "--order", "3",
                          "--cutoffs", "0,1,2", "--prune", "1e-6", str(text), str(out)],
                         capture_output=True, text=True, check=True)
    arpa = load_arpa(out)
    log = res.stderr
    for n, c in enumerate(arpa.num_ngrams(), 1):
        assert f"order {n}: {c} n-grams" in log
    ppl = float(log.split("training-set perplexity")[1].split()[0])
    sents = [line.split() for line in text.read_text().splitlines() if line.strip()]
    assert ppl == pytest.approx(arpa.perplexity(sents), rel=1e-3)
    res = subprocess.run([sys.executable, "-m", "speechmoe.lang.ngram", "--order", "2",
                          "--no-unk", str(text), str(out)], capture_output=True, text=True,
                         check=True)
    assert "<unk>" not in load_arpa(out).vocab


def test_import_is_light():
    code = ("import sys, speechmoe.lang.ngram; "
            "print([m for m in ('torch', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
