/* store.c: the LMDB environment -- opening and checking it, loading at
 * start, and batched writes that grow the map when it fills up. See
 * store.h for the tables and contract; the record layouts, their
 * checksums and their decoders are in store-record.c. */
#include "store.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store-record.h"

#define KEY_LEN STORE_KEY_LEN

#define MIN_MAP (64ull << 20)
/* Readers open at once (LMDB's reader table); a reader stays in the pool
 * with its slot, so this bounds the threads that read concurrently. */
#define MAX_READERS 512u

struct store_reader {
    store *st;
    MDB_txn *txn; /* reset while in the pool, live between begin and end */
    store_reader *next;
};

struct store {
    MDB_env *env;
    MDB_dbi meta, ns, entries, vectors, usage;
    store_config cfg;
    _Atomic uint64_t map_size; /* read by STATS on worker threads */
    char path[4096];           /* data.mdb, for size checks */
    /* Growing the map remaps it, which LMDB allows only while no
     * transaction of this process is live: readers hold map_lock for
     * reading from begin to end, grow_map takes it for writing. The lock
     * prefers writers, so a steady stream of lookups cannot starve a
     * growth; in exchange a thread must never hold two readers. */
    pthread_rwlock_t map_lock;
    pthread_mutex_t pool_lock; /* guards pool */
    store_reader *pool;        /* readers between uses */
};

static int map_err(int rc) {
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return DEJA_ERR_NOT_FOUND;
    case MDB_MAP_FULL:
    case ENOSPC: return DEJA_ERR_STORAGE_FULL;
    case ENOMEM: return DEJA_ERR_NOMEM;
    default: return DEJA_ERR_IO;
    }
}

/* ---- open -------------------------------------------------------------------*/

static int open_dbis(store *st, char *msg, size_t cap) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc) goto fail;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta)) ||
        (rc = mdb_dbi_open(txn, "ns", MDB_CREATE, &st->ns)) ||
        (rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &st->entries)) ||
        (rc = mdb_dbi_open(txn, "vectors", MDB_CREATE, &st->vectors)) ||
        (rc = mdb_dbi_open(txn, "usage", MDB_CREATE, &st->usage))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, st->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        uint32_t fmt = STORE_FORMAT_VERSION;
        v.mv_size = 4;
        v.mv_data = &fmt;
        rc = mdb_put(txn, st->meta, &k, &v, 0);
    } else if (rc == 0) {
        uint32_t fmt = store_meta_format_decode(v.mv_data, v.mv_size);
        if (fmt != STORE_FORMAT_VERSION) {
            mdb_txn_abort(txn);
            snprintf(msg, cap, "data folder %s has format %u; this dejad reads format %u",
                     st->cfg.dir, fmt, STORE_FORMAT_VERSION);
            return DEJA_ERR_VERSION;
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        goto fail;
    }
    rc = mdb_txn_commit(txn);
    if (rc == 0) return 0;
fail:
    snprintf(msg, cap, "cannot open the tables in %s: %s", st->cfg.dir, mdb_strerror(rc));
    return rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INCOMPATIBLE
               ? DEJA_ERR_CORRUPT
               : map_err(rc);
}

