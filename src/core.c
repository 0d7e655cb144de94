/* SPDX-License-Identifier: MIT */
/* core.c - lifecycle, the enable flag and cleanup mode, scopes (enter and
 * exit), tracking, untrack, retain and free, and handing an exited scope to
 * inline or background cleanup.
 *
 * The fast paths test one condition each, against fields of the calling
 * thread's context that other states are folded into:
 *   enter: the next frame is below `limit` (0 while disabled or not set up)
 *   exit:  the frame is above `floor` (poked to the top while disabled or
 *          while the worker has sent memory back) and empty
 *   track: the pointer is the block just allocated, its slot word still
 *          says LIVE, and the frame has room below `cap` (0 while disabled)
 * Anything else goes to the slow path, which sorts it out.
 */
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

atomic_int samm__enabled = 1;
/* Scopes entered while the thread could get no context (out of memory):
 * they become its context's phantom scopes once it has one. */
SAMM_TLS int samm__phantom_early;
static atomic_int cleanup_mode = SAMM_CLEANUP_AUTO;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int initialized;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;

/* ------------------------------------------------------------------------
 * Lifecycle
 * ---------------------------------------------------------------------- */
static void process_init(void)
{
    samm__os_init();
    samm__track_init();
    samm__slab_init();
    samm__thread_process_init();
    /* SAMM_STATS and SAMM_LEAKS report at exit, also without shutdown. */
    atexit(samm__at_exit);
}

void samm_init(void)
{
    pthread_once(&process_once, process_init);
    if (atomic_load_explicit(&initialized, memory_order_acquire)) return;
    pthread_mutex_lock(&init_lock);
    if (!atomic_load(&initialized)) {
        samm__options_read();
        atomic_store(&cleanup_mode, samm__opt.cleanup_mode);
        atomic_store(&samm__trace_on, samm__opt.trace);
        samm__worker_set_capacity(samm__opt.queue_batches);
        samm__worker_set_target(samm__opt.workers);
        atomic_store_explicit(&initialized, 1, memory_order_release);
    }
    pthread_mutex_unlock(&init_lock);
    /* Threads that already run (samm_init after samm_shutdown) pick up
     * tracing and sites at their next slow path. */
    if (samm__opt.trace) samm__tld_each(samm__poke_slow, NULL);
    if (samm__opt.sites && !atomic_load(&samm__sites_on)) samm_set_sites(1);
}

bool samm__initialized(void)
{
    return atomic_load_explicit(&initialized, memory_order_acquire);
}

void samm__ensure_init(void)
{
    if (SAMM_UNLIKELY(!atomic_load_explicit(&initialized, memory_order_acquire))) samm_init();
}

void samm__init_atfork_prepare(void)
{
    pthread_mutex_lock(&init_lock);
}

void samm__init_atfork_release(void)
{
    pthread_mutex_unlock(&init_lock);
}

/* The real floor and limit of t, with the pokes applied.  Stored, then the
 * reasons for a poke read again: a poker that ran between is seen either
 * way (it stores after setting its reason). */
void samm__tld_refresh(samm_tld *t)
{
    bool on = atomic_load(&samm__enabled);
    if (SAMM_UNLIKELY(t->sites_gen != atomic_load(&samm__sites_gen))) samm__heap_redirect(t);
    bool plain = on && t->phantom == 0 && !atomic_load(&samm__trace_on);
    STORE(&t->limit, plain ? samm__frame_limit(t) : 0);
    STORE(&t->floor, plain && LOAD(&t->nmail) == 0 ? samm__frame_floor(t) : UINTPTR_MAX);
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load(&samm__enabled) || atomic_load(&samm__trace_on) || atomic_load(&t->snap_req)) {
        STORE(&t->limit, 0);
        STORE(&t->floor, UINTPTR_MAX);
    } else if (LOAD(&t->nmail)) {
        STORE(&t->floor, UINTPTR_MAX);
    }
}

