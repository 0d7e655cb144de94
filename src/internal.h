/* SPDX-License-Identifier: MIT */
/* internal.h - what libsamm's modules call across files.
 *
 * Names: samm_ public (include/), samm__ internal across files, static inside
 * one file.  Nothing here is exported from the shared library.  The module
 * graph reads top-down: core -> scope -> cleanup/worker -> alloc/heap ->
 * slab -> os; stats, options and error are leaves everyone writes into;
 * thread.c starts and ends a thread's context and orders fork.
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
#include "track.h"
#include "types.h"

#define SAMM_LIKELY(x) __builtin_expect(!!(x), 1)
#define SAMM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SAMM_TLS _Thread_local __attribute__((tls_model("initial-exec")))
#define SAMM_NOINLINE __attribute__((noinline))
#define SAMM_COLD __attribute__((cold, noinline))
#define SAMM_INLINE static inline __attribute__((always_inline))

#define RELAXED memory_order_relaxed
#define LOAD(p) atomic_load_explicit((p), memory_order_relaxed)
#define STORE(p, v) atomic_store_explicit((p), (v), memory_order_relaxed)

/* ------------------------------------------------------------------------
 * Assertions, in three strengths, compiled in by the SAMM_DEBUG level:
 *   SAMM_ASSERT           level >= 1: cheap checks of arguments and states
 *   SAMM_ASSERT_INTERNAL  level >= 2: invariants of the data structures
 *   SAMM_ASSERT_EXPENSIVE level >= 3: walks (list membership, whole frames)
 * Release builds use level 0: none of them costs anything.  The test
 * builds run at 2 (release and TSan) and 3 (ASan).
 * ---------------------------------------------------------------------- */
#ifndef SAMM_DEBUG
#define SAMM_DEBUG 0
#endif
void samm__assert_fail(const char *cond, const char *file, int line, const char *func)
    __attribute__((noreturn, cold));
#define SAMM_CHECK_(c, text) ((c) ? (void)0 : samm__assert_fail(text, __FILE__, __LINE__, __func__))
#if SAMM_DEBUG >= 1
#define SAMM_ASSERT(c) SAMM_CHECK_(c, #c)
#else
#define SAMM_ASSERT(c) ((void)0)
#endif
#if SAMM_DEBUG >= 2
#define SAMM_ASSERT_INTERNAL(c) SAMM_CHECK_(c, #c)
#else
#define SAMM_ASSERT_INTERNAL(c) ((void)0)
#endif
#if SAMM_DEBUG >= 3
#define SAMM_ASSERT_EXPENSIVE(c) SAMM_CHECK_(c, #c)
#else
#define SAMM_ASSERT_EXPENSIVE(c) ((void)0)
#endif

/* Counters (stats.c): a thread adds to its own with a relaxed load and
 * store (plain moves, never a locked instruction); readers sum them. */
SAMM_INLINE void samm__add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, RELAXED) + n, RELAXED);
}
SAMM_INLINE void samm__count(samm_tld *t, int i, uint64_t n)
{
    samm__add(&t->ctr.c[i], n);
}

/* ------------------------------------------------------------------------
 * os.c: memory from the system.  Bookkeeping comes from the malloc family
 * (what it returns may be released with free()); blocks come from mmap.
 * Every allocation passes through here, so tests can make the k-th one
 * fail.
 * ---------------------------------------------------------------------- */
void *samm__malloc(size_t n);
void *samm__calloc(size_t n, size_t size);
void *samm__realloc(void *p, size_t n);
void samm__free(void *p);
/* len bytes of zeroed read-write memory aligned to `align` (a power of two,
 * at most SAMM_SLAB_SIZE), or NULL. */
void *samm__os_map(size_t len, size_t align);
void samm__os_unmap(void *p, size_t len);
/* Gives the pages back; the range stays mapped and reads as zero. */
void samm__os_decommit(void *p, size_t len);
size_t samm__os_page_size(void);
void samm__os_init(void);
/* Failure injection: the next `ok` allocations succeed, then `fail` fail,
 * then all succeed.  samm__fail_reset disarms it. */
void samm__fail_after(long ok, long fail);
void samm__fail_reset(void);
/* Allocations made since the process started (the sweep's k range), and
 * failures injected so far. */
