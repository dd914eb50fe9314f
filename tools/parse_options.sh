#!/usr/bin/env bash
# Kaldi-style option parsing, sourced by recipe scripts after they declare their
# variables with defaults:
#
#   stage=0
#   stop_stage=6
#   . tools/parse_options.sh
#
# "--stop-stage 6" (or "--stop-stage=6") sets stop_stage=6; dashes in option
# names become underscores. An option whose variable was not declared before
# sourcing is an error, as is a missing value. "--help" / "-h" prints
# $help_message (set it before sourcing) and exits 0. Positional arguments stay
# in "$@". Booleans take "true" or "false".

_po_prog=$(basename "$0")
while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      if [ -z "${help_message:-}" ]; then echo "$_po_prog: no help message" >&2; else
        printf '%s\n' "$help_message"; fi
      exit 0 ;;
    --*=*)
      _po_name=${1%%=*}; _po_name=${_po_name#--}; _po_value=${1#*=}; shift ;;
    --*)
      _po_name=${1#--}
      if [ $# -lt 2 ]; then echo "$_po_prog: error: option --$_po_name needs a value" >&2; exit 1; fi
      _po_value=$2; shift 2 ;;
    *) break ;;
  esac
  _po_var=${_po_name//-/_}
  if ! [[ "$_po_var" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
    echo "$_po_prog: error: invalid option --$_po_name" >&2; exit 1
  fi
  if [ -z "${!_po_var+set}" ]; then
    echo "$_po_prog: error: unknown option --$_po_name (see $_po_prog --help)" >&2; exit 1
  fi
  # A declared boolean only takes true/false.
  case "${!_po_var}" in
    true|false)
      case "$_po_value" in true|false) ;; *)
        echo "$_po_prog: error: --$_po_name takes true or false, got '$_po_value'" >&2; exit 1 ;;
      esac ;;
  esac
  printf -v "$_po_var" '%s' "$_po_value"
done
unset _po_prog _po_name _po_value _po_var
true