void samm__poke_slow(samm_tld *t, void *unused)
{
    (void)unused;
    STORE(&t->limit, 0);
    STORE(&t->floor, UINTPTR_MAX);
}

static void poke_disabled(samm_tld *t, void *unused)
{
    samm__poke_slow(t, unused);
    samm__frames_poke(t, true);
}

void samm_set_enabled(int on)
{
    if (samm__tld_get("samm_set_enabled") == NULL) return;
    int was = atomic_exchange(&samm__enabled, on != 0);
    /* Enabling needs no poke: each thread's next slow path sees the flag
     * and restores its limits. */
    if (was && !on) samm__tld_each(poke_disabled, NULL);
}

int samm_is_enabled(void)
{
    samm__ensure_init();
    return atomic_load_explicit(&samm__enabled, RELAXED);
}

void samm_set_cleanup_mode(SAMMCleanupMode mode)
{
    samm__ensure_init();
    if (mode != SAMM_CLEANUP_INLINE && mode != SAMM_CLEANUP_BACKGROUND &&
        mode != SAMM_CLEANUP_AUTO) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_set_cleanup_mode", NULL,
                     "unknown cleanup mode %d", (int)mode);
        return;
    }
    atomic_store(&cleanup_mode, mode);
}

SAMMCleanupMode samm_get_cleanup_mode(void)
{
    samm__ensure_init();
    return (SAMMCleanupMode)atomic_load(&cleanup_mode);
}

/* ------------------------------------------------------------------------
 * Cleaning an exited scope
 * ---------------------------------------------------------------------- */
/* Batches the worker finished for t: their memory is released here, where
 * the slabs are owned, and their arrays go to t's current frame if it has
 * none (no malloc for its next scope), else are freed. */
static void auto_sample(samm_tld *t, uint64_t per);

void samm__take_mail(samm_tld *t, const char *call)
{
    samm_batch done[SAMM_MAILBOX_CAP];
    size_t n;
    while ((n = samm__mail_take(t, done)) != 0) {
        for (size_t i = 0; i < n; i++) {
            if (done[i].entry_ns) auto_sample(t, done[i].entry_ns);
            samm__release_deferred(t, &done[i], call);
            if (t->nspare < SAMM_SPARE_ARRAYS)
                t->spare[t->nspare++] = done[i]; /* for the next frame without */
            else
                samm__batch_free_arrays(&done[i]);
        }
    }
    samm__tld_refresh(t);
}

static void clean_inline(samm_tld *t, samm_frame *f, samm_batch *b, const char *call)
{
    samm__clean(t, b, false, call);
    /* A hook may have entered this depth again and given it new arrays. */
    samm__frame_adopt_arrays(f->capacity || f->count ? NULL : f, b);
}

/* ------------------------------------------------------------------------
 * Auto mode: a batch goes to a worker when cleaning it would take long
 * enough on this thread to pay for the hand-over - a lock, a wake-up, and
 * every object's cache line crossing to another core and back, which
 * measured here costs more than a cheap destructor saves.  The cost is
 * learnt from the thread's own batches: its first AUTO_FIRST and, while
 * cleaning inline, one in AUTO_SAMPLE are timed here; a batch handed to a
 * worker is timed there (so an expensive destructor never has to run on
 * this thread to be measured), and the sample comes back with the batch.
 * The estimate rises only to the lower of the last two samples, so one
 * batch that lost the CPU mid-way does not send the next hundred to a
 * worker; a lower sample pulls it halfway down.
 * ---------------------------------------------------------------------- */
#define AUTO_FIRST 2        /* timed batches before any is offloaded   */
#define AUTO_SAMPLE 16      /* batches per timed one after that        */
#define AUTO_ENTRY_NS 250   /* offload entries that cost at least this */
#define AUTO_BATCH_NS 20000 /* ... in batches that take at least this  */

enum { AUTO_INLINE, AUTO_TIMED, AUTO_OFFLOAD };

