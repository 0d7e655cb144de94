/* SPDX-License-Identifier: MIT */
/* heap.c - a thread's pools: the slabs it allocates from (one active slab
 * per pool, the others on avail, full and empty lists), refilling when the
 * active slab runs dry, frees into its own slabs and into other threads'
 * (batched per slab, spliced in one CAS), empty slabs kept for a while and
 * then returned, slabs adopted from ended threads, and trimming.
 *
 * Counting is in bulk: a slab counts the slots it hands out (nalloc) and
 * gets back (nfree); the thread's counters take the difference when the
 * slab stops being active, when frees of its pool are flushed, and when
 * the thread publishes.  A slot freed by another thread is counted by the
 * slab's owner when it takes the slot back.
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "track.h"

/* Hysteresis for empty slabs, per pool and thread: up to RETAIN_EMPTY are
 * kept indefinitely; up to RETAIN_MAX (4 MiB) for PURGE_DELAY_MS after they
 * became empty, so a loop that fills and empties a big scope reuses them
 * instead of dropping and re-faulting pages every round.  Measured: with
 * 16, freeing 100,000 objects spent most of its time in madvise and its
 * TLB shootdowns (samm_free_object 5.7x free() by hand; with 64, 1.2x). */
#define RETAIN_EMPTY 4
#define RETAIN_MAX 64
#define PURGE_DELAY_MS 100
#define ADOPT_TRIES 8     /* abandoned slabs looked at per refill */
#define EXTEND_BYTES 4096 /* fresh slots linked per extension     */
#define RBUF_MAX 128      /* longest chain of remote frees held back */

static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_slab_list abandoned[SAMM_POOLS];

/* ------------------------------------------------------------------------
 * Slab lists (doubly linked through the header)
 * ---------------------------------------------------------------------- */
static void list_push(samm_slab_list *l, samm_slab *s, uint8_t where)
{
    s->where = where;
    s->prev = NULL;
    s->next = l->head;
    if (l->head)
        l->head->prev = s;
    else
        l->tail = s;
    l->head = s;
    l->n++;
}

static void list_remove(samm_slab_list *l, samm_slab *s)
{
    SAMM_ASSERT_INTERNAL(l->n > 0);
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->next = s->prev = NULL;
    s->where = SAMM_IN_NONE;
    l->n--;
}

#if SAMM_DEBUG >= 3
static bool list_holds(const samm_slab_list *l, const samm_slab *s)
{
    for (const samm_slab *x = l->head; x; x = x->next)
        if (x == s) return true;
    return false;
}
#endif

/* ------------------------------------------------------------------------
 * The direct table and the active slab
 * ---------------------------------------------------------------------- */
/* The slab every empty fast-path entry points to: no free slot. */
samm_slab samm__slab_empty;

/* Direct-table range [lo, hi] of small class p. */
static inline void direct_range(int p, int *lo, int *hi)
{
    *lo = p == 0 ? 0 : ((16 << p) + 16) >> 4;
    *hi = (32 << p) >> 4;
}

void samm__heap_set_active(samm_tld *t, int p, samm_slab *s)
{
    t->pc[p].active = s;
    if (s) s->where = SAMM_IN_ACTIVE;
    /* With ASan found at run time every allocation takes the slow path,
     * which tells ASan, and so it does while allocation sites are
     * recorded; the fast path stays free of both checks. */
    samm_slab *d = s && !SAMM_RUNTIME_ASAN && !LOAD(&samm__sites_on) ? s : &samm__slab_empty;
    t->pdirect[p] = d;
    if (p >= SAMM_SMALL_CLASSES) return;
    int lo, hi;
    direct_range(p, &lo, &hi);
    for (int i = lo; i <= hi; i++)
        t->direct[i] = d;
}

