/* srv-writer.c: the commit thread -- group commit of writes into LMDB,
 * and hand-back of each committed write to its completion.
 *
 * Workers queue writes (srv_write: store operations plus callbacks) and go
 * on serving; the commit thread takes everything queued, applies every
 * write's operations in one LMDB transaction, commits (durably in --fsync
 * always), and only then posts each write to its worker, whose completion
 * makes a STORE visible and replies. While one commit waits on the disk,
 * the next batch accumulates, so durability costs one fsync per batch
 * rather than per STORE. This file knows store operations and the two
 * callbacks of a write; it knows no opcode and no worker internals. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv-private.h"

struct srv_writer {
    srv_server *srv;
    store *st;
    srv_writer_config cfg;
    pthread_t thread;
    pthread_mutex_t mu; /* guards head, tail, stopping */
    pthread_cond_t cv;
    srv_write *head, *tail;
    int stopping;
    /* Commit thread only. */
    int dirty; /* committed but not yet synced (batch mode) */
    uint64_t last_sync_ms;
    store_op *ops;
    srv_write **owner; /* owner[i]: the write ops[i] belongs to */
    atomic_uint_fast64_t commits, committed, failed;
    srv_log_limit log_failed; /* clients can make commits fail (full disk) */
    srv_hist commit_hist;     /* commit + sync time, for the metrics */
};

static void deliver(srv_write *list) {
    while (list) {
        srv_write *write = list;
        list = write->next;
        write->next = NULL;
        if (write->w)
            srv_worker_post(write->w, write);
        else
            write->done(write); /* the server's own writes: nobody to answer */
    }
}

/* Gathers the operations of one batch. A namespace record that an earlier
 * write of the batch already puts is not put twice. */
static size_t build_ops(srv_writer *wr, srv_write *list) {
    size_t n = 0;
    for (srv_write *write = list; write; write = write->next) {
        for (unsigned i = 0; i < write->nops; i++) {
            const store_op *op = &write->ops[i];
            int dup = 0;
            for (size_t j = 0; j < n && op->kind == STORE_OP_PUT_NS && !dup; j++)
                dup = wr->ops[j].kind == STORE_OP_PUT_NS &&
                      wr->ops[j].ns->ns_id == op->ns->ns_id;
            if (dup) continue;
            wr->ops[n] = *op;
            wr->ops[n].result = 0;
            wr->owner[n++] = write;
        }
    }
    return n;
}

static void commit_batch(srv_writer *wr, srv_write *list) {
    size_t n = build_ops(wr, list);
    for (srv_write *write = list; write; write = write->next)
        write->result = 0;
    store_apply(wr->st, wr->ops, n);
    for (size_t i = 0; i < n; i++) {
        srv_write *write = wr->owner[i];
        int r = wr->ops[i].result == DEJA_ERR_NOT_FOUND ? 0 : wr->ops[i].result;
        if (r && !write->result) write->result = r;
    }
    uint64_t bad = 0;
    int first_err = 0;
    for (srv_write *write = list; write; write = write->next) {
        if (write->committed) write->committed(write);
        bad += write->result != 0;
        if (write->result && !first_err) first_err = write->result;
    }
    atomic_fetch_add(&wr->commits, 1);
    atomic_fetch_add(&wr->committed, n);
    atomic_fetch_add(&wr->failed, bad);
    if (bad)
        srv_log_limited(&wr->log_failed, SRV_LOG_WARN,
                        "commit: %llu writes of a batch failed: %s",
                        (unsigned long long)bad, deja_strerror(first_err));
    wr->dirty = 1;
}

static void maybe_sync(srv_writer *wr, int force) {
    if (wr->cfg.fsync != STORE_FSYNC_BATCH || !wr->dirty) return;
    uint64_t now = srv_now_ms();
    if (!force && now - wr->last_sync_ms < wr->cfg.sync_interval_ms) return;
    int rc = store_sync(wr->st);
    if (rc)
        srv_log_limited(&wr->log_failed, SRV_LOG_WARN, "sync failed: %s",
                        deja_strerror(rc));
    wr->dirty = 0;
    wr->last_sync_ms = now;
}

/* Takes up to max_batch writes off the queue (which is locked). */
static srv_write *take_batch_locked(srv_writer *wr) {
    srv_write *first = wr->head, *last = first;
    for (size_t n = 1; n < wr->cfg.max_batch && last->next; n++)
        last = last->next;
    wr->head = last->next;
    if (!wr->head) wr->tail = NULL;
    last->next = NULL;
    return first;
}

