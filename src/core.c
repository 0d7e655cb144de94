/* core.c - lifecycle, the per-thread scope stack, track/untrack/retain, the
 * enable flag and cleanup mode, fork and thread-exit handling, and the
 * public allocation calls (which hand over to the pools).
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------------
 * Global and per-thread state
 *
 * `generation` is NOT_READY while the library is not initialised and a new
 * value in 1..NOT_READY-1 after each samm_init; a thread whose remembered
 * generation differs (a new thread remembers 0) takes the slow path once.  That makes every call
 * auto-initialise, also after samm_shutdown, at the price of one relaxed
 * load and compare.
 * ---------------------------------------------------------------------- */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
#define NOT_READY UINT_MAX
static atomic_uint generation = NOT_READY;
static unsigned generations_made;
static atomic_int enabled = 1;
static atomic_int cleanup_mode = SAMM_CLEANUP_INLINE;
static bool stats_at_shutdown;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

typedef struct {
    unsigned gen;    /* generation this thread last saw            */
    int depth;       /* 0 = global scope                           */
    int peak;        /* deepest depth this thread reached          */
    bool registered; /* thread-exit hook armed, counters attached  */
    bool mbox_tried; /* asked for a mailbox (it may be NULL)       */
    samm_counters *ctr;
    samm_mailbox *mbox; /* where the worker returns our batches    */
} samm_thread;

static SAMM_TLS samm_thread T;

static void thread_attach(void);

static inline void ensure_ready(void)
{
    if (SAMM_UNLIKELY(T.gen != atomic_load_explicit(&generation, memory_order_acquire)))
        thread_attach();
}

samm_counters *samm__thread_counters(void)
{
    if (SAMM_UNLIKELY(!T.registered)) thread_attach();
    return T.ctr;
}

/* ------------------------------------------------------------------------
 * fork(): every lock of the library is taken before fork and released (or
 * re-initialised) on both sides, in one fixed order.
 * ---------------------------------------------------------------------- */
static void atfork_prepare(void)
{
    pthread_mutex_lock(&init_lock);
    samm__worker_atfork_prepare();
    samm__counters_atfork_prepare();
    samm__pool_atfork_prepare();
    samm__error_atfork_prepare();
}

static void atfork_parent(void)
{
    samm__error_atfork_release();
    samm__pool_atfork_parent();
    samm__counters_atfork_parent();
    samm__worker_atfork_parent();
    pthread_mutex_unlock(&init_lock);
}

static void atfork_child(void)
{
    samm__error_atfork_release();
    samm__pool_atfork_child();
    samm__counters_atfork_child();
    samm__worker_atfork_child();
    pthread_mutex_unlock(&init_lock);
}

static void register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------- */
static void thread_exit(void);