/* The fast-path tables again, for a change of the site recording. */
void samm__heap_redirect(samm_tld *t)
{
    t->sites_gen = atomic_load(&samm__sites_gen);
    for (int p = 0; p < SAMM_POOLS; p++)
        samm__heap_set_active(t, p, t->pc[p].active);
}

/* Counts what s handed out since last counted. */
static inline void fold(samm_tld *t, samm_slab *s)
{
    uint32_t d = s->nalloc - s->folded;
    if (d) {
        samm__add(&t->ctr.allocs[s->pool], d);
        s->folded = s->nalloc;
    }
}

void samm__heap_fold(samm_tld *t)
{
    for (int p = 0; p < SAMM_POOLS; p++)
        if (t->pc[p].active) fold(t, t->pc[p].active);
}

/* Slots of pool p come back (n of them): the peak before they do, then
 * the count. */
static inline void count_frees(samm_tld *t, int p, uint64_t n)
{
    samm_slab *a = t->pc[p].active;
    if (a) fold(t, a);
    /* Signed: a thread that took over slabs of an ended one frees slots
     * that thread counted as allocated. */
    int64_t live = (int64_t)(LOAD(&t->ctr.allocs[p]) - LOAD(&t->ctr.frees[p]));
    if (live > (int64_t)LOAD(&t->ctr.peak[p])) STORE(&t->ctr.peak[p], (uint64_t)live);
    samm__add(&t->ctr.frees[p], n);
}

/* ------------------------------------------------------------------------
 * Remote frees: a thread that does not own a slab chains the freed slots
 * in a small per-thread buffer and splices the chain onto the slab's
 * remote list in one CAS; the owner takes the list with one exchange.
 * ---------------------------------------------------------------------- */
static inline void *link_get(void *slot)
{
    samm_tool_link_open(slot);
    void *next = *(void **)slot;
    samm_tool_link_close(slot);
    return next;
}

static inline void link_set(void *slot, void *next)
{
    samm_tool_link_open(slot);
    *(void **)slot = next;
    samm_tool_link_close(slot);
}

static void rbuf_flush(samm_tld *t, samm_rbuf *e)
{
    samm_slab *s = e->s;
    void *old = atomic_load_explicit(&s->remote, RELAXED);
    do {
        link_set(e->tail, old);
    } while (!atomic_compare_exchange_weak(&s->remote, &old, e->head));
    /* After the splice, so that an owner that reset its hint before
     * collecting either sees the chain or gets the hint (see refill). */
    samm_tld *owner = atomic_load(&s->owner);
    if (owner) atomic_fetch_add(&owner->remote_pending, e->n);
    e->s = NULL;
    e->head = e->tail = NULL;
    e->n = 0;
    t->rbuf_busy--;
}

void samm__heap_flush_remote(samm_tld *t)
{
    if (!t->rbuf_busy) return;
    for (int i = 0; i < SAMM_RBUF_N; i++)
        if (t->rbuf[i].s) rbuf_flush(t, &t->rbuf[i]);
}

void samm__heap_free_remote(samm_tld *t, samm_slab *s, void *p)
{
    samm_rbuf *e = &t->rbuf[((uintptr_t)s >> SAMM_SLAB_SHIFT) % SAMM_RBUF_N];
    if (e->s != s) {
        if (e->s) rbuf_flush(t, e);
        e->s = s;
        e->tail = p;
        t->rbuf_busy++;
    }
    samm_tool_free(p, s->size);
    link_set(p, e->head);
    e->head = p;
    if (++e->n >= RBUF_MAX) rbuf_flush(t, e);
}

/* Moves s's remote list onto its free list; how many came back. */
static uint32_t collect_remote(samm_tld *t, samm_slab *s)
{
    if (atomic_load_explicit(&s->remote, RELAXED) == NULL) return 0;
    void *chain = atomic_exchange(&s->remote, NULL);
    if (!chain) return 0;
    uint32_t n = 1;
    void *tail = chain;
    for (void *next; (next = link_get(tail)) != NULL; tail = next)
        n++;
    link_set(tail, s->free);
    s->free = chain;
    s->nfree += n;
    count_frees(t, s->pool, n);
    return n;
}

