/* srv-server.c: the server's lifecycle -- data folder, listeners, worker
 * threads, the round-robin handoff of accepted sockets, and graceful
 * shutdown on SIGINT/SIGTERM.
 *
 * The main thread accepts on TCP and the Unix socket and passes each new
 * socket (a dup of its fd) to the next worker through a mutex-protected
 * queue and a uv_async wake-up. Round-robin keeps connections spread evenly
 * across cores, which a shared listening socket does not guarantee. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "idx.h"
#include "srv-private.h"

#if DEJA_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static int sd_notify(int unset_environment, const char *state) {
    return 0;
}
#endif

#define STOP_GRACE_MS 2000

uint64_t srv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- workers ---------------------------------------------------------------*/

uint64_t srv_client_bytes(srv_server *s) {
    uint64_t sum = 0;
    for (unsigned i = 0; i < s->nworkers; i++)
        sum += atomic_load(&s->workers[i].held_seen);
    return sum;
}

static void on_stop_timer(uv_timer_t *t) {
    srv_worker *w = t->data;
    srv_conn_close_all(w, 1);
}

void srv_worker_maybe_finish(srv_worker *w) {
    if (!w->stop_started || w->conns) return;
    pthread_mutex_lock(&w->mu);
    int closed = w->wake_closed;
    w->wake_closed = 1;
    pthread_mutex_unlock(&w->mu);
    if (closed) return;
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->stop_timer, NULL);
    uv_close((uv_handle_t *)&w->tick, NULL);
}

void srv_worker_post(srv_worker *w, srv_write *write) {
    write->next = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->done_tail)
        w->done_tail->next = write;
    else
        w->done_head = write;
    w->done_tail = write;
    int wake = !w->wake_closed;
    pthread_mutex_unlock(&w->mu);
    /* A worker that has already stopped drains its list after join. */
    if (wake) uv_async_send(&w->wake);
}

/* Takes the worker's committed writes (under its lock). */
static srv_write *take_done(srv_worker *w) {
    pthread_mutex_lock(&w->mu);
    srv_write *done = w->done_head;
    w->done_head = w->done_tail = NULL;
    pthread_mutex_unlock(&w->mu);
    return done;
}

/* Runs the completions of one wake-up, then writes what they encoded:
 * one write per connection, however many of its writes completed. */
static void complete_all(srv_worker *w, srv_write *done) {
    while (done) {
        srv_write *next = done->next;
        done->done(done);
        done = next;
    }
    srv_conn_flush_completed(w);
}

static void on_wake(uv_async_t *a) {
    srv_worker *w = a->data;
    pthread_mutex_lock(&w->mu);
    srv_handoff local[64];
    size_t n = 0;
    int stopping = w->stopping;
    while (n < 64 && w->nhandoff > 0)
        local[n++] = w->handoff[--w->nhandoff];
    int more = w->nhandoff > 0;
    pthread_mutex_unlock(&w->mu);

    for (size_t i = 0; i < n; i++) {
        if (stopping) {
            close(local[i].fd);
            atomic_fetch_sub(&w->srv->conns_live, 1);
        } else {
            srv_conn_accept(w, &local[i]);
        }
    }
    complete_all(w, take_done(w));
    if (more) uv_async_send(&w->wake);
    if (stopping && !w->stop_started) {
        w->stop_started = 1;
        srv_conn_close_all(w, 0);
        /* Connections still owed replies get a grace period. */
        uv_timer_start(&w->stop_timer, on_stop_timer, STOP_GRACE_MS, 0);
    }
    srv_worker_maybe_finish(w);
}

#define TICK_MS 100

static void on_tick(uv_timer_t *t) {
    srv_conn_tick(t->data);
}