void samm_init(void)
{
    if (atomic_load_explicit(&generation, memory_order_acquire) != NOT_READY) return;
    pthread_mutex_lock(&init_lock);
    if (atomic_load(&generation) == NOT_READY) {
        samm_options o;
        samm__options_read(&o);
        atomic_store(&cleanup_mode, o.cleanup_mode);
        atomic_store(&samm__trace_on, o.trace);
        stats_at_shutdown = o.stats_at_shutdown;
        samm__worker_set_capacity(o.queue_batches);
        samm_scope_ensure_init();
        samm__set_thread_exit_hook(thread_exit);
        pthread_once(&atfork_once, register_atfork);
        if (++generations_made == NOT_READY) generations_made = 1;
        atomic_store_explicit(&generation, generations_made, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
}

static void thread_attach(void)
{
    samm_init();
    if (!T.registered) {
        T.ctr = samm__counters_attach();
        samm__thread_register();
        T.registered = true;
    }
    T.gen = atomic_load_explicit(&generation, memory_order_acquire);
}

/* Cleans a batch taken out of the frame at `depth`, then lets the frame
 * reuse its arrays if nothing took the frame over meanwhile. */
static void clean_taken(size_t depth, samm_batch *b, const char *call)
{
    samm__clean(b->ptrs, b->types, b->count, call, false);
    samm__frame_adopt_arrays(samm__frame_get(depth), b); /* the vector may have moved */
}

/* Cleans the frame at `depth` on this thread.  The arrays are taken out of
 * the frame first: hooks may enter scopes and reuse this very depth. */
static void clean_inline(size_t depth, const char *call)
{
    samm_frame *f = samm__frame_get(depth);
    if (f == NULL || f->count == 0) return;
    samm_batch b = samm__frame_take(f);
    clean_taken(depth, &b, call);
}

/* Batches the worker finished for this thread: their memory is released
 * here, where the slabs are owned, and their arrays become the frame's at
 * `depth` if it has none (no malloc for the next scope), else are freed. */
static void take_back(samm_batch *done, size_t n, size_t depth, const char *call)
{
    for (size_t i = 0; i < n; i++) {
        samm_batch *d = &done[i];
        samm__batch_release_deferred(d, call);
        samm__frame_adopt_arrays(samm__frame_get(depth), d);
    }
}

/* Everything this thread queued is finished and its memory released. */
static void drain_own(const char *call)
{
    samm__worker_wait();
    if (T.mbox == NULL) return;
    samm_batch done[SAMM_MAILBOX_CAP];
    size_t n;
    while ((n = samm__mailbox_take(T.mbox, done)) != 0)
        take_back(done, n, SIZE_MAX, call);
}

/* Background mode: the frame's arrays go to the worker, which runs the
 * destructors and hooks and sends the batch back for its memory. */
static void clean_background(size_t depth, const char *call)
{
    samm_frame *f = samm__frame_get(depth);
    if (f == NULL || f->count == 0) return;
    if (!T.mbox_tried) {
        T.mbox = samm__mailbox_new();
        T.mbox_tried = true;
    }
    samm_batch b = samm__frame_take(f);
    b.mbox = T.mbox;
    samm_batch done[SAMM_MAILBOX_CAP];
    size_t n_done = 0;
    if (!samm__worker_submit(&b, done, &n_done)) {
        samm__count(T.ctr, SAMM_C_INLINE_FALLBACKS, 1);
        clean_taken(depth, &b, call);
    }
    take_back(done, n_done, depth, call);
}

static void clean_scope(size_t depth, const char *call)
{
    if (atomic_load_explicit(&cleanup_mode, memory_order_relaxed) == SAMM_CLEANUP_BACKGROUND &&
        !samm__on_worker_thread())
        clean_background(depth, call);
    else
        clean_inline(depth, call);
}

/* Unwinds this thread's scopes, the global one included, inline. */
static void unwind_all(const char *call)
{
    while (T.depth > 0) {
        int d = T.depth--;
        samm__count(T.ctr, SAMM_C_SCOPES_EXITED, 1);
        clean_inline((size_t)d, call);
    }
    /* Hooks may track into the global scope while it is being cleaned. */
    for (int guard = 0; guard < 64; guard++) {
        samm_frame *f = samm__frame_get(0);
        if (f == NULL || f->count == 0) break;
        clean_inline(0, call);
    }
}

static void thread_exit(void)
{
    if (!T.registered) return;
    if (T.depth > 0)
        samm__report(SAMM_ERR_SCOPE_IMBALANCE, "thread exit", NULL,
                     "thread ended with %d scope(s) open; cleaning them", T.depth);
    unwind_all("thread exit");
    if (T.mbox_tried) {
        drain_own("thread exit");
        samm__mailbox_delete(T.mbox);
        T.mbox = NULL;
        T.mbox_tried = false;
    }
    samm__pool_thread_exit();
    samm__counters_detach(T.ctr);
    T.ctr = NULL;
    T.registered = false;
    T.gen = 0;
}

void samm_shutdown(void)
{
    if (atomic_load_explicit(&generation, memory_order_acquire) == NOT_READY) return;
    ensure_ready();
    drain_own("samm_shutdown");
    if (T.depth > 0)
        samm__report(SAMM_ERR_SCOPE_IMBALANCE, "samm_shutdown", NULL,
                     "shutdown with %d scope(s) open; cleaning them", T.depth);
    unwind_all("samm_shutdown");
    drain_own("samm_shutdown"); /* hooks may have queued more */
    samm__worker_stop();
    /* Other threads' finished batches: released now, so that the leak
     * report below counts only real leaks. */
    samm__mailbox_drain_all();
    samm__pool_flush();
    samm__pool_report_leaks("samm_shutdown");
    if (stats_at_shutdown) samm_print_stats();
    samm__frames_release_thread();
    pthread_mutex_lock(&init_lock);
    atomic_store_explicit(&generation, NOT_READY, memory_order_release);
    pthread_mutex_unlock(&init_lock);
}

void samm_set_enabled(int on)
{
    ensure_ready();
    atomic_store(&enabled, on != 0);
}

int samm_is_enabled(void)
{
    ensure_ready();
    return atomic_load_explicit(&enabled, memory_order_relaxed);
}

void samm_set_cleanup_mode(SAMMCleanupMode mode)
{
    ensure_ready();
    if (mode != SAMM_CLEANUP_INLINE && mode != SAMM_CLEANUP_BACKGROUND) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_set_cleanup_mode", NULL,
                     "unknown cleanup mode %d", (int)mode);
        return;
    }
    atomic_store(&cleanup_mode, mode);
}

