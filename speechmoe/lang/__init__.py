"""Language side: units and lexicons, n-gram LMs, decoding graphs.

    units.py       the fixed syllable inventory, pronunciations, the character lexicon
    symbols.py     tokens.txt, words.txt, lexicon.txt; disambiguation symbols
    tokenizer.py   transcripts -> CTC targets; what CER / WER count
    bpe.py         sentencepiece units for other languages
    kneser_ney.py  estimate_kneser_ney: interpolated modified Kneser-Ney, count cutoffs
    prune.py       entropy_prune: relative-entropy pruning (SRILM's -prune)
    arpa.py        write_arpa / load_arpa: the ARPA writer and reader
    ngram.py       the n-gram command line (python -m speechmoe.lang.ngram)
    graph.py       the FSTs: T, L, G and TLG (kaldifst, kaldilm)
"""