static void worker_main(void *arg) {
    srv_worker *w = arg;
    pthread_setname_np(pthread_self(), "deja-worker"); /* top -H, perf */
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

static int worker_init(srv_server *s, srv_worker *w, unsigned index) {
    memset(w, 0, sizeof *w);
    w->srv = s;
    w->index = index;
    w->vec = aligned_alloc(64, PROTO_MAX_DIM * sizeof(float));
    w->matches = calloc(PROTO_MAX_K, sizeof *w->matches);
    w->hits = calloc(PROTO_MAX_K, sizeof *w->hits);
    w->rshared = malloc(SRV_RBUF_MIN);
    if (!w->vec || !w->matches || !w->hits || !w->rshared) return DEJA_ERR_NOMEM;
    w->budget = (size_t)(s->cfg->max_client_memory / s->nworkers);
    pthread_mutex_init(&w->mu, NULL);
    int rc = uv_loop_init(&w->loop);
    if (rc) return DEJA_ERR_INTERNAL;
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    uv_timer_init(&w->loop, &w->stop_timer);
    w->stop_timer.data = w;
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
    return 0;
}

static void worker_free(srv_worker *w) {
    /* Writes committed after the loop ended: make them visible (they are
     * durable) and release their connections. */
    complete_all(w, take_done(w));
    uv_loop_close(&w->loop);
    pthread_mutex_destroy(&w->mu);
    free(w->handoff);
    free(w->vec);
    free(w->matches);
    free(w->hits);
    free(w->rshared);
}

static void worker_handoff(srv_worker *w, int fd, int is_pipe) {
    pthread_mutex_lock(&w->mu);
    if (w->nhandoff == w->cap_handoff) {
        size_t cap = w->cap_handoff ? w->cap_handoff * 2 : 16;
        srv_handoff *grown = realloc(w->handoff, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&w->mu);
            close(fd);
            atomic_fetch_sub(&w->srv->conns_live, 1);
            return;
        }
        w->handoff = grown;
        w->cap_handoff = cap;
    }
    w->handoff[w->nhandoff++] = (srv_handoff){.fd = fd, .is_pipe = is_pipe};
    pthread_mutex_unlock(&w->mu);
    uv_async_send(&w->wake);
}

/* ---- listeners -------------------------------------------------------------*/

static void free_handle(uv_handle_t *h) {
    free(h);
}

/* Past --max-connections: one BUSY error frame, written without waiting
 * (a full socket buffer just loses it), then the socket is closed. */
static void refuse_connection(srv_server *s, int fd) {
    atomic_fetch_add(&s->conns_refused, 1);
    srv_log_limited(&s->log_refused, SRV_LOG_WARN,
                    "connection refused: %u connections open (--max-connections)",
                    s->cfg->max_connections);
    proto_buf b;
    proto_buf_init(&b);
    if (proto_encode_error(&b, 0, 0, DEJA_ERR_BUSY, "too many connections") == 0) {
        ssize_t n = send(fd, b.data, b.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n;
    }
    proto_buf_free(&b);
    close(fd);
}

static void on_connection(uv_stream_t *server, int status) {
    srv_server *s = server->data;
    if (status < 0) {
        /* libuv has already shed the backlog at the fd limit (its reserve
         * descriptor trick), so this does not spin; say so at most a few
         * times per window. */
        srv_log_limited(&s->log_accept, SRV_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    int is_pipe = server->type == UV_NAMED_PIPE;
    uv_stream_t *client = malloc(is_pipe ? sizeof(uv_pipe_t) : sizeof(uv_tcp_t));
    if (!client) return;
    if (is_pipe)
        uv_pipe_init(s->loop, (uv_pipe_t *)client, 0);
    else
        uv_tcp_init(s->loop, (uv_tcp_t *)client);
    uv_os_fd_t fd = -1;
    int dupfd = -1;
    if (uv_accept(server, client) == 0 && uv_fileno((uv_handle_t *)client, &fd) == 0)
        dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    uv_close((uv_handle_t *)client, free_handle);
    if (dupfd < 0) {
        srv_log_limited(&s->log_accept, SRV_LOG_WARN,
                        "cannot take over an accepted socket");
        return;
    }
    if (atomic_load(&s->conns_live) >= s->cfg->max_connections) {
        refuse_connection(s, dupfd);
        return;
    }
    atomic_fetch_add(&s->conns_live, 1);
    srv_worker *w = &s->workers[s->next_worker++ % s->nworkers];
    worker_handoff(w, dupfd, is_pipe);
}

int srv_write_port_file(const char *path, int port) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return -1;
    fprintf(f, "%d\n", port);
    if (fclose(f) != 0) return -1;
    return rename(tmp, path);
}

static int listen_tcp(srv_server *s) {
    const srv_config *cfg = s->cfg;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc) rc = uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr);
    if (rc) {
        srv_log(SRV_LOG_ERROR, "bad listen address '%s'", cfg->host);
        return -1;
    }
    uv_tcp_init(s->loop, &s->tcp);
    s->tcp.data = s;
    s->have_tcp = 1;
    rc = uv_tcp_bind(&s->tcp, (struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->tcp, 511, on_connection);
    if (rc) {
        srv_log(SRV_LOG_ERROR, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
                uv_strerror(rc));
        return -1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&bound, &len);
    int port =
        ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                          : ((struct sockaddr_in *)&bound)->sin_port);
    srv_log(SRV_LOG_INFO, "listening on %s:%d", cfg->host, port);
    if (cfg->port_file && srv_write_port_file(cfg->port_file, port) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot write port file %s: %s", cfg->port_file,
                strerror(errno));
        return -1;
    }
    return 0;
}

