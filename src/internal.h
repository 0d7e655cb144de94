/* internal.h - what libsamm's modules share among themselves.
 *
 * Names: samm_ public (include/), samm__ internal across files, static inside
 * one file.  Nothing here is exported from the shared library.
 */
#ifndef SAMM_INTERNAL_H
#define SAMM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "samm.h"
#include "samm_scope.h"

#define SAMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define SAMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SAMM_TLS _Thread_local __attribute__((tls_model("initial-exec")))
#define SAMM_NOINLINE __attribute__((noinline))
#define SAMM_COLD __attribute__((cold, noinline))

/* ------------------------------------------------------------------------
 * Allocation hook (xalloc.c): every allocation the library makes (its
 * bookkeeping, large objects, slab mappings) goes through these, so tests
 * can inject failures.  They are plain malloc/realloc/free/mmap
 * underneath: what the malloc family returns may be released with free().
 * ---------------------------------------------------------------------- */
void *samm__malloc(size_t n);
void *samm__calloc(size_t n, size_t size);
void *samm__realloc(void *p, size_t n);
void samm__free(void *p);
/* Anonymous read-write memory (slabs), or NULL; released with munmap. */
void *samm__map(size_t len);

/* Test hook: the next `ok` allocations succeed, then `fail` fail, then all
 * succeed again.  samm__fail_reset() disarms it. */
void samm__fail_after(long ok, long fail);
void samm__fail_reset(void);

/* ------------------------------------------------------------------------
 * Error reporting (error.c): the single place errors leave the library.
 * `fmt` describes the problem; the pointer, if any, is part of the message.
 * ---------------------------------------------------------------------- */
void samm__error_atfork_prepare(void);
/* In the parent and in the child alike. */
void samm__error_atfork_release(void);
void samm__report(SAMMErrorCode code, const char *call, const void *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ------------------------------------------------------------------------
 * Scope storage (scope.c).  The frame layout is shared so that the core can
 * use the inline fast paths below instead of the exported wrappers.
 * ---------------------------------------------------------------------- */
typedef struct samm_frame {
    void **ptrs;
    uint8_t *types;
    uint8_t *sc;
    size_t count;
    size_t cap;
    uint64_t *index; /* lazy hash index (index[-1] is its capacity) or NULL */
    /* Which pointers may be here: one bit of 256 per pointer hash, set on
     * add and cleared when the frame empties.  A remove skips frames whose
     * bit is clear, so freeing an untracked object does not scan every
     * open scope of the thread. */
    uint64_t filter[4];
} samm_frame;

static inline unsigned samm__filter_bit(const void *p)
{
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL) >> 56);
}

static inline void samm__filter_add(samm_frame *f, const void *p)
{
    unsigned b = samm__filter_bit(p);
    f->filter[b >> 6] |= (uint64_t)1 << (b & 63);
}

static inline bool samm__frame_may_hold(const samm_frame *f, const void *p)
{
    unsigned b = samm__filter_bit(p);
    return f->count != 0 && (f->filter[b >> 6] >> (b & 63) & 1) != 0;
}

static inline void samm__filter_clear(samm_frame *f)
{
    f->filter[0] = f->filter[1] = f->filter[2] = f->filter[3] = 0;
}

typedef struct samm_frames {
    samm_frame *v;
    size_t n; /* frames allocated: valid depths are 0..n-1 */
} samm_frames;

extern SAMM_TLS samm_frames samm__tls_frames;

/* Grows storage so that depth `depth` exists; false (reported) on OOM. */
bool samm__frames_reserve(size_t depth, const char *call);
/* Slow path of add: grow the arrays (and index); false (reported) on OOM. */
bool samm__frame_add_slow(samm_frame *f, void *ptr, uint8_t type, uint8_t sc, const char *call);
bool samm__frame_remove(samm_frame *f, void *ptr, uint8_t *out_type, uint8_t *out_sc);
void samm__frame_drop_index(samm_frame *f);
/* Releases all of the calling thread's frames (arrays included). */
void samm__frames_release_thread(void);
/* `hook` runs at thread exit before the thread's frames are released; the
 * core sets it to clean the scopes a thread left open. */
void samm__set_thread_exit_hook(void (*hook)(void));
/* Makes sure the thread-exit hook will run for the calling thread. */
void samm__thread_register(void);

static inline samm_frame *samm__frame_get(size_t depth)
{
    return depth < samm__tls_frames.n ? &samm__tls_frames.v[depth] : NULL;
}

/* Appends without a lock or a call in the common case. */
static inline bool samm__frame_add(size_t depth, void *ptr, uint8_t type, uint8_t sc,
                                   const char *call)
{
    samm_frame *f = samm__frame_get(depth);
    if (SAMM_UNLIKELY(f == NULL)) {
        if (!samm__frames_reserve(depth, call)) return false;
        f = &samm__tls_frames.v[depth];
    }
    if (SAMM_LIKELY(f->count < f->cap && f->index == NULL)) {
        size_t i = f->count++;
        f->ptrs[i] = ptr;
        f->types[i] = type;
        f->sc[i] = sc;
        samm__filter_add(f, ptr);
        return true;
    }
    return samm__frame_add_slow(f, ptr, type, sc, call);
}

