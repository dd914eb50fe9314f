# Where this recipe's corpus is. Edit here once, or override per run with --corpus-dir.
#
# CORPUS: a directory with one Kaldi data dir per set, named like the sets in run.sh
# (train/, dev/, test/ by default), each with wav.scp, text and utt2spk (segments
# optional). Rename the variable after your corpus (e.g. MYCORPUS) in both files.
CORPUS=${CORPUS:-}
