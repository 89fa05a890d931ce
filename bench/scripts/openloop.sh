#!/bin/bash
# openloop.sh N PORT [SENDER]: issue #14's latency under load ($QUANT:
# dejad --quant, default f32). Loads N x 1536
# synthetic entries into a fresh dejad, waits for the graph, measures the
# closed-loop maximum at 16 connections, then open loops at 25%, 50% and
# 80% of it (16 connections, SENDER rt or normal, default rt) and the
# 1-connection closed loop. Beside each open loop: the server's own
# LOOKUP time (deja_lookup_duration_seconds, frame to encoded reply) from
# /metrics, and with PERF=1 a scheduler trace of the 50% run (perf sched
# latency: how long each thread waited to run once woken). Output goes to
# openloop-N.txt (or $OUT). REUSE=1 restarts dejad on the folder and
# workload an earlier run left instead of loading again.
N=${1:-100000}; PORT=${2:-7850}; SENDER=${3:-rt}
R=$(cd "$(dirname "$0")/../.." && pwd); B=$R/build
Q=${QUANT:-f32}; D=/tmp/openloop-$Q-$N; OUT=${OUT:-openloop-$Q-$N.txt}
[ "${REUSE:-0}" = 1 ] || { rm -rf $D; mkdir -p $D; }
exec > $OUT 2>&1
MPORT=$((PORT + 1))
$B/server/dejad --data $D/data --quant $Q --port $PORT --metrics-addr 127.0.0.1:$MPORT > $D/dejad.log 2>&1 &
PID=$!
until grep -q ready $D/dejad.log; do sleep 0.05; done
bench() {
  $B/bench/deja-bench server --addr 127.0.0.1:$PORT --base $D/wl.base.fvecs \
    --query $D/wl.query.fvecs --no-load --quiet "$@" 2>&1 |
    grep -E "throughput|latency|send lag|hit rate"
}
# server_p LABEL: the server-side LOOKUP time quantiles since the last call,
# from the histogram's bucket counts (upper bounds: a quantile is reported
# as the bucket it falls in).
metrics() { curl -s http://127.0.0.1:$MPORT/metrics | grep '^deja_lookup_duration_seconds_bucket'; }
server_p() {
  metrics > $D/m.after
  python3 - $D/m.before $D/m.after <<'PY'
import re, sys
def read(p):
    out = {}
    for line in open(p):
        m = re.match(r'.*le="([^"]+)"\} (\d+)', line)
        if m: out[m.group(1)] = int(m.group(2))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
les = sorted(b, key=lambda k: float('inf') if k == '+Inf' else float(k))
d = [(le, b[le] - a.get(le, 0)) for le in les]
total = d[-1][1]
def q(p):
    for le, c in d:
        if c >= p * total: return le
print("  server side  %d lookups: p50 <= %s s, p99 <= %s s, p99.9 <= %s s (frame to reply)" % (
    total, q(0.5), q(0.99), q(0.999)))
PY
  cp $D/m.after $D/m.before
}
[ "${REUSE:-0}" = 1 ] || echo "== $(date -u +%T) load $N x 1536"
[ "${REUSE:-0}" = 1 ] || $B/bench/deja-bench server --addr 127.0.0.1:$PORT --synthetic $N,2000 --connections 16 \
  --duration 5 --quiet --write-data $D/wl 2>&1 | grep -E "stores|indexing|throughput"
metrics > $D/m.before
echo "== $(date -u +%T) closed loop, 16 connections"
bench --connections 16 --duration 15 | tee $D/closed.txt
server_p
MAX=$(awk '/throughput/ {print $(NF-1)}' $D/closed.txt)
for pct in 25 50 80; do
  rate=$((MAX * pct / 100))
  echo "== $(date -u +%T) open loop ${pct}% = $rate lookups/s, 16 connections, sender $SENDER"
  if [ "$pct" = 50 ] && [ "${PERF:-0}" = 1 ]; then
    perf sched record -o $D/sched.data -- sleep 12 > /dev/null 2>&1 &
    SP=$!
  fi
  bench --connections 16 --rate $rate --duration 15 --sender $SENDER
  server_p
  if [ -n "$SP" ]; then
    wait $SP
    echo "-- perf sched latency (50% run), the worst waits to run:"
    perf sched latency -i $D/sched.data --sort max 2>/dev/null | head -14
    SP=
  fi
done
echo "== $(date -u +%T) closed loop, 1 connection"
bench --connections 1 --duration 15
server_p
kill $PID; wait $PID
echo "== $(date -u +%T) done"