static int listen_unix(srv_server *s) {
    const srv_config *cfg = s->cfg;
    if (cfg->unix_path && cfg->unix_path[0] == 0) return 0; /* disabled */
    if (cfg->unix_path)
        snprintf(s->unix_path, sizeof s->unix_path, "%s", cfg->unix_path);
    else
        snprintf(s->unix_path, sizeof s->unix_path, "%s/dejad.sock", cfg->data_dir);
    /* A socket file left by a killed server would make bind fail; the data
     * folder lock guarantees no live server owns it. */
    unlink(s->unix_path);
    uv_pipe_init(s->loop, &s->pipe, 0);
    s->pipe.data = s;
    s->have_pipe = 1;
    int rc = uv_pipe_bind(&s->pipe, s->unix_path);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&s->pipe, 511, on_connection);
    if (rc) {
        srv_log(SRV_LOG_ERROR, "cannot listen on unix:%s: %s", s->unix_path,
                uv_strerror(rc));
        return -1;
    }
    srv_log(SRV_LOG_INFO, "listening on unix:%s", s->unix_path);
    return 0;
}

/* ---- shutdown --------------------------------------------------------------*/

static void begin_shutdown(srv_server *s) {
    if (uv_is_closing((uv_handle_t *)&s->sigint)) return;
    srv_log(SRV_LOG_INFO, "shutting down");
    sd_notify(0, "STOPPING=1");
    atomic_store(&s->ready, 0);
    if (s->have_metrics) uv_close((uv_handle_t *)&s->metrics, NULL);
    s->have_metrics = 0;
    if (s->have_tcp) uv_close((uv_handle_t *)&s->tcp, NULL);
    if (s->have_pipe) uv_close((uv_handle_t *)&s->pipe, NULL);
    s->have_tcp = s->have_pipe = 0;
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_close((uv_handle_t *)&s->sweep_timer, NULL);
    uv_close((uv_handle_t *)&s->snapshot_timer, NULL);
}

static void on_signal(uv_signal_t *sig, int signum) {
    srv_log(SRV_LOG_INFO, "received signal %d", signum);
    begin_shutdown(sig->data);
}

/* Builds the token table from --tokens-file and --auth-token (the latter
 * may do everything). Returns 0, or -1 with the reason logged. */
static int load_tokens(const srv_config *cfg, srv_tokens **out) {
    char msg[512] = "";
    srv_tokens *t = NULL;
    int rc = cfg->tokens_file ? srv_tokens_load(cfg->tokens_file, &t, msg, sizeof msg)
                              : srv_tokens_create(&t);
    if (rc == 0 && cfg->auth_token) {
        srv_scope all = {.rights = SRV_RIGHTS_ALL};
        rc = srv_tokens_add(t, (const uint8_t *)cfg->auth_token, strlen(cfg->auth_token),
                            &all);
        if (rc)
            snprintf(msg, sizeof msg,
                     "--auth-token: empty, too long (%u bytes "
                     "at most) or also in the tokens file",
                     SRV_TOKEN_MAX_LEN);
    }
    if (rc) {
        srv_log(SRV_LOG_ERROR, "tokens: %s", msg[0] ? msg : deja_strerror(rc));
        srv_tokens_destroy(t);
        return -1;
    }
    *out = t;
    return 0;
}

typedef struct reload_ctx {
    srv_server *s;
    srv_config *fresh;
} reload_ctx;

/* One key whose value changed in the config file or flags. */
static void reload_key(void *ctx, const char *key, const char *value, int reloadable) {
    reload_ctx *r = ctx;
    srv_config *cfg = r->s->cfg;
    if (!reloadable) {
        srv_log(SRV_LOG_WARN, "SIGHUP: %s changed to '%s'; it needs a restart", key,
                value);
        return;
    }
    if (strcmp(key, "log-level") == 0) {
        cfg->log_level = r->fresh->log_level;
        srv_log_init(cfg->log_level);
    } else if (strcmp(key, "min-threshold") == 0 || strcmp(key, "dedup") == 0 ||
               strcmp(key, "max-memory") == 0 || strcmp(key, "max-entries") == 0) {
        cfg->min_threshold = r->fresh->min_threshold;
        cfg->dedup = r->fresh->dedup;
        cfg->max_memory = r->fresh->max_memory;
        cfg->max_entries = r->fresh->max_entries;
        cache_set_policy(r->s->cache, cfg->min_threshold, cfg->dedup, cfg->max_memory,
                         cfg->max_entries);
    } else if (strcmp(key, "tokens-file") == 0) {
        const char *swap = cfg->tokens_file;
        cfg->tokens_file = r->fresh->tokens_file;
        r->fresh->tokens_file = swap; /* freed with fresh */
    }
    srv_log(SRV_LOG_INFO, "SIGHUP: %s is now '%s'", key, value);
}