static int auto_choose(samm_tld *t, const samm_batch *b)
{
    uint32_t tick = t->auto_tick++;
    if (tick < AUTO_FIRST) return AUTO_TIMED;
    uint64_t n = b->count - b->ntomb;
    bool expensive = t->entry_ns >= AUTO_ENTRY_NS;
    if (expensive && n * t->entry_ns >= AUTO_BATCH_NS &&
        samm__worker_backlog() < 2 * (size_t)samm__worker_target())
        return AUTO_OFFLOAD;
    /* Cheap entries are timed here now and then; expensive ones are timed
     * on the worker. */
    return !expensive && tick % AUTO_SAMPLE == 0 ? AUTO_TIMED : AUTO_INLINE;
}

static void clean_timed(samm_tld *t, samm_frame *f, samm_batch *b, const char *call)
{
    uint64_t n = b->count - b->ntomb;
    uint64_t t0 = samm__now_ns();
    clean_inline(t, f, b, call);
    if (n) auto_sample(t, (samm__now_ns() - t0) / n);
}

static void auto_sample(samm_tld *t, uint64_t per)
{
    if (per > UINT32_MAX / 4) per = UINT32_MAX / 4;
    uint64_t last = t->last_ns, est = t->entry_ns;
    t->last_ns = (uint32_t)per;
    if (per >= est) {
        uint64_t both = per < last ? per : last;
        if (both > est) est = both;
    } else {
        est = (est + per) / 2;
    }
    t->entry_ns = (uint32_t)est;
}

/* ------------------------------------------------------------------------
 * Pinned types: their destructors and hooks run on the thread that exits
 * the scope, so a batch holding one is never handed to a worker.  Looked
 * at only for a batch that would go to one.
 * ---------------------------------------------------------------------- */
static _Atomic uint8_t pinned[256];
static atomic_int npinned;
static pthread_mutex_t pin_lock = PTHREAD_MUTEX_INITIALIZER;

int samm_pin_type(SAMMAllocType type, int pin)
{
    if ((unsigned)type > 255) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_pin_type", NULL, "type %d out of range 0..255",
                     (int)type);
        return -1;
    }
    pthread_mutex_lock(&pin_lock);
    int was = atomic_load(&pinned[type]);
    if (was != (pin != 0)) {
        atomic_store(&pinned[type], pin != 0);
        atomic_fetch_add(&npinned, pin ? 1 : -1);
    }
    pthread_mutex_unlock(&pin_lock);
    return was;
}

static bool holds_pinned(const samm_batch *b)
{
    if (atomic_load_explicit(&npinned, RELAXED) == 0) return false;
    for (size_t i = 0; i < b->count; i++)
        if (b->ptrs[i] != SAMM_TOMB && atomic_load_explicit(&pinned[b->types[i]], RELAXED))
            return true;
    return false;
}

static void clean_batch(samm_tld *t, samm_frame *f, samm_batch *b, const char *call)
{
    int mode = atomic_load_explicit(&cleanup_mode, RELAXED);
    if (mode != SAMM_CLEANUP_INLINE && !t->is_worker) {
        int how = mode == SAMM_CLEANUP_BACKGROUND ? AUTO_OFFLOAD : auto_choose(t, b);
        if (how == AUTO_TIMED) {
            clean_timed(t, f, b, call);
            return;
        }
        if (how == AUTO_OFFLOAD && !holds_pinned(b)) {
            b->owner = t;
            b->timed = mode == SAMM_CLEANUP_AUTO;
            b->entry_ns = 0;
            if (samm__worker_submit(t, b)) return;
            samm__count(t, SAMM_C_INLINE_FALLBACKS, 1);
        }
    }
    clean_inline(t, f, b, call);
}