/* ------------------------------------------------------------------------
 * Empty slabs and moves between lists
 * ---------------------------------------------------------------------- */
static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

static inline uint32_t used_of(const samm_slab *s)
{
    return s->nalloc - s->nfree;
}

static void slab_release(samm_tld *t, samm_slab *s)
{
    SAMM_ASSERT_INTERNAL(used_of(s) == 0);
    samm__span_put(t, s);
}

/* A slab of ours that is not active became empty: it joins the empty list
 * (newest first) and the oldest empties beyond the hysteresis go. */
static void slab_emptied(samm_tld *t, samm_slab *s)
{
    samm_pclass *c = &t->pc[s->pool];
    uint32_t now = now_ms();
    s->empty_ms = now;
    list_push(&c->empty, s, SAMM_IN_EMPTY);
    samm_slab *old;
    while ((old = c->empty.tail) != NULL &&
           (c->empty.n > RETAIN_MAX ||
            (c->empty.n > RETAIN_EMPTY && now - old->empty_ms >= PURGE_DELAY_MS))) {
        list_remove(&c->empty, old);
        slab_release(t, old);
    }
}

/* After slots of a listed (not active) slab came back: where it belongs. */
static SAMM_NOINLINE void slab_reclassify(samm_tld *t, samm_slab *s)
{
    samm_pclass *c = &t->pc[s->pool];
    SAMM_ASSERT_INTERNAL(s->where != SAMM_IN_ACTIVE);
    if (s->where == SAMM_IN_FULL) {
        SAMM_ASSERT_EXPENSIVE(list_holds(&c->full, s));
        list_remove(&c->full, s);
        if (used_of(s))
            list_push(&c->avail, s, SAMM_IN_AVAIL);
        else
            slab_emptied(t, s);
    } else if (s->where == SAMM_IN_AVAIL && used_of(s) == 0) {
        SAMM_ASSERT_EXPENSIVE(list_holds(&c->avail, s));
        list_remove(&c->avail, s);
        slab_emptied(t, s);
    }
}

void samm__heap_changed(samm_tld *t, samm_slab *s)
{
    slab_reclassify(t, s);
}

void samm__heap_settle(samm_tld *t, samm_slab *s, uint32_t n)
{
    SAMM_ASSERT_INTERNAL(LOAD(&s->owner) == t && used_of(s) <= s->nslots);
    count_frees(t, s->pool, n);
    if (SAMM_UNLIKELY(s->where == SAMM_IN_FULL || (used_of(s) == 0 && s->where != SAMM_IN_ACTIVE)))
        slab_reclassify(t, s);
}

void samm__heap_free_local(samm_tld *t, samm_slab *s, void *head, void *tail, uint32_t n)
{
    SAMM_ASSERT_INTERNAL(LOAD(&s->owner) == t && n > 0);
    link_set(tail, s->free);
    s->free = head;
    s->nfree += n;
    SAMM_ASSERT_INTERNAL(used_of(s) <= s->nslots);
    count_frees(t, s->pool, n);
    if (SAMM_UNLIKELY(s->where == SAMM_IN_FULL || (used_of(s) == 0 && s->where != SAMM_IN_ACTIVE)))
        slab_reclassify(t, s);
}

/* ------------------------------------------------------------------------
 * Refill
 * ---------------------------------------------------------------------- */
/* Links up to a page of never-used slots onto the free list. */
static bool extend(samm_slab *s)
{
    if (s->bump >= s->nslots) return false;
    uint32_t n = EXTEND_BYTES / s->size;
    if (n == 0) n = 1;
    if (n > s->nslots - s->bump) n = s->nslots - s->bump;
    char *base = (char *)s + s->first;
    void *head = s->free;
    for (uint32_t i = s->bump + n; i-- > s->bump;) {
        void *slot = base + (size_t)i * s->size;
        link_set(slot, head);
        head = slot;
    }
    s->free = head;
    s->bump += n;
    return true;
}