/* Installs the tokens file's current contents. */
static void reload_tokens(srv_server *s) {
    srv_tokens *fresh;
    if (load_tokens(s->cfg, &fresh) != 0) {
        srv_log(SRV_LOG_ERROR, "SIGHUP: tokens not reloaded; the previous ones stay");
        return;
    }
    pthread_mutex_lock(&s->tokens_mu);
    srv_tokens *old = s->tokens;
    s->tokens = fresh;
    atomic_fetch_add(&s->tokens_gen, 1);
    pthread_mutex_unlock(&s->tokens_mu);
    srv_tokens_destroy(old);
    srv_log(SRV_LOG_INFO, "SIGHUP: reloaded %zu tokens from %s", srv_tokens_count(fresh),
            s->cfg->tokens_file);
}

/* SIGHUP: reopens the log file, reads the configuration again (file and
 * flags), applies the keys that may change while running (log-level, the
 * default floor and dedup, the budgets, tokens-file), names the changed
 * ones that need a restart, and reloads the tokens file. A configuration
 * that no longer parses changes nothing. */
static void on_sighup(uv_signal_t *sig, int signum) {
    srv_server *s = sig->data;
    sd_notify(0, "RELOADING=1");
    if (srv_log_reopen() != 0)
        srv_log(SRV_LOG_ERROR, "SIGHUP: cannot reopen the log file: %s", strerror(errno));
    srv_config fresh;
    if (srv_config_parse(&fresh, s->argc, s->argv) != 0) {
        srv_log(SRV_LOG_ERROR,
                "SIGHUP: the configuration is not valid; nothing reloaded");
        sd_notify(0, "READY=1");
        return;
    }
    reload_ctx r = {.s = s, .fresh = &fresh};
    srv_config_diff(s->cfg, &fresh, reload_key, &r);
    srv_config_free(&fresh);
    if (s->auth_required && s->cfg->tokens_file)
        reload_tokens(s);
    else if (s->cfg->tokens_file)
        srv_log(SRV_LOG_WARN, "SIGHUP: tokens-file was set while running; authentication "
                              "needs a restart to be switched on");
    srv_log(SRV_LOG_INFO, "SIGHUP: reload done");
    sd_notify(0, "READY=1");
}

/* Protected mode: only loopback addresses may be served without a token. */
static int is_loopback(const char *host) {
    unsigned char a[16];
    if (strcmp(host, "localhost") == 0) return 1;
    if (inet_pton(AF_INET, host, a) == 1) return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) == 1) {
        static const unsigned char one[16] = {[15] = 1};
        return memcmp(a, one, 16) == 0;
    }
    return 0;
}

/* Room for --max-connections sockets plus the server's own files. */
static void raise_fd_limit(const srv_config *cfg) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    rlim_t want = (rlim_t)cfg->max_connections + 64;
    if (rl.rlim_cur >= want) return;
    rl.rlim_cur =
        rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want)
        srv_log(SRV_LOG_WARN,
                "open-file limit %llu is below --max-connections + 64; "
                "connections past it are refused by the kernel",
                (unsigned long long)rl.rlim_cur);
}

static int lock_data_dir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        srv_log(SRV_LOG_ERROR, "cannot create data folder %s: %s", dir, strerror(errno));
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        srv_log(SRV_LOG_ERROR, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        srv_log(SRV_LOG_ERROR, "data folder %s is in use by another dejad", dir);
        close(fd);
        return -1;
    }
    return fd;
}

static void free_write(srv_write *write) {
    free(write);
}

/* The cache removed an entry by itself (TTL, LFU): delete it from disk
 * too. No one waits for it. */
static void on_evict(void *ctx, uint32_t ns_id, uint64_t id) {
    srv_server *s = ctx;
    srv_write *write = calloc(1, sizeof *write);
    if (!s->writer || !write) {
        /* Left on disk; dropped as expired at the next start. */
        free(write);
        return;
    }
    write->ops[0] = (store_op){.kind = STORE_OP_DEL_ENTRY, .ns_id = ns_id, .id = id};
    write->nops = 1;
    write->done = free_write;
    srv_writer_submit(s->writer, write);
}

#define SWEEP_INTERVAL_MS 100
#define SWEEP_SLICE 2000
#define SWEEP_MAX_MS 20

