"""topup-gt.py ADDR WL [NS]: stores again the ground-truth row of every query
of a saved deja-bench workload (WL.base.fvecs, and the k=1 ground truth
deja-bench cached beside WL.query.fvecs), with the prompt deja-bench gives
it ("deja-bench row N"). A row the server holds is updated in place (same
prompt, same vector); a row whose STORE failed during a load is stored, so
that the oracle's best answer of every query is on the server again and
`deja-bench --no-load` judges the hit rate fairly."""
import os, struct, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'client', 'python'))
import deja

addr, wl = sys.argv[1], sys.argv[2]
ns = sys.argv[3] if len(sys.argv) > 3 else 'bench'
base = wl + '.base.fvecs'
gt = open('%s.query.fvecs.gt-%s-k1.ivecs' % (wl, os.path.basename(base)), 'rb').read()
rows = sorted({struct.unpack_from('<ii', gt, i * 8)[1] for i in range(len(gt) // 8)})
c = deja.Client(addr, timeout=30)
before = c.stats(ns)['entries']
with open(base, 'rb') as f:
    dim = struct.unpack('<i', f.read(4))[0]
    for r in rows:
        f.seek(r * (dim + 1) * 4 + 4)
        c.store(ns, list(struct.unpack('<%df' % dim, f.read(dim * 4))), b'x' * 1024,
                prompt='deja-bench row %d' % r)
print('stored again %d ground-truth rows: %d entries before, %d after' % (
    len(rows), before, c.stats(ns)['entries']))
