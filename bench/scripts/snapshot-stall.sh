#!/bin/bash
# snapshot-stall.sh DATA QUANT PORT [SNAPSHOT_INTERVAL]: how long STOREs
# wait while graph snapshots are written. Starts dejad ($DEJAD, default
# this checkout's build) on an existing data folder (e.g. the 1M folder
# scale.sh leaves, namespace "bench", 1536-d) with snapshots every
# SNAPSHOT_INTERVAL seconds (default 20; 0 = none, the baseline); 4 Python
# clients STORE 1536-d entries for 70 s, 100/s each at most; prints STORE
# p50/p99/max, how many took over 1 s, and the snapshot lines of the log.
D=$1; Q=$2; PORT=$3; SI=${4:-20}
R=$(cd "$(dirname "$0")/../.." && pwd)
DEJAD=${DEJAD:-$R/build/server/dejad}
LOG=$D/snapshot-stall-$SI.log
$DEJAD --data $D --port $PORT --quant $Q --snapshot-interval $SI > $LOG 2>&1 &
PID=$!
until grep -q ready $LOG; do sleep 0.1; done
PYTHONPATH=$R/client/python python3 - 127.0.0.1:$PORT <<'PY'
import random, sys, threading, time
import deja
lat, lock = [], threading.Lock()
stop = time.time() + 70
def worker(t):
    c, rnd = deja.Client(sys.argv[1], timeout=30), random.Random(t)
    while time.time() < stop:
        v = [rnd.gauss(0, 1) for _ in range(1536)]
        t0 = time.perf_counter()
        c.store("bench", v, b"x" * 1024)
        with lock:
            lat.append(time.perf_counter() - t0)
        time.sleep(0.01)
ths = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
for th in ths: th.start()
for th in ths: th.join()
lat.sort()
print("stores %d: p50 %.1f ms p99 %.1f ms max %.1f ms, over 1 s: %d" % (
    len(lat), lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3,
    sum(1 for x in lat if x > 1)))
PY
grep "snapshots of" $LOG
kill $PID; wait $PID
