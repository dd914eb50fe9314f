#!/usr/bin/env bash
# Build kaldifeat from its sdist against the torch installed in a Python
# environment, cache the wheel, and install it.
#
# kaldifeat has no wheels for current torch, and its sdist downloads pybind11
# from GitHub at build time (no network here). Two fixes make it build:
#   * pybind11 is taken from its PyPI sdist (the same version torch bundles)
#     and handed to CMake's FetchContent as a local source directory;
#   * C++17, which torch 2.x headers require.
# A build takes ~10 minutes on 2 cores, so the wheel is cached per torch
# version under $SPEECHMOE_WHEEL_CACHE (default ~/.cache/speechmoe/wheels) and
# later installs reuse it.
#
# Usage: tools/install_kaldifeat.sh [PYTHON]   (default: python3)
set -euo pipefail

python=${1:-python3}
kaldifeat_version=1.24
cache_root=${SPEECHMOE_WHEEL_CACHE:-$HOME/.cache/speechmoe/wheels}

log() { echo "$(date '+%F %T') [install_kaldifeat] $*" >&2; }

torch_version=$("$python" -c 'import torch; print(torch.__version__)') || {
  log "error: torch is not importable with $python; install torch first"; exit 1; }

if "$python" -c 'import kaldifeat' 2>/dev/null; then
  log "kaldifeat is already installed and imports with torch $torch_version"
  exit 0
fi

cache=$cache_root/torch-$torch_version
mkdir -p "$cache"
wheel=$(ls "$cache"/kaldifeat-${kaldifeat_version}-*.whl 2>/dev/null | head -n 1 || true)

if [ -z "$wheel" ]; then
  # pybind11 must match the version torch bundles in its headers.
  pybind11_version=$("$python" - <<'PY'
import os, re, torch
h = os.path.join(os.path.dirname(torch.__file__), "include/pybind11/detail/common.h")
v = dict(re.findall(r"#define PYBIND11_VERSION_(MAJOR|MINOR|MICRO) (\d+)", open(h).read()))
print(f"{v['MAJOR']}.{v['MINOR']}.{v['MICRO']}")
PY
)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "building kaldifeat $kaldifeat_version for torch $torch_version (pybind11 $pybind11_version); ~10 min on 2 cores"
  "$python" -m pip download -q --no-deps --no-binary :all: -d "$work" \
    "kaldifeat==$kaldifeat_version" "pybind11==$pybind11_version"
  tar -xzf "$work"/pybind11-"$pybind11_version".tar.gz -C "$work"
  "$python" -m pip install -q setuptools wheel
  export KALDIFEAT_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_STANDARD=17 -DFETCHCONTENT_SOURCE_DIR_PYBIND11=$work/pybind11-$pybind11_version"
  export KALDIFEAT_MAKE_ARGS="-j$(nproc)"
  "$python" -m pip wheel --no-deps --no-build-isolation -w "$work/dist" \
    "$work"/kaldifeat-"$kaldifeat_version".tar.gz > "$work/build.log" 2>&1 || {
    log "error: kaldifeat build failed; last lines of the build log:"; tail -n 40 "$work/build.log" >&2; exit 1; }
  cp "$work"/dist/kaldifeat-*.whl "$cache"/
  wheel=$(ls "$cache"/kaldifeat-${kaldifeat_version}-*.whl | head -n 1)
  log "cached $wheel"
fi

"$python" -m pip install -q --no-deps "$wheel"
"$python" -c 'import kaldifeat' || { log "error: $wheel installed but does not import"; exit 1; }
log "kaldifeat installed from $wheel"