SAMMCleanupMode samm_get_cleanup_mode(void)
{
    ensure_ready();
    return (SAMMCleanupMode)atomic_load(&cleanup_mode);
}

void samm_wait(void)
{
    ensure_ready();
    drain_own("samm_wait");
}

/* ------------------------------------------------------------------------
 * Scopes
 * ---------------------------------------------------------------------- */
static inline bool is_on(void)
{
    return atomic_load_explicit(&enabled, memory_order_relaxed) != 0;
}

void samm_enter_scope(void)
{
    ensure_ready();
    if (!is_on()) return;
    if (SAMM_UNLIKELY(T.depth == INT_MAX)) {
        samm__report(SAMM_ERR_BAD_DEPTH, "samm_enter_scope", NULL, "scope depth overflow");
        return;
    }
    int d = ++T.depth;
    samm__count(T.ctr, SAMM_C_SCOPES_ENTERED, 1);
    if (SAMM_UNLIKELY(d > T.peak)) {
        T.peak = d;
        atomic_store_explicit(&T.ctr->c[SAMM_C_PEAK_DEPTH], (uint64_t)d, memory_order_relaxed);
    }
    SAMM_TRACE("enter scope, depth %d", d);
}

void samm_exit_scope(void)
{
    ensure_ready();
    if (!is_on()) return;
    int d = T.depth;
    if (SAMM_UNLIKELY(d == 0)) {
        samm__report(SAMM_ERR_EXIT_AT_GLOBAL, "samm_exit_scope", NULL,
                     "exit at depth 0 (the global scope cannot be exited); ignored");
        return;
    }
    T.depth = d - 1;
    samm__count(T.ctr, SAMM_C_SCOPES_EXITED, 1);
    SAMM_TRACE("exit scope, depth %d", d);
    samm_frame *f = samm__frame_get((size_t)d);
    if (f == NULL) return;
    if (f->count != 0)
        clean_scope((size_t)d, "samm_exit_scope");
    else if (f->index != NULL)
        samm__frame_drop_index(f); /* else tracking here stays slow */
}

int samm_scope_depth(void)
{
    ensure_ready();
    return T.depth;
}

/* ------------------------------------------------------------------------
 * Tracking
 * ---------------------------------------------------------------------- */
/* The slow path of track: first call on this thread, disabled library,
 * NULL, or a frame that must grow.  False only when tracking was wanted and
 * memory ran out (reported). */
static SAMM_NOINLINE bool track_slow(void *ptr, uint8_t type, const char *call)
{
    ensure_ready();
    if (ptr == NULL || !is_on()) return true;
    if (!samm__frame_add((size_t)T.depth, ptr, type, SAMM_SC_NONE, call)) return false;
    samm__count(T.ctr, SAMM_C_TRACKED, 1);
    if (type == SAMM_ALLOC_STRING) samm__count(T.ctr, SAMM_C_STRINGS_TRACKED, 1);
    return true;
}

/* Generated code calls this for every object: an append to three arrays,
 * with every check folded into one rarely-taken branch.  It repeats
 * samm__frame_add's append on purpose: calling samm__frame_add, whose slow
 * paths are calls rather than one tail call, measured 54 instructions per
 * tracked object against 45 here (callgrind, nested workload). */
static inline __attribute__((always_inline)) bool track(void *ptr, uint8_t type, const char *call)
{
    samm_frame *f = samm__frame_get((size_t)T.depth);
    if (SAMM_LIKELY(T.gen == atomic_load_explicit(&generation, memory_order_relaxed) &&
                    ptr != NULL && f != NULL && f->count < f->cap && f->index == NULL &&
                    atomic_load_explicit(&enabled, memory_order_relaxed))) {
        /* Every load before the first store: the stores could alias the
         * frame as far as the compiler knows, and reloads cost more than
         * the appends themselves. */
        size_t i = f->count;
        void **ptrs = f->ptrs;
        uint8_t *types = f->types, *sc = f->sc;
        samm_counters *k = T.ctr;
        uint64_t tracked = atomic_load_explicit(&k->c[SAMM_C_TRACKED], memory_order_relaxed);
        f->count = i + 1;
        ptrs[i] = ptr;
        types[i] = type;
        sc[i] = SAMM_SC_NONE;
        samm__filter_add(f, ptr);
        atomic_store_explicit(&k->c[SAMM_C_TRACKED], tracked + 1, memory_order_relaxed);
        if (type == SAMM_ALLOC_STRING) samm__count(k, SAMM_C_STRINGS_TRACKED, 1);
        return true;
    }
    return track_slow(ptr, type, call);
}