static SAMM_NOINLINE void exit_slow(samm_tld *t)
{
    static const char call[] = "samm_exit_scope";
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) {
        if (samm__phantom_early > 0) samm__phantom_early--;
        return;
    }
    if (LOAD(&t->nmail)) samm__take_mail(t, call);
    if (SAMM_UNLIKELY(LOAD(&t->snap_req))) samm__snap_answer(t);
    if (!atomic_load_explicit(&samm__enabled, RELAXED)) {
        samm__tld_refresh(t);
        return;
    }
    if (t->phantom > 0) {
        t->phantom--;
        t->exited++;
        samm__tld_refresh(t);
        return;
    }
    samm_frame *f = t->cur;
    if (f->depth == 0) {
        samm__report(SAMM_ERR_EXIT_AT_GLOBAL, call, NULL,
                     "exit at depth 0 (the global scope cannot be exited); ignored");
        samm__tld_refresh(t);
        return;
    }
    SAMM_TRACE("exit scope, depth %d", f->depth);
    /* Out of the frame first: hooks may enter scopes and use this depth. */
    samm_batch b = {0};
    bool full = f->count != 0;
    if (full) b = samm__frame_take(f);
    samm__frame_exit_step(t);
    t->exited++;
    samm__tld_refresh(t);
    if (full) {
        clean_batch(t, f, &b, call);
        samm__publish(t);
    }
}

void samm_exit_scope(void)
{
    samm_tld *t = samm__tld;
    samm_frame *f = t->cur;
    if (SAMM_LIKELY((uintptr_t)f > LOAD(&t->floor) && f->count == 0)) {
        t->cur = f - 1;
        t->exited++;
        return;
    }
    exit_slow(t);
}

static SAMM_NOINLINE void enter_slow(samm_tld *t)
{
    static const char call[] = "samm_enter_scope";
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) {
        samm__phantom_early++;
        return;
    }
    if (SAMM_UNLIKELY(LOAD(&t->snap_req))) samm__snap_answer(t);
    if (!atomic_load_explicit(&samm__enabled, RELAXED)) {
        samm__tld_refresh(t);
        return;
    }
    if (t->phantom == 0 && samm__frame_enter_slow(t, call)) {
        SAMM_TRACE("enter scope, depth %d", t->cur->depth);
    } else if (t->phantom < INT_MAX) {
        /* No frame (reported once, by samm__frame_enter_slow): the scope
         * still counts, so the program's exits stay balanced. */
        t->phantom++;
    }
    samm__tld_refresh(t);
}

void samm_enter_scope(void)
{
    samm_tld *t = samm__tld;
    samm_frame *f = t->cur + 1;
    if (SAMM_LIKELY((uintptr_t)f < LOAD(&t->limit))) {
        t->cur = f;
        return;
    }
    enter_slow(t);
}

int samm_scope_depth(void)
{
    samm_tld *t = samm__tld_get("samm_scope_depth");
    return t ? t->cur->depth + t->phantom : 0;
}

void samm__unwind_all(samm_tld *t, const char *call)
{
    t->exited += (uint64_t)t->phantom;
    t->phantom = 0;
    for (;;) {
        samm_frame *f = t->cur;
        bool full = f->count != 0;
        samm_batch b = {0};
        if (full) b = samm__frame_take(f);
        if (f->depth > 0) {
            samm__frame_exit_step(t);
            t->exited++;
        } else if (!full) {
            break; /* hooks may track into the global scope while it is cleaned */
        }
        samm__tld_refresh(t);
        if (full) clean_inline(t, f, &b, call);
    }
    samm__publish_all(t);
}

/* ------------------------------------------------------------------------
 * Tracking
 * ---------------------------------------------------------------------- */
/* The frame below f on t's stack, or NULL below the global scope. */
static samm_frame *frame_below(samm_tld *t, samm_frame *f)
{
    return f->depth == 0 ? NULL : samm__frame_at(t, f->depth - 1);
}

/* The frame holding our tracked block p (its word says `word`) among t's
 * scopes, innermost first, and the entry's index; NULL if t has none. */
