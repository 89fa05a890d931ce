#!/bin/bash
# restart-phases.sh DATA QUANT PORT WL: restarts of a loaded data folder
# (e.g. one scale.sh left; its dejad, if running, is shut down cleanly
# first) with $DEJAD (default this checkout's build): with the graph
# snapshot, then after a kill -9 with it, then without it (the snapshot is
# moved aside and put back after); lookups at 1 and 16 connections against
# the workload WL.base.fvecs / WL.query.fvecs after the first, and at 1
# connection while the graph is rebuilt after the last.
D=$1; Q=$2; PORT=$3; WL=$4
R=$(cd "$(dirname "$0")/../.." && pwd)
DEJAD=${DEJAD:-$R/build/server/dejad}
anon() { awk '/RssAnon/ {print $2}' /proc/$PID/status; }
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
start_dejad() {
  local t0=$(date +%s.%N)
  $DEJAD --data $D --port $PORT --quant $Q > $D/../$1 2>&1 &
  PID=$!
  until grep -q "ready" $D/../$1; do sleep 0.05; done
  echo "$2: ready after $(echo "$(date +%s.%N) - $t0" | bc) s"
  grep -E "snapshot|loaded" $D/../$1
}
lookups() {
  $R/build/bench/deja-bench server --addr 127.0.0.1:$PORT --base $WL.base.fvecs \
    --query $WL.query.fvecs --connections $1 --duration $2 --no-load $3 --quiet 2>&1 |
    grep -E "no wait|throughput|latency|hit rate|answers"
}
unindexed() {
  $R/build/client/deja-cli -u 127.0.0.1:$PORT --json stats bench |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get("unindexed",0))'
}
OLD=$(pgrep -f -- "--data $D( |$)")
if [ -n "$OLD" ]; then
  t0=$(date +%s.%N); kill $OLD; while kill -0 $OLD 2>/dev/null; do sleep 0.1; done
  echo "clean shutdown of the running dejad: $(echo "$(date +%s.%N) - $t0" | bc) s"
fi
start_dejad restart-snap.log "restart with snapshot"
echo "RssAnon $(anon) kB, VmRSS $(rss) kB"
echo "-- 1 connection"; lookups 1 20
echo "-- 16 connections"; lookups 16 20
kill -9 $PID; wait $PID 2>/dev/null
start_dejad restart-crash.log "restart after kill -9 with snapshot"
kill -9 $PID; wait $PID 2>/dev/null
mv $D/snapshots $D/../snapshots.aside
start_dejad restart-nosnap.log "restart without snapshot"
echo "unindexed $(unindexed), RssAnon $(anon) kB"
echo "-- 1 connection while the graph is rebuilt"; lookups 1 10 --no-wait
kill -9 $PID; wait $PID 2>/dev/null
rm -rf $D/snapshots; mv $D/../snapshots.aside $D/snapshots