/* Collects the remote lists of every full slab of the heap. */
static void collect_full(samm_tld *t)
{
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm_slab *next;
        for (samm_slab *s = t->pc[p].full.head; s; s = next) {
            next = s->next;
            if (collect_remote(t, s)) slab_reclassify(t, s);
        }
    }
}

/* An abandoned slab of pool p with room in it, collecting along the way;
 * slabs without room join our full list. */
static samm_slab *adopt(samm_tld *t, int p)
{
    samm_slab *found = NULL;
    pthread_mutex_lock(&abandoned_lock);
    for (int i = 0; i < ADOPT_TRIES && !found && abandoned[p].head; i++) {
        samm_slab *s = abandoned[p].head;
        list_remove(&abandoned[p], s);
        /* Before collecting: a freer that then still sees no owner spliced
         * before our exchange (both sequentially consistent). */
        atomic_store(&s->owner, t);
        s->folded = s->nalloc; /* counted by the thread that allocated */
        collect_remote(t, s);
        if (s->free || s->bump < s->nslots)
            found = s;
        else
            list_push(&t->pc[p].full, s, SAMM_IN_FULL);
    }
    pthread_mutex_unlock(&abandoned_lock);
    return found;
}

static samm_slab *refill(samm_tld *t, int p, const char *call)
{
    samm_pclass *c = &t->pc[p];
    for (int pass = 0; pass < 2; pass++) {
        samm_slab *s = c->avail.head;
        if (s) {
            list_remove(&c->avail, s);
            return s;
        }
        if ((s = c->empty.head) != NULL) {
            list_remove(&c->empty, s);
            return s;
        }
        /* Remote frees arrived since we last looked: collect them once.
         * The hint is reset first so that a splice racing with the scan
         * bumps it again. */
        if (pass == 0 && atomic_load_explicit(&t->remote_pending, RELAXED)) {
            atomic_exchange(&t->remote_pending, 0);
            collect_full(t);
        } else {
            break;
        }
    }
    samm_slab *s = adopt(t, p);
    if (s) return s;
    bool dirty;
    s = samm__span_get(1, &dirty, call);
    if (!s) return NULL;
    samm__slab_format(s, p, t);
    samm__add(&t->ctr.slabs_made[p], 1);
    return s;
}

void *samm__heap_alloc_slow(samm_tld *t, int p, const char *call)
{
    samm_pclass *c = &t->pc[p];
    for (;;) {
        samm_slab *s = c->active;
        if (s) {
            if (s->free || extend(s) || collect_remote(t, s)) {
                void *ptr = s->free;
                samm_tool_link_open(ptr);
                s->free = *(void **)ptr;
                s->nalloc++;
                _Atomic uint32_t *m = samm__meta_of(s, ptr);
                SAMM_ASSERT_INTERNAL(LOAD(m) == SAMM_META_FREE);
                STORE(m, SAMM_META_LIVE);
                t->last_alloc = ptr;
                t->last_meta = m;
                samm_tool_alloc(ptr, s->size);
                if (SAMM_UNLIKELY(LOAD(&samm__sites_on))) samm__site_note(t, s, ptr);
                return ptr;
            }
            fold(t, s);
            list_push(&c->full, s, SAMM_IN_FULL);
            samm__heap_set_active(t, p, NULL);
        }
        if (!(s = refill(t, p, call))) return NULL;
        if (t->sites_gen != LOAD(&samm__sites_gen)) samm__heap_redirect(t);
        samm__heap_set_active(t, p, s);
    }
}

/* ------------------------------------------------------------------------
 * Thread end, trimming, fork
 * ---------------------------------------------------------------------- */
