"""ARPA files: writing an estimated model, reading one back to score text.

``write_arpa(lm, path)`` writes a ``speechmoe.lang.kneser_ney.NgramLM`` (log10
probabilities and backoff weights, atomically).  ``load_arpa(path)`` gives an ``ArpaLM``
with the standard backoff semantics, used to score text (``logprob``,
``sentence_logprob``, ``perplexity``).

This module imports only the standard library at module level.
"""

from __future__ import annotations

import gzip
import math
import os
from typing import Iterable, Sequence

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_LOG10_ZERO = -99.0  # what ARPA files write for log10(0) (the <s> unigram)


def write_arpa(lm, path) -> None:
    """Write an estimated model (``speechmoe.lang.kneser_ney.NgramLM``) in ARPA format
    (log10), atomically (temporary file + rename).

    Highest orders without any n-gram are not written (the file's order is then lower than
    ``lm.order``; the model is the same)."""
    from speechmoe.utils import atomic_path

    with atomic_path(path, sync=True) as tmp, \
            open(tmp, "w", encoding="utf-8", newline="\n") as f:
        _write_arpa_text(lm, f)


def _write_arpa_text(lm, f, chunk: int = 1 << 16) -> None:
    import numpy as np

    words = lm.vocab
    counts = lm.num_ngrams()
    # empty highest orders (a corpus of short sentences, or pruning) are left out:
    # Kaldi's ARPA reader warns about them and they change nothing
    top = max(n for n, c in enumerate(counts, 1) if c > 0)
    f.write("\\data\\\n")
    for n, c in enumerate(counts[:top], 1):
        f.write(f"ngram {n}={c}\n")
    prev_names = words  # names of the previous order's entries, by index
    for n, lv in enumerate(lm.levels[:top], 1):
        f.write(f"\n\\{n}-grams:\n")
        with_bow = n < top
        # the names of this order's entries are kept only while they are needed as the
        # prefixes of the next order
        names = [None] * lv.size if with_bow and n > 1 else None
        kept = np.flatnonzero(lv.kept)
        for lo in range(0, len(kept), chunk):
            idx = kept[lo:lo + chunk]
            with np.errstate(divide="ignore"):
                lp = np.log10(lv.prob[idx])
            lp[~np.isfinite(lp)] = _LOG10_ZERO  # <s>
            if n == 1:
                name_of = [words[i] for i in idx.tolist()]
            else:
                name_of = [f"{prev_names[p]} {words[w]}" for p, w in
                           zip(lv.prefix[idx].tolist(), lv.word[idx].tolist())]
                if names is not None:
                    for i, name in zip(idx.tolist(), name_of):
                        names[i] = name
            if with_bow:
                bw = np.log10(lv.bow[idx]).tolist()
                child = lv.has_children[idx].tolist()
                f.writelines(f"{a:.7f}\t{s}\t{b:.7f}\n" if c else f"{a:.7f}\t{s}\n"
                             for a, s, b, c in zip(lp.tolist(), name_of, bw, child))
            else:
                f.writelines(f"{a:.7f}\t{s}\n" for a, s in zip(lp.tolist(), name_of))
        if with_bow and n > 1:
            prev_names = names
    f.write("\n\\end\\\n")


# ---------------------------------------------------------------------------------------------
# reading and scoring
# ---------------------------------------------------------------------------------------------