/* Periodic graph snapshot, so that a restart after a crash loads a recent
 * graph instead of rebuilding it: every --snapshot-interval seconds, and
 * once --snapshot-inserts entries entered the graphs since the last one
 * (checked on the sweeper's tick), which bounds what a crash throws away
 * when STOREs come fast. Written on a libuv pool thread, so the main loop
 * (accepting connections, the TTL sweeper, SIGHUP, metrics) never waits
 * for it; one at a time. The indexer pauses while a graph is written, so
 * a snapshot by count waits four times as long as the last one took
 * before it starts: writing never takes more than a fifth of the time. */
typedef struct snapshot_job {
    uv_work_t req;
    srv_server *s;
    uint64_t txn, t0;
    size_t written;
    int rc;
    char msg[512];
} snapshot_job;

static void snapshot_work(uv_work_t *req) {
    snapshot_job *job = req->data;
    job->rc = cache_snapshot_write(job->s->cache, job->s->cfg->data_dir, job->txn, 0,
                                   &job->written, job->msg, sizeof job->msg);
}

static void snapshot_done(uv_work_t *req, int status) {
    snapshot_job *job = req->data;
    srv_server *s = job->s;
    if (job->rc) {
        srv_log(SRV_LOG_WARN, "%s", job->msg);
    } else if (job->written) {
        atomic_fetch_add(&s->snapshots, 1);
        atomic_store(&s->last_snapshot_ms, srv_now_ms());
        srv_log(SRV_LOG_INFO, "graph snapshots of %zu entries written in %llu ms",
                job->written, (unsigned long long)(srv_now_ms() - job->t0));
    }
    uint64_t now = srv_now_ms();
    s->snapshot_next_ms = now + 4 * (now - job->t0);
    s->snapshot_running = 0;
    free(job);
}

static void snapshot_start(srv_server *s) {
    if (s->snapshot_running) return;
    snapshot_job *job = calloc(1, sizeof *job);
    if (!job) return;
    job->s = s;
    job->txn = store_last_txn(s->store);
    job->t0 = srv_now_ms();
    job->req.data = job;
    if (uv_queue_work(s->loop, &job->req, snapshot_work, snapshot_done) != 0) {
        free(job);
        return;
    }
    s->snapshot_running = 1;
}

static void on_snapshot(uv_timer_t *t) {
    snapshot_start(t->data);
}

static void on_sweep(uv_timer_t *t) {
    srv_server *s = t->data;
    uint64_t by_count = s->cfg->snapshot_inserts;
    if (by_count && !s->snapshot_running && srv_now_ms() >= s->snapshot_next_ms &&
        cache_graph_inserts_since_snapshot(s->cache) >= by_count)
        snapshot_start(s);
    cache_sweep_tick(s->cache, SWEEP_SLICE, SWEEP_MAX_MS);
    srv_leases_expire(s->leases, srv_now_ms());
}

/* Writes hit counters back in batches on a clean shutdown. */
typedef struct usage_batch {
    store *st;
    store_usage_rec recs[4096];
    store_op ops[4096];
    size_t n, written;
} usage_batch;

static int usage_flush(usage_batch *b) {
    int rc = b->n ? store_apply(b->st, b->ops, b->n) : 0;
    b->written += b->n;
    b->n = 0;
    return rc;
}

static int usage_add(void *ctx, const cache_usage *u) {
    usage_batch *b = ctx;
    srv_persist_usage_rec(u, &b->recs[b->n]);
    b->ops[b->n] = (store_op){.kind = STORE_OP_PUT_USAGE, .usage = &b->recs[b->n]};
    return ++b->n == 4096 ? usage_flush(b) : 0;
}

static void save_usage(srv_server *s) {
    usage_batch *b = calloc(1, sizeof *b);
    if (!b) return;
    b->st = s->store;
    int rc = cache_each_usage(s->cache, usage_add, b);
    if (rc == 0) rc = usage_flush(b);
    if (rc)
        srv_log(SRV_LOG_WARN, "hit counters not saved: %s", deja_strerror(rc));
    else
        srv_log(SRV_LOG_INFO, "saved hit counters of %zu entries", b->written);
    free(b);
}

