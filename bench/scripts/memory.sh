#!/bin/sh
# memory.sh QUANT [N] [PORT] [BUILD]: the int8 / f32 memory comparison of
# README "Memory". Loads N x 1536 (default 100,000) into a fresh dejad with
# --quant QUANT through deja-bench server mode, waits for the graph, and
# reports dejad's RssAnon per entry, its STATS memory keys and the bench's
# lookup figures. Needs a release build in BUILD (default ../../build).
Q=$1; N=${2:-100000}; PORT=${3:-7601}; B=${4:-$(cd "$(dirname "$0")/../.." && pwd)/build}
D=/tmp/mem-$Q-$N; rm -rf $D; mkdir -p $D
$B/server/dejad --data $D --port $PORT --quant $Q --log-level warn > $D.log 2>&1 &
PID=$!
sleep 1
anon() { awk '/RssAnon/ {print $2}' /proc/$PID/status; }
A0=$(anon)
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --synthetic $N,2000 --connections 16 --duration 10 --quiet > $D.bench 2>&1
# wait for the graph
while [ "$($B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"].get("unindexed",0))' 2>/dev/null)" != "0" ]; do sleep 2; done
A1=$(anon)
echo "quant=$Q n=$N RssAnon empty=${A0}kB loaded=${A1}kB per_entry=$(( (A1-A0)*1024 / N )) B"
$B/client/deja-cli -u 127.0.0.1:$PORT --json stats bench | python3 -c '
import json,sys
s=json.load(sys.stdin)["stats"]
for k in ["entries","index_bytes","index_vector_bytes","index_rerank_bytes","index_graph_bytes","index_other_bytes","staging_bytes","entry_table_bytes","entry_bytes","memory_charged"]:
    print(k, s.get(k))'
$B/client/deja-cli -u 127.0.0.1:$PORT --json stats | python3 -c '
import json,sys
s=json.load(sys.stdin)["stats"]
print("map_bytes", s.get("map_bytes"), "disk_bytes", s.get("disk_bytes"))'
grep -E "lookups/s|latency|hit rate|false|store" $D.bench | head -20
kill $PID; wait $PID
