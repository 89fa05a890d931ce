#!/bin/bash
# scale.sh QUANT N PORT: the figures of README "Scale" for N x 1536 and one
# quant: load time and graph catch-up, RssAnon per entry, STATS memory,
# disk, lookups at 16 and 1 connections, restart with the graph snapshot
# (clean shutdown) and without one (kill -9, snapshot removed), lookups and
# STOREs while the graph is rebuilt. Output goes to scale-QUANT-N.txt (or
# $OUT); the workload is written once and reused by the later phases.
# WL=PREFIX loads a workload saved by an earlier run (PREFIX.base.fvecs,
# PREFIX.query.fvecs and their cached ground truth) instead of generating
# one; REBUILD_WAIT=SECONDS stops waiting for the graph rebuild after that.
Q=$1; N=$2; PORT=$3; B=$(cd "$(dirname "$0")/../.." && pwd)/build
D=/tmp/big-$Q-$N; OUT=${OUT:-scale-$Q-$N.txt}
WL=${WL:-$D/wl}
R=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf $D; mkdir -p $D
exec > $OUT 2>&1
anon() { awk '/RssAnon/ {print $2}' /proc/$PID/status; }
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
unindexed() {
  $B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get("unindexed",0))'
}
# start_dejad LOG WHAT: starts dejad on the data folder (PID) and waits
# until it serves; prints how long that took after exec. Not in $(...):
# PID must be set in this shell.
start_dejad() {
  local t0=$(date +%s.%N)
  $B/server/dejad --data $D/data --port $PORT --quant $Q > $D/$1 2>&1 &
  PID=$!
  until grep -q "ready" $D/$1; do sleep 0.05; done
  echo "$2: ready after $(echo "$(date +%s.%N) - $t0" | bc) s"
  grep -E "snapshot|loaded" $D/$1
}
# lookups CONNECTIONS SECONDS: judged against the saved workload.
lookups() {
  $B/bench/deja-bench server --addr 127.0.0.1:$PORT --base $WL.base.fvecs \
    --query $WL.query.fvecs --connections $1 --duration $2 --no-load --quiet 2>&1 |
    grep -E "throughput|latency|hit rate|answers"
}
# STOREs into another namespace, timed one by one (deja-bench server mode
# would wait for them to join the graph, behind the restart backlog).
stores_during() {
  PYTHONPATH=$R/client/python python3 - 127.0.0.1:$PORT <<'PY'
import random, sys, threading, time
import deja
lat, lock = [], threading.Lock()
def worker(t):
    c, rnd = deja.Client(sys.argv[1]), random.Random(t)
    for _ in range(60):
        v = [rnd.gauss(0, 1) for _ in range(1536)]
        t0 = time.perf_counter()
        c.store("during", v, b"x" * 1024)
        with lock:
            lat.append(time.perf_counter() - t0)
    c.close()
ths = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for th in ths: th.start()
for th in ths: th.join()
lat.sort()
print("stores %d during the rebuild: p50 %.1f ms p99 %.1f ms max %.1f ms" % (
    len(lat), lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3))
PY
}

echo "== $(date -u +%T) start quant=$Q n=$N"
$B/server/dejad --data $D/data --port $PORT --quant $Q > $D/dejad.log 2>&1 &
PID=$!; sleep 1
A0=$(anon)
echo "RssAnon empty ${A0} kB"
echo "== $(date -u +%T) load + 16 connections"
if [ "$WL" = "$D/wl" ]; then
  DATA="--synthetic $N,2000 --write-data $D/wl"
else
  DATA="--base $WL.base.fvecs --query $WL.query.fvecs"
fi
/usr/bin/time -f "bench wall %e s, max RSS %M kB" $B/bench/deja-bench server --addr 127.0.0.1:$PORT $DATA --connections 16 --duration 20 --quiet
echo "RssAnon loaded $(anon) kB, VmRSS $(rss) kB, per entry anon $(( ($(anon)-A0)*1024 / N )) B"
$B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench | python3 -c '
import json,sys
s=json.load(sys.stdin)["stats"]
print({k:s.get(k) for k in ["entries","index_bytes","index_vector_bytes","index_rerank_bytes","index_graph_bytes","index_other_bytes","staging_bytes","entry_table_bytes","entry_bytes","memory_charged","unindexed"]})'
$B/client/deja-cli -u 127.0.0.1:$PORT --json stats | python3 -c '
import json,sys
s=json.load(sys.stdin)["stats"]
print("map_bytes", s.get("map_bytes"), "disk_bytes", s.get("disk_bytes"))'
du -sh $D/data
echo "== $(date -u +%T) 1 connection"
lookups 1 20
echo "== $(date -u +%T) clean restart (snapshot)"
kill $PID; wait $PID
start_dejad dejad2.log "restart with snapshot"
echo "RssAnon after snapshot restart $(anon) kB"
lookups 16 10
echo "== $(date -u +%T) kill -9 restart, snapshot removed"
kill -9 $PID; wait $PID 2>/dev/null
rm -rf $D/data/snapshots
T0=$(date +%s.%N)
start_dejad dejad3.log "restart without snapshot"
# lookups and stores while the graph catches up
lookups 16 10
echo "unindexed now: $(unindexed)"
stores_during
WAITED=0
until [ "$(unindexed)" = "0" ]; do
  sleep 5; WAITED=$((WAITED + 5))
  if [ -n "$REBUILD_WAIT" ] && [ $WAITED -ge $REBUILD_WAIT ]; then
    echo "stopped waiting: $(unindexed) still unindexed"; break
  fi
done
echo "graph rebuild: $(echo "$(date +%s.%N) - $T0" | bc) s after start"
kill $PID; wait $PID
echo "== $(date -u +%T) done"