/* Called with abandoned_lock held. */
static void give_away(samm_tld *t, samm_slab *s)
{
    fold(t, s);
    collect_remote(t, s);
    if (used_of(s)) {
        atomic_store(&s->owner, NULL);
        list_push(&abandoned[s->pool], s, SAMM_IN_ABANDONED);
    } else {
        slab_release(t, s);
    }
}

void samm__heap_abandon(samm_tld *t)
{
    samm__heap_flush_remote(t);
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm_pclass *c = &t->pc[p];
        if (c->active) {
            samm_slab *s = c->active;
            samm__heap_set_active(t, p, NULL);
            give_away(t, s);
        }
        samm_slab_list *lists[] = {&c->avail, &c->full, &c->empty};
        for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
            samm_slab *s;
            while ((s = lists[i]->head) != NULL) {
                list_remove(lists[i], s);
                give_away(t, s);
            }
        }
    }
    pthread_mutex_unlock(&abandoned_lock);
    atomic_store(&t->remote_pending, 0);
}

void samm__heap_disown(samm_tld *t)
{
    samm__heap_abandon(t);
}

void samm__heap_collect(samm_tld *t)
{
    samm__heap_flush_remote(t);
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm_pclass *c = &t->pc[p];
        if (c->active) collect_remote(t, c->active);
        samm_slab_list *lists[] = {&c->avail, &c->full};
        for (size_t i = 0; i < 2; i++) {
            samm_slab *next;
            for (samm_slab *s = lists[i]->head; s; s = next) {
                next = s->next;
                if (collect_remote(t, s)) slab_reclassify(t, s);
            }
        }
    }
}

/* Slots other threads freed into ended threads' slabs are counted (by t)
 * when someone asks: statistics and the leak report. */
void samm__heap_collect_abandoned(samm_tld *t)
{
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < SAMM_POOLS; p++)
        for (samm_slab *s = abandoned[p].head; s; s = s->next)
            collect_remote(t, s);
    pthread_mutex_unlock(&abandoned_lock);
}

void samm__heap_each(samm_tld *t, void (*fn)(samm_slab *s, void *arg), void *arg)
{
    for (int p = 0; p < SAMM_POOLS && t; p++) {
        samm_pclass *c = &t->pc[p];
        if (c->active) fn(c->active, arg);
        samm_slab_list *lists[] = {&c->avail, &c->full};
        for (size_t i = 0; i < 2; i++)
            for (samm_slab *s = lists[i]->head; s; s = s->next)
                fn(s, arg);
    }
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < SAMM_POOLS; p++)
        for (samm_slab *s = abandoned[p].head; s; s = s->next)
            fn(s, arg);
    pthread_mutex_unlock(&abandoned_lock);
}

void samm__heap_trim(samm_tld *t)
{
    samm__heap_collect(t);
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm_pclass *c = &t->pc[p];
        samm_slab *s;
        while ((s = c->empty.head) != NULL) {
            list_remove(&c->empty, s);
            slab_release(t, s);
        }
        if ((s = c->active) != NULL && used_of(s) == 0) {
            fold(t, s);
            samm__heap_set_active(t, p, NULL);
            slab_release(t, s);
        }
    }
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm_slab *next;
        for (samm_slab *s = abandoned[p].head; s; s = next) {
            next = s->next;
            collect_remote(t, s);
            if (used_of(s) == 0) {
                list_remove(&abandoned[p], s);
                slab_release(t, s);
            }
        }
    }
    pthread_mutex_unlock(&abandoned_lock);
    samm__span_trim();
}

void samm_trim(void)
{
    samm_tld *t = samm__tld_get("samm_trim");
    if (t) samm__heap_trim(t);
}

void samm__heap_atfork_prepare(void)
{
    pthread_mutex_lock(&abandoned_lock);
}

void samm__heap_atfork_release(void)
{
    pthread_mutex_unlock(&abandoned_lock);
}
