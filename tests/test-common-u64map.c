/* test-common-u64map.c: the one u64 map (entry ids in the cache, labels in
 * the index) behaves like a reference map under heavy insert/delete churn
 * (backward-shift deletion must never lose a key that shares a probe run
 * with a deleted one), takes any key, and keeps what reserve promises. */
#include "deja-errors.h"
#include "deja-u64map.h"
#include "harness.h"

#define KEYS 20000

static uint64_t next_rand(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_churn_matches_a_reference_array(void) {
    static uint64_t ref[KEYS];
    for (int k = 0; k < KEYS; k++)
        ref[k] = DEJA_U64MAP_NONE;
    deja_u64map m;
    deja_u64map_init(&m);
    uint64_t x = 12345;
    for (uint64_t step = 0; step < 200000; step++) {
        uint64_t key = next_rand(&x) % KEYS; /* key 0 included */
        if ((x >> 32) % 3 == 0) {
            ASSERT_U64_EQ(deja_u64map_del(&m, key), ref[key]);
            ref[key] = DEJA_U64MAP_NONE;
        } else {
            ASSERT_OK(deja_u64map_put(&m, key, step));
            ref[key] = step;
        }
    }
    size_t live = 0;
    for (uint64_t k = 0; k < KEYS; k++) {
        ASSERT_U64_EQ(deja_u64map_get(&m, k), ref[k]);
        live += ref[k] != DEJA_U64MAP_NONE;
    }
    ASSERT_EQ(m.count, live);
    size_t pos = 0, seen = 0;
    uint64_t key, val;
    while (deja_u64map_next(&m, &pos, &key, &val)) {
        ASSERT_U64_EQ(ref[key], val);
        seen++;
    }
    ASSERT_EQ(seen, live);
    /* Never fuller than 70%: probe runs stay short. */
    ASSERT_LE(m.count * 10, m.cap * 7);
    deja_u64map_close(&m);
}

static void test_every_key_is_allowed_but_the_free_marker_is_not_a_value(void) {
    deja_u64map m;
    deja_u64map_init(&m);
    ASSERT_OK(deja_u64map_put(&m, 0, 7));
    ASSERT_OK(deja_u64map_put(&m, UINT64_MAX, 8));
    ASSERT_U64_EQ(deja_u64map_get(&m, 0), 7);
    ASSERT_U64_EQ(deja_u64map_get(&m, UINT64_MAX), 8);
    ASSERT_EQ(deja_u64map_put(&m, 1, DEJA_U64MAP_NONE), DEJA_ERR_INVALID_ARG);
    ASSERT_U64_EQ(deja_u64map_get(&m, 1), DEJA_U64MAP_NONE);
    ASSERT_EQ(m.count, 2);
    ASSERT_U64_EQ(deja_u64map_del(&m, 0), 7);
    ASSERT_U64_EQ(deja_u64map_del(&m, 0), DEJA_U64MAP_NONE);
    deja_u64map_close(&m);
}

static void test_after_a_reserve_new_keys_do_not_move_the_table(void) {
    deja_u64map m;
    deja_u64map_init(&m);
    ASSERT_OK(deja_u64map_reserve(&m, 1000));
    deja_u64map_slot *slots = m.slots;
    size_t bytes = deja_u64map_memory(&m);
    ASSERT_GE(bytes, 1000 * sizeof(deja_u64map_slot));
    for (uint64_t k = 0; k < 1000; k++)
        ASSERT_OK(deja_u64map_put(&m, k * 977, k));
    ASSERT_TRUE(m.slots == slots); /* no growth: puts cannot fail */
    ASSERT_EQ(deja_u64map_memory(&m), bytes);
    /* It grows when a put would make it more than 70% full. */
    size_t cap = m.cap;
    uint64_t k = 1u << 30;
    while ((m.count + 1) * 10 <= cap * 7)
        ASSERT_OK(deja_u64map_put(&m, k++, 1));
    ASSERT_EQ(m.cap, cap);
    ASSERT_OK(deja_u64map_put(&m, k, 1));
    ASSERT_EQ(m.cap, 2 * cap);
    for (uint64_t k = 0; k < 1000; k++)
        ASSERT_U64_EQ(deja_u64map_get(&m, k * 977), k);
    deja_u64map_close(&m);
}

int main(void) {
    RUN(test_churn_matches_a_reference_array);
    RUN(test_every_key_is_allowed_but_the_free_marker_is_not_a_value);
    RUN(test_after_a_reserve_new_keys_do_not_move_the_table);
    return harness_result();
}
