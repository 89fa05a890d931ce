/* idx-topk.c: the bounded min-heap that every search keeps its best k hits
 * in. It lives in the caller's output array, so a search allocates
 * nothing. */
#include "idx-private.h"

static int hit_better(const idx_hit *a, const idx_hit *b) {
    return idx_hit_better(a->score, a->label, b->score, b->label);
}

/* Restores the heap below position i, within the first n hits: the worst
 * hit of every subtree is at its root. */
static void sift_down(idx_hit *h, uint32_t n, uint32_t i) {
    idx_hit moving = h[i];
    for (;;) {
        uint32_t worst = i;
        const idx_hit *worst_hit = &moving;
        uint32_t l = 2 * i + 1, r = l + 1;
        if (l < n && hit_better(worst_hit, &h[l])) {
            worst = l;
            worst_hit = &h[l];
        }
        if (r < n && hit_better(worst_hit, &h[r])) worst = r;
        if (worst == i) break;
        h[i] = h[worst];
        i = worst;
    }
    h[i] = moving;
}

void idx_topk_push(idx_topk *t, float score, uint64_t label) {
    idx_hit hit = {label, score};
    if (t->n < t->k) {
        /* Sift up: a better hit never sits above a worse one. */
        uint32_t i = t->n++;
        while (i > 0) {
            uint32_t parent = (i - 1) / 2;
            if (!hit_better(&t->hits[parent], &hit)) break;
            t->hits[i] = t->hits[parent];
            i = parent;
        }
        t->hits[i] = hit;
    } else {
        t->hits[0] = hit;
        sift_down(t->hits, t->n, 0);
    }
}

void idx_topk_sort(idx_topk *t) {
    /* Heap sort: moving the worst hit to the end of the shrinking heap
     * leaves the array ordered best first. */
    for (uint32_t end = t->n; end > 1; end--) {
        idx_hit worst = t->hits[0];
        t->hits[0] = t->hits[end - 1];
        t->hits[end - 1] = worst;
        sift_down(t->hits, end - 1, 0);
    }
}
