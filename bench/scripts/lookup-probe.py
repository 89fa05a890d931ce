"""lookup-probe.py ADDR QUERY_FVECS [NS]: lookups at 1 connection, 100/s, from
the moment it starts until 20 s after the namespace's graph has caught up
(STATS unindexed = 0); prints, for every 5 s, how many entries waited for
the graph and the lookups' p50/p99/max as the Python client sees them
(its own overhead included: compare windows, not absolute figures). For
lookups during a restart's catch-up, without deja-bench's preparation
(reading the workload) delaying the first one."""
import os, struct, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'client', 'python'))
import deja

addr, qpath = sys.argv[1], sys.argv[2]
ns = sys.argv[3] if len(sys.argv) > 3 else 'bench'
queries = []
with open(qpath, 'rb') as f:
    while len(queries) < 2000:
        head = f.read(4)
        if len(head) < 4:
            break
        dim = struct.unpack('<i', head)[0]
        queries.append(list(struct.unpack('<%df' % dim, f.read(dim * 4))))
c = deja.Client(addr, timeout=30)
t0, caught_up, i = time.time(), None, 0
while caught_up is None or time.time() - caught_up < 20:
    w0, lat = time.time(), []
    while time.time() - w0 < 5:
        due = w0 + len(lat) * 0.01
        if due > time.time():
            time.sleep(due - time.time())
        s = time.perf_counter()
        c.lookup(ns, queries[i % len(queries)], threshold=0.85)
        lat.append(time.perf_counter() - s)
        i += 1
    unindexed = c.stats(ns).get('unindexed', 0)
    if unindexed == 0 and caught_up is None:
        caught_up = time.time()
    lat.sort()
    print('%5.0f s  unindexed %7d  lookups %4d  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms' % (
        time.time() - t0, unindexed, len(lat), lat[len(lat) // 2] * 1e3,
        lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3), flush=True)