class ArpaLM:
    """A backoff n-gram model read from an ARPA file (log10 probabilities).

    ``logprob(word, history)``: ``log10 p(word | history)`` with the standard backoff rule
    ``p(w | h) = p*(h w)`` if ``h w`` is listed, else ``bow(h) p(w | h')`` (``bow`` = 1 for an
    unlisted ``h``).  Words missing from the vocabulary map to ``<unk>`` when the model has
    it; otherwise an unknown predicted word has log-probability ``-inf``, and ``evaluate`` /
    ``perplexity`` skip it (SRILM's convention) and count it as an OOV.

    N-grams are stored under integer keys (word ids 1..V in base V + 2), which takes a
    third of the memory of tuple keys.
    """

    def __init__(self, order: int, vocab: list[str], probs: dict, bows: dict):
        self.order = order
        self.vocab = vocab  # in file order
        self._ids = {w: i for i, w in enumerate(vocab, 1)}
        self._base = len(vocab) + 2  # id len(vocab) + 1: a word the model does not know
        self._probs = probs  # int key -> log10 p
        self._bows = bows  # int key -> log10 backoff weight
        self.unk = UNK if UNK in self._ids else None

    # -- inspection ---------------------------------------------------------------------------
    def _decode(self, key: int) -> tuple[str, ...]:
        words = []
        while key:
            key, i = divmod(key, self._base)
            words.append(self.vocab[i - 1])
        return tuple(reversed(words))

    def ngram_logprobs(self) -> dict[tuple[str, ...], float]:
        """Every listed n-gram (a tuple of words) -> its log10 probability."""
        return {self._decode(k): lp for k, lp in self._probs.items()}

    def backoff_weights(self) -> dict[tuple[str, ...], float]:
        """Every listed history (a tuple of words) -> its log10 backoff weight."""
        return {self._decode(k): b for k, b in self._bows.items()}

    def num_ngrams(self) -> list[int]:
        counts = [0] * self.order
        for k in self._probs:
            counts[len(self._decode(k)) - 1] += 1
        return counts

    # -- scoring --------------------------------------------------------------------------------
    def _id(self, word: str) -> int:
        i = self._ids.get(word)
        if i is None:
            i = self._ids[self.unk] if self.unk is not None else self._base - 1
        return i

    def logprob(self, word: str, history: Sequence[str] = ()) -> float:
        """log10 p(word | history); ``history`` ends just before ``word`` (start sentences
        with ``<s>``); only its last ``order - 1`` words matter."""
        wid = self._id(word)
        if wid == self._base - 1:
            return -math.inf
        base = self._base
        hist = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        hkeys = [0]  # hkeys[j]: key of the last j words of the history
        mult = 1
        for w in reversed(hist):
            hkeys.append(hkeys[-1] + self._id(w) * mult)
            mult *= base
        probs, bows = self._probs, self._bows
        backoff = 0.0
        for j in range(len(hkeys) - 1, -1, -1):
            lp = probs.get(hkeys[j] * base + wid)
            if lp is not None:
                return lp + backoff
            if j:
                backoff += bows.get(hkeys[j], 0.0)
        return -math.inf  # a listed word always has a unigram; not reached

    def sentence_logprob(self, words: Sequence[str]) -> float:
        """log10 p(words </s> | <s>) (OOVs without ``<unk>`` in the model: skipped)."""
        return self.evaluate([words])[0]

    def evaluate(self, sentences: Iterable[Sequence[str]]) -> tuple[float, int, int]:
        """(total log10 probability, number of scored tokens (words + one </s> per sentence,
        OOVs excluded), number of OOV words skipped)."""
        total, n_tok, n_oov = 0.0, 0, 0
        known = self._ids
        for sent in sentences:
            if isinstance(sent, str):
                raise TypeError("a sentence must be a sequence of words, not a string")
            hist = [BOS]
            for w in list(sent) + [EOS]:
                if self.unk is None and w not in known:
                    n_oov += 1
                else:
                    total += self.logprob(w, hist)
                    n_tok += 1
                hist.append(w)
                if len(hist) >= self.order:
                    del hist[0]
        return total, n_tok, n_oov

    def perplexity(self, sentences: Iterable[Sequence[str]]) -> float:
        """10 ** (-total log10 p / scored tokens), ``</s>`` counted, OOVs without ``<unk>``
        skipped."""
        total, n_tok, _ = self.evaluate(sentences)
        if n_tok == 0:
            raise ValueError("nothing to score")
        return 10.0 ** (-total / n_tok)


def load_arpa(path) -> ArpaLM:
    """Read an ARPA file (plain or ``.gz``)."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    declared: dict[int, int] = {}
    vocab: list[str] = []
    ids: dict[str, int] = {}
    probs: dict[int, float] = {}
    bows: dict[int, float] = {}
    base = 0
    found = []
    section = None  # None: before \data\, 0: in \data\, n: in the n-grams
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if section and len(parts) >= 2 and parts[0][0] != "\\":
                n = section
                if len(parts) not in (n + 1, n + 2):
                    raise ValueError(f"{path}:{lineno}: malformed {n}-gram line {line!r}")
                if n == 1:
                    w = parts[1]
                    if w in ids:
                        raise ValueError(f"{path}:{lineno}: unigram {w!r} listed twice")
                    vocab.append(w)
                    key = ids[w] = len(vocab)
                else:
                    key = 0
                    try:
                        for w in parts[1:n + 1]:
                            key = key * base + ids[w]
                    except KeyError:
                        raise ValueError(f"{path}:{lineno}: word {w!r} is not a unigram") \
                            from None
                probs[key] = float(parts[0])
                if len(parts) == n + 2:
                    bows[key] = float(parts[n + 1])
                found[-1] += 1
                continue
            line = line.strip()
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:-len("-grams:")])
                if section != len(found) + 1 or section not in declared:
                    raise ValueError(f"{path}:{lineno}: unexpected section {line!r}")
                found.append(0)
                base = declared[1] + 2
            elif section == 0 and line.startswith("ngram "):
                n, c = line[len("ngram "):].split("=")
                declared[int(n)] = int(c)
            elif section is not None:
                raise ValueError(f"{path}:{lineno}: unexpected line {line!r}")
    if not declared:
        raise ValueError(f"{path}: no \\data\\ section")
    order = max(declared)
    if found != [declared.get(n, -1) for n in range(1, order + 1)]:
        raise ValueError(f"{path}: the header declares {declared} n-grams, found {found}")
    return ArpaLM(order, vocab, probs, bows)