int store_open(const store_config *cfg, store **out, char *msg, size_t cap) {
    *out = NULL;
    store *st = calloc(1, sizeof *st);
    if (!st) return DEJA_ERR_NOMEM;
    st->cfg = *cfg;
    snprintf(st->path, sizeof st->path, "%s/data.mdb", cfg->dir);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&st->map_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&st->pool_lock, NULL);

    struct stat sb;
    uint64_t file_size = stat(st->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    st->map_size = MIN_MAP;
    while (st->map_size < file_size)
        st->map_size *= 2;
    if (cfg->max_disk && st->map_size > cfg->max_disk)
        st->map_size = file_size > cfg->max_disk ? file_size : cfg->max_disk;

    unsigned flags = MDB_NOTLS;
    if (cfg->fsync != STORE_FSYNC_ALWAYS) flags |= MDB_NOSYNC;
    int rc = mdb_env_create(&st->env);
    if (rc == 0) rc = mdb_env_set_maxdbs(st->env, 8);
    if (rc == 0) rc = mdb_env_set_maxreaders(st->env, MAX_READERS);
    if (rc == 0) rc = mdb_env_set_mapsize(st->env, st->map_size);
    if (rc == 0) rc = mdb_env_open(st->env, cfg->dir, flags, 0644);
    if (rc) {
        int err = rc == MDB_INVALID || rc == MDB_CORRUPTED ? DEJA_ERR_CORRUPT
                  : rc == MDB_VERSION_MISMATCH             ? DEJA_ERR_VERSION
                                                           : map_err(rc);
        snprintf(msg, cap, "cannot open data file %s: %s", st->path, mdb_strerror(rc));
        store_close(st);
        return err;
    }

    /* A truncated file would be mapped past its end and fault (SIGBUS) on
     * first touch: refuse it before reading a page. */
    MDB_envinfo info;
    MDB_stat est;
    mdb_env_info(st->env, &info);
    mdb_env_stat(st->env, &est);
    if (stat(st->path, &sb) == 0 &&
        (uint64_t)sb.st_size < ((uint64_t)info.me_last_pgno + 1) * est.ms_psize) {
        snprintf(msg, cap, "data file %s is truncated (%lld bytes, needs %llu)", st->path,
                 (long long)sb.st_size,
                 (unsigned long long)((info.me_last_pgno + 1) * est.ms_psize));
        store_close(st);
        return DEJA_ERR_CORRUPT;
    }
    int dead = 0;
    mdb_reader_check(st->env, &dead);

    rc = open_dbis(st, msg, cap);
    if (rc) {
        store_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

void store_close(store *st) {
    if (!st) return;
    for (store_reader *rd = st->pool, *next; rd; rd = next) {
        next = rd->next;
        mdb_txn_abort(rd->txn);
        free(rd);
    }
    if (st->env) {
        if (st->cfg.fsync != STORE_FSYNC_OFF) mdb_env_sync(st->env, 1);
        mdb_env_close(st->env);
    }
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->pool_lock);
    free(st);
}

int store_sync(store *st) {
    return map_err(mdb_env_sync(st->env, 1));
}

uint64_t store_last_txn(store *st) {
    MDB_envinfo info;
    mdb_env_info(st->env, &info);
    return (uint64_t)info.me_last_txnid;
}

void store_sizes(store *st, uint64_t *file_bytes, uint64_t *map_bytes) {
    struct stat sb;
    *file_bytes = stat(st->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    *map_bytes = st->map_size;
}

/* ---- reading while serving --------------------------------------------------*/

int store_reader_begin(store *st, store_reader **out) {
    *out = NULL;
    pthread_rwlock_rdlock(&st->map_lock);
    pthread_mutex_lock(&st->pool_lock);
    store_reader *rd = st->pool;
    if (rd) st->pool = rd->next;
    pthread_mutex_unlock(&st->pool_lock);
    int rc;
    if (rd) {
        rc = mdb_txn_renew(rd->txn);
        if (rc) {
            mdb_txn_abort(rd->txn);
            free(rd);
            rd = NULL;
        }
    }
    if (!rd) {
        rd = calloc(1, sizeof *rd);
        if (!rd) {
            pthread_rwlock_unlock(&st->map_lock);
            return DEJA_ERR_NOMEM;
        }
        rd->st = st;
        rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &rd->txn);
        if (rc) {
            free(rd);
            pthread_rwlock_unlock(&st->map_lock);
            return map_err(rc);
        }
    }
    *out = rd;
    return 0;
}

void store_reader_end(store_reader *rd) {
    if (!rd) return;
    store *st = rd->st;
    mdb_txn_reset(rd->txn);
    pthread_mutex_lock(&st->pool_lock);
    rd->next = st->pool;
    st->pool = rd;
    pthread_mutex_unlock(&st->pool_lock);
    pthread_rwlock_unlock(&st->map_lock);
}

static int reader_get(store_reader *rd, MDB_dbi dbi, uint32_t ns_id, uint64_t id,
                      uint8_t key[KEY_LEN], MDB_val *v) {
    store_key_make(key, ns_id, id);
    MDB_val k = {KEY_LEN, key};
    return map_err(mdb_get(rd->txn, dbi, &k, v));
}

int store_read_entry(store_reader *rd, uint32_t ns_id, uint64_t id, store_entry_rec *e) {
    uint8_t key[KEY_LEN];
    MDB_val v;
    int rc = reader_get(rd, rd->st->entries, ns_id, id, key, &v);
    if (rc) return rc;
    memset(e, 0, sizeof *e);
    return store_entry_rec_decode(key, KEY_LEN, v.mv_data, v.mv_size, e);
}

int store_read_vector(store_reader *rd, uint32_t ns_id, uint64_t id, uint32_t dim,
                      float *scratch, const float **out) {
    uint8_t key[KEY_LEN];
    MDB_val v;
    store_entry_rec e;
    *out = NULL;
    int rc = reader_get(rd, rd->st->vectors, ns_id, id, key, &v);
    if (rc) return rc;
    rc = store_vector_rec_decode(key, KEY_LEN, v.mv_data, v.mv_size, &e);
    if (rc) return rc;
    if (e.dim != dim) return DEJA_ERR_CORRUPT;
    /* A vector large enough for an overflow page starts 32 bytes into a
     * page; a small one sits wherever LMDB's 2-byte node alignment left
     * it, and is copied out before it is read as floats. */
    if ((uintptr_t)e.vector % _Alignof(float) == 0) {
        *out = e.vector;
    } else {
        memcpy(scratch, e.vector, (size_t)dim * sizeof(float));
        *out = scratch;
    }
    return 0;
}

/* ---- load -------------------------------------------------------------------*/

static int decode_ns(const MDB_val *k, const MDB_val *v, store_ns_rec *ns) {
    return store_ns_rec_decode(k->mv_data, k->mv_size, v->mv_data, v->mv_size, ns);
}

static int decode_entry(const MDB_val *k, const MDB_val *v, store_entry_rec *e) {
    return store_entry_rec_decode(k->mv_data, k->mv_size, v->mv_data, v->mv_size, e);
}

static int decode_vector(const MDB_val *k, const MDB_val *v, store_entry_rec *e) {
    /* LMDB values are only 2-aligned: e->vector is copied out before use. */
    return store_vector_rec_decode(k->mv_data, k->mv_size, v->mv_data, v->mv_size, e);
}

/* Applies the entry's usage record, if any and intact: a damaged usage
 * record only loses counters, never the entry. */
static void apply_usage(store *st, MDB_txn *txn, const MDB_val *k, store_entry_rec *e) {
    MDB_val v;
    store_usage_rec u;
    if (mdb_get(txn, st->usage, (MDB_val *)k, &v) != 0) return;
    if (store_usage_rec_decode(k->mv_data, k->mv_size, v.mv_data, v.mv_size, &u) != 0)
        return;
    e->hits = u.hits;
    e->lfu = u.lfu;
    e->last_hit_ms = u.last_hit_ms;
    e->expires_ms = u.expires_ms;
}

typedef struct key_list {
    uint8_t (*keys)[KEY_LEN];
    size_t n, cap;
} key_list;

static int key_list_push(key_list *l, const void *key) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        void *grown = realloc(l->keys, cap * KEY_LEN);
        if (!grown) return DEJA_ERR_NOMEM;
        l->keys = grown;
        l->cap = cap;
    }
    memcpy(l->keys[l->n++], key, KEY_LEN);
    return 0;
}

