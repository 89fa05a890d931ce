#!/usr/bin/env bash
# build.sh DIR [meson options...]: configures (once) and builds a tree.
set -euo pipefail
dir=$1
shift
if [ ! -f "$dir/build.ninja" ]; then
  meson setup "$dir" "$@" >&2
fi
ninja -C "$dir" >&2
