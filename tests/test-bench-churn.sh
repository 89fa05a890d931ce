#!/bin/sh
# test-bench-churn.sh DEJA_BENCH: deja-bench's churn mode runs end to end
# against a spawned dejad at a small size -- the load, two cycles and the
# fresh build are reported in --json and --csv, the index keeps its recall
# and the server's memory accounting stays flat -- and it refuses options
# it cannot honour. A smoke test: the figures at full scale are the
# benchmark's business (issue #14), not this test's.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: $0 DEJA_BENCH" >&2
    exit 2
fi
bench=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/deja-bench-churn-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run STATUSES ARGS...: runs a small churn; exit status 3 (a target missed)
# is a completed run too, since at this size the allocator's slack alone
# can move the RSS by more than 5%.
run() {
    statuses=$1
    shift
    status=0
    "$bench" churn --spawn ${DEJAD:+--dejad "$DEJAD"} --synthetic 2000,200 --dim 64 \
        --cycles 2 --quiet "$@" >"$tmp/out" 2>"$tmp/err" || status=$?
    case " $statuses " in
    *" $status "*) ;;
    *)
        fail "deja-bench churn $*: exit status $status"
        cat "$tmp/err" >&2
        ;;
    esac
}

run "0 3" --json
python3 - "$tmp/out" <<'EOF' || fail "--json report"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["config"]["mode"] == "churn", r["config"]
assert [c["cycle"] for c in r["cycles"]] == [0, 1, 2], r["cycles"]
assert r["fresh"]["phase"] == "fresh"
for p in r["cycles"] + [r["fresh"]]:
    assert p["queries"] == 200, p
    assert p["recall"] >= 0.9, p
    assert p["server_entries"] == 2000, p
    assert p["errors"] == 0 and p["unknown_ids"] == 0, p
assert r["cycles"][1]["deleted"] == 1000 and r["cycles"][1]["stored"] == 1000
# Slots are reused: what the server accounts for does not grow.
assert r["ok_memory"], r
assert r["false_hits_total"] == 0, r
EOF

run "0 3" --csv --quant int8 --churn-frac 0.25
lines=$(wc -l <"$tmp/out")
[ "$lines" -eq 5 ] || fail "--csv: $lines lines, want a header and 4 points"
grep -q ',fresh,' "$tmp/out" || fail "--csv: no fresh row"
grep -q ',int8,' "$tmp/out" || fail "--csv: the namespace's codes are not int8"

# Options churn mode cannot honour are usage errors (status 2).
run 2 --quant f32,int8
run 2 --base "$tmp/x.fvecs" --query "$tmp/y.fvecs"
status=0
"$bench" server --cycles 3 >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "server --cycles: exit status $status, want 2"

if [ "$failures" -ne 0 ]; then
    echo "$failures failure(s)" >&2
    exit 1
fi
echo "ok"