/* Deletes the listed keys from entries and vectors (expired or damaged). */
static int delete_keys(store *st, const key_list *l) {
    for (size_t done = 0; done < l->n;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
        if (rc) return map_err(rc);
        size_t end = done + 10000 < l->n ? done + 10000 : l->n;
        for (; done < end; done++) {
            MDB_val k = {KEY_LEN, l->keys[done]};
            mdb_del(txn, st->entries, &k, NULL);
            mdb_del(txn, st->vectors, &k, NULL);
            mdb_del(txn, st->usage, &k, NULL);
        }
        rc = mdb_txn_commit(txn);
        if (rc) return map_err(rc);
    }
    return 0;
}

static int corrupt(char *msg, size_t cap, const char *table, int rc) {
    snprintf(msg, cap, "data file is damaged (reading %s: %s)", table, mdb_strerror(rc));
    return DEJA_ERR_CORRUPT;
}

/* Orders keys as LMDB's default comparator does. */
static int key_cmp(const MDB_val *a, const MDB_val *b) {
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = memcmp(a->mv_data, b->mv_data, n);
    return c ? c : (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

/* Stale vectors without an entry (a damaged entry record) are gathered for
 * deletion; so are entries whose vector is missing or damaged. */
static int load_entries(store *st, MDB_txn *txn, uint64_t now_ms,
                        const store_load_fns *fns, store_load_stats *stats,
                        key_list *drop, char *msg, size_t cap) {
    MDB_cursor *ce = NULL, *cv = NULL;
    /* Vectors in the map are only 2-aligned; callbacks get an aligned copy. */
    float *aligned = malloc(4096 * sizeof(float));
    if (!aligned) return DEJA_ERR_NOMEM;
    int rc = mdb_cursor_open(txn, st->entries, &ce);
    if (rc == 0) rc = mdb_cursor_open(txn, st->vectors, &cv);
    if (rc) goto out;
    MDB_val ke, ve, kv, vv;
    int re = mdb_cursor_get(ce, &ke, &ve, MDB_FIRST);
    int rv = mdb_cursor_get(cv, &kv, &vv, MDB_FIRST);
    while (re == 0 || rv == 0) {
        /* Walk both tables in key order; a key present in one only is
         * damage left by nothing we write, and is dropped. */
        int cmp = re != 0 ? 1 : rv != 0 ? -1 : key_cmp(&ke, &kv);
        if (cmp != 0) {
            MDB_val *k = cmp < 0 ? &ke : &kv;
            stats->damaged++;
            if (k->mv_size == KEY_LEN && (rc = key_list_push(drop, k->mv_data))) goto out;
            if (cmp < 0)
                re = mdb_cursor_get(ce, &ke, &ve, MDB_NEXT);
            else
                rv = mdb_cursor_get(cv, &kv, &vv, MDB_NEXT);
            continue;
        }
        store_entry_rec e;
        memset(&e, 0, sizeof e);
        int bad = decode_entry(&ke, &ve, &e) != 0;
        /* An unwanted vector is not touched: LMDB hands out its size and
         * address without reading its overflow pages. */
        int want =
            !bad && (!fns->want_vector || fns->want_vector(fns->ctx, e.ns_id, e.id));
        if (!bad && want)
            bad = decode_vector(&kv, &vv, &e) != 0;
        else if (!bad)
            bad = store_vector_rec_dim(vv.mv_size, &e.dim) != 0;
        if (!bad) apply_usage(st, txn, &ke, &e);
        if (bad) {
            stats->damaged++;
            if ((rc = key_list_push(drop, ke.mv_data))) goto out;
        } else if (e.expires_ms && e.expires_ms <= now_ms) {
            stats->expired++;
            if ((rc = key_list_push(drop, ke.mv_data))) goto out;
        } else {
            if (e.id > stats->max_id) stats->max_id = e.id;
            if (want) {
                memcpy(aligned, e.vector, (size_t)e.dim * sizeof(float));
                e.vector = aligned;
            }
            if ((rc = fns->entry(fns->ctx, &e))) goto out;
            stats->entries++;
        }
        re = mdb_cursor_get(ce, &ke, &ve, MDB_NEXT);
        rv = mdb_cursor_get(cv, &kv, &vv, MDB_NEXT);
    }
    if (re != MDB_NOTFOUND)
        rc = corrupt(msg, cap, "entries", re);
    else if (rv != MDB_NOTFOUND)
        rc = corrupt(msg, cap, "vectors", rv);
    else
        rc = 0;
out:
    if (ce) mdb_cursor_close(ce);
    if (cv) mdb_cursor_close(cv);
    free(aligned);
    return rc;
}

/* While the loader reads the graph snapshots and then works through the
 * entries, a second thread walks the entry and vector tables ahead of it
 * in its own read transaction, touching each record once: the pages are
 * mapped and resident when the load reaches them, so the load's own walk
 * costs cache misses but no page faults. Only with a second CPU to run
 * on; the load stops it when done. */
typedef struct prefetch {
    store *st;
    atomic_int stop;
    pthread_t thread;
    int running;
} prefetch;

static void *prefetch_run(void *arg) {
    prefetch *p = arg;
    pthread_setname_np(pthread_self(), "deja-prefetch");
    MDB_txn *txn;
    if (mdb_txn_begin(p->st->env, NULL, MDB_RDONLY, &txn) != 0) return NULL;
    MDB_cursor *ce = NULL, *cv = NULL;
    if (mdb_cursor_open(txn, p->st->entries, &ce) == 0 &&
        mdb_cursor_open(txn, p->st->vectors, &cv) == 0) {
        MDB_val k, v, kv, vv;
        unsigned sink = 0;
        int re = mdb_cursor_get(ce, &k, &v, MDB_FIRST);
        int rv = mdb_cursor_get(cv, &kv, &vv, MDB_FIRST);
        while ((re == 0 || rv == 0) &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            if (re == 0) {
                const unsigned char *b = v.mv_data;
                for (size_t i = 0; i < v.mv_size; i += 4096)
                    sink += b[i];
                re = mdb_cursor_get(ce, &k, &v, MDB_NEXT);
            }
            /* A vector's node only: its overflow pages are not read. */
            if (rv == 0) rv = mdb_cursor_get(cv, &kv, &vv, MDB_NEXT);
        }
        __asm__ volatile("" : : "r"(sink));
    }
    if (cv) mdb_cursor_close(cv);
    if (ce) mdb_cursor_close(ce);
    mdb_txn_abort(txn);
    return NULL;
}

static void prefetch_start(store *st, prefetch *p) {
    memset(p, 0, sizeof *p);
    p->st = st;
    atomic_init(&p->stop, 0);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) return;
    p->running = pthread_create(&p->thread, NULL, prefetch_run, p) == 0;
}

static void prefetch_stop(prefetch *p) {
    if (!p->running) return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    p->running = 0;
}

int store_load(store *st, uint64_t now_ms, const store_load_fns *fns,
               store_load_stats *stats, char *msg, size_t cap) {
    memset(stats, 0, sizeof *stats);
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc) return map_err(rc);

    MDB_cursor *cur;
    MDB_val k, v;
    rc = mdb_cursor_open(txn, st->ns, &cur);
    if (rc) {
        mdb_txn_abort(txn);
        return map_err(rc);
    }
    prefetch pf;
    prefetch_start(st, &pf);
    int r;
    for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0;
         r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_ns_rec ns;
        if (decode_ns(&k, &v, &ns) != 0) {
            /* Without its namespace record no entry of that namespace can
             * be interpreted; they are skipped as damaged below. */
            stats->damaged++;
            continue;
        }
        if (ns.ns_id > stats->max_ns_id) stats->max_ns_id = ns.ns_id;
        stats->namespaces++;
        if ((rc = fns->ns(fns->ctx, &ns))) break;
    }
    mdb_cursor_close(cur);
    if (rc == 0 && r != MDB_NOTFOUND) rc = corrupt(msg, cap, "namespaces", r);

    key_list drop = {0};
    if (rc == 0) rc = load_entries(st, txn, now_ms, fns, stats, &drop, msg, cap);
    prefetch_stop(&pf);
    mdb_txn_abort(txn);
    if (rc == 0 && drop.n) rc = delete_keys(st, &drop);
    free(drop.keys);
    return rc;
}