static samm_frame *locate_ours(samm_tld *t, void *p, uint32_t word, size_t *idx)
{
    for (samm_frame *f = t->cur; f; f = frame_below(t, f)) {
        if (word != SAMM_META_FAR) {
            size_t i = word - SAMM_META_TRACKED;
            if (i < f->count && f->ptrs[i] == p) {
                *idx = i;
                return f;
            }
            continue;
        }
        for (size_t i = f->count; i-- > 0;) {
            if (f->ptrs[i] == p) {
                *idx = i;
                return f;
            }
        }
    }
    return NULL;
}

static samm_frame *locate_foreign(samm_tld *t, void *p, size_t *idx)
{
    for (samm_frame *f = t->cur; f; f = frame_below(t, f)) {
        size_t i = samm__frame_find(f, p);
        if (i != SIZE_MAX) {
            *idx = i;
            return f;
        }
    }
    return NULL;
}

static void count_removed(samm_tld *t, uint8_t type)
{
    samm__count(t, SAMM_C_REMOVED, 1);
    if (type == SAMM_ALLOC_STRING) samm__count(t, SAMM_C_STRINGS_REMOVED, 1);
}

static void report_state(samm_ptr_kind kind, const char *call, void *p)
{
    switch (kind) {
    case SAMM_PTR_FREE:
        samm__report(SAMM_ERR_FREED_POINTER, call, p,
                     "%p is a block that was freed (use after free); ignored", p);
        break;
    case SAMM_PTR_INTERIOR:
        samm__report(SAMM_ERR_INTERIOR_POINTER, call, p,
                     "%p points inside a libsamm block or its bookkeeping; ignored", p);
        break;
    case SAMM_PTR_TRACKED:
        samm__report(SAMM_ERR_NOT_OWNER, call, p,
                     "%p is tracked in another thread's scope, or in one being cleaned; ignored",
                     p);
        break;
    default:
        break;
    }
}

static SAMM_NOINLINE bool track_slow(samm_tld *t, void *p, uint8_t type, const char *call)
{
    if (p == NULL) return true;
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) return false;
    if (!atomic_load_explicit(&samm__enabled, RELAXED)) return true;
    samm_frame *f = t->cur;
    /* A frame whose arrays went to the worker: arrays that came back. */
    if (f->capacity == 0 && t->nspare) samm__frame_adopt_arrays(f, &t->spare[--t->nspare]);
    samm_ptr_info in;
    samm__classify(p, &in);
    switch (in.kind) {
    case SAMM_PTR_LIVE:
        return samm__frame_append(f, p, type, in.meta, call) != SIZE_MAX;
    case SAMM_PTR_FOREIGN: {
        /* What this thread's scopes can tell cheaply (a filter bit per
         * frame): is it in one already?  Other threads' are not asked. */
        size_t i;
        samm_frame *g = locate_foreign(t, p, &i);
        if (g != NULL) {
            samm__report(SAMM_ERR_DOUBLE_TRACK, call, p,
                         "%p is already tracked (at depth %d); not tracked again", p, g->depth);
            return true;
        }
        return samm__frame_append(f, p, type, NULL, call) != SIZE_MAX;
    }
    case SAMM_PTR_TRACKED:
        samm__report(SAMM_ERR_DOUBLE_TRACK, call, p,
                     "%p is already tracked (at depth %d or another thread); not tracked again", p,
                     t->cur->depth);
        return true;
    default:
        report_state(in.kind, call, p);
        return true;
    }
}

/* Generated code calls this for every object: the block just allocated
 * goes on the end of the frame, its slot word records where. */
