#!/usr/bin/env bash
# Install the Debian packages the recipes need, where missing:
#   espeak-ng (speech for the embedded corpus), sox (resampling, audio checks),
#   libsndfile1 (soundfile), cmake and g++ (the kaldifeat build).
set -euo pipefail

need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
[ -n "${need[*]}" ] || { echo "[install_system_deps] all present" >&2; exit 0; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "[install_system_deps] installing: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