/* ---- writes -----------------------------------------------------------------*/

static int put_ns(store *st, MDB_txn *txn, const store_ns_rec *ns) {
    uint8_t rec[STORE_NS_REC_MAX];
    size_t len = store_ns_rec_encode(ns, rec);
    MDB_val k = {ns->name_len, (void *)ns->name}, v = {len, rec};
    return mdb_put(txn, st->ns, &k, &v, 0);
}

static int put_entry(store *st, MDB_txn *txn, const store_entry_rec *e) {
    uint8_t key[KEY_LEN];
    store_key_make(key, e->ns_id, e->id);
    MDB_val k = {KEY_LEN, key};

    /* Reserve the values in place and write them there: one copy, not two. */
    MDB_val v = {store_entry_rec_size(e), NULL};
    int rc = mdb_put(txn, st->entries, &k, &v, MDB_RESERVE);
    if (rc) return rc;
    store_entry_rec_encode(key, e, v.mv_data);

    MDB_val vv = {store_vector_rec_size(e->dim), NULL};
    rc = mdb_put(txn, st->vectors, &k, &vv, MDB_RESERVE);
    if (rc) return rc;
    store_vector_rec_encode(key, e->vector, e->dim, vv.mv_data);
    return 0;
}

static int put_usage(store *st, MDB_txn *txn, const store_usage_rec *u) {
    uint8_t key[KEY_LEN], rec[STORE_USAGE_REC];
    store_key_make(key, u->ns_id, u->id);
    store_usage_rec_encode(key, u, rec);
    MDB_val k = {KEY_LEN, key}, v = {STORE_USAGE_REC, rec};
    return mdb_put(txn, st->usage, &k, &v, 0);
}

