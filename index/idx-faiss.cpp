/* idx-faiss.cpp: the shim between deja's C index module and FAISS's C++
 * API -- the only C++ in deja (see idx-faiss-shim.h for the contract).
 *
 * Every entry point runs its body inside guarded(), which turns any C++
 * exception into a DEJA_ERR_* code, so no exception ever unwinds into C
 * frames. (FAISS_ASSERT failures abort instead of throwing; the C side
 * avoids them by checking labels and duplicates before calling here.)
 *
 * Labels: FAISS keeps 64-bit ids natively only in its IVF indexes, so an
 * index holding an IVF gets our labels directly, with a hash-table direct
 * map for get and remove. Every other index is wrapped in IndexIDMap2,
 * whose remove_ids relies on the sub-index compacting its rows the way
 * IndexFlatCodes does (Flat, SQ, PQ, RQ...), so only those are accepted.
 * HNSW, NSG, refined and fast-scan indexes cannot remove in FAISS 1.7.3
 * and are refused at creation. */
#include <faiss/IVFlib.h>
#include <faiss/IndexAdditiveQuantizer.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFAdditiveQuantizer.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_factory.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>

#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <unordered_map>

#include "deja-errors.h"
#include "idx-faiss-shim.h"

struct idx_faiss_shim {
    faiss::Index *index = nullptr;       /* owned; the one we call */
    faiss::IndexIDMap2 *idmap = nullptr; /* == index when wrapped */
    faiss::IndexIVF *ivf = nullptr;      /* inside index, if any */
    faiss::IndexHNSW *hnsw = nullptr;    /* baseline mode: the HNSW inside */
    bool baseline = false;               /* no removal, no label lookups */

    ~idx_faiss_shim() { delete index; }
};

/* FAISS messages read "Error in <function> at <file>:<line>: <reason>";
 * the reason alone is what a person configuring deja needs. */
static const char *faiss_reason(const char *what) {
    if (std::strncmp(what, "Error in ", 9) != 0) return what;
    const char *at = std::strstr(what, " at ");
    const char *colon = at ? std::strstr(at + 4, ": ") : nullptr;
    return colon ? colon + 2 : what;
}

static void put_msg(char *msg, size_t cap, const char *text) {
    if (msg && cap > 0) std::snprintf(msg, cap, "%s", text);
}

/* Runs body, converting exceptions: a FaissException becomes faiss_code
 * (INVALID_ARG where it can only come from what the caller asked for). */
template <typename Body>
static int guarded(Body &&body, int faiss_code = DEJA_ERR_INTERNAL, char *msg = nullptr,
                   size_t msg_cap = 0) noexcept {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        put_msg(msg, msg_cap, "out of memory");
        return DEJA_ERR_NOMEM;
    } catch (const faiss::FaissException &e) {
        put_msg(msg, msg_cap, faiss_reason(e.what()));
        return faiss_code;
    } catch (const std::exception &e) {
        put_msg(msg, msg_cap, e.what());
        return DEJA_ERR_INTERNAL;
    } catch (...) {
        put_msg(msg, msg_cap, "unknown C++ exception");
        return DEJA_ERR_INTERNAL;
    }
}

/* FAISS opens an OpenMP parallel region in most calls (IVF's add always),
 * which pays off for batches but not for deja's one-vector requests:
 * there, waking the team and waiting at its barrier costs more than the
 * work, and on a busy machine the team's spinning threads fight the
 * server's own threads and OpenBLAS's (measured: 9 s instead of 30 ms
 * for this module's test on two cores). Calls on fewer rows than this
 * run on the calling thread alone; 20 is also where FAISS itself
 * switches from its own loops to BLAS. */
#define SHIM_SERIAL_BELOW 20

/* Limits OpenMP to one thread for the calling thread while it lives.
 * omp_set_num_threads changes only the caller's own setting, so
 * concurrent searches on other threads are unaffected. */
class serial_scope {
  public:
    explicit serial_scope(size_t rows)
        : saved_(rows < SHIM_SERIAL_BELOW ? omp_get_max_threads() : 0) {
        if (saved_) omp_set_num_threads(1);
    }
    ~serial_scope() {
        if (saved_) omp_set_num_threads(saved_);
    }
    serial_scope(const serial_scope &) = delete;
    serial_scope &operator=(const serial_scope &) = delete;

  private:
    int saved_;
};

/* The flat-code storage under optional pre-transforms, or NULL. */
static faiss::IndexFlatCodes *flat_codes_of(faiss::Index *ix) {
    while (auto *pt = dynamic_cast<faiss::IndexPreTransform *>(ix))
        ix = pt->index;
    return dynamic_cast<faiss::IndexFlatCodes *>(ix);
}

/* The creation steps, which may throw; a refusal writes its message
 * here, an exception gets its message from guarded(). */
