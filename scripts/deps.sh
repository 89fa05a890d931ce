#!/usr/bin/env bash
# deps.sh: installs the Debian 12 packages deja needs to build and test,
# only the ones missing (so it is quick when everything is there).
set -euo pipefail

pkgs=(
  gcc g++ pkg-config meson ninja-build python3
  python3-pytest python3-numpy python3-pip python3-setuptools python3-wheel
  libuv1-dev liblmdb-dev libxxhash-dev libopenblas-dev libfaiss-dev libomp-dev
  clang clang-format libclang-rt-14-dev
  prometheus libsystemd-dev help2man systemd tmux
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
