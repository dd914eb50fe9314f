# Where the corpora of this recipe are. Edit here once, or override per run:
#   ./run.sh --corpus-dir /data/corpora        (or: export AISHELL2=/data/corpora)
#
# AISHELL2: the directory that CONTAINS AISHELL-2/ (the tree is in run.sh's header).
# AISHELL-2 is licensed, not downloadable by the recipe: apply for it (free for
# academic use) at https://www.aishelltech.com/aishell_2
AISHELL2=${AISHELL2:-}
