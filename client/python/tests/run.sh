#!/bin/sh
# run.sh: the Python client's tests, as the test command runs them
# (tests/meson.build registers this as test-client-python).
#
# Uses the first python3 that has pytest: $PYTHON, then python3 on the PATH,
# then Debian's /usr/bin/python3 (python3-pytest, installed by
# scripts/deps.sh). Fails, never skips, when none has it, and when fewer
# tests are collected than expected, so "no tests ran" cannot pass.
set -u
here=$(cd "$(dirname "$0")" && pwd)
case "${DEJAD:-}" in
    "" | /*) ;;
    *) DEJAD="$PWD/$DEJAD"; export DEJAD ;;  # relative to where we were started
esac
for py in "${PYTHON:-}" python3 /usr/bin/python3; do
    [ -n "$py" ] || continue
    if "$py" -c 'import pytest' 2>/dev/null; then
        export DEJA_PY_MIN_TESTS="${DEJA_PY_MIN_TESTS:-50}"
        export DEJA_PY_REQUIRE_NUMPY=1
        export PYTHONDONTWRITEBYTECODE=1  # leave no __pycache__ in the source tree
        cd "$here/.." || exit 1
        exec "$py" -m pytest -q -p no:cacheprovider -o addopts= "$@" tests
    fi
done
echo "run.sh: no python3 with pytest found (run scripts/deps.sh)" >&2
exit 1
