/* SPDX-License-Identifier: MIT */
/* alloc.c - blocks out and back: the allocation fast paths (a few loads and
 * one test, as mimalloc's mi_malloc), huge blocks in spans of their own,
 * and the release of blocks - one at a time for samm_free_object, in runs
 * per slab for scope cleanup.
 *
 * Every block's slot word says whether it is free, live or tracked, and is
 * set here on the way out (LIVE) and back (FREE): that is what makes double
 * frees exact.  The allocation also remembers the block and its word in the
 * thread's context, so that tracking the block just allocated needs no
 * lookup.
 */
#include <string.h>

#include "internal.h"
#include "track.h"

/* ------------------------------------------------------------------------
 * Allocation
 * ---------------------------------------------------------------------- */
static inline int small_class(size_t size)
{
    return size <= 32 ? 0 : 64 - __builtin_clzll((unsigned long long)size - 1) - 5;
}

static inline int medium_pool(size_t size)
{
    return SAMM_MEDIUM_FIRST + (64 - __builtin_clzll((unsigned long long)size - 1) - 11);
}

#define zero_block samm__zero_small

/* Pops the first free slot of s (there is one), remembering it and its
 * slot word: tracking it next needs no lookup. */
SAMM_INLINE void *pop(samm_tld *t, samm_slab *s, void *p)
{
    _Atomic uint32_t *m = samm__slot_pop(s, p);
    SAMM_ASSERT_INTERNAL(LOAD(m) == SAMM_META_FREE);
    STORE(m, SAMM_META_LIVE);
    t->last_alloc = p;
    t->last_meta = m;
    return p;
}

/* Object classes are 32 bytes or more, so rounding the zeroing up to 32
 * or 64 stays inside the slot; descriptor slots may be smaller. */
static inline void *zero_slot(int pool, void *p, size_t size)
{
    if (pool >= SAMM_DESC_FIRST && pool < SAMM_MEDIUM_FIRST) return memset(p, 0, size);
    return zero_block(p, size);
}

static SAMM_NOINLINE void *alloc_pool_slow(samm_tld *t, int pool, size_t size, const char *call)
{
    void *p = samm__heap_alloc_slow(t, pool, call);
    return p ? zero_slot(pool, p, size) : NULL;
}

void *samm__alloc_any(samm_tld *t, size_t size, const char *call)
{
    if (size > SAMM_MEDIUM_MAX) return samm__huge_alloc(t, size, call);
    int pool = size <= SAMM_SMALL_MAX ? small_class(size) : medium_pool(size);
    return samm__alloc_pool(t, pool, size, call);
}

void *samm__alloc_pool(samm_tld *t, int pool, size_t size, const char *call)
{
    samm_slab *s = t->pdirect[pool];
    void *p = s->free;
    if (SAMM_LIKELY(p != NULL)) {
        pop(t, s, p);
        return zero_slot(pool, p, size);
    }
    return alloc_pool_slow(t, pool, size, call);
}

SAMM_NOINLINE void *samm__alloc_small_slow(samm_tld *t, size_t size, const void *site)
{
    static const char call[] = "samm_alloc_object";
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) return NULL;
    t->site = site;
    return samm__alloc_any(t, size, call);
}

/* The hot path: what generated code calls for every object. */
void *samm_alloc_object(size_t size)
{
    samm_tld *t = samm__tld;
    if (SAMM_LIKELY(size <= SAMM_SMALL_MAX)) {
        samm_slab *s = t->direct[(size + 15) >> 4];
        void *p = s->free;
        if (SAMM_LIKELY(p != NULL)) {
            pop(t, s, p);
            return zero_block(p, size);
        }
    }
    /* The caller's address, for allocation sites: read only on this path. */
    return samm__alloc_small_slow(t, size, __builtin_return_address(0));
}

void *samm__alloc_desc(samm_tld *t, int pool, const char *call, const void *site)
{
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) return NULL;
    t->site = site;
    samm__desc_freeze();
    size_t size = samm__layout(pool)->size;
    return alloc_pool_slow(t, pool, size, call);
}