/* Empties a frame, keeping its arrays. */
static inline void samm__frame_reset(samm_frame *f)
{
    f->count = 0;
    samm__filter_clear(f);
    if (f->index) samm__frame_drop_index(f);
}

/* ------------------------------------------------------------------------
 * Counters and options (stats.c).  Each thread owns a counter block that
 * only it writes (relaxed load + store: plain moves, no lock prefix);
 * readers sum every live block plus what exited threads left behind.
 * ---------------------------------------------------------------------- */
enum {
    SAMM_C_SCOPES_ENTERED,
    SAMM_C_SCOPES_EXITED,
    SAMM_C_TRACKED,
    SAMM_C_CLEANED,
    SAMM_C_BATCHES,
    SAMM_C_RETAINS,
    SAMM_C_STRINGS_TRACKED,
    SAMM_C_CLEANUP_NS,
    SAMM_C_INLINE_FALLBACKS,
    SAMM_C_BYTES_FREED_RECORDED,
    SAMM_C_PEAK_DEPTH, /* merged with max, not summed */
    SAMM_C__COUNT
};

typedef struct samm_counters {
    _Atomic uint64_t c[SAMM_C__COUNT];
    _Atomic uint64_t by_type[256];
    struct samm_counters *next, *prev;
} samm_counters;

/* Adds to a counter only its owning thread writes: a relaxed load and
 * store (plain moves), never a lock-prefixed instruction. */
static inline void samm__counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void samm__count(samm_counters *k, int i, uint64_t n)
{
    samm__counter_add(&k->c[i], n);
}

/* A counter block for the calling thread, registered for readers.  Never
 * NULL: when memory runs out a shared block is used (counts may then be
 * approximate; the failure is reported). */
samm_counters *samm__counters_attach(void);
/* The calling thread's block (core.c). */
samm_counters *samm__thread_counters(void);
/* Folds a thread's block into the totals of exited threads and frees it. */
void samm__counters_detach(samm_counters *k);
/* Sums all counters into `out` (SAMM_C_* order) and `by_type`. */
void samm__counters_sum(uint64_t out[SAMM_C__COUNT], uint64_t by_type[256]);
void samm__counters_atfork_prepare(void);
void samm__counters_atfork_parent(void);
void samm__counters_atfork_child(void);

/* Options read from the environment at init (see README, "Environment"). */
typedef struct {
    int cleanup_mode; /* SAMMCleanupMode */
    bool trace;
    bool stats_at_shutdown;
    size_t queue_batches;
} samm_options;
void samm__options_read(samm_options *o);
/* True for a set, non-empty value other than 0/off/no/false. */
bool samm__env_flag(const char *name);
extern atomic_int samm__trace_on;
#define SAMM_TRACE(...)                                                                            \
    do {                                                                                           \
        if (SAMM_UNLIKELY(atomic_load_explicit(&samm__trace_on, memory_order_relaxed)))            \
            samm__trace_line(__VA_ARGS__);                                                         \
    } while (0)
void samm__trace_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------------
 * Cleanup (cleanup.c): the type registry and the batch cleaner.
 * ---------------------------------------------------------------------- */
/* Cleans entries newest first (ptrs[n-1] down to ptrs[0]): a registered
 * hook, or the type's default (OBJECT's destructor, then the memory),
 * counting into the calling thread's counters.  With defer_release the
 * memory of default releases is not released: those pointers are moved to
 * ptrs[n-k..n-1] and k is returned (their owner releases them).  `call`
 * names the public call for error reports. */
size_t samm__clean(void **ptrs, const uint8_t *types, size_t n, const char *call,
                   bool defer_release);

/* ------------------------------------------------------------------------
 * Worker (worker.c): bounded queue of detached batches, one thread.
 * ---------------------------------------------------------------------- */
typedef struct samm_mailbox samm_mailbox;

typedef struct samm_batch {
    void **ptrs;
    uint8_t *types;
    uint8_t *sc;
    size_t count;
    size_t cap;
    samm_mailbox *mbox; /* where the worker sends it back, or NULL    */
    size_t nrelease;    /* back from the worker: ptrs[count-nrelease..]
                           still need their memory released          */
} samm_batch;

/* Takes a frame's arrays and entries out as a batch, leaving the frame
 * empty and without arrays. */
static inline samm_batch samm__frame_take(samm_frame *f)
{
    samm_batch b = {f->ptrs, f->types, f->sc, f->count, f->cap, NULL, 0};
    samm__frame_drop_index(f);
    f->ptrs = NULL;
    f->types = NULL;
    f->sc = NULL;
    f->count = f->cap = 0;
    samm__filter_clear(f);
    return b;
}

void samm__batch_free_arrays(samm_batch *b);
/* Releases the memory the worker left to the batch's owner (the pointers
 * samm__clean parked at the end of b->ptrs). */