/* Baseline mode (benchmarks): any factory type, removal or not, wrapped
 * in an IndexIDMap for our labels; an HNSW gets efConstruction. */
static int create_baseline(std::unique_ptr<faiss::Index> made, uint32_t ef_construction,
                           idx_faiss_shim **out) {
    std::unique_ptr<idx_faiss_shim> s(new idx_faiss_shim);
    s->baseline = true;
    s->hnsw = dynamic_cast<faiss::IndexHNSW *>(made.get());
    if (s->hnsw && ef_construction) s->hnsw->hnsw.efConstruction = (int)ef_construction;
    std::unique_ptr<faiss::IndexIDMap> map(new faiss::IndexIDMap(made.get()));
    map->own_fields = true;
    made.release();
    s->index = map.release();
    *out = s.release();
    return 0;
}

static int create_shim(uint32_t dim, const char *factory, size_t capacity_hint,
                       int baseline, uint32_t ef_construction, idx_faiss_shim **out,
                       char *msg, size_t msg_cap) {
    std::unique_ptr<faiss::Index> made(
        faiss::index_factory((int)dim, factory, faiss::METRIC_INNER_PRODUCT));
    if (baseline) return create_baseline(std::move(made), ef_construction, out);

    /* An "IDMap," or "IDMap2," prefix is redundant: we choose the label
     * scheme ourselves, so unwrap it (the wrapper no longer owns the
     * sub-index, which moves into `made`). */
    if (auto *wrapper = dynamic_cast<faiss::IndexIDMap *>(made.get())) {
        faiss::Index *inner = wrapper->index;
        wrapper->own_fields = false;
        made.reset(inner);
    }

    /* Probe removal on the empty index: a type that throws here would
     * throw on the first eviction, so refuse it now (HNSW in 1.7.3). */
    try {
        faiss::Index::idx_t absent = INT64_MAX;
        faiss::IDSelectorArray sel(1, &absent);
        made->remove_ids(sel);
    } catch (const faiss::FaissException &e) {
        char text[512];
        std::snprintf(text, sizeof text,
                      "FAISS index \"%s\" cannot remove vectors (FAISS: %s); "
                      "deja needs removal for eviction",
                      factory, faiss_reason(e.what()));
        put_msg(msg, msg_cap, text);
        return DEJA_ERR_INVALID_ARG;
    }

    std::unique_ptr<idx_faiss_shim> s(new idx_faiss_shim);
    s->ivf = faiss::ivflib::try_extract_index_ivf(made.get());
    if (s->ivf) {
        /* Removal by label moves the last entry of a list into the hole,
         * which only the plain array lists do right (the fast-scan IVFs'
         * block lists lose entries and labels). */
        if (!dynamic_cast<faiss::ArrayInvertedLists *>(s->ivf->invlists)) {
            char text[256];
            std::snprintf(text, sizeof text,
                          "FAISS index \"%s\" keeps its inverted lists in a "
                          "layout that cannot remove vectors reliably; use a "
                          "non-fast-scan IVF",
                          factory);
            put_msg(msg, msg_cap, text);
            return DEJA_ERR_INVALID_ARG;
        }
        s->ivf->set_direct_map_type(faiss::DirectMap::Hashtable);
        s->index = made.release();
    } else {
        faiss::IndexFlatCodes *codes = flat_codes_of(made.get());
        if (!codes) {
            char text[256];
            std::snprintf(text, sizeof text,
                          "FAISS index \"%s\" cannot keep deja's labels "
                          "through removals: only IVF and flat-code indexes "
                          "(Flat, SQ8, PQ...) can",
                          factory);
            put_msg(msg, msg_cap, text);
            return DEJA_ERR_INVALID_ARG;
        }
        if (capacity_hint) codes->codes.reserve(capacity_hint * codes->code_size);
        std::unique_ptr<faiss::IndexIDMap2> map(new faiss::IndexIDMap2(made.get()));
        map->own_fields = true;
        made.release();
        if (capacity_hint) {
            map->id_map.reserve(capacity_hint);
            map->rev_map.reserve(capacity_hint);
        }
        s->idmap = map.get();
        s->index = map.release();
    }

    *out = s.release();
    return 0;
}

extern "C" int idx_faiss_shim_create(uint32_t dim, const char *factory,
                                     size_t capacity_hint, int baseline,
                                     uint32_t ef_construction, idx_faiss_shim **out,
                                     char *msg, size_t msg_cap) {
    *out = nullptr;
    /* A FAISS error while building can only come from the factory string
     * or the dimension (e.g. PQ8 on dim 30): the caller's mistake. */
    return guarded(
        [&] {
            return create_shim(dim, factory, capacity_hint, baseline, ef_construction, out,
                               msg, msg_cap);
        },
        DEJA_ERR_INVALID_ARG, msg, msg_cap);
}