/* Descriptors: a fixed size per pool, the same one test. */
#define DESC_ALLOC(name, pool)                                                                     \
    void *name(void)                                                                               \
    {                                                                                              \
        samm_tld *t = samm__tld;                                                                   \
        samm_slab *s = t->pdirect[pool];                                                           \
        void *p = s->free;                                                                         \
        if (SAMM_LIKELY(p != NULL)) {                                                              \
            pop(t, s, p);                                                                          \
            memset(p, 0, s->size);                                                                 \
            return p;                                                                              \
        }                                                                                          \
        return samm__alloc_desc(t, pool, #name, __builtin_return_address(0));                      \
    }
DESC_ALLOC(samm_alloc_string, SAMM_DESC_STRING)
DESC_ALLOC(samm_alloc_list, SAMM_DESC_LIST)
DESC_ALLOC(samm_alloc_list_atom, SAMM_DESC_ATOM)

/* ------------------------------------------------------------------------
 * Huge blocks: a span each, the block on the span's second page, one slot
 * word in the header like any slot's.
 * ---------------------------------------------------------------------- */
void *samm__huge_alloc(samm_tld *t, size_t size, const char *call)
{
    size_t page = samm__os_page_size();
    if (size > SIZE_MAX / 2 - page - SAMM_SLAB_SIZE) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "cannot allocate %zu bytes", size);
        return NULL;
    }
    size_t rounded = (size + 15) & ~(size_t)15;
    size_t k = (page + rounded + SAMM_SLAB_MASK) >> SAMM_SLAB_SHIFT;
    bool dirty;
    samm_slab *s = samm__span_get(k, &dirty, call);
    if (s == NULL) return NULL;
    s->shift = SAMM_SLAB_SHIFT; /* every pointer of the first slab: word 0 */
    s->pool = SAMM_POOL_HUGE;
    s->kind = SAMM_SLAB_HUGE;
    s->size = rounded > UINT32_MAX ? UINT32_MAX : (uint32_t)rounded;
    s->first = (uint32_t)page;
    s->nslots = 1;
    s->huge_size = rounded;
    atomic_store(&s->owner, t);
    void *p = (char *)s + page;
    if (dirty) {
        samm_tool_alloc(p, rounded);
        memset(p, 0, rounded);
    } else {
        samm_tool_alloc_zero(p, rounded); /* fresh pages */
    }
    _Atomic uint32_t *m = samm__meta_of(s, p);
    STORE(m, SAMM_META_LIVE);
    t->last_alloc = p;
    t->last_meta = m;
    s->owner_gen = t->gen;
    if (SAMM_UNLIKELY(LOAD(&samm__sites_on))) samm__site_note(t, s, p);
    samm__huge_link(s);
    samm__count(t, SAMM_C_HUGE_ALLOCS, 1);
    samm__count(t, SAMM_C_HUGE_BYTES_ALLOCATED, rounded);
    return p;
}

void samm__huge_free(samm_tld *t, samm_slab *s, const char *call)
{
    (void)call;
    void *p = (char *)s + s->first;
    samm__count(t, SAMM_C_HUGE_FREES, 1);
    samm__count(t, SAMM_C_HUGE_BYTES_FREED, s->huge_size);
    samm__bloom_add(p);
    samm__huge_unlink(s);
    samm__span_put(t, s);
}

/* ------------------------------------------------------------------------
 * Release
 * ---------------------------------------------------------------------- */
void samm__double_free(samm_tld *t, const void *p, const char *call)
{
    samm__count(t, SAMM_C_DOUBLE_FREES, 1);
    samm__report(SAMM_ERR_DOUBLE_FREE, call, p, "double free of %p", p);
}

/* A live or tracked block of ours (its word at m read as `word`), which
 * the caller took out of every scope. */
void samm__release_block(samm_tld *t, samm_slab *s, void *p, _Atomic uint32_t *m, uint32_t word,
                         const char *call)
{
    if (s->kind == SAMM_SLAB_HUGE) {
        if (!atomic_compare_exchange_strong(m, &word, SAMM_META_FREE)) {
            samm__double_free(t, p, call);
            return;
        }
        samm__huge_free(t, s, call);
        return;
    }
    if (s->pool >= SAMM_MEDIUM_FIRST) samm__bloom_add(p);
    if (LOAD(&s->owner) == t) {
        STORE(m, SAMM_META_FREE);
        samm_tool_free(p, s->size);
        samm__heap_free_local(t, s, p, p, 1);
        return;
    }
    /* Another thread's slab: the word changes with a CAS, so two threads
     * freeing the same block cannot both succeed. */
    if (!atomic_compare_exchange_strong(m, &word, SAMM_META_FREE)) {
        samm__double_free(t, p, call);
        return;
    }
    samm__heap_free_remote(t, s, p);
}

