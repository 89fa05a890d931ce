/* test-server-u64map.c: the entry-id map behaves like a reference map
 * under heavy insert/delete churn (backward-shift deletion must never lose
 * a key that shares a probe run with a deleted one). */
#include "deja-errors.h"
#include "harness.h"
#include "u64map.h"

#define KEYS 20000

static void test_churn_matches_a_reference_array(void) {
    static void *ref[KEYS + 1];
    memset(ref, 0, sizeof ref);
    u64map m;
    u64map_init(&m);
    uint64_t x = 12345;
    for (int step = 0; step < 200000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t key = 1 + x % KEYS;
        if ((x >> 32) % 3 == 0) {
            ASSERT_TRUE(u64map_del(&m, key) == ref[key]);
            ref[key] = NULL;
        } else {
            void *val = (void *)(uintptr_t)(step + 1);
            ASSERT_OK(u64map_put(&m, key, val));
            ref[key] = val;
        }
    }
    size_t live = 0;
    for (uint64_t k = 1; k <= KEYS; k++) {
        ASSERT_TRUE(u64map_get(&m, k) == ref[k]);
        live += ref[k] != NULL;
    }
    ASSERT_EQ(m.count, live);
    size_t pos = 0, seen = 0;
    uint64_t key;
    void *val;
    while (u64map_next(&m, &pos, &key, &val)) {
        ASSERT_TRUE(ref[key] == val);
        seen++;
    }
    ASSERT_EQ(seen, live);
    u64map_close(&m);
}

static void test_key_zero_is_refused(void) {
    u64map m;
    u64map_init(&m);
    ASSERT_EQ(u64map_put(&m, 0, &m), DEJA_ERR_INVALID_ARG);
    ASSERT_TRUE(u64map_get(&m, 0) == NULL);
    u64map_close(&m);
}

int main(void) {
    RUN(test_churn_matches_a_reference_array);
    RUN(test_key_zero_is_refused);
    return harness_result();
}