extern "C" void idx_faiss_shim_destroy(idx_faiss_shim *s) {
    /* FAISS destructors do not throw; the guard is for form's sake. */
    guarded([&] {
        delete s;
        return 0;
    });
}

extern "C" int idx_faiss_shim_is_trained(const idx_faiss_shim *s) {
    return s->index->is_trained ? 1 : 0;
}

/* The most centroids of any sub-quantizer codebook (PQ, RQ, LSQ) of a
 * flat-code or IVF index; 0 for codecs without k-means (Flat, SQ). */
static size_t codebook_centroids(const faiss::Index *ix) {
    if (auto *pq = dynamic_cast<const faiss::IndexPQ *>(ix)) return pq->pq.ksub;
    if (auto *pq = dynamic_cast<const faiss::IndexIVFPQ *>(ix)) return pq->pq.ksub;
    const faiss::AdditiveQuantizer *aq = nullptr;
    if (auto *a = dynamic_cast<const faiss::IndexAdditiveQuantizer *>(ix)) aq = a->aq;
    if (auto *a = dynamic_cast<const faiss::IndexIVFAdditiveQuantizer *>(ix)) aq = a->aq;
    size_t most = 0;
    if (aq)
        for (size_t bits : aq->nbits)
            most = std::max(most, (size_t)1 << bits);
    return most;
}

extern "C" size_t idx_faiss_shim_train_size(const idx_faiss_shim *s) {
    if (s->index->is_trained) return 0;
    /* 39 points per centroid is the least FAISS's k-means accepts without
     * warning; PQ's sub-quantizers have ksub centroids each. */
    size_t centroids = 0;
    if (s->ivf)
        centroids = std::max(s->ivf->nlist, codebook_centroids(s->ivf));
    else
        centroids = codebook_centroids(flat_codes_of(s->idmap->index));
    return std::max<size_t>(1000, 39 * centroids);
}

extern "C" int idx_faiss_shim_train(idx_faiss_shim *s, size_t n, const float *x) {
    return guarded(
        [&] {
            s->index->train((faiss::Index::idx_t)n, x);
            return 0;
        },
        DEJA_ERR_INVALID_ARG);
}

extern "C" int idx_faiss_shim_add(idx_faiss_shim *s, size_t n, const float *x,
                                  const int64_t *labels) {
    return guarded([&] {
        serial_scope scope(n);
        s->index->add_with_ids((faiss::Index::idx_t)n, x, labels);
        return 0;
    });
}

extern "C" int idx_faiss_shim_contains(const idx_faiss_shim *s, int64_t label) {
    /* A baseline keeps no label index: the benchmark adds each label once. */
    if (s->baseline) return 0;
    if (s->idmap) return s->idmap->rev_map.count(label) ? 1 : 0;
    return s->ivf->direct_map.hashtable.count(label) ? 1 : 0;
}

extern "C" int idx_faiss_shim_remove(idx_faiss_shim *s, int64_t label) {
    return guarded([&] {
        /* IVF's hash-table direct map removes only through an
         * IDSelectorArray, and IndexIDMap2 accepts it too. */
        serial_scope scope(1);
        faiss::IDSelectorArray sel(1, &label);
        size_t removed = s->index->remove_ids(sel);
        return removed ? 0 : (int)DEJA_ERR_NOT_FOUND;
    });
}

extern "C" int idx_faiss_shim_get(const idx_faiss_shim *s, int64_t label, float *out) {
    if (!idx_faiss_shim_contains(s, label)) return DEJA_ERR_NOT_FOUND;
    int rc = guarded([&] {
        s->index->reconstruct(label, out);
        return 0;
    });
    /* Present but not reconstructible (an index type without decode):
     * to the caller the vector is as unavailable as a missing one. */
    return rc == DEJA_ERR_INTERNAL ? (int)DEJA_ERR_NOT_FOUND : rc;
}

extern "C" int idx_faiss_shim_search(const idx_faiss_shim *s, size_t nq, const float *q,
                                     size_t k, uint32_t ef, float *scores,
                                     int64_t *labels) {
    return guarded([&] {
        using idx_t = faiss::Index::idx_t;
        serial_scope scope(nq);
        /* Per-call parameters rather than setting ivf->nprobe: searches
         * run concurrently on a shared index. Only a top-level IVF is
         * handed them, because wrappers in 1.7.3 may reject parameters. */
        if (ef && s->hnsw) {
            /* Baseline mode only (benchmarks set one ef at a time). */
            s->hnsw->hnsw.efSearch = (int)ef;
            s->index->search((idx_t)nq, q, (idx_t)k, scores, labels);
        } else if (ef && s->ivf && s->ivf == s->index) {
            faiss::SearchParametersIVF params;
            params.nprobe = std::min<size_t>(ef, s->ivf->nlist);
            params.max_codes = s->ivf->max_codes;
            s->index->search((idx_t)nq, q, (idx_t)k, scores, labels, &params);
        } else {
            s->index->search((idx_t)nq, q, (idx_t)k, scores, labels);
        }
        return 0;
    });
}