SAMM_INLINE bool track(void *p, uint8_t type, const char *call)
{
    samm_tld *t = samm__tld;
    samm_frame *f = t->cur;
    _Atomic uint32_t *m = t->last_meta;
    size_t i = f->count;
    if (SAMM_LIKELY(p == t->last_alloc && LOAD(m) == SAMM_META_LIVE && i < LOAD(&f->cap))) {
        void **ptrs = f->ptrs;
        uint8_t *types = f->types;
        ptrs[i] = p;
        types[i] = type;
        STORE(m, SAMM_META_TRACKED + (uint32_t)i);
        f->count = i + 1;
        return true;
    }
    return track_slow(t, p, type, call);
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

/* Takes p out of t's scopes.  0: it was in one (*type set); 1: it is in
 * none of t's (untracked, or foreign and not found); -1: reported. */
static int untrack_from(samm_tld *t, void *p, samm_ptr_info *in, uint8_t *type, int *depth,
                        const char *call)
{
    size_t i;
    samm_frame *f;
    switch (in->kind) {
    case SAMM_PTR_FOREIGN:
        if ((f = locate_foreign(t, p, &i)) == NULL) return 1;
        break;
    case SAMM_PTR_TRACKED:
        if ((f = locate_ours(t, p, in->word, &i)) == NULL) {
            report_state(SAMM_PTR_TRACKED, call, p);
            return -1;
        }
        break;
    case SAMM_PTR_LIVE:
        return 1;
    default:
        report_state(in->kind, call, p);
        return -1;
    }
    *type = f->types[i];
    *depth = f->depth;
    samm__frame_remove_at(f, i, in->kind == SAMM_PTR_FOREIGN);
    if (in->kind == SAMM_PTR_TRACKED) {
        STORE(in->meta, SAMM_META_LIVE);
        in->kind = SAMM_PTR_LIVE;
        in->word = SAMM_META_LIVE;
    }
    return 0;
}

void samm_untrack(void *p)
{
    static const char call[] = "samm_untrack";
    if (p == NULL) return;
    samm_tld *t = samm__tld_get(call);
    if (t == NULL || !atomic_load_explicit(&samm__enabled, RELAXED)) return;
    samm_ptr_info in;
    samm__classify(p, &in);
    uint8_t type;
    int depth;
    if (untrack_from(t, p, &in, &type, &depth, call) == 0) count_removed(t, type);
}

void samm_retain(void *p, int parent_offset)
{
    static const char call[] = "samm_retain";
    if (p == NULL) return;
    samm_tld *t = samm__tld_get(call);
    if (t == NULL || !atomic_load_explicit(&samm__enabled, RELAXED)) return;
    if (parent_offset < 0) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, p, "negative level %d for %p; ignored",
                     parent_offset, p);
        return;
    }
    samm__count(t, SAMM_C_RETAINS, 1);
    samm_ptr_info in;
    samm__classify(p, &in);
    size_t i;
    samm_frame *f;
    switch (in.kind) {
    case SAMM_PTR_TRACKED:
        if ((f = locate_ours(t, p, in.word, &i)) == NULL) {
            report_state(SAMM_PTR_TRACKED, call, p);
            return;
        }
        break;
    case SAMM_PTR_FOREIGN:
    case SAMM_PTR_LIVE:
        if (in.kind == SAMM_PTR_LIVE || (f = locate_foreign(t, p, &i)) == NULL) {
            samm__report(SAMM_ERR_NOT_TRACKED, call, p, "retain of untracked pointer %p", p);
            return;
        }
        break;
    default:
        report_state(in.kind, call, p);
        return;
    }
    int from = f->depth;
    int to = parent_offset >= from ? 0 : from - parent_offset;
    if (to == from) return; /* stays where it is, in its place */
    uint8_t type = f->types[i];
    _Atomic uint32_t *meta = in.kind == SAMM_PTR_TRACKED ? in.meta : NULL;
    samm__frame_remove_at(f, i, meta == NULL);
    /* Back where it was if the outer frame cannot grow: the entry just
     * left, so there is room. */
    if (samm__frame_append(samm__frame_at(t, to), p, type, meta, call) == SIZE_MAX)
        samm__frame_append(f, p, type, meta, call);
    SAMM_TRACE("retain %p from depth %d to %d", p, from, to);
}

void samm_retain_parent(void *ptr)
{
    samm_retain(ptr, 1);
}

/* ------------------------------------------------------------------------
 * Allocation with tracking, and free
 * ---------------------------------------------------------------------- */
