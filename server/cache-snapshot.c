/* cache-snapshot.c: graph snapshots of the namespaces, so that a restart
 * does not rebuild every graph.
 *
 * On a clean shutdown each namespace's index is written to
 * DATA/snapshots/ns-<ns_id>.idx (index/idx-snapshot.c: checksummed,
 * versioned). At start, after the namespaces are loaded and before their
 * entries, each namespace adopts its snapshot if it reads back with the
 * namespace's configuration; the entries are then reconciled by label:
 * an entry whose label is in the snapshot needs no insertion, one that is
 * not (stored after the snapshot, e.g. before a crash) goes through the
 * staging index into the graph as usual, and a label in the snapshot with
 * no entry (deleted after it) is removed from the graph. Labels are enough
 * because an entry id is never reused and an entry never changes its
 * vector (updates keep it). A damaged or foreign snapshot is ignored and
 * the graph is rebuilt. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache-private.h"

static void snapshot_path(const char *dir, uint32_t ns_id, char *out, size_t cap) {
    snprintf(out, cap, "%s/snapshots/ns-%u.idx", dir, ns_id);
}

static int add_label(void *ctx, uint64_t label) {
    return u64map_put(ctx, label, (void *)1);
}

int cache_snapshot_adopt(cache *c, const char *dir, char *msg, size_t msg_cap,
                         size_t *adopted) {
    *adopted = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        char path[4096];
        snapshot_path(dir, ns->ns_id, path, sizeof path);
        idx_config cfg;
        cache_ns_index_config(c, ns, &cfg);
        idx *loaded = NULL;
        uint64_t tag = 0;
        char why[256] = "";
        int rc = idx_snapshot_read(path, &cfg, &loaded, &tag, why, sizeof why);
        if (rc == DEJA_ERR_NOT_FOUND) continue;
        if (rc) {
            snprintf(msg, msg_cap, "snapshot %s not used (%s): rebuilding that graph",
                     path, why[0] ? why : deja_strerror(rc));
            continue;
        }
        pthread_rwlock_wrlock(&ns->lock);
        idx_destroy(ns->main);
        ns->main = loaded;
        u64map_close(&ns->snap_labels);
        u64map_init(&ns->snap_labels);
        /* Sized once: the labels, and the entry table they are about to
         * fill, grow by doubling otherwise (a few percent of a 1M
         * restart). A failed reserve only means growing as before. */
        size_t n = idx_count(loaded);
        rc = deja_u64map_reserve(&ns->snap_labels, n);
        (void)deja_u64map_reserve(&ns->entries, n);
        if (rc == 0) rc = idx_each_label(loaded, add_label, &ns->snap_labels);
        if (rc) {
            /* Without the label set the snapshot cannot be reconciled. */
            u64map_close(&ns->snap_labels);
            idx_clear(ns->main);
        } else {
            *adopted += ns->snap_labels.count;
            atomic_fetch_add(&c->snapshot_entries, ns->snap_labels.count);
        }
        pthread_rwlock_unlock(&ns->lock);
    }
    pthread_rwlock_unlock(&c->ns_lock);
    return 0;
}

void cache_snapshot_loaded_current(cache *c) {
    c->changes_at_snapshot = atomic_load(&c->changes);
}

void cache_snapshot_reconcile(cache *c, size_t *removed) {
    *removed = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        pthread_rwlock_wrlock(&ns->lock);
        size_t pos = 0;
        uint64_t label;
        void *val;
        while (u64map_next(&ns->snap_labels, &pos, &label, &val))
            if (!u64map_get(&ns->entries, label) && idx_remove(ns->main, label) == 0)
                (*removed)++;
        u64map_close(&ns->snap_labels);
        cache_ns_charge_locked(c, ns, 1);
        pthread_rwlock_unlock(&ns->lock);
    }
    pthread_rwlock_unlock(&c->ns_lock);
}

static int write_all(cache *c, const char *dir, uint64_t tag, size_t *written, char *msg,
                     size_t msg_cap);