/* Scope cleanup releases blocks in the order they were tracked, and the
 * blocks of a scope usually come from a few slabs at once (one per size
 * class), interleaved.  Each slot goes straight onto its slab's free list;
 * the first time a batch meets a slab, the slab is checked (ours, a pool
 * slab) and noted, and the heap settles each noted slab once at the end
 * (counts, list moves). */
/* Release batches are numbered across all threads, so a slab marked by its
 * owner's batch never looks touched to another thread's. */
static atomic_uint_fast64_t batches;

static SAMM_NOINLINE samm_slab *touch_first(samm_tld *t, samm_slab *s, uint64_t gen,
                                            samm_slab *touched)
{
    /* Medium blocks go the slow way: their addresses join the Bloom
     * filter (samm_is_probably_freed), and they are big anyway. */
    if (LOAD(&s->owner) != t || s->kind != SAMM_SLAB_POOL || s->pool >= SAMM_MEDIUM_FIRST)
        return NULL;
    STORE(&s->touch, gen);
    s->touch_nfree = s->nfree;
    s->touch_next = touched;
    return s;
}

SAMM_INLINE void release_tracked(samm_tld *t, void *const *ptrs, size_t n, bool tool, bool prefetch,
                                 const char *call)
{
    uint64_t gen = atomic_fetch_add_explicit(&batches, 1, RELAXED) + 1;
    samm_slab *touched = NULL;
    for (size_t i = 0; i < n; i++) {
        void *p = ptrs[i];
        /* Memory back from a worker is in its cache: ask for the next
         * blocks early, to write. */
        if (prefetch && i + 8 < n) __builtin_prefetch(ptrs[i + 8], 1);
        samm_slab *s = samm__slab_of(p);
        if (SAMM_UNLIKELY(LOAD(&s->touch) != gen)) {
            samm_slab *first = touch_first(t, s, gen, touched);
            if (first == NULL) {
                /* A huge block, or a slot of another thread's slab. */
                samm_ptr_info in;
                samm__classify(p, &in);
                SAMM_ASSERT_INTERNAL(in.kind == SAMM_PTR_TRACKED);
                samm__release_block(t, in.slab, p, in.meta, in.word, call);
                continue;
            }
            touched = first;
        }
        _Atomic uint32_t *m = samm__meta_of(s, p);
        SAMM_ASSERT_INTERNAL(LOAD(m) >= SAMM_META_TRACKED);
        STORE(m, SAMM_META_FREE);
        *(void **)p = s->free;
        SAMM_HOOK_FREE(p, s->size);
        if (tool && SAMM_RUNTIME_ASAN) samm__asan_poison(p, s->size);
        s->free = p;
        s->nfree++;
    }
    for (samm_slab *s = touched; s; s = s->touch_next)
        samm__heap_settle(t, s, s->nfree - s->touch_nfree);
}

void samm__release_tracked(samm_tld *t, void *const *ptrs, size_t n, bool from_worker,
                           const char *call)
{
    if (SAMM_UNLIKELY(SAMM_RUNTIME_ASAN))
        release_tracked(t, ptrs, n, true, from_worker, call);
    else if (from_worker)
        release_tracked(t, ptrs, n, false, true, call);
    else
        release_tracked(t, ptrs, n, false, false, call);
}

void samm__release_entry(samm_tld *t, void *p, const char *call)
{
    samm_ptr_info in;
    switch (samm__classify(p, &in)) {
    case SAMM_PTR_FOREIGN:
        samm__foreign_free(t, p, call);
        return;
    case SAMM_PTR_TRACKED:
    case SAMM_PTR_LIVE:
        samm__release_block(t, in.slab, p, in.meta, in.word, call);
        return;
    case SAMM_PTR_FREE:
        samm__double_free(t, p, call);
        return;
    case SAMM_PTR_INTERIOR:
        samm__interior(p, call);
        return;
    }
}

void samm__interior(const void *p, const char *call)
{
    samm__report(SAMM_ERR_INTERIOR_POINTER, call, p,
                 "%p points inside a libsamm block or its bookkeeping; not freed", p);
}