static SAMM_NOINLINE void free_object_slow(samm_tld *t, void *p)
{
    static const char call[] = "samm_free_object";
    if (p == NULL) return;
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) return;
    samm_ptr_info in;
    samm__classify(p, &in);
    uint8_t type;
    int depth;
    switch (in.kind) {
    case SAMM_PTR_FREE:
        samm__double_free(t, p, call);
        return;
    case SAMM_PTR_INTERIOR:
        samm__interior(p, call);
        return;
    case SAMM_PTR_FOREIGN:
        if (untrack_from(t, p, &in, &type, &depth, call) == 0) count_removed(t, type);
        samm__foreign_free(t, p, call);
        return;
    case SAMM_PTR_TRACKED:
        if (untrack_from(t, p, &in, &type, &depth, call) != 0) return;
        count_removed(t, type);
        break;
    case SAMM_PTR_LIVE:
        break;
    }
    samm__release_block(t, in.slab, p, in.meta, in.word, call);
}

/* DELETE, the rare turns: an entry whose removal needs more than a
 * tombstone, or a slab that changes lists.  Word and entry as the fast
 * path found them. */
static SAMM_NOINLINE void free_object_rest(samm_tld *t, samm_slab *s, void *p, _Atomic uint32_t *m,
                                           bool here, size_t i)
{
    if (here) {
        samm_frame *f = t->cur;
        count_removed(t, f->types[i]);
        samm__frame_remove_at(f, i, false);
    }
    STORE(m, SAMM_META_FREE);
    samm_tool_free(p, s->size);
    samm__heap_free_one(t, s, p);
}

/* DELETE: the common case is a slot of this thread's slab, untracked or
 * tracked in the current scope, that leaves a tombstone and its slab where
 * it is.  Every other case is a tail call, so this path needs no stack
 * frame. */
void samm_free_object(void *p)
{
    samm_tld *t = samm__tld;
    uintptr_t a = (uintptr_t)p;
    if (SAMM_LIKELY(samm__registry_get(a) == SAMM_REG_HEAD)) {
        samm_slab *s = samm__slab_of(p);
        uintptr_t off = a & SAMM_SLAB_MASK;
        if (SAMM_LIKELY(s->kind == SAMM_SLAB_POOL && LOAD(&s->owner) == t && off >= s->first &&
                        s->pool < SAMM_MEDIUM_FIRST)) {
            uint32_t k = (uint32_t)(((uint64_t)(off - s->first) * s->recip) >> 32);
            if (SAMM_LIKELY(k < s->nslots && s->first + (uintptr_t)k * s->size == off)) {
                _Atomic uint32_t *m = samm__meta_of(s, p);
                uint32_t w = LOAD(m);
                samm_frame *f = t->cur;
                size_t i = w - SAMM_META_TRACKED;
                bool here =
                    w >= SAMM_META_TRACKED && w != SAMM_META_FAR && i < f->count && f->ptrs[i] == p;
                if (SAMM_LIKELY(here || w == SAMM_META_LIVE)) {
                    uint32_t ntomb = f->ntomb + 1;
                    bool simple =
                        !here || (i + 1 < f->count && (ntomb < 32 || (size_t)ntomb * 2 < f->count));
                    if (SAMM_UNLIKELY(!simple || !samm__slab_stays(s, s->nfree + 1))) {
                        free_object_rest(t, s, p, m, here, i);
                        return;
                    }
                    if (here) {
                        samm__count(t, SAMM_C_REMOVED, 1);
                        if (f->types[i] == SAMM_ALLOC_STRING)
                            samm__count(t, SAMM_C_STRINGS_REMOVED, 1);
                        f->ptrs[i] = SAMM_TOMB;
                        f->ntomb = ntomb;
                    }
                    STORE(m, SAMM_META_FREE);
                    samm_tool_free(p, s->size);
                    samm__slot_push(t, s, p);
                    return;
                }
            }
        }
    }
    free_object_slow(t, p);
}

