/* SPDX-License-Identifier: MIT */
/* cleanup.c - the type registry (one release hook per type tag) and the
 * batch cleaner that releases a scope's entries newest first: a registered
 * hook if there is one, otherwise the default release of the entry's type
 * (OBJECT: the destructor in vtable slot 3, then the memory).
 *
 * Memory of default releases is released after the batch's destructors
 * have run, in one pass (runs of one slab pay for the slab once), on the
 * thread that owns the slabs: in background mode the worker only runs
 * destructors and hooks and leaves the pointers at the end of the batch's
 * own array for the owner.
 */
#include "internal.h"

static _Atomic(samm_cleanup_fn) hooks[256];

void samm_register_cleanup(SAMMAllocType type, samm_cleanup_fn fn)
{
    if ((unsigned)type > 255) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_register_cleanup", NULL,
                     "type %d out of range 0..255", (int)type);
        return;
    }
    atomic_store_explicit(&hooks[type], fn, memory_order_release);
}

typedef void (*destructor_fn)(void *obj);

/* OBJECT: the destructor in vtable slot 3, if there is a vtable and a slot. */
SAMM_INLINE void run_destructor(void *p)
{
    destructor_fn *vtable = *(destructor_fn **)p;
    if (vtable != NULL && vtable[SAMM_VTABLE_DESTRUCTOR_SLOT] != NULL)
        vtable[SAMM_VTABLE_DESTRUCTOR_SLOT](p);
}

/* A hook owns the memory from here on: a block of ours is untracked
 * first, so the hook may free it. */
static SAMM_NOINLINE void run_hook(samm_cleanup_fn fn, void *p, bool maybe_ours)
{
    if (maybe_ours) {
        samm_ptr_info in;
        if (samm__classify(p, &in) == SAMM_PTR_TRACKED) STORE(in.meta, SAMM_META_LIVE);
    }
    fn(p);
}

/* Counts of cleaned entries per type, kept as runs: a batch rarely mixes
 * many types.  The hook of the run's type is looked up once per run. */
typedef struct {
    samm_tld *t;
    unsigned type;
    uint64_t run;
    samm_cleanup_fn hook;
} type_run;

static SAMM_NOINLINE void run_switch(type_run *r, unsigned type)
{
    if (r->run) samm__add(&r->t->ctr.by_type[r->type], r->run);
    r->type = type;
    r->run = 0;
    r->hook = atomic_load_explicit(&hooks[type], memory_order_acquire);
}

/* Entries i-1 down to 0 once the hook of entry i has run: default
 * releases are moved down to ptrs[keep..), which holds the newer ones
 * already (keep is i + 1; entry i is the hook's now). */
static size_t clean_plain_rest(type_run *r, void **ptrs, const uint8_t *types, size_t i,
                               size_t keep)
{
    while (i-- > 0) {
        void *p = ptrs[i];
        unsigned type = types[i];
        if (type != r->type) run_switch(r, type);
        r->run++;
        if (r->hook != NULL) {
            run_hook(r->hook, p, true);
            continue;
        }
        if (type == SAMM_ALLOC_OBJECT) run_destructor(p);
        ptrs[--keep] = p; /* keep > i: only entries already read are written */
    }
    return keep;
}

#define PREFETCH_AHEAD 8

/* Every entry of ours and no tombstone: the loop the nested workload
 * lives in.  It runs the destructors; the memory of default releases is
 * released after the loop (a second, tight one), so it stays valid while
 * the older objects' destructors run.  Those entries end up in
 * ptrs[keep..n); while no hook runs that is the whole array, untouched.
 * An OBJECT entry costs its destructor and one test: OBJECT entries are
 * counted from the others once the loop is done, and a hook for OBJECT
 * (rare) sends the whole batch the general way. */
SAMM_INLINE size_t clean_plain(type_run *r, void **ptrs, const uint8_t *types, size_t n,
                               bool prefetch)
{
    if (atomic_load_explicit(&hooks[SAMM_ALLOC_OBJECT], memory_order_acquire) != NULL)
        return clean_plain_rest(r, ptrs, types, n, n);
    size_t others = 0;
    for (size_t i = n; i-- > 0;) {
        void *p = ptrs[i];
        /* On a worker every object is in another core's cache: asking for
         * the next ones early overlaps the transfers. */
        if (prefetch && i >= PREFETCH_AHEAD) __builtin_prefetch(ptrs[i - PREFETCH_AHEAD], 1);
        unsigned type = types[i];
        if (SAMM_LIKELY(type == SAMM_ALLOC_OBJECT)) {
            run_destructor(p);
            continue;
        }
        if (type != r->type) run_switch(r, type);
        if (SAMM_UNLIKELY(r->hook != NULL)) {
            /* Entry i and the older ones the general way (it counts i). */
            samm__add(&r->t->ctr.by_type[SAMM_ALLOC_OBJECT], n - 1 - i - others);
            return clean_plain_rest(r, ptrs, types, i + 1, i + 1);
        }
        r->run++;
        others++;
    }
    samm__add(&r->t->ctr.by_type[SAMM_ALLOC_OBJECT], n - others);
    return 0;
}

/* Tombstones and foreign entries: foreign default releases go to free()
 * (if they can be malloc blocks) at once; ours are released after the
 * loop, as in clean_plain (left in ptrs[keep..n), for the owner if rel is
 * NULL). */
static size_t clean_mixed(type_run *r, void **ptrs, const uint8_t *types, size_t n,
                          const char *call)
{
    size_t keep = n;
    for (size_t i = n; i-- > 0;) {
        void *p = ptrs[i];
        if (p == SAMM_TOMB) continue;
        unsigned type = types[i];
        if (type != r->type) run_switch(r, type);
        r->run++;
        bool ours = samm__is_ours(p);
        if (r->hook != NULL) {
            run_hook(r->hook, p, ours);
            continue;
        }
        if (type == SAMM_ALLOC_OBJECT) run_destructor(p);
        if (ours)
            ptrs[--keep] = p;
        else
            samm__foreign_free(r->t, p, call);
    }
    return keep;
}

void samm__clean(samm_tld *t, samm_batch *b, bool defer, const char *call)
{
    bool timed = atomic_load_explicit(&samm__timing_on, RELAXED);
    uint64_t t0 = timed ? samm__now_ns() : 0;
    size_t n = b->count;
    type_run r = {t, 256, 0, NULL};
    size_t keep = n;
    bool plain = b->ntomb == 0 && b->nforeign == 0;
    if (!plain)
        keep = clean_mixed(&r, b->ptrs, b->types, n, call);
    else if (t->is_worker)
        keep = clean_plain(&r, b->ptrs, b->types, n, true);
    else
        keep = clean_plain(&r, b->ptrs, b->types, n, false);
    b->nrelease = n - keep;
    if (!defer) samm__release_deferred(t, b, call);
    if (r.run) samm__add(&t->ctr.by_type[r.type], r.run);
    samm__count(t, SAMM_C_CLEANED, n - b->ntomb);
    samm__count(t, SAMM_C_BATCHES, 1);
    if (timed) samm__count(t, SAMM_C_CLEANUP_NS, samm__now_ns() - t0);
    SAMM_TRACE("cleaned a batch of %zu", n - (size_t)b->ntomb);
}

void samm__release_deferred(samm_tld *t, samm_batch *b, const char *call)
{
    samm__release_tracked(t, b->ptrs + b->count - b->nrelease, b->nrelease, b->owner != NULL, call);
    b->nrelease = 0;
}