uint64_t samm__alloc_count(void);
uint64_t samm__fail_count(void);

/* ------------------------------------------------------------------------
 * slab.c: slabs, spans and the registry that tells any pointer's owner.
 * ---------------------------------------------------------------------- */
typedef struct {
    uint32_t size, first, nslots, recip;
    uint8_t shift;
} samm_layout;

void samm__slab_init(void);
const samm_layout *samm__layout(int pool);
size_t samm__pool_slot_size(int pool);
/* Freezes the descriptor sizes (first descriptor allocation). */
void samm__desc_freeze(void);
/* A span of `nslabs` slabs, registered, its header cleared, or NULL
 * (reported under `call`).  *dirty: its pages after the header may hold
 * old data (a recently freed huge span kept committed). */
samm_slab *samm__span_get(size_t nslabs, bool *dirty, const char *call);
/* Returns a span (a pool slab is a span of one): its pages go back to the
 * system except the header's, which keeps saying what the memory was.
 * Counted (bytes returned, slabs gone) in t's counters. */
void samm__span_put(samm_tld *t, samm_slab *s);
/* Huge spans kept committed go back to the system. */
void samm__span_trim(void);
/* Formats a span of one as an empty slab of `pool` owned by `owner`. */
void samm__slab_format(samm_slab *s, int pool, samm_tld *owner);
void samm__slab_atfork_prepare(void);
void samm__slab_atfork_release(void);

SAMM_INLINE samm_slab *samm__slab_of(const void *p)
{
    return (samm_slab *)((uintptr_t)p & ~(uintptr_t)SAMM_SLAB_MASK);
}

SAMM_INLINE _Atomic uint32_t *samm__meta_of(const samm_slab *s, const void *p)
{
    return (_Atomic uint32_t *)((char *)s + SAMM_META_OFF) +
           (((uintptr_t)p & SAMM_SLAB_MASK) >> s->shift);
}

/* The registry (slab.c): one byte per slab-sized piece of a 48-bit
 * address space, in a two-level table; leaves are never freed. */
#define SAMM_REG_LEAF_BITS 16
#define SAMM_REG_ROOT_BITS (48 - SAMM_SLAB_SHIFT - SAMM_REG_LEAF_BITS)
extern _Atomic(_Atomic uint8_t *) samm__registry[(size_t)1 << SAMM_REG_ROOT_BITS];

SAMM_INLINE int samm__registry_get(uintptr_t addr)
{
    uintptr_t n = addr >> SAMM_SLAB_SHIFT;
    if (n >> (SAMM_REG_ROOT_BITS + SAMM_REG_LEAF_BITS)) return SAMM_REG_NONE;
    _Atomic uint8_t *leaf =
        atomic_load_explicit(&samm__registry[n >> SAMM_REG_LEAF_BITS], memory_order_acquire);
    return leaf ? LOAD(&leaf[n & (((size_t)1 << SAMM_REG_LEAF_BITS) - 1)]) : SAMM_REG_NONE;
}

/* Pops the first free slot p of s (the caller saw it there): s hands it
 * out; the caller sets its word. */
SAMM_INLINE _Atomic uint32_t *samm__slot_pop(samm_slab *s, void *p)
{
    SAMM_HOOK_LINK_OPEN(p);
    s->free = *(void **)p;
    s->nalloc++;
    SAMM_HOOK_ALLOC(p, s->size);
    return samm__meta_of(s, p);
}

/* Zeroes a new small block: the common sizes with inline stores, the rest
 * with a tail call, so the fast paths need no stack frame.  Only for the
 * object classes (32 bytes or more). */
SAMM_INLINE void *samm__zero_small(void *p, size_t size)
{
    if (size <= 32) {
        __builtin_memset(p, 0, 32);
        return p;
    }
    if (size <= 64) {
        __builtin_memset(p, 0, 64);
        return p;
    }
    return __builtin_memset(p, 0, size);
}