void samm__batch_release_deferred(samm_batch *b, const char *call);

/* A frame left without arrays (f may be NULL) takes the batch's arrays for
 * its next entries, which spares a scope its mallocs; otherwise they are
 * freed. */
static inline void samm__frame_adopt_arrays(samm_frame *f, samm_batch *b)
{
    if (f == NULL || f->cap != 0) {
        samm__batch_free_arrays(b);
        return;
    }
    f->ptrs = b->ptrs;
    f->types = b->types;
    f->sc = b->sc;
    f->cap = b->cap;
}

/* Queues a batch and takes ownership of its arrays; false when the queue
 * is full or the worker cannot run: the caller then cleans inline.  Either
 * way, the batches finished for b->mbox are moved to `done` (room for
 * SAMM_MAILBOX_CAP) and counted in *n_done. */
#define SAMM_MAILBOX_CAP 32
bool samm__worker_submit(const samm_batch *b, samm_batch *done, size_t *n_done);
/* A mailbox for the calling thread, or NULL (then the worker releases its
 * memory itself). */
samm_mailbox *samm__mailbox_new(void);
/* Moves the finished batches out (room for SAMM_MAILBOX_CAP). */
size_t samm__mailbox_take(samm_mailbox *mb, samm_batch *done);
void samm__mailbox_delete(samm_mailbox *mb);
/* Releases what every mailbox holds (shutdown). */
void samm__mailbox_drain_all(void);
void samm__worker_wait(void);
void samm__worker_stop(void);
bool samm__worker_active(void);
uint64_t samm__worker_high_water(void);
bool samm__on_worker_thread(void);
void samm__worker_set_capacity(size_t batches);
void samm__worker_atfork_prepare(void);
void samm__worker_atfork_parent(void);
void samm__worker_atfork_child(void);

/* ------------------------------------------------------------------------
 * Pools (pool.c, bloom.c): all object and descriptor memory.  The owner of
 * any pointer (a pool, the large-object set, or nobody) is found from the
 * pointer itself, validated against a registry of slabs before anything is
 * read through it.  Everything here auto-initialises and is thread-safe.
 * ---------------------------------------------------------------------- */
enum { SAMM_DESC_STRING = 0, SAMM_DESC_LIST = 1, SAMM_DESC_ATOM = 2 };
#define SAMM_OBJECT_CLASSES 6 /* 32, 64, 128, 256, 512, 1024 */
#define SAMM_SC_NONE 0xFF     /* size-class byte stored in scope entries */

/* Zeroed, 16-byte aligned, at least `size` bytes; NULL (reported as
 * SAMM_ERR_OUT_OF_MEMORY under `call`) when memory runs out. */
void *samm__obj_alloc(size_t size, const char *call);
/* A zeroed slot of descriptor pool `kind` (SAMM_DESC_*). */
void *samm__desc_alloc(int kind, const char *call);
/* Returns any pointer to where it came from: a pool slot to its pool, a
 * large object to the system.  A pointer already free is reported as
 * SAMM_ERR_DOUBLE_FREE; one libsamm never allocated is free()d (counted
 * as a foreign free) unless the Bloom filter says it was probably freed by
 * us, which is reported as a double free instead.  May defer work into a
 * per-thread buffer that samm__pool_flush pushes out. */
void samm__mem_release(void *ptr, const char *call);
/* samm__mem_release of ptrs[0..n-1] in that order, cheaper per pointer for
 * runs of pointers into the same slab. */
void samm__mem_release_many(void *const *ptrs, size_t n, const char *call);
/* Pushes out what this thread deferred (batched remote frees).  The
 * cleanup worker calls it after each batch. */
void samm__pool_flush(void);
/* The calling thread is ending: flush and hand its slabs over. */
void samm__pool_thread_exit(void);
/* fork(): the core's pthread_atfork handlers call these in this order. */
void samm__pool_atfork_prepare(void);
void samm__pool_atfork_parent(void);
void samm__pool_atfork_child(void);
void samm__pool_trim(void);
/* Adds the pool layer's counters to `out` (objects_allocated, objects_freed,
 * total_bytes_*, double_free_attempts, foreign_frees, bloom_*,
 * bytes_returned_to_os). */
void samm__pool_fill_stats(SAMMStats *out);
/* Reports pooled slots still in use as SAMM_ERR_LEAK warnings, one per pool. */
void samm__pool_report_leaks(const char *call);

/* Bloom filter over freed large-object addresses (bloom.c), used by pool.c.
 * The bit array is allocated on the first add (an allocation failure is
 * reported under `call` and the address goes unrecorded). */
void samm__bloom_add(const void *ptr, const char *call);
bool samm__bloom_query(const void *ptr);
double samm__bloom_fp_rate(void);       /* (1 - e^(-kn/m))^k */
uint64_t samm__bloom_fp_estimate(void); /* estimated false positives answered */
size_t samm__bloom_memory(void);        /* 65536 once allocated, else 0 */

#endif /* SAMM_INTERNAL_H */
