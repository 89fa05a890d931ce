#!/bin/sh
# run-wire-fuzz.sh: wire-fuzz against a real dejad, once per index kind
# dejad accepts, each on a fresh data folder.
#
# Usage: run-wire-fuzz.sh DEJAD WIRE_FUZZ FRAMES [SEED]
#
# FRAMES frames go to each of: --index flat, --index hnsw, --index hnsw
# --quant int8, --allow-faiss (FAISS namespaces made by NS_CREATE), and a
# dejad with a token (connections that do and do not AUTH). dejad is then
# stopped with SIGTERM and must exit 0 with nothing from a sanitizer in
# its stderr (run it from a sanitized build tree: scripts/test uses the
# ASan one). Exits 0 when every run was clean, 1 otherwise; the figures
# of each run are printed.
set -u

if [ $# -lt 3 ]; then
    echo "usage: $0 DEJAD WIRE_FUZZ FRAMES [SEED]" >&2
    exit 2
fi
dejad=$1
fuzz=$2
frames=$3
seed=${4:-1}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/deja-wire-fuzz.XXXXXX") || exit 1
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A leak at exit, or any UBSan report, fails the run.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}:print_stacktrace=1:halt_on_error=1"

failed=0
run() {
    name=$1
    fuzz_args=$2
    shift 2
    dir="$scratch/$name"
    mkdir -p "$dir"
    "$dejad" --host 127.0.0.1 --port 0 --port-file "$dir/port" --data "$dir/data" \
        --unix '' --fsync off --threads 2 --index-threads 1 --log-level warn \
        --snapshot-interval 5 "$@" 2>"$dir/stderr" &
    pid=$!
    tries=0
    while [ ! -s "$dir/port" ]; do
        tries=$((tries + 1))
        if [ $tries -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "$name: dejad did not start" >&2
            cat "$dir/stderr" >&2
            failed=1
            pid=
            return
        fi
        sleep 0.1
    done
    port=$(cat "$dir/port")
    # shellcheck disable=SC2086
    "$fuzz" -p "$port" -n "$frames" -s "$seed" $fuzz_args
    fuzz_rc=$?
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    dejad_rc=$?
    pid=
    sanitizer=0
    if grep -q -E 'ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: ' "$dir/stderr"; then
        sanitizer=1
    fi
    echo "$name: wire-fuzz exit $fuzz_rc, dejad exit $dejad_rc, sanitizer reports $sanitizer"
    if [ $fuzz_rc -ne 0 ] || [ $dejad_rc -ne 0 ] || [ $sanitizer -ne 0 ]; then
        failed=1
        tail -n 60 "$dir/stderr" >&2
    fi
}

run flat "" --index flat
run hnsw "" --index hnsw
run hnsw-int8 "" --index hnsw --quant int8
run faiss "-f" --allow-faiss
run token "-t wire-fuzz-token" --auth-token wire-fuzz-token

exit $failed