/* Where a pointer stands. */
typedef enum {
    SAMM_PTR_FOREIGN,  /* not libsamm's memory                        */
    SAMM_PTR_INTERIOR, /* inside libsamm's memory, not a block start  */
    SAMM_PTR_FREE,     /* start of a free block: freed already        */
    SAMM_PTR_LIVE,     /* start of a live, untracked block            */
    SAMM_PTR_TRACKED   /* start of a live block tracked in a scope    */
} samm_ptr_kind;

typedef struct {
    samm_ptr_kind kind;
    samm_slab *slab;        /* set unless FOREIGN                          */
    _Atomic uint32_t *meta; /* set for FREE, LIVE, TRACKED                */
    uint32_t word;          /* the slot word read                          */
} samm_ptr_info;

/* Reads no memory that is not libsamm's: the registry first. */
samm_ptr_kind samm__classify(const void *p, samm_ptr_info *out);
/* Cheaper: whether p lies in libsamm's memory at all. */
bool samm__is_ours(const void *p);

/* ------------------------------------------------------------------------
 * heap.c: the calling thread's pools.
 * ---------------------------------------------------------------------- */
/* A slot of `pool` when the active slab has none, or NULL (reported). */
void *samm__heap_alloc_slow(samm_tld *t, int pool, const char *call);
/* What the fast-path tables point to when a pool has no active slab. */
extern samm_slab samm__slab_empty;
/* Slots of `s` (owned by t) whose words were set free: head..tail, n. */
void samm__heap_free_local(samm_tld *t, samm_slab *s, void *head, void *tail, uint32_t n);
/* n slots of s (owned by t) were pushed onto its free list (and counted
 * in s->nfree) by a cleanup batch: counts and list moves. */
void samm__heap_settle(samm_tld *t, samm_slab *s, uint32_t n);
/* A listed slab got slots back: where it belongs now. */
void samm__heap_changed(samm_tld *t, samm_slab *s);
/* One slot p of s (owned by t), word already set free: samm_free_object's
 * lean local free. */
/* Whether s stays on its list once it has `nfree` slots back. */
SAMM_INLINE bool samm__slab_stays(const samm_slab *s, uint32_t nfree)
{
    return s->where != SAMM_IN_FULL && (s->nalloc != nfree || s->where == SAMM_IN_ACTIVE);
}
/* Pushes slot p (word already free) onto s's free list, counted. */
SAMM_INLINE void samm__slot_push(samm_tld *t, samm_slab *s, void *p)
{
    SAMM_HOOK_LINK_OPEN(p);
    *(void **)p = s->free;
    SAMM_HOOK_LINK_CLOSE(p);
    s->free = p;
    s->nfree++;
    samm__add(&t->ctr.frees[s->pool], 1);
}
SAMM_INLINE void samm__heap_free_one(samm_tld *t, samm_slab *s, void *p)
{
    samm__slot_push(t, s, p);
    if (SAMM_UNLIKELY(!samm__slab_stays(s, s->nfree))) samm__heap_changed(t, s);
}
/* A slot of a slab t does not own, word already set free. */
void samm__heap_free_remote(samm_tld *t, samm_slab *s, void *p);
/* Pushes out the frees held back for other threads' slabs. */
void samm__heap_flush_remote(samm_tld *t);
/* Counts what the active slabs handed out (publication). */
void samm__heap_fold(samm_tld *t);
/* Takes in every slot other threads gave back (statistics, trim). */
void samm__heap_collect(samm_tld *t);
/* The same for the slabs of ended threads (counted by t). */
void samm__heap_collect_abandoned(samm_tld *t);
/* Thread end: every slab goes to the system or to the abandoned lists. */
void samm__heap_abandon(samm_tld *t);
void samm__heap_trim(samm_tld *t);
void samm__heap_atfork_prepare(void);
void samm__heap_atfork_release(void);
/* Installs s as pool p's active slab (and in the direct table). */
void samm__heap_set_active(samm_tld *t, int p, samm_slab *s);
/* Calls fn for every pool slab t owns that may hold blocks (t may be
 * NULL), then for every abandoned one (under their lock). */
void samm__heap_each(samm_tld *t, void (*fn)(samm_slab *s, void *arg), void *arg);
/* Points t's fast-path tables again (allocation sites switched). */
void samm__heap_redirect(samm_tld *t);
/* Slabs of `t` are counted and the heap emptied (fork child, dead thread). */
void samm__heap_disown(samm_tld *t);