static cache_config srv_cache_config(const srv_config *cfg, srv_server *s) {
    cache_config c = {
        .min_threshold = cfg->min_threshold,
        .dedup = cfg->dedup,
        .max_memory = cfg->max_memory,
        .max_entries = cfg->max_entries,
        .allow_faiss = cfg->allow_faiss,
        .max_namespaces = cfg->max_namespaces,
        .on_evict = on_evict,
        .evict_ctx = s,
        .vectors = srv_persist_vector_source(s),
        .default_ttl_s = cfg->default_ttl_s,
        .index_kind = (enum idx_kind)cfg->index_kind,
        .hnsw_m = cfg->hnsw_m,
        .hnsw_ef_construction = cfg->hnsw_ef_construction,
        .hnsw_ef_search = cfg->hnsw_ef_search,
        .quant = (enum idx_quant)cfg->quant,
        .indexer_threads =
            cfg->index_threads ? cfg->index_threads : uv_available_parallelism(),
    };
    return c;
}

/* Moves a damaged data folder aside (keeping it for inspection) and
 * creates an empty one in its place. */
static int reset_data_dir(const char *dir, int *lock_fd) {
    char aside[4096];
    snprintf(aside, sizeof aside, "%s.corrupt-%lld", dir, (long long)time(NULL));
    if (rename(dir, aside) != 0) {
        srv_log(SRV_LOG_ERROR, "cannot move %s aside: %s", dir, strerror(errno));
        return -1;
    }
    srv_log(SRV_LOG_WARN, "moved the damaged data folder to %s; starting empty", aside);
    close(*lock_fd);
    *lock_fd = lock_data_dir(dir);
    return *lock_fd < 0 ? -1 : 0;
}

typedef struct load_ctx {
    srv_server *s;
    int snapshots_done;
    size_t adopted;
    uint64_t adopt_ms;  /* reading the snapshots */
    size_t quarantined; /* namespaces quarantined */
    uint64_t unloaded;  /* entries left on disk: namespace quarantined or unreadable */
    uint32_t max_entry_ns_id; /* the largest namespace id any entry names */
} load_ctx;

/* A namespace that cannot be loaded is quarantined by the cache and
 * reported here; the start goes on with the others. */
static int load_ns(void *ctx, const store_ns_rec *ns) {
    load_ctx *l = ctx;
    int rc = srv_persist_load_ns(l->s->cache, ns);
    if (rc != DEJA_ERR_QUARANTINED) return rc;
    char why[512] = "";
    cache_ns_quarantined(l->s->cache, (const uint8_t *)ns->name, ns->name_len, why,
                         sizeof why);
    srv_log(SRV_LOG_ERROR,
            "%s; its entries stay on disk, unread (fix the cause and restart, or "
            "NS_DROP it to delete them)",
            why);
    l->quarantined++;
    return 0;
}

/* Graph snapshots are adopted once every namespace exists and before the
 * first entry arrives, so entries already in a graph skip insertion. */
static void adopt_snapshots(load_ctx *l) {
    if (l->snapshots_done) return;
    l->snapshots_done = 1;
    char msg[512] = "";
    uint64_t t0 = srv_now_ms();
    cache_snapshot_adopt(l->s->cache, l->s->cfg->data_dir, msg, sizeof msg, &l->adopted);
    l->adopt_ms = srv_now_ms() - t0;
    if (msg[0]) srv_log(SRV_LOG_WARN, "%s", msg);
}

static int load_wants_vector(void *ctx, uint32_t ns_id, uint64_t id) {
    load_ctx *l = ctx;
    adopt_snapshots(l);
    return cache_load_wants_vector(l->s->cache, ns_id, id);
}

static int load_entry(void *ctx, const store_entry_rec *e) {
    load_ctx *l = ctx;
    adopt_snapshots(l);
    if (e->ns_id > l->max_entry_ns_id) l->max_entry_ns_id = e->ns_id;
    int rc = srv_persist_load_entry(l->s->cache, e);
    /* An entry of a quarantined namespace, or of one whose record is
     * damaged, cannot be served; it stays on disk. */
    if (rc == DEJA_ERR_NOT_FOUND || rc == DEJA_ERR_DIM_MISMATCH) {
        l->unloaded++;
        return 0;
    }
    return rc;
}

/* The cache's clock: wall time (expiry must mean the same after a
 * restart), shifted by --clock-offset for tests. */
static uint64_t cache_clock(void *ctx) {
    const srv_config *cfg = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u +
           (uint64_t)cfg->clock_offset_ms;
}