void samm_track(void *ptr, SAMMAllocType type)
{
    if ((unsigned)type > 255) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_track", ptr, "type %d out of range 0..255",
                     (int)type);
        return;
    }
    track(ptr, (uint8_t)type, "samm_track");
}

void samm_track_object(void *ptr)
{
    track(ptr, SAMM_ALLOC_OBJECT, "samm_track_object");
}

void samm_track_string(void *desc)
{
    track(desc, SAMM_ALLOC_STRING, "samm_track_string");
}

void samm_track_list(void *list)
{
    track(list, SAMM_ALLOC_LIST, "samm_track_list");
}

/* Removes `ptr` from the innermost scope holding it; its depth or -1. */
static int untrack_from(void *ptr, uint8_t *type, uint8_t *sc)
{
    for (int d = T.depth; d >= 0; d--) {
        samm_frame *f = samm__frame_get((size_t)d);
        if (f != NULL && samm__frame_remove(f, ptr, type, sc)) return d;
    }
    return -1;
}

void samm_untrack(void *ptr)
{
    ensure_ready();
    if (ptr == NULL || !is_on()) return;
    untrack_from(ptr, NULL, NULL);
}

void samm_retain(void *ptr, int parent_offset)
{
    ensure_ready();
    if (ptr == NULL || !is_on()) return;
    if (parent_offset < 0) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_retain", ptr, "negative level %d for %p; ignored",
                     parent_offset, ptr);
        return;
    }
    samm__count(T.ctr, SAMM_C_RETAINS, 1);
    uint8_t type, sc;
    int from = untrack_from(ptr, &type, &sc);
    if (from < 0) {
        samm__report(SAMM_ERR_NOT_TRACKED, "samm_retain", ptr, "retain of untracked pointer %p",
                     ptr);
        return;
    }
    int to = parent_offset >= from ? 0 : from - parent_offset;
    /* Cannot fail back at `from`: the entry just left, so there is room. */
    if (!samm__frame_add((size_t)to, ptr, type, sc, "samm_retain"))
        samm__frame_add((size_t)from, ptr, type, sc, "samm_retain");
    SAMM_TRACE("retain %p from depth %d to %d", ptr, from, to);
}

void samm_retain_parent(void *ptr)
{
    samm_retain(ptr, 1);
}

/* ------------------------------------------------------------------------
 * Allocation (the pools do the work)
 * ---------------------------------------------------------------------- */
void *samm_alloc_object(size_t size)
{
    ensure_ready();
    return samm__obj_alloc(size, "samm_alloc_object");
}

void samm_free_object(void *ptr)
{
    ensure_ready();
    if (ptr == NULL) return;
    untrack_from(ptr, NULL, NULL);
    samm__mem_release(ptr, "samm_free_object");
}

void *samm_alloc(size_t size, SAMMAllocType type)
{
    ensure_ready();
    if ((unsigned)type > 255) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_alloc", NULL, "type %d out of range 0..255",
                     (int)type);
        return NULL;
    }
    void *p = samm__obj_alloc(size, "samm_alloc");
    if (!track(p, (uint8_t)type, "samm_alloc")) {
        /* Untracked memory would leak: give it back, like a failed malloc. */
        samm__mem_release(p, "samm_alloc");
        return NULL;
    }
    return p;
}

void *samm_alloc_string(void)
{
    ensure_ready();
    return samm__desc_alloc(SAMM_DESC_STRING, "samm_alloc_string");
}

void *samm_alloc_list(void)
{
    ensure_ready();
    return samm__desc_alloc(SAMM_DESC_LIST, "samm_alloc_list");
}

void *samm_alloc_list_atom(void)
{
    ensure_ready();
    return samm__desc_alloc(SAMM_DESC_ATOM, "samm_alloc_list_atom");
}