/* ------------------------------------------------------------------------
 * alloc.c: blocks out and back.
 * ---------------------------------------------------------------------- */
/* `site`: the caller's return address (allocation sites). */
void *samm__alloc_small_slow(samm_tld *t, size_t size, const void *site);
void *samm__alloc_any(samm_tld *t, size_t size, const char *call);
/* A zeroed slot of `pool` (size bytes of it zeroed at least). */
void *samm__alloc_pool(samm_tld *t, int pool, size_t size, const char *call);
/* Releases a live or tracked block of ours (word read as `word` at m),
 * which the caller took out of every scope. */
void samm__release_block(samm_tld *t, samm_slab *s, void *p, _Atomic uint32_t *m, uint32_t word,
                         const char *call);
void *samm__alloc_desc(samm_tld *t, int pool, const char *call, const void *site);
/* Releases the memory of tracked entries of ours (their words say so), in
 * order.  Runs of one slab pay for the slab once. */
void samm__release_tracked(samm_tld *t, void *const *ptrs, size_t n, bool from_worker,
                           const char *call);
/* Releases one pointer of any kind found in a batch (ours or foreign). */
void samm__release_entry(samm_tld *t, void *p, const char *call);
/* A huge block of `size` bytes, untracked. */
void *samm__huge_alloc(samm_tld *t, size_t size, const char *call);
void samm__huge_free(samm_tld *t, samm_slab *s, const char *call);
/* Reports a double free (counted). */
void samm__double_free(samm_tld *t, const void *p, const char *call);
/* Reports a pointer inside a libsamm block (nothing freed). */
void samm__interior(const void *p, const char *call);

/* ------------------------------------------------------------------------
 * foreign.c: pointers that are not libsamm's.
 * ---------------------------------------------------------------------- */
/* Why p cannot be a malloc block, or NULL if it can be one. */
const char *samm__not_malloc(const void *p);
/* free(p) if p can be a malloc block, else reported; counted. */
void samm__foreign_free(samm_tld *t, void *p, const char *call);

/* ------------------------------------------------------------------------
 * scope.c: frames.
 * ---------------------------------------------------------------------- */
extern char samm__tomb; /* entries removed in place point here */
#define SAMM_TOMB ((void *)&samm__tomb)

bool samm__scopes_init(samm_tld *t, const char *call);
void samm__scopes_release(samm_tld *t);
/* fork child, for a thread that is not there: its tracked blocks become
 * live, untracked ones (leaks, unless the program frees them). */
void samm__scopes_orphan(samm_tld *t);
/* The frame at depth d of t (existing depths only), or NULL. */
samm_frame *samm__frame_at(samm_tld *t, int depth);
/* Moves cur one frame in or out, growing the segments; false (reported)
 * when memory runs out. */
bool samm__frame_enter_slow(samm_tld *t, const char *call);
void samm__frame_exit_step(samm_tld *t);
/* Recomputes t->limit and t->floor from where cur is (not the pokes). */
uintptr_t samm__frame_limit(samm_tld *t);
uintptr_t samm__frame_floor(samm_tld *t);
/* Appends in the slow path; ours: p is a libsamm block whose word goes
 * to TRACKED.  The index of the entry, or SIZE_MAX (reported OOM). */
size_t samm__frame_append(samm_frame *f, void *p, uint8_t type, _Atomic uint32_t *meta,
                          const char *call);
/* Removes entry i (a tombstone unless it is the last); foreign: it is not
 * a libsamm block (the caller classified it).  Inline for the common case:
 * one of ours, leaving a tombstone that needs no compaction yet. */