static void *writer_main(void *arg) {
    srv_writer *wr = arg;
    pthread_setname_np(pthread_self(), "deja-commit"); /* top -H, perf */
    pthread_mutex_lock(&wr->mu);
    for (;;) {
        while (!wr->head && !wr->stopping) {
            if (wr->cfg.fsync == STORE_FSYNC_BATCH && wr->dirty) {
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                uint64_t ns = (uint64_t)until.tv_nsec +
                              (uint64_t)wr->cfg.sync_interval_ms * 1000000u;
                until.tv_sec += (time_t)(ns / 1000000000u);
                until.tv_nsec = (long)(ns % 1000000000u);
                if (pthread_cond_timedwait(&wr->cv, &wr->mu, &until) == ETIMEDOUT) {
                    pthread_mutex_unlock(&wr->mu);
                    maybe_sync(wr, 1);
                    pthread_mutex_lock(&wr->mu);
                }
            } else {
                pthread_cond_wait(&wr->cv, &wr->mu);
            }
        }
        if (!wr->head) break; /* stopping and drained */
        srv_write *batch = take_batch_locked(wr);
        pthread_mutex_unlock(&wr->mu);
        /* Backpressure: when STOREs outpace graph insertion, the staging
         * indexes (scanned exactly by every lookup) would grow without
         * bound; past the limit, commits wait for the graph instead. */
        if (wr->cfg.max_unindexed)
            cache_wait_unindexed_below(wr->srv->cache, wr->cfg.max_unindexed);
        uint64_t t0 = srv_now_ns();
        commit_batch(wr, batch);
        maybe_sync(wr, 0);
        srv_hist_add(&wr->commit_hist, srv_now_ns() - t0);
        deliver(batch);
        pthread_mutex_lock(&wr->mu);
    }
    pthread_mutex_unlock(&wr->mu);
    maybe_sync(wr, 1);
    return NULL;
}

int srv_writer_start(srv_server *srv, store *st, const srv_writer_config *cfg,
                     srv_writer **out) {
    srv_writer *wr = calloc(1, sizeof *wr);
    if (!wr) return DEJA_ERR_NOMEM;
    wr->srv = srv;
    wr->st = st;
    wr->cfg = *cfg;
    if (wr->cfg.max_batch == 0) wr->cfg.max_batch = 1024;
    /* A write has at most two ops (namespace record + entry). */
    wr->ops = calloc(2 * wr->cfg.max_batch, sizeof *wr->ops);
    wr->owner = calloc(2 * wr->cfg.max_batch, sizeof *wr->owner);
    if (!wr->ops || !wr->owner) goto nomem;
    wr->last_sync_ms = srv_now_ms();
    pthread_mutex_init(&wr->mu, NULL);
    pthread_cond_init(&wr->cv, NULL);
    if (pthread_create(&wr->thread, NULL, writer_main, wr) != 0) {
        pthread_mutex_destroy(&wr->mu);
        pthread_cond_destroy(&wr->cv);
        goto nomem;
    }
    *out = wr;
    return 0;
nomem:
    free(wr->ops);
    free(wr->owner);
    free(wr);
    return DEJA_ERR_NOMEM;
}

void srv_writer_submit(srv_writer *wr, srv_write *write) {
    write->next = NULL;
    pthread_mutex_lock(&wr->mu);
    if (wr->tail)
        wr->tail->next = write;
    else
        wr->head = write;
    wr->tail = write;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
}

void srv_writer_stop(srv_writer *wr) {
    if (!wr) return;
    pthread_mutex_lock(&wr->mu);
    wr->stopping = 1;
    pthread_cond_signal(&wr->cv);
    pthread_mutex_unlock(&wr->mu);
    pthread_join(wr->thread, NULL);
    pthread_mutex_destroy(&wr->mu);
    pthread_cond_destroy(&wr->cv);
    free(wr->ops);
    free(wr->owner);
    free(wr);
}

const srv_hist *srv_writer_hist(srv_writer *wr) {
    return &wr->commit_hist;
}

void srv_writer_stats(srv_writer *wr, uint64_t *commits, uint64_t *ops,
                      uint64_t *failed) {
    *commits = atomic_load(&wr->commits);
    *ops = atomic_load(&wr->committed);
    *failed = atomic_load(&wr->failed);
}