static int del_entry(store *st, MDB_txn *txn, uint32_t ns_id, uint64_t id) {
    uint8_t key[KEY_LEN];
    store_key_make(key, ns_id, id);
    MDB_val k = {KEY_LEN, key};
    int ru = mdb_del(txn, st->usage, &k, NULL);
    if (ru != 0 && ru != MDB_NOTFOUND) return ru;
    int rc = mdb_del(txn, st->entries, &k, NULL);
    int rv = mdb_del(txn, st->vectors, &k, NULL);
    if (rc == MDB_NOTFOUND && rv == 0) rc = 0;
    return rc ? rc : (rv == MDB_NOTFOUND ? 0 : rv);
}

static int del_range(MDB_txn *txn, MDB_dbi dbi, uint32_t ns_id, uint64_t *removed) {
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return rc;
    uint8_t start[KEY_LEN];
    store_key_make(start, ns_id, 0);
    MDB_val k, v;
    /* Seek again after each delete: where a cursor stands after deleting
     * the last item of a table is not something to rely on. */
    for (;;) {
        k.mv_size = KEY_LEN;
        k.mv_data = start;
        if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE))) break;
        uint32_t key_ns;
        uint64_t id;
        if (k.mv_size != KEY_LEN) break;
        store_key_parse(k.mv_data, &key_ns, &id);
        if (key_ns != ns_id) break;
        if ((rc = mdb_cursor_del(cur, 0))) break;
        if (removed) (*removed)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