void samm__frame_remove_slow(samm_frame *f, size_t i, bool foreign);
SAMM_INLINE void samm__frame_remove_at(samm_frame *f, size_t i, bool foreign)
{
    SAMM_ASSERT(i < f->count && f->ptrs[i] != SAMM_TOMB);
    uint32_t ntomb = f->ntomb + 1;
    if (SAMM_LIKELY(!foreign && i + 1 < f->count && (ntomb < 32 || (size_t)ntomb * 2 < f->count))) {
        f->ptrs[i] = SAMM_TOMB;
        f->ntomb = ntomb;
        return;
    }
    samm__frame_remove_slow(f, i, foreign);
}
/* Index of the newest entry for foreign pointer p, or SIZE_MAX. */
size_t samm__frame_find(samm_frame *f, const void *p);
/* What the fast path may append up to, from the frame's state. */
void samm__frame_set_cap(samm_frame *f);
/* Takes the arrays (and entries) out; the frame is left empty, without. */
samm_batch samm__frame_take(samm_frame *f);
/* An empty frame without arrays takes the batch's; otherwise freed. */
void samm__frame_adopt_arrays(samm_frame *f, samm_batch *b);
void samm__batch_free_arrays(samm_batch *b);
/* Every frame of t: cap poked to 0 (disabled) or recomputed. */
void samm__frames_poke(samm_tld *t, bool disabled);

/* ------------------------------------------------------------------------
 * core.c
 * ---------------------------------------------------------------------- */
extern atomic_int samm__enabled;
extern SAMM_TLS int samm__phantom_early;
void samm__init_atfork_prepare(void);
void samm__init_atfork_release(void);
bool samm__initialized(void);
/* Cleans every open scope of t and its global scope, inline. */
void samm__unwind_all(samm_tld *t, const char *call);
/* Releases what the worker sent back to t. */
void samm__take_mail(samm_tld *t, const char *call);
/* The real floor/limit, with the pokes (disabled, mail) applied. */
void samm__tld_refresh(samm_tld *t);
/* Makes `t`'s enter and exit fast paths fail (disable, tracing). */
void samm__poke_slow(samm_tld *t, void *unused);
void samm__ensure_init(void);

/* ------------------------------------------------------------------------
 * thread.c: contexts.
 * ---------------------------------------------------------------------- */
extern SAMM_TLS samm_tld *samm__tld;
extern samm_tld samm__tld_empty;
/* The calling thread's context, made on first use; NULL (reported) only
 * when memory for it runs out. */
samm_tld *samm__tld_attach(const char *call);
SAMM_INLINE samm_tld *samm__tld_get(const char *call)
{
    samm_tld *t = samm__tld;
    return SAMM_LIKELY(t != &samm__tld_empty) ? t : samm__tld_attach(call);
}
/* Once per process: the thread-exit key and the fork handlers. */
void samm__thread_process_init(void);
/* The cleanup worker's context is made by the thread that starts it (so a
 * worker never runs without one) and installed by the worker. */
samm_tld *samm__tld_prepare(const char *call);
void samm__tld_install(samm_tld *t);
void samm__tld_unprepare(samm_tld *t);
/* Runs fn on every context in use, under the registry lock. */
void samm__tld_each(void (*fn)(samm_tld *t, void *arg), void *arg);
/* True if p is on the stack of a thread that uses libsamm. */
bool samm__on_some_stack(uintptr_t p);
/* The counters of ended threads (under the registry lock). */
void samm__tld_sum_retired(samm_counters *into);

/* ------------------------------------------------------------------------
 * cleanup.c: the type registry and the batch cleaner.
 * ---------------------------------------------------------------------- */
/* Cleans the batch newest first: a registered hook, or the type's default
 * (OBJECT's destructor, then the memory).  With `defer`, the memory of
 * default releases is not released: those pointers are moved to the end
 * of b->ptrs and b->nrelease says how many (their owner releases them). */
void samm__clean(samm_tld *t, samm_batch *b, bool defer, const char *call);
/* Releases what samm__clean(defer) left in b. */
void samm__release_deferred(samm_tld *t, samm_batch *b, const char *call);

/* ------------------------------------------------------------------------
 * worker.c: background cleanup.
 * ---------------------------------------------------------------------- */
/* Queues b (taking its arrays); false when the queue is full or no worker
 * can run: the caller cleans inline. */