/* Opens the store and loads every live entry into the cache. */
static int open_and_load(srv_server *s, int *lock_fd) {
    const srv_config *cfg = s->cfg;
    store_config scfg = {.dir = cfg->data_dir,
                         .max_disk = cfg->max_disk,
                         .fsync = (enum store_fsync)cfg->fsync_mode};
    char msg[512] = "";
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t t0 = srv_now_ms();
        int rc = store_open(&scfg, &s->store, msg, sizeof msg);
        store_load_stats st;
        load_ctx lctx = {.s = s};
        if (rc == 0) {
            store_load_fns fns = {.ns = load_ns,
                                  .want_vector = load_wants_vector,
                                  .entry = load_entry,
                                  .ctx = &lctx};
            rc = store_load(s->store, cache_clock((void *)cfg), &fns, &st, msg,
                            sizeof msg);
            if (rc) {
                store_close(s->store);
                s->store = NULL;
            }
        }
        if (rc == 0) {
            size_t stale = 0;
            cache_snapshot_reconcile(s->cache, &stale);
            if (lctx.adopted && lctx.adopted == st.entries && stale == 0)
                cache_snapshot_loaded_current(s->cache);
            if (lctx.adopted)
                srv_log(
                    SRV_LOG_INFO,
                    "graph snapshots restored %zu entries in %llu ms (%zu deleted since)",
                    lctx.adopted, (unsigned long long)lctx.adopt_ms, stale);
            /* A new namespace must not take the id of entries left on
             * disk by one whose record could not be read. */
            uint32_t max_ns_id =
                st.max_ns_id > lctx.max_entry_ns_id ? st.max_ns_id : lctx.max_entry_ns_id;
            cache_set_next_ids(s->cache, st.max_id + 1, max_ns_id + 1);
            if (lctx.quarantined || lctx.unloaded)
                srv_log(SRV_LOG_WARN,
                        "%zu namespaces quarantined; %llu entries left on disk unloaded",
                        lctx.quarantined, (unsigned long long)lctx.unloaded);
            srv_log(SRV_LOG_INFO,
                    "loaded %llu entries in %llu namespaces in %llu ms "
                    "(%llu expired dropped, %llu damaged skipped)",
                    (unsigned long long)st.entries, (unsigned long long)st.namespaces,
                    (unsigned long long)(srv_now_ms() - t0),
                    (unsigned long long)st.expired, (unsigned long long)st.damaged);
            return 0;
        }
        srv_log(SRV_LOG_ERROR, "%s", msg[0] ? msg : deja_strerror(rc));
        if (rc != DEJA_ERR_CORRUPT || !cfg->on_corrupt_reset || attempt > 0) {
            if (rc == DEJA_ERR_CORRUPT)
                srv_log(SRV_LOG_ERROR, "the data folder is damaged; start with "
                                       "--on-corrupt=reset to move it aside and "
                                       "start empty");
            return -1;
        }
        /* The cache may hold part of the damaged data: start from nothing. */
        cache_destroy(s->cache);
        cache_config ccfg = srv_cache_config(cfg, s);
        if (cache_create(&ccfg, &s->cache) != 0 || reset_data_dir(cfg->data_dir, lock_fd))
            return -1;
        cache_set_clock(s->cache, cache_clock, (void *)cfg);
    }
    return -1;
}