static int apply_one(store *st, MDB_txn *txn, store_op *op) {
    switch (op->kind) {
    case STORE_OP_PUT_NS: return put_ns(st, txn, op->ns);
    case STORE_OP_PUT_ENTRY: return put_entry(st, txn, op->entry);
    case STORE_OP_DEL_ENTRY: return del_entry(st, txn, op->ns_id, op->id);
    case STORE_OP_PUT_USAGE: return put_usage(st, txn, op->usage);
    case STORE_OP_DEL_NS_ENTRIES:
    case STORE_OP_DEL_NS: {
        op->removed = 0;
        int rc = del_range(txn, st->entries, op->ns_id, &op->removed);
        if (rc == 0) rc = del_range(txn, st->vectors, op->ns_id, NULL);
        if (rc == 0) rc = del_range(txn, st->usage, op->ns_id, NULL);
        if (rc == 0 && op->kind == STORE_OP_DEL_NS) {
            MDB_val k = {op->ns->name_len, (void *)op->ns->name};
            rc = mdb_del(txn, st->ns, &k, NULL);
        }
        return rc;
    }
    }
    return EINVAL;
}

/* One write transaction for ops[0..n). Returns an LMDB/errno code. */
static int apply_batch(store *st, store_op *ops, size_t n) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        rc = apply_one(st, txn, &ops[i]);
        ops[i].result = rc == MDB_NOTFOUND ? DEJA_ERR_NOT_FOUND : 0;
        if (rc == MDB_NOTFOUND) rc = 0;
        if (rc) {
            mdb_txn_abort(txn);
            return rc;
        }
    }
    return mdb_txn_commit(txn);
}

/* Doubles the map, up to max_disk. The caller's write transaction is
 * over; the readers' are kept out by map_lock. */
static int grow_map(store *st) {
    uint64_t next = st->map_size * 2;
    if (st->cfg.max_disk && next > st->cfg.max_disk) next = st->cfg.max_disk;
    if (next <= st->map_size) return -1;
    pthread_rwlock_wrlock(&st->map_lock);
    int rc = mdb_env_set_mapsize(st->env, next);
    pthread_rwlock_unlock(&st->map_lock);
    if (rc != 0) return -1;
    st->map_size = next;
    return 0;
}

static int apply_growing(store *st, store_op *ops, size_t n) {
    int rc;
    while ((rc = apply_batch(st, ops, n)) == MDB_MAP_FULL)
        if (grow_map(st) != 0) break;
    return rc;
}

int store_apply(store *st, store_op *ops, size_t n) {
    int rc = apply_growing(st, ops, n);
    if (rc == 0) return 0;
    if ((rc == MDB_MAP_FULL || rc == ENOSPC) && n > 1) {
        /* The batch does not fit: let each op succeed or fail on its own. */
        int first = 0;
        for (size_t i = 0; i < n; i++) {
            int r = apply_growing(st, &ops[i], 1);
            if (r) ops[i].result = map_err(r);
            if (r && !first) first = map_err(r);
        }
        return first;
    }
    for (size_t i = 0; i < n; i++)
        ops[i].result = map_err(rc);
    return map_err(rc);
}