bool samm__worker_submit(samm_tld *t, const samm_batch *b);
/* Moves t's finished batches to `out` (room for SAMM_MAILBOX_CAP). */
size_t samm__mail_take(samm_tld *t, samm_batch *out);
/* Returns once every batch queued before the call is cleaned. */
void samm__worker_wait(void);
/* Returns once every batch t queued has come back to its mailbox. */
void samm__worker_wait_own(samm_tld *t);
void samm__worker_stop(void);
bool samm__worker_active(void);
uint64_t samm__worker_high_water(void);
void samm__worker_set_capacity(size_t batches);
/* Batches waiting (read without the lock), and the workers wanted. */
size_t samm__worker_backlog(void);
int samm__worker_target(void);
void samm__worker_set_target(int n);
void samm__worker_atfork_prepare(void);
void samm__worker_atfork_parent(void);
void samm__worker_atfork_child(void);

/* ------------------------------------------------------------------------
 * stats.c: counters.
 * ---------------------------------------------------------------------- */
/* Brings t's published counters up to date: samm__publish what a scope
 * exit changed (cheap, per cleaned scope), samm__publish_all also what the
 * active slabs handed out (samm_wait, statistics, thread end). */
void samm__publish(samm_tld *t);
void samm__publish_all(samm_tld *t);
/* Folds a context's counters into `into` (sum, peak by max). */
void samm__counters_add(samm_counters *into, samm_counters *from);

/* ------------------------------------------------------------------------
 * options.c: SAMM_* environment variables, tracing, timing.
 * ---------------------------------------------------------------------- */
typedef struct {
    int cleanup_mode; /* SAMMCleanupMode */
    int workers;      /* 0: the default */
    bool trace;
    bool stats_at_exit; /* SAMM_STATS */
    bool leaks_at_exit; /* SAMM_LEAKS */
    bool sites;         /* SAMM_SITES */
    size_t queue_batches;
} samm_options;
extern samm_options samm__opt;
void samm__options_read(void);
bool samm__env_flag(const char *name);
extern atomic_int samm__trace_on;
extern atomic_int samm__timing_on;
#define SAMM_TRACE(...)                                                                            \
    do {                                                                                           \
        if (SAMM_UNLIKELY(atomic_load_explicit(&samm__trace_on, RELAXED)))                         \
            samm__trace_line(__VA_ARGS__);                                                         \
    } while (0)
void samm__trace_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
uint64_t samm__now_ns(void);

/* ------------------------------------------------------------------------
 * error.c: the single place errors leave the library.
 * ---------------------------------------------------------------------- */
void samm__report(SAMMErrorCode code, const char *call, const void *ptr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void samm__error_atfork_prepare(void);
void samm__error_atfork_release(void);

/* ------------------------------------------------------------------------
 * bloom.c: freed addresses of large blocks, for samm_is_probably_freed.
 * ---------------------------------------------------------------------- */
void samm__bloom_add(const void *ptr);
bool samm__bloom_query(const void *ptr);
double samm__bloom_fp_rate(void);
uint64_t samm__bloom_fp_estimate(void);
size_t samm__bloom_memory(void);

/* ------------------------------------------------------------------------
 * report.c: the output, samm_report, leaks, allocation sites.
 * ---------------------------------------------------------------------- */
/* Writes whole lines to the output (samm_set_output / samm_set_output_fn). */
void samm__out(const char *text);
/* Allocation sites: on, and the generation (bumped at every switch). */
extern atomic_int samm__sites_on;
extern atomic_uint samm__sites_gen;
/* Records t->site (then cleared) as the site of block p of s. */
void samm__site_note(samm_tld *t, samm_slab *s, const void *p);
/* A pool slab's site array goes (the slab is being freed). */
void samm__sites_free(samm_slab *s);
/* Huge blocks join and leave the list the leak report reads. */
void samm__huge_link(samm_slab *s);
void samm__huge_unlink(samm_slab *s);
/* Answers a snapshot another thread asked t for (t's own thread). */
void samm__snap_answer(samm_tld *t);
/* The one-per-pool leak errors of samm_shutdown (and the report). */
void samm__leak_report(const char *call);
/* The atexit handler: statistics and leaks without samm_shutdown. */
void samm__at_exit(void);
/* fork: report_lock is taken first of all, the leaf locks last. */
void samm__report_atfork_prepare(void);
void samm__report_atfork_release(void);
void samm__report_leaves_prepare(void);
void samm__report_leaves_release(void);

#endif /* SAMM_INTERNAL_H */