/* Removes snapshot files that belong to no namespace (dropped ones). */
static void remove_stale(cache *c, const char *dir) {
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/snapshots", dir);
    DIR *d = opendir(sdir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned id;
        char tail[8];
        if (sscanf(de->d_name, "ns-%u.%7s", &id, tail) != 2 || strcmp(tail, "idx") != 0)
            continue;
        int known = 0;
        for (size_t i = 0; i < c->ns_count && !known; i++)
            known = c->ns[i]->ns_id == id;
        if (!known) {
            char path[4352];
            snprintf(path, sizeof path, "%s/%s", sdir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

int cache_snapshot_write(cache *c, const char *dir, uint64_t tag, int final,
                         size_t *written, char *msg, size_t msg_cap) {
    *written = 0;
    uint64_t changes = atomic_load(&c->changes);
    /* Nothing new since the last snapshot written or adopted whole: the
     * files on disk are these graphs (at shutdown, the indexer still
     * stops for good). */
    int current = changes == c->changes_at_snapshot;
    if (!final && current) return 0;
    /* Nothing may change a graph while it is written. Moves stop (for
     * good at shutdown); removals are queued until it is written
     * (write_ns); STOREs go to the staging index and lookups go on. */
    if (final) {
        cache_indexer_stop(c->indexer);
        c->indexer = NULL;
    } else {
        cache_indexer_pause(c->indexer);
    }
    /* No move is in flight: every insert counted so far is in the graphs
     * about to be written. */
    uint64_t inserts = atomic_load(&c->graph_inserts);
    int rc = final && current ? 0 : write_all(c, dir, tag, written, msg, msg_cap);
    if (!final) cache_indexer_resume(c->indexer);
    if (rc == 0) {
        c->changes_at_snapshot = changes;
        atomic_store(&c->graph_inserts_at_snapshot, inserts);
    }
    return rc;
}

uint64_t cache_graph_inserts_since_snapshot(cache *c) {
    return atomic_load(&c->graph_inserts) - atomic_load(&c->graph_inserts_at_snapshot);
}

/* Writes one namespace's graph; *n: the nodes written. Moves are paused
 * (cache_snapshot_write), so in a namespace fed through the staging index
 * nothing but removals changes main: those are queued while the graph is
 * written without the lock (cache.c, snap_defer_locked) and applied here
 * afterwards, so STOREs, DELETEs, eviction and expiry never wait for the
 * write (seconds at a million entries). A namespace whose main takes
 * inserts directly is written under the read lock. */
static int write_ns(cache_ns *ns, const char *path, uint64_t tag, size_t *n) {
    int rc;
    pthread_mutex_lock(&ns->snap_mu);
    pthread_rwlock_wrlock(&ns->lock);
    atomic_store(&ns->snapshotting, 1); /* the sweeper passes it by */
    if (ns->fresh) {
        pthread_rwlock_unlock(&ns->lock);
        rc = idx_snapshot_write(ns->main, path, tag);
        *n = idx_count(ns->main);
        pthread_rwlock_wrlock(&ns->lock);
        for (size_t i = 0; i < ns->snap_removed_n; i++)
            (void)idx_remove(ns->main, ns->snap_removed[i]);
        ns->snap_removed_n = 0;
        if (ns->snap_removed_cap > 4096) { /* a burst's queue goes */
            free(ns->snap_removed);
            ns->snap_removed = NULL;
            ns->snap_removed_cap = 0;
        }
    } else {
        pthread_rwlock_unlock(&ns->lock);
        pthread_rwlock_rdlock(&ns->lock);
        rc = idx_snapshot_write(ns->main, path, tag);
        *n = idx_count(ns->main);
    }
    atomic_store(&ns->snapshotting, 0);
    pthread_rwlock_unlock(&ns->lock);
    pthread_mutex_unlock(&ns->snap_mu);
    return rc;
}

static int write_all(cache *c, const char *dir, uint64_t tag, size_t *written, char *msg,
                     size_t msg_cap) {
    char sdir[4096];
    snprintf(sdir, sizeof sdir, "%s/snapshots", dir);
    if (mkdir(sdir, 0755) != 0 && errno != EEXIST) {
        snprintf(msg, msg_cap, "cannot create %s: %s", sdir, strerror(errno));
        return DEJA_ERR_IO;
    }
    int first_err = 0;
    pthread_rwlock_rdlock(&c->ns_lock);
    remove_stale(c, dir);
    for (size_t i = 0; i < c->ns_count; i++) {
        cache_ns *ns = c->ns[i];
        char path[4096];
        snapshot_path(dir, ns->ns_id, path, sizeof path);
        size_t n;
        int rc = write_ns(ns, path, tag, &n);
        if (rc == DEJA_ERR_INVALID_ARG) continue; /* a kind without snapshots */
        if (rc) {
            if (!first_err) {
                first_err = rc;
                snprintf(msg, msg_cap, "cannot write %s: %s", path, deja_strerror(rc));
            }
            unlink(path); /* never leave a stale snapshot behind a failure */
            continue;
        }
        *written += n;
    }
    pthread_rwlock_unlock(&c->ns_lock);
    return first_err;
}
