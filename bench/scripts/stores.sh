#!/bin/bash
# Durable STOREs at 16 connections, 1536-d, 1 KiB responses, --fsync always,
# with a perf profile of dejad during the load.
# Usage: stores.sh [PORT] (N=entries, default 60000; EXTRA=dejad flags).
B=$(cd "$(dirname "$0")/../.." && pwd)/build; D=/tmp/stores-run; PORT=${1:-7870}
rm -rf $D; mkdir -p $D
$B/server/dejad --data $D/data --port $PORT --fsync always $EXTRA > $D/dejad.log 2>&1 &
PID=$!
until grep -q ready $D/dejad.log; do sleep 0.05; done
(sleep 8; perf record -g -o $D/perf.data -p $PID -- sleep 15 > /dev/null 2>&1) &
PERF=$!
$B/bench/deja-bench server --addr 127.0.0.1:$PORT --synthetic ${N:-60000},2000 --connections 16 --duration 5 --quiet 2>&1 | grep -E "stores|indexing|throughput|latency"
wait $PERF
echo "-- perf: where dejad's CPU went during the load (self, top 25)"
perf report -i $D/perf.data --no-children --sort comm,dso,symbol -g none 2>/dev/null | grep -v "^#" | grep "%" | head -25
echo "-- by thread"
perf report -i $D/perf.data --no-children --sort comm -g none 2>/dev/null | grep -v "^#" | grep "%" | head
kill $PID; wait $PID
