# Where the corpora of this recipe are. Edit here once, or override per run:
#   ./run.sh --corpus-dir /data/corpora        (or: export LIBRISPEECH=/data/corpora)
#
# LIBRISPEECH: the directory that CONTAINS LibriSpeech/ (the tree is in run.sh's header),
# i.e. where the part archives of https://www.openslr.org/12 were unpacked. LibriSpeech is
# free (CC BY 4.0); the recipe downloads nothing. The LM text librispeech-lm-norm.txt (or
# .txt.gz, https://www.openslr.org/11), if you have it, is found in that directory too
# (or named with --lm-corpus PATH).
LIBRISPEECH=${LIBRISPEECH:-}
