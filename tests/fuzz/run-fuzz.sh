#!/bin/sh
# run-fuzz.sh: the short fuzz run of the test suite.
#
# Usage: run-fuzz.sh TARGET CORPUSDIR [libFuzzer options...]
#
# libFuzzer writes every new interesting input into the first corpus
# directory it is given. That must not be the checked-in corpus, or each
# test run would dirty the source tree; so the run gets a fresh temporary
# directory first and reads the checked-in corpus second. Options given
# after CORPUSDIR are passed on (later ones win), e.g. -runs=0 to replay.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET CORPUSDIR [libFuzzer options...]" >&2
    exit 2
fi
target=$1
corpus=$2
shift 2

scratch=$(mktemp -d "${TMPDIR:-/tmp}/deja-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM

# -error_exitcode: libFuzzer's default (77) is what meson reads as "skipped",
# which would turn a crash into a quiet skip.
"$target" "$scratch" "$corpus" -runs=2000000 -max_len=4096 -seed=1 -error_exitcode=1 "$@"
status=$?
exit "$status"
