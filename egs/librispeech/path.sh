# The toolkit environment: shared by every recipe (tools/path.sh).
. "$(dirname "${BASH_SOURCE[0]}")/../../tools/path.sh"
