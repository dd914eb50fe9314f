# Sourced by every recipe's path.sh: put the toolkit's Python environment (made by
# `make install` at the repository root) on PATH. One copy for all recipes.
_speechmoe_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -x "$_speechmoe_root/.venv/bin/python" ]; then
  export PATH="$_speechmoe_root/.venv/bin:$PATH"
  export VIRTUAL_ENV="$_speechmoe_root/.venv"
elif ! python -c "import speechmoe" 2>/dev/null; then
  echo "speechmoe is not installed: run 'make install' in $_speechmoe_root" >&2
  exit 1
fi
export PYTHONUNBUFFERED=1
unset _speechmoe_root