static SAMM_NOINLINE void *alloc_slow(samm_tld *t, size_t size, unsigned type, const void *site)
{
    static const char call[] = "samm_alloc";
    if (type > 255) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL, "type %u out of range 0..255", type);
        return NULL;
    }
    if (t == &samm__tld_empty && (t = samm__tld_attach(call)) == NULL) return NULL;
    t->site = site;
    int desc = type == SAMM_ALLOC_STRING      ? SAMM_DESC_STRING
               : type == SAMM_ALLOC_LIST      ? SAMM_DESC_LIST
               : type == SAMM_ALLOC_LIST_ATOM ? SAMM_DESC_ATOM
                                              : -1;
    if (desc >= 0) samm__desc_freeze();
    void *p;
    if (desc >= 0 && size <= samm__layout(desc)->size)
        p = samm__alloc_pool(t, desc, samm__layout(desc)->size, call);
    else
        p = samm__alloc_any(t, size, call);
    if (p == NULL) return NULL;
    if (!track(p, (uint8_t)type, call)) {
        /* Untracked memory would leak: give it back, like a failed malloc. */
        samm_ptr_info in;
        samm__classify(p, &in);
        samm__release_block(t, in.slab, p, in.meta, in.word, call);
        return NULL;
    }
    return p;
}

/* The types whose blocks come from the descriptor pools when they fit. */
#define DESC_TYPES                                                                                 \
    ((1u << SAMM_ALLOC_STRING) | (1u << SAMM_ALLOC_LIST) | (1u << SAMM_ALLOC_LIST_ATOM))

/* Allocate and track in one: the block's word says TRACKED at once. */
void *samm_alloc(size_t size, SAMMAllocType type)
{
    samm_tld *t = samm__tld;
    unsigned ty = (unsigned)type;
    if (SAMM_LIKELY(size <= SAMM_SMALL_MAX && ty <= 255 && (ty > 7 || !((DESC_TYPES >> ty) & 1)))) {
        samm_slab *s = t->direct[(size + 15) >> 4];
        void *p = s->free;
        samm_frame *f = t->cur;
        size_t i = f->count;
        if (SAMM_LIKELY(p != NULL && i < LOAD(&f->cap))) {
            _Atomic uint32_t *m = samm__slot_pop(s, p);
            STORE(m, SAMM_META_TRACKED + (uint32_t)i);
            f->ptrs[i] = p;
            f->types[i] = (uint8_t)ty;
            f->count = i + 1;
            return samm__zero_small(p, size);
        }
    }
    return alloc_slow(t, size, ty, __builtin_return_address(0));
}

/* ------------------------------------------------------------------------
 * Waiting and shutting down
 * ---------------------------------------------------------------------- */
void samm_wait(void)
{
    samm_tld *t = samm__tld_get("samm_wait");
    if (t == NULL || t->is_worker) return;
    samm__worker_wait();
    samm__take_mail(t, "samm_wait");
    samm__publish_all(t);
}

void samm__leak_report(const char *call);

void samm_shutdown(void)
{
    static const char call[] = "samm_shutdown";
    if (!atomic_load_explicit(&initialized, memory_order_acquire)) return;
    samm_tld *t = samm__tld_get(call);
    if (t == NULL) return;
    samm_wait();
    if (t->cur->depth + t->phantom > 0)
        samm__report(SAMM_ERR_SCOPE_IMBALANCE, call, NULL,
                     "shutdown with %d scope(s) open; cleaning them", t->cur->depth + t->phantom);
    samm__unwind_all(t, call);
    samm_wait(); /* hooks may have queued more */
    samm__worker_stop();
    samm__take_mail(t, call);
    samm__heap_collect(t);
    samm__publish_all(t);
    samm__leak_report(call);
    if (samm__opt.stats_at_exit) samm_print_stats();
    pthread_mutex_lock(&init_lock);
    atomic_store_explicit(&initialized, 0, memory_order_release);
    pthread_mutex_unlock(&init_lock);
}
