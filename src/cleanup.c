/* cleanup.c - the type registry (one release hook per type tag) and the
 * batch cleaner that releases a scope's entries: a registered hook if there
 * is one, otherwise the default release of the entry's type.
 */
#include <time.h>

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
static inline void run_destructor(void *p)
{
    destructor_fn *vtable = *(destructor_fn **)p;
    if (vtable != NULL && vtable[SAMM_VTABLE_DESTRUCTOR_SLOT] != NULL)
        vtable[SAMM_VTABLE_DESTRUCTOR_SLOT](p);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Default releases are collected and handed to the pools this many at a
 * time, so runs of objects from one slab are freed together. */
#define RELEASE_CHUNK 128

size_t samm__clean(void **ptrs, const uint8_t *types, size_t n, const char *call,
                   bool defer_release)
{
    samm_counters *k = samm__thread_counters();
    uint64_t t0 = now_ns();
    void *release[RELEASE_CHUNK];
    size_t pending = 0, deferred = 0;
    /* Per-type counts are kept as runs: a batch rarely mixes many types. */
    uint8_t run_type = n ? types[n - 1] : 0;
    uint64_t run = 0;
    for (size_t i = n; i-- > 0;) {
        void *p = ptrs[i];
        uint8_t type = types[i];
        samm_cleanup_fn fn = atomic_load_explicit(&hooks[type], memory_order_acquire);
        if (fn) {
            fn(p);
        } else {
            if (type == SAMM_ALLOC_OBJECT) run_destructor(p);
            if (defer_release) {
                /* n-1-deferred >= i: only slots already read are written. */
                ptrs[n - 1 - deferred++] = p;
            } else {
                release[pending++] = p;
                if (pending == RELEASE_CHUNK) {
                    samm__mem_release_many(release, pending, call);
                    pending = 0;
                }
            }
        }
        if (type != run_type) {
            samm__counter_add(&k->by_type[run_type], run);
            run_type = type;
            run = 0;
        }
        run++;
    }
    if (pending) samm__mem_release_many(release, pending, call);
    if (run) samm__counter_add(&k->by_type[run_type], run);
    samm__count(k, SAMM_C_CLEANED, n);
    samm__count(k, SAMM_C_BATCHES, 1);
    samm__count(k, SAMM_C_CLEANUP_NS, now_ns() - t0);
    SAMM_TRACE("cleaned a batch of %zu", n);
    return deferred;
}
