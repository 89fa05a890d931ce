#!/bin/bash
# crash-backlog.sh DATA QUANT PORT SECONDS RATE [DEJAD ARGS...]: what a
# crash leaves for the graph to redo, and lookups while it does. On an
# existing data folder (e.g. the 1M folder of scale.sh: namespace "bench",
# 1536-d, its workload beside it as ../wl.*.fvecs), dejad ($DEJAD, default
# this checkout's build) takes STOREs of new 1536-d entries at RATE/s for
# SECONDS (4 Python clients), is killed with SIGKILL and restarted with
# the same arguments; then 1-connection lookups run for 5 s at a time
# (deja-bench --no-wait) until the graph has caught up, and for 20 s after.
D=$1; Q=$2; PORT=$3; SECS=$4; RATE=$5; shift 5
R=$(cd "$(dirname "$0")/../.." && pwd)
DEJAD=${DEJAD:-$R/build/server/dejad}
CLI=$R/build/client/deja-cli
WL=$(dirname "$D")/wl
LOG=$D/crash-backlog.log
stat_of() { # NS (or '' for the server) KEY
  $CLI -u 127.0.0.1:$PORT --json stats ${1:+"$1"} |
    python3 -c "import json,sys; print(json.load(sys.stdin)['stats'].get('$2', 0))"
}
start() {
  local t0=$(date +%s.%N)
  : > $LOG
  $DEJAD --data $D --port $PORT --quant $Q "$@" >> $LOG 2>&1 &
  PID=$!
  until grep -q ready $LOG; do sleep 0.05; done
  echo "ready after $(echo "$(date +%s.%N) - $t0" | bc) s"
}
lookups() {
  $R/build/bench/deja-bench server --addr 127.0.0.1:$PORT --base $WL.base.fvecs \
    --query $WL.query.fvecs --connections 1 --duration $1 --no-load --no-wait --quiet 2>&1 |
    grep -E "no wait|latency|hit rate"
}
echo "== $(date -u +%T) $DEJAD $*"
start "$@"
PYTHONPATH=$R/client/python python3 - 127.0.0.1:$PORT $SECS $RATE <<'PY'
import random, sys, threading, time
import deja
secs, rate = float(sys.argv[2]), float(sys.argv[3])
n = [0]
def worker(t):
    c, rnd = deja.Client(sys.argv[1], timeout=30), random.Random(1000 + t)
    start = time.time()
    i = 0
    while time.time() - start < secs:
        due = start + i * 4 / rate
        if due > time.time(): time.sleep(due - time.time())
        c.store("bench", [rnd.gauss(0, 1) for _ in range(1536)], b"x" * 1024)
        i += 1
    n[0] += i
ths = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
for th in ths: th.start()
for th in ths: th.join()
print("stored %d in %.0f s" % (n[0], secs))
PY
echo "before the crash: unindexed $(stat_of bench unindexed)," \
  "graph inserts since the last snapshot $(stat_of '' graph_inserts_since_snapshot)," \
  "snapshots written $(stat_of '' snapshots_written)"
kill -9 $PID; wait $PID 2>/dev/null
start "$@"
grep -E "restored|loaded" $LOG
T0=$(date +%s)
while true; do
  u=$(stat_of bench unindexed)
  echo "-- $(( $(date +%s) - T0 )) s after ready: unindexed $u"
  [ "$u" = "0" ] && break
  lookups 5
done
echo "-- caught up; the usual lookups:"
lookups 20
kill $PID; wait $PID