int srv_run(srv_config *cfg, int argc, char **argv) {
    srv_server s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    s.argc = argc;
    s.argv = argv;
    s.start_ms = srv_now_ms();
    signal(SIGPIPE, SIG_IGN);
    idx_simd_init();
    srv_log(SRV_LOG_INFO, "dejad %s starting (simd: %s)", DEJA_VERSION, idx_simd_name());

    s.auth_required = cfg->auth_token != NULL || cfg->tokens_file != NULL;
    if (cfg->protected_mode && !s.auth_required && !is_loopback(cfg->host)) {
        srv_log(SRV_LOG_ERROR,
                "protected mode: refusing to listen on %s without authentication; "
                "set --auth-token or --tokens-file, listen on a loopback address, or "
                "pass --protected-mode no",
                cfg->host);
        return 1;
    }
    pthread_mutex_init(&s.tokens_mu, NULL);
    if (load_tokens(cfg, &s.tokens) != 0 || srv_auth_guard_create(&s.guard) != 0 ||
        srv_leases_create(&s, cfg->max_leases, cfg->max_lease_waiters, &s.leases) != 0) {
        srv_tokens_destroy(s.tokens);
        return 1;
    }
    if (cfg->tokens_file)
        srv_log(SRV_LOG_INFO, "%zu tokens from %s", srv_tokens_count(s.tokens),
                cfg->tokens_file);
    raise_fd_limit(cfg);

    int lock_fd = lock_data_dir(cfg->data_dir);
    if (lock_fd < 0) {
        srv_tokens_destroy(s.tokens);
        srv_auth_guard_destroy(s.guard);
        srv_leases_destroy(s.leases);
        return 1;
    }

    cache_config ccfg = srv_cache_config(cfg, &s);
    if (cache_create(&ccfg, &s.cache) != 0) {
        close(lock_fd);
        srv_tokens_destroy(s.tokens);
        srv_auth_guard_destroy(s.guard);
        srv_leases_destroy(s.leases);
        return 1;
    }
    cache_set_clock(s.cache, cache_clock, (void *)cfg);
    srv_writer_config wcfg = {.fsync = (enum store_fsync)cfg->fsync_mode,
                              .sync_interval_ms = cfg->fsync_interval_ms,
                              .max_unindexed = cfg->max_unindexed};
    if (open_and_load(&s, &lock_fd) != 0 ||
        srv_writer_start(&s, s.store, &wcfg, &s.writer) != 0) {
        store_close(s.store);
        cache_destroy(s.cache);
        if (lock_fd >= 0) close(lock_fd);
        srv_tokens_destroy(s.tokens);
        srv_auth_guard_destroy(s.guard);
        srv_leases_destroy(s.leases);
        return 1;
    }

    s.nworkers = cfg->threads ? cfg->threads : uv_available_parallelism();
    s.workers = calloc(s.nworkers, sizeof *s.workers);
    int exit_code = 1;
    unsigned started = 0;
    if (!s.workers) goto out;
    for (; started < s.nworkers; started++) {
        if (worker_init(&s, &s.workers[started], started) != 0) goto out;
        if (uv_thread_create(&s.workers[started].thread, worker_main,
                             &s.workers[started]) != 0) {
            worker_free(&s.workers[started]);
            goto out;
        }
    }

    s.loop = uv_default_loop();
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = s.sigterm.data = &s;
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_init(s.loop, &s.sighup);
    s.sighup.data = &s;
    uv_signal_start(&s.sighup, on_sighup, SIGHUP);

    uv_timer_init(s.loop, &s.sweep_timer);
    s.sweep_timer.data = &s;
    uv_timer_start(&s.sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_timer_init(s.loop, &s.snapshot_timer);
    s.snapshot_timer.data = &s;
    if (cfg->snapshot_interval_s)
        uv_timer_start(&s.snapshot_timer, on_snapshot, cfg->snapshot_interval_s * 1000ull,
                       cfg->snapshot_interval_s * 1000ull);
    atomic_store(&s.last_snapshot_ms, srv_now_ms());
    if (listen_unix(&s) == 0 && listen_tcp(&s) == 0 && srv_metrics_listen(&s) == 0) {
        atomic_store(&s.ready, 1);
        srv_log(SRV_LOG_INFO, "ready: %u worker threads, data in %s", s.nworkers,
                cfg->data_dir);
        /* Type=notify: the data is loaded and the listeners are open. */
        sd_notify(0, "READY=1\nSTATUS=serving");
        exit_code = 0;
    } else {
        begin_shutdown(&s);
    }
    uv_run(s.loop, UV_RUN_DEFAULT);
    uv_loop_close(s.loop);

out:
    /* Order: waiting lookups are answered (leases survive nothing), the
     * workers stop reading, the commit thread commits what is queued and
     * hands the replies back, then the workers finish. */
    if (s.leases) srv_leases_close(s.leases);
    for (unsigned i = 0; i < started; i++) {
        srv_worker *w = &s.workers[i];
        pthread_mutex_lock(&w->mu);
        w->stopping = 1;
        pthread_mutex_unlock(&w->mu);
        uv_async_send(&w->wake);
    }
    srv_writer_stop(s.writer);
    for (unsigned i = 0; i < started; i++) {
        uv_thread_join(&s.workers[i].thread);
        worker_free(&s.workers[i]);
    }
    free(s.workers);
    if (s.unix_path[0]) unlink(s.unix_path);
    if (exit_code == 0) {
        save_usage(&s);
        size_t written = 0;
        char msg[512] = "";
        uint64_t t0 = srv_now_ms();
        int rc = cache_snapshot_write(s.cache, cfg->data_dir, store_last_txn(s.store), 1,
                                      &written, msg, sizeof msg);
        if (rc)
            srv_log(SRV_LOG_WARN, "%s", msg);
        else if (written)
            srv_log(SRV_LOG_INFO, "graph snapshots of %zu entries written in %llu ms",
                    written, (unsigned long long)(srv_now_ms() - t0));
        else
            srv_log(SRV_LOG_INFO, "graph snapshots: nothing new to write");
    }
    store_close(s.store);
    cache_destroy(s.cache);
    close(lock_fd);
    srv_tokens_destroy(s.tokens);
    srv_auth_guard_destroy(s.guard);
    srv_leases_destroy(s.leases);
    pthread_mutex_destroy(&s.tokens_mu);
    srv_log(SRV_LOG_INFO, "stopped");
    return exit_code;
}
