#!/bin/bash
# scale.sh QUANT N PORT: the figures of README "Scale" for N x 1536 and one
# quant: load time and graph catch-up, RssAnon per entry, STATS memory,
# disk, lookups at 16 and 1 connections, restart with the graph snapshot
# (clean shutdown) and without one (kill -9, snapshot removed), lookups and
# STOREs while the graph is rebuilt. Output goes to scale-QUANT-N.txt (or
# $OUT); the workload is written once and reused by the later phases.
Q=$1; N=$2; PORT=$3; B=$(cd "$(dirname "$0")/../.." && pwd)/build
D=/tmp/big-$Q-$N; OUT=${OUT:-scale-$Q-$N.txt}
rm -rf $D; mkdir -p $D
exec > $OUT 2>&1
echo "== $(date -u +%T) start quant=$Q n=$N"
$B/server/dejad --data $D/data --port $PORT --quant $Q > $D/dejad.log 2>&1 &
PID=$!; sleep 1
anon() { awk '/RssAnon/ {print $2}' /proc/$PID/status; }
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
A0=$(anon)
echo "RssAnon empty ${A0} kB"
echo "== $(date -u +%T) load + 16 connections"
/usr/bin/time -f "bench wall %e s, max RSS %M kB" $B/bench/deja-bench server --addr 127.0.0.1:$PORT --synthetic $N,2000 --connections 16 --duration 20 --quiet --write-data $D/wl
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
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --base $D/wl.base.fvecs --query $D/wl.query.fvecs --connections 1 --duration 20 --no-load --quiet 2>&1 | grep -E "throughput|latency|hit rate|answers"
echo "== $(date -u +%T) clean restart (snapshot)"
kill $PID; wait $PID
T0=$(date +%s.%N)
$B/server/dejad --data $D/data --port $PORT --quant $Q > $D/dejad2.log 2>&1 &
PID=$!
until grep -q "ready" $D/dejad2.log; do sleep 0.05; done
T1=$(date +%s.%N)
echo "restart with snapshot: ready after $(echo "$T1 - $T0" | bc) s"; grep -E "snapshot|loaded" $D/dejad2.log
echo "RssAnon after snapshot restart $(anon) kB"
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --base $D/wl.base.fvecs --query $D/wl.query.fvecs --connections 16 --duration 10 --no-load --quiet 2>&1 | grep -E "throughput|latency|hit rate|answers"
echo "== $(date -u +%T) kill -9 restart, snapshot removed"
kill -9 $PID; wait $PID 2>/dev/null
rm -rf $D/data/snapshots
T0=$(date +%s.%N)
$B/server/dejad --data $D/data --port $PORT --quant $Q > $D/dejad3.log 2>&1 &
PID=$!
until grep -q "ready" $D/dejad3.log; do sleep 0.05; done
T1=$(date +%s.%N)
echo "restart without snapshot: ready after $(echo "$T1 - $T0" | bc) s"; grep -E "snapshot|loaded" $D/dejad3.log
# lookups and stores while the graph catches up
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --base $D/wl.base.fvecs --query $D/wl.query.fvecs --connections 16 --duration 10 --no-load --quiet 2>&1 | grep -E "throughput|latency|hit rate|answers"
echo "unindexed now: $($B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get("unindexed",0))')"
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --ns during --synthetic 3000,200 --connections 16 --count 1000 --quiet 2>&1 | grep -E "stores|throughput|latency"
until [ "$($B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get("unindexed",0))')" = "0" ]; do sleep 5; done
T2=$(date +%s.%N)
echo "graph rebuilt $(echo "$T2 - $T0" | bc) s after start"
kill $PID; wait $PID
echo "== $(date -u +%T) done"