/* A cleared index in a long-running cache should not keep the memory of
 * its high-water mark, and FAISS's reset() keeps vector capacity. */
static void release_slack(idx_faiss_shim *s) {
    if (s->idmap) {
        s->idmap->id_map.shrink_to_fit();
        std::unordered_map<int64_t, int64_t>().swap(s->idmap->rev_map);
        if (auto *codes = flat_codes_of(s->idmap->index)) codes->codes.shrink_to_fit();
    }
    if (s->ivf) {
        std::unordered_map<int64_t, int64_t>().swap(s->ivf->direct_map.hashtable);
        if (auto *lists = dynamic_cast<faiss::ArrayInvertedLists *>(s->ivf->invlists)) {
            for (auto &c : lists->codes)
                c.shrink_to_fit();
            for (auto &i : lists->ids)
                i.shrink_to_fit();
        }
    }
}

extern "C" void idx_faiss_shim_reset(idx_faiss_shim *s) {
    guarded([&] {
        s->index->reset();
        release_slack(s);
        return 0;
    });
}

extern "C" size_t idx_faiss_shim_count(const idx_faiss_shim *s) {
    return (size_t)s->index->ntotal;
}

/* libstdc++'s unordered_map: one bucket pointer per bucket, and per entry
 * a node of next pointer + key + value, rounded up by malloc. An
 * estimate: the allocator's real overhead is not visible. */
static size_t hash_map_bytes(const std::unordered_map<int64_t, int64_t> &m) {
    return m.bucket_count() * sizeof(void *) + m.size() * 32;
}

static size_t transforms_bytes(const faiss::Index *ix) {
    size_t bytes = 0;
    while (auto *pt = dynamic_cast<const faiss::IndexPreTransform *>(ix)) {
        for (const faiss::VectorTransform *vt : pt->chain)
            if (auto *lt = dynamic_cast<const faiss::LinearTransform *>(vt))
                bytes += (lt->A.capacity() + lt->b.capacity()) * sizeof(float);
        ix = pt->index;
    }
    return bytes;
}

extern "C" size_t idx_faiss_shim_memory(const idx_faiss_shim *s) {
    size_t bytes = sizeof *s + transforms_bytes(s->index);
    if (s->baseline) {
        /* Estimated: the vectors, the id map, and for an HNSW its links
         * (about 2M ids on level 0 per vector, plus upper levels). */
        const faiss::Index *ix = s->index;
        bytes += (size_t)ix->ntotal * (ix->d * sizeof(float) + sizeof(int64_t));
        if (s->hnsw)
            bytes += s->hnsw->hnsw.neighbors.capacity() * sizeof(faiss::HNSW::storage_idx_t) +
                     s->hnsw->hnsw.offsets.capacity() * sizeof(size_t) +
                     s->hnsw->hnsw.levels.capacity() * sizeof(int);
        return bytes;
    }
    if (s->idmap) {
        const faiss::IndexIDMap2 *map = s->idmap;
        bytes += sizeof *map + map->id_map.capacity() * sizeof(int64_t) +
                 hash_map_bytes(map->rev_map) + transforms_bytes(map->index);
        if (auto *codes = flat_codes_of(map->index)) bytes += codes->codes.capacity();
        return bytes;
    }
    const faiss::IndexIVF *ivf = s->ivf;
    bytes += hash_map_bytes(ivf->direct_map.hashtable);
    if (auto *q = dynamic_cast<const faiss::IndexFlatCodes *>(ivf->quantizer))
        bytes += q->codes.capacity();
    else /* e.g. an HNSW quantizer: estimated as its f32 centroids */
        bytes += (size_t)ivf->quantizer->ntotal * ivf->d * sizeof(float);
    if (auto *lists = dynamic_cast<const faiss::ArrayInvertedLists *>(ivf->invlists)) {
        for (const auto &c : lists->codes)
            bytes += sizeof c + c.capacity();
        for (const auto &i : lists->ids)
            bytes += sizeof i + i.capacity() * sizeof(int64_t);
    } else {
        bytes += (size_t)ivf->ntotal * (ivf->code_size + sizeof(int64_t));
    }
    return bytes;
}

extern "C" int idx_faiss_shim_knn_ip(const float *base, size_t n, const float *queries,
                                     size_t nq, uint32_t dim, size_t k, float *scores,
                                     int64_t *labels) {
    return guarded([&] {
        serial_scope scope(nq);
        faiss::knn_inner_product(queries, base, dim, nq, n, k, scores, labels);
        return 0;
    });
}
