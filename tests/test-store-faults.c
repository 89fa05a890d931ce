/* test-store-faults.c: dejad under storage faults, from the outside.
 *
 * A full data file makes STOREs fail with STORAGE_FULL while lookups go
 * on; a damaged record is skipped, never served; a damaged data file stops
 * the server with an error, or with --on-corrupt=reset is moved aside and
 * the server starts empty. Never a crash. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "deja.h"
#include "harness.h"
#include "support/spawn.h"

#define DIM 16

static deja_client *connect_to(const test_server *s) {
    deja_client *c = NULL;
    ASSERT_OK(deja_connect(s->addr, NULL, &c));
    return c;
}

static void response_of(int i, char *buf, size_t cap) {
    snprintf(buf, cap, "fault-test answer %05d", i);
}

static void store_n(deja_client *c, int n) {
    for (int i = 0; i < n; i++) {
        float v[DIM];
        char resp[64];
        test_unit_vector((uint64_t)i, v, DIM);
        response_of(i, resp, sizeof resp);
        deja_store_req req = {.ns = "f",
                              .vector = v,
                              .dim = DIM,
                              .response = resp,
                              .response_len = strlen(resp)};
        ASSERT_OK(deja_store(c, &req, NULL));
    }
}

static int lookup_hits(deja_client *c, int i, int *exact) {
    float v[DIM];
    char want[64];
    test_unit_vector((uint64_t)i, v, DIM);
    response_of(i, want, sizeof want);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "f", v, DIM, 0.999f, 1, 0, &r));
    int hit = r->count == 1;
    *exact = hit && r->hits[0].response_len == strlen(want) &&
             memcmp(r->hits[0].response, want, strlen(want)) == 0;
    deja_result_free(r);
    return hit;
}

static void test_a_full_data_file_refuses_stores_and_keeps_serving(void) {
    test_server s;
    const char *args[] = {"--max-disk", "1048576", "--fsync", "batch", NULL};
    ASSERT_OK(test_server_start(&s, args));
    deja_client *c = connect_to(&s);
    static char big[20000];
    memset(big, 'q', sizeof big);
    int stored = 0, rc = 0;
    uint64_t first = 0;
    for (int i = 0; i < 500; i++) {
        float v[DIM];
        test_unit_vector(7000u + (uint64_t)i, v, DIM);
        deja_store_req req = {.ns = "full",
                              .vector = v,
                              .dim = DIM,
                              .response = big,
                              .response_len = sizeof big};
        uint64_t id;
        rc = deja_store(c, &req, &id);
        if (rc) break;
        if (!first) first = id;
        stored++;
    }
    ASSERT_EQ(rc, DEJA_ERR_STORAGE_FULL);
    ASSERT_GT(stored, 10);
    ASSERT_TRUE(strstr(deja_last_error(c), "full") != NULL);
    /* Lookups and deletes still work on the same connection. */
    float v[DIM];
    test_unit_vector(7000u, v, DIM);
    deja_result *r = NULL;
    ASSERT_OK(deja_lookup(c, "full", v, DIM, 0.999f, 1, 0, &r));
    ASSERT_EQ(r->count, 1);
    ASSERT_EQ(r->hits[0].response_len, sizeof big);
    deja_result_free(r);
    ASSERT_OK(deja_delete(c, "full", first));
    ASSERT_OK(deja_ping(c));
    deja_close(c);
    ASSERT_EQ(test_server_stop(&s), 0);
}

/* Flips one byte of the first occurrence of needle in DIR/data.mdb. */
static void flip_in_data_file(const char *dir, const char *needle) {
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    ASSERT_GE(fd, 0);
    struct stat sb;
    ASSERT_OK(fstat(fd, &sb));
    char *buf = malloc((size_t)sb.st_size);
    ASSERT_EQ(pread(fd, buf, (size_t)sb.st_size, 0), sb.st_size);
    char *at = memmem(buf, (size_t)sb.st_size, needle, strlen(needle));
    ASSERT_TRUE(at != NULL);
    char flipped = (char)(at[strlen(needle) - 1] ^ 0x01);
    ASSERT_EQ(pwrite(fd, &flipped, 1, (at - buf) + (off_t)strlen(needle) - 1), 1);
    free(buf);
    close(fd);
}

static void test_a_damaged_record_is_skipped_and_the_rest_served(void) {
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    deja_client *c = connect_to(&s);
    store_n(c, 300);
    deja_close(c);
    ASSERT_EQ(test_server_shutdown(&s), 0);

    flip_in_data_file(s.dir, "fault-test answer 00123");
    ASSERT_OK(test_server_restart(&s, NULL));
    c = connect_to(&s);
    int served = 0;
    for (int i = 0; i < 300; i++) {
        int exact;
        if (lookup_hits(c, i, &exact)) {
            ASSERT_TRUE(exact); /* never a damaged byte */
            served++;
        } else {
            ASSERT_EQ(i, 123);
        }
    }
    ASSERT_EQ(served, 299);
    deja_close(c);
    ASSERT_EQ(test_server_stop(&s), 0);
}

static void overwrite_meta_pages(const char *dir) {
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    ASSERT_GE(fd, 0);
    char junk[8192];
    memset(junk, 0xA5, sizeof junk);
    ASSERT_EQ(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    close(fd);
}

static int count_aside(const char *dir) {
    char parent[300];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    const char *base = slash + 1;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.corrupt-", base);
    *slash = 0;
    DIR *d = opendir(parent);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) {
            n++;
            char cmd[700];
            snprintf(cmd, sizeof cmd, "rm -rf '%s/%s'", parent, de->d_name);
            if (system(cmd) != 0) n = -100;
        }
    if (d) closedir(d);
    return n;
}

static void test_a_damaged_data_file_stops_the_server_or_is_reset_on_request(void) {
    test_server s;
    ASSERT_OK(test_server_start(&s, NULL));
    deja_client *c = connect_to(&s);
    store_n(c, 50);
    deja_close(c);
    ASSERT_EQ(test_server_shutdown(&s), 0);
    overwrite_meta_pages(s.dir);

    /* By default: a clear error and a non-zero exit, not a crash loop. */
    ASSERT_EQ(test_server_restart(&s, NULL), -1);

    /* With --on-corrupt=reset: the folder is moved aside, start empty. */
    const char *reset[] = {"--on-corrupt", "reset", NULL};
    ASSERT_OK(test_server_restart(&s, reset));
    c = connect_to(&s);
    int exact;
    ASSERT_EQ(lookup_hits(c, 1, &exact), 0);
    store_n(c, 3);
    ASSERT_EQ(lookup_hits(c, 2, &exact), 1);
    deja_close(c);
    char dir[256];
    snprintf(dir, sizeof dir, "%s", s.dir);
    ASSERT_EQ(test_server_stop(&s), 0);
    ASSERT_EQ(count_aside(dir), 1);
}

int main(void) {
    RUN(test_a_full_data_file_refuses_stores_and_keeps_serving);
    RUN(test_a_damaged_record_is_skipped_and_the_rest_served);
    RUN(test_a_damaged_data_file_stops_the_server_or_is_reset_on_request);
    return harness_result();
}
