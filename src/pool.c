/* pool.c - all object and descriptor memory: 64 KiB aligned slabs found
 * from the pointer through a lock-free registry, per-thread heaps with
 * lock-free fast paths, batched remote frees, exact per-slot double-free
 * detection, trimming, the large-object live set, statistics and fork.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------------------
 * Sanitizer and Valgrind hooks.  Free slots are poisoned so that a use
 * after free of a pooled object is reported like one of a malloc block; our
 * own accesses to the free-list link inside a free slot are bracketed.
 * ---------------------------------------------------------------------- */
#if defined(__SANITIZE_ADDRESS__)
#define SAMM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAMM_ASAN 1
#endif
#endif

#ifdef SAMM_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SAMM_HAVE_VALGRIND 1
#endif
#endif

#ifdef SAMM_HAVE_VALGRIND
static bool vg_on; /* RUNNING_ON_VALGRIND, read once at init */
#define VG(stmt)                                                                                   \
    do {                                                                                           \
        if (SAMM_UNLIKELY(vg_on)) (void)(stmt);                                                    \
    } while (0)
#define VG_NOACCESS(p, n) VG(VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define VG_UNDEFINED(p, n) VG(VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define VG_DEFINED(p, n) VG(VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define VG_NOACCESS(p, n) ((void)(p), (void)(n))
#define VG_UNDEFINED(p, n) ((void)(p), (void)(n))
#define VG_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* ------------------------------------------------------------------------
 * Slabs.  A slab is SLAB_SIZE bytes aligned to SLAB_SIZE; its header (and
 * one state byte per slot) fills the first page(s), slots follow.  Slabs
 * are never unmapped: an empty slab beyond the retention limit has its
 * slot pages dropped with madvise and keeps its header page, so a stale
 * pointer into it is still recognised (and its double free reported).
 * ---------------------------------------------------------------------- */
#define SLAB_SHIFT 16
#define SLAB_SIZE ((size_t)1 << SLAB_SHIFT)
#define SLAB_MASK (SLAB_SIZE - 1)
#define CHUNK_SLABS 32 /* slabs per mmap */
/* Hysteresis for empty slabs, per pool and thread: up to RETAIN_EMPTY are
 * kept indefinitely; up to RETAIN_MAX for PURGE_DELAY_MS after they became
 * empty, so a loop that fills and empties a big scope reuses them instead
 * of dropping and re-faulting pages every round. */
#define RETAIN_EMPTY 4
#define RETAIN_MAX 16
#define PURGE_DELAY_MS 100
#define ADOPT_TRIES 8 /* abandoned slabs looked at per refill */
#define OBJ_MAX 1024
#define POOLS SAMM_POOL_COUNT

enum { SLOT_FREE = 0, SLOT_USED = 1 };
/* Where a slab is; decides which list holds it. */
enum { W_ACTIVE, W_AVAIL, W_FULL, W_EMPTY, W_ABANDONED, W_FREE };

struct heap;

typedef struct slab {
    /* Owner's (or, while abandoned, abandoned_lock's) fields. */
    void *free; /* local free list, linked through the slots */
    uint32_t used;
    uint32_t bump;     /* slots from here on were never handed out: all zero */
    uint32_t empty_ms; /* when it joined the empty list */
    struct slab *next, *prev;
    uint8_t where;
    /* Fixed while the slab is in a pool. */
    uint8_t pool;
    uint32_t size, first, nslots, recip;
    _Atomic(struct heap *) owner; /* NULL while abandoned or free */
    /* Written by other threads: its own cache line. */
    _Alignas(64) _Atomic(void *) remote;
    _Atomic uint8_t state[];
} slab;

typedef struct {
    slab *head, *tail;
    size_t n;
} slab_list;

typedef struct {
    uint32_t size, first, nslots, recip;
} layout;

static size_t page_size;
static layout layouts[POOLS];
static bool pool_off;

/* ------------------------------------------------------------------------
 * Registry: one byte per possible slab address (48-bit address space) in a
 * two-level table whose leaves are installed with CAS and never freed, so
 * any pointer can be checked without a lock and without reading it.
 * ---------------------------------------------------------------------- */
#define REG_LEAF_BITS 16
#define REG_ROOT_BITS (48 - SLAB_SHIFT - REG_LEAF_BITS)
#define REG_LEAF_SIZE ((size_t)1 << REG_LEAF_BITS)

static _Atomic(_Atomic uint8_t *) registry[(size_t)1 << REG_ROOT_BITS];

static inline bool registry_has(uintptr_t addr)
{
    uintptr_t n = addr >> SLAB_SHIFT;
    if (n >> (REG_ROOT_BITS + REG_LEAF_BITS)) return false;
    _Atomic uint8_t *leaf =
        atomic_load_explicit(&registry[n >> REG_LEAF_BITS], memory_order_acquire);
    return leaf && atomic_load_explicit(&leaf[n & (REG_LEAF_SIZE - 1)], memory_order_relaxed);
}

static _Atomic uint8_t *registry_leaf(uintptr_t n)
{
    _Atomic(_Atomic uint8_t *) *root = &registry[n >> REG_LEAF_BITS];
    _Atomic uint8_t *leaf = atomic_load_explicit(root, memory_order_acquire);
    if (leaf) return leaf;
    _Atomic uint8_t *fresh = samm__calloc(REG_LEAF_SIZE, 1);
    if (!fresh) return NULL;
    if (!atomic_compare_exchange_strong(root, &leaf, fresh)) {
        samm__free(fresh);
        return leaf;
    }
    return fresh;
}

/* Registers [start, end); false if a leaf could not be allocated. */
static bool registry_add(uintptr_t start, uintptr_t end)
{
    if ((end - 1) >> (SLAB_SHIFT + REG_ROOT_BITS + REG_LEAF_BITS)) return false;
    for (uintptr_t n = start >> SLAB_SHIFT; n < end >> SLAB_SHIFT; n++)
        if (!registry_leaf(n)) return false;
    for (uintptr_t n = start >> SLAB_SHIFT; n < end >> SLAB_SHIFT; n++)
        atomic_store_explicit(&registry_leaf(n)[n & (REG_LEAF_SIZE - 1)], 1, memory_order_release);
    return true;
}

/* ------------------------------------------------------------------------
 * Heaps: one per thread, never freed (a remote freer may still read a
 * heap pointer from a slab it is freeing into), recycled by later threads.
 * Counters are written by the owner with relaxed load+store (no locked
 * instruction) and summed by readers under heaps_lock.
 * ---------------------------------------------------------------------- */
typedef struct {
    slab *active;
    slab_list avail, full, empty;
} pclass;

typedef struct heap {
    pclass cls[POOLS];
    _Atomic uint64_t allocs[POOLS], frees[POOLS], peak[POOLS];
    _Atomic int64_t live[POOLS]; /* slots handed out from this heap's slabs */
    /* Bumped by remote freers after they splice into one of our slabs. */
    atomic_uint_fast64_t remote_pending;
    struct heap *next_all;
    bool in_use;
} heap;

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static heap *all_heaps;
static SAMM_TLS heap *tls_heap;
/* tls_heap->cls[p].active, mirrored so the allocation fast path starts one
 * dependent load closer to the free list.  Every change of an active slab
 * goes through set_active. */
static SAMM_TLS struct slab *tls_active[POOLS];
static pthread_key_t heap_key;

/* Frees counted by a thread that could not get a heap (out of memory). */
static atomic_uint_fast64_t orphan_frees[POOLS];

static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static slab_list abandoned[POOLS];

static pthread_mutex_t free_lock = PTHREAD_MUTEX_INITIALIZER;
static slab *free_slabs;               /* decommitted slabs, linked through the header */
static uintptr_t fresh_cur, fresh_end; /* untouched rest of the last chunk */

static atomic_uint_fast64_t slab_count[POOLS];
static atomic_uint_fast64_t returned_bytes[POOLS];
static atomic_uint_fast64_t double_frees;
static atomic_uint_fast64_t foreign_frees;

static pthread_mutex_t desc_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int desc_frozen;
static atomic_size_t desc_size[3] = {40, 32, 24};

static inline void live_add(heap *h, int p, int64_t n)
{
    int64_t v = atomic_load_explicit(&h->live[p], memory_order_relaxed) + n;
    atomic_store_explicit(&h->live[p], v, memory_order_relaxed);
    if (n > 0 && (uint64_t)v > atomic_load_explicit(&h->peak[p], memory_order_relaxed))
        atomic_store_explicit(&h->peak[p], (uint64_t)v, memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Initialisation (once per process)
 * ---------------------------------------------------------------------- */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static layout layout_for(size_t size)
{
    layout l = {(uint32_t)size, 0, 0, 0};
    size_t first = page_size;
    for (;;) {
        size_t n = (SLAB_SIZE - first) / size;
        if (offsetof(slab, state) + n <= first) {
            l.first = (uint32_t)first;
            l.nslots = (uint32_t)n;
            break;
        }
        first += page_size;
    }
    l.recip = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
    return l;
}

static void heap_key_destructor(void *unused)
{
    (void)unused;
    samm__pool_thread_exit();
}

static void pool_init_once(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    page_size = ps >= 4096 && ps <= (long)(SLAB_SIZE / 4) ? (size_t)ps : 4096;
    for (int p = 0; p < SAMM_OBJECT_CLASSES; p++)
        layouts[p] = layout_for((size_t)32 << p);
    const char *env = getenv("SAMM_POOL");
    pool_off = env && (!strcasecmp(env, "off") || !strcmp(env, "0") || !strcasecmp(env, "no"));
#ifdef SAMM_HAVE_VALGRIND
    vg_on = RUNNING_ON_VALGRIND;
#endif
    if (pthread_key_create(&heap_key, heap_key_destructor) != 0)
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_init", NULL,
                     "cannot create the pool thread key; exiting threads keep their slabs");
}

static inline void pool_init(void)
{
    pthread_once(&init_once, pool_init_once);
}

static size_t pool_slot_size(int p)
{
    if (p < SAMM_OBJECT_CLASSES) return (size_t)32 << p;
    return atomic_load(&desc_size[p - SAMM_OBJECT_CLASSES]);
}

/* ------------------------------------------------------------------------
 * Slot helpers
 * ---------------------------------------------------------------------- */
static inline void *link_get(void *slot)
{
    UNPOISON(slot, sizeof(void *));
    VG_DEFINED(slot, sizeof(void *));
    void *next = *(void **)slot;
    POISON(slot, sizeof(void *));
    VG_NOACCESS(slot, sizeof(void *));
    return next;
}

static inline void link_set(void *slot, void *next)
{
    UNPOISON(slot, sizeof(void *));
    VG_UNDEFINED(slot, sizeof(void *));
    *(void **)slot = next;
    POISON(slot, sizeof(void *));
    VG_NOACCESS(slot, sizeof(void *));
}

static inline slab *slab_of(const void *ptr)
{
    return (slab *)((uintptr_t)ptr & ~(uintptr_t)SLAB_MASK);
}

static inline uint32_t slot_index(const slab *s, const void *ptr)
{
    uint64_t off = (uint64_t)((uintptr_t)ptr - (uintptr_t)s) - s->first;
    return (uint32_t)((off * s->recip) >> 32);
}

static inline void *slot_at(slab *s, uint32_t i)
{
    return (char *)s + s->first + (size_t)i * s->size;
}

/* ------------------------------------------------------------------------
 * Slab lists (doubly linked through the header)
 * ---------------------------------------------------------------------- */
static void list_push(slab_list *l, slab *s, uint8_t where)
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

static void list_remove(slab_list *l, slab *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        l->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        l->tail = s->prev;
    s->next = s->prev = NULL;
    l->n--;
}

/* ------------------------------------------------------------------------
 * Getting and returning slabs: the global list of decommitted slabs, the
 * untouched rest of the last chunk, and fresh chunks from mmap.
 * ---------------------------------------------------------------------- */
/* Maps a chunk of slabs as the new fresh range (under free_lock); returns
 * NULL or why it failed, for the caller to report outside the lock. */
static const char *map_chunk(void)
{
    size_t len = CHUNK_SLABS * SLAB_SIZE;
    char *raw = samm__map(len + SLAB_SIZE);
    if (raw == NULL) return "out of memory mapping a pool slab";
    /* Over-allocated by one slab: trim to a SLAB_SIZE-aligned range. */
    uintptr_t start = ((uintptr_t)raw + SLAB_MASK) & ~(uintptr_t)SLAB_MASK;
    size_t head = start - (uintptr_t)raw;
    if (head) munmap(raw, head);
    if (SLAB_SIZE - head) munmap((char *)start + len, SLAB_SIZE - head);
    if (!registry_add(start, start + len)) {
        munmap((void *)start, len);
        return "out of memory for the slab registry";
    }
    fresh_cur = start;
    fresh_end = start + len;
    return NULL;
}

static void slab_init(slab *s, int p, heap *h)
{
    const layout *l = &layouts[p];
    s->free = NULL;
    s->used = 0;
    s->bump = 0;
    s->next = s->prev = NULL;
    s->pool = (uint8_t)p;
    s->size = l->size;
    s->first = l->first;
    s->nslots = l->nslots;
    s->recip = l->recip;
    memset((void *)s->state, SLOT_FREE, l->nslots);
    atomic_store_explicit(&s->remote, NULL, memory_order_relaxed);
    atomic_store(&s->owner, h);
    POISON((char *)s + l->first, SLAB_SIZE - l->first);
    VG_NOACCESS((char *)s + l->first, SLAB_SIZE - l->first);
    atomic_fetch_add(&slab_count[p], 1);
}

static slab *slab_obtain(int p, heap *h, const char *call)
{
    const char *err = NULL;
    pthread_mutex_lock(&free_lock);
    slab *s = free_slabs;
    if (s) {
        free_slabs = s->next;
    } else if (fresh_cur < fresh_end || !(err = map_chunk())) {
        s = (slab *)fresh_cur;
        fresh_cur += SLAB_SIZE;
    }
    pthread_mutex_unlock(&free_lock);
    if (!s) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "%s", err);
        return NULL;
    }
    slab_init(s, p, h);
    return s;
}

/* An empty slab goes back to the OS: its slot pages are dropped (they
 * read as zero afterwards) and its header page is kept. */
static void slab_decommit(slab *s)
{
    int p = s->pool;
    atomic_store(&s->owner, NULL);
    s->where = W_FREE;
    s->free = NULL;
    s->used = 0;
    s->bump = 0;
    POISON((char *)s + s->first, SLAB_SIZE - s->first);
    VG_NOACCESS((char *)s + s->first, SLAB_SIZE - s->first);
    madvise((char *)s + page_size, SLAB_SIZE - page_size, MADV_DONTNEED);
    atomic_fetch_add(&returned_bytes[p], SLAB_SIZE - page_size);
    atomic_fetch_sub(&slab_count[p], 1);
    pthread_mutex_lock(&free_lock);
    s->next = free_slabs;
    free_slabs = s;
    pthread_mutex_unlock(&free_lock);
}

/* ------------------------------------------------------------------------
 * Remote frees: a thread that does not own a slab marks the slot free with
 * CAS, chains it in a small per-thread buffer, and splices the whole chain
 * onto the slab's remote list in one CAS; the owner takes the list with one
 * exchange.
 * ---------------------------------------------------------------------- */
#define RBUF_N 8
#define RBUF_MAX 128 /* longest chain held back, bounding stranded slots */

typedef struct {
    slab *s;
    void *head, *tail;
    uint32_t n;
} rbuf_entry;

static SAMM_TLS rbuf_entry rbuf[RBUF_N];
static SAMM_TLS uint32_t rbuf_busy;

static void rbuf_flush_entry(rbuf_entry *e)
{
    slab *s = e->s;
    void *old = atomic_load_explicit(&s->remote, memory_order_relaxed);
    do {
        link_set(e->tail, old);
    } while (!atomic_compare_exchange_weak(&s->remote, &old, e->head));
    /* After the splice, so that an owner that reset its hint before
     * collecting either sees the chain or gets the hint (see refill). */
    heap *owner = atomic_load(&s->owner);
    if (owner) atomic_fetch_add(&owner->remote_pending, e->n);
    e->s = NULL;
    e->head = e->tail = NULL;
    e->n = 0;
    rbuf_busy--;
}

void samm__pool_flush(void)
{
    if (!rbuf_busy) return;
    for (int i = 0; i < RBUF_N; i++)
        if (rbuf[i].s) rbuf_flush_entry(&rbuf[i]);
}

static SAMM_NOINLINE void rbuf_push(slab *s, void *ptr)
{
    rbuf_entry *e = &rbuf[((uintptr_t)s >> SLAB_SHIFT) % RBUF_N];
    if (e->s != s) {
        if (e->s) rbuf_flush_entry(e);
        e->s = s;
        e->tail = ptr;
        rbuf_busy++;
    }
    *(void **)ptr = e->head;
    POISON(ptr, s->size);
    VG_NOACCESS(ptr, s->size);
    e->head = ptr;
    if (++e->n >= RBUF_MAX) rbuf_flush_entry(e);
}

/* Moves the slab's remote list onto its local list; returns how many. */
static uint32_t collect_remote(slab *s)
{
    void *chain = atomic_exchange(&s->remote, NULL);
    if (!chain) return 0;
    uint32_t n = 1;
    void *tail = chain;
    for (void *next; (next = link_get(tail)) != NULL; tail = next)
        n++;
    link_set(tail, s->free);
    s->free = chain;
    s->used -= n;
    return n;
}

/* ------------------------------------------------------------------------
 * Per-thread heaps: creation, list moves, refill, abandonment
 * ---------------------------------------------------------------------- */
static inline void set_active(heap *h, int p, slab *s)
{
    h->cls[p].active = s;
    if (h == tls_heap) tls_active[p] = s;
}

static SAMM_COLD heap *heap_create(const char *call)
{
    pool_init();
    pthread_mutex_lock(&heaps_lock);
    heap *h = all_heaps;
    while (h && h->in_use)
        h = h->next_all;
    if (!h) {
        h = samm__calloc(1, sizeof *h);
        if (h) {
            h->next_all = all_heaps;
            all_heaps = h;
        }
    }
    if (h) h->in_use = true;
    pthread_mutex_unlock(&heaps_lock);
    if (!h) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for a thread's pool heap");
        return NULL;
    }
    pthread_setspecific(heap_key, h);
    tls_heap = h;
    for (int p = 0; p < POOLS; p++)
        tls_active[p] = h->cls[p].active;
    return h;
}

static inline heap *heap_get(const char *call)
{
    heap *h = tls_heap;
    return h ? h : heap_create(call);
}

static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
}

/* A slab of ours that is not active became empty: it joins the empty list
 * (newest first) and the oldest empties beyond the hysteresis go. */
static void slab_emptied(heap *h, slab *s)
{
    pclass *c = &h->cls[s->pool];
    uint32_t now = now_ms();
    s->empty_ms = now;
    list_push(&c->empty, s, W_EMPTY);
    slab *old;
    while ((old = c->empty.tail) != NULL &&
           (c->empty.n > RETAIN_MAX ||
            (c->empty.n > RETAIN_EMPTY && now - old->empty_ms >= PURGE_DELAY_MS))) {
        list_remove(&c->empty, old);
        slab_decommit(old);
    }
}

/* After slots of a listed (not active) slab came back: move it to where
 * it now belongs. */
static SAMM_NOINLINE void slab_reclassify(heap *h, slab *s)
{
    pclass *c = &h->cls[s->pool];
    if (s->where == W_FULL && (s->free || s->used == 0)) {
        list_remove(&c->full, s);
        if (s->used)
            list_push(&c->avail, s, W_AVAIL);
        else
            slab_emptied(h, s);
    } else if (s->where == W_AVAIL && s->used == 0) {
        list_remove(&c->avail, s);
        slab_emptied(h, s);
    }
}

static uint32_t heap_collect(heap *h, slab *s)
{
    uint32_t n = collect_remote(s);
    if (n) live_add(h, s->pool, -(int64_t)n);
    return n;
}

/* Collects the remote lists of every full slab of the heap. */
static void heap_collect_full(heap *h)
{
    for (int p = 0; p < POOLS; p++) {
        slab *next;
        for (slab *s = h->cls[p].full.head; s; s = next) {
            next = s->next;
            if (heap_collect(h, s)) slab_reclassify(h, s);
        }
    }
}

/* Takes an abandoned slab of pool p with room in it, collecting along the
 * way; slabs without room join our full list. */
static slab *adopt(heap *h, int p)
{
    slab *found = NULL;
    pthread_mutex_lock(&abandoned_lock);
    for (int i = 0; i < ADOPT_TRIES && !found && abandoned[p].head; i++) {
        slab *s = abandoned[p].head;
        list_remove(&abandoned[p], s);
        /* Before collecting: a freer that then still sees no owner spliced
         * before our exchange (both seq_cst). */
        atomic_store(&s->owner, h);
        collect_remote(s);
        live_add(h, p, s->used);
        if (s->free || s->bump < s->nslots)
            found = s;
        else
            list_push(&h->cls[p].full, s, W_FULL);
    }
    pthread_mutex_unlock(&abandoned_lock);
    return found;
}

static slab *refill(heap *h, int p, const char *call)
{
    pclass *c = &h->cls[p];
    for (int pass = 0; pass < 2; pass++) {
        slab *s = c->avail.head;
        if (s) {
            list_remove(&c->avail, s);
            return s;
        }
        if ((s = c->empty.head) != NULL) {
            list_remove(&c->empty, s);
            return s;
        }
        /* Remote frees arrived since we last looked: collect them once.
         * Reset the hint first so that a splice racing with the scan
         * bumps it again. */
        if (pass == 0 && atomic_load_explicit(&h->remote_pending, memory_order_relaxed)) {
            atomic_exchange(&h->remote_pending, 0);
            heap_collect_full(h);
        } else {
            break;
        }
    }
    slab *s = adopt(h, p);
    return s ? s : slab_obtain(p, h, call);
}

static void abandon_slab(heap *h, slab *s)
{
    live_add(h, s->pool, -(int64_t)s->used);
    atomic_store(&s->owner, NULL);
    list_push(&abandoned[s->pool], s, W_ABANDONED);
}

/* Gives every slab of `h` away: empty ones to the OS, others to the
 * abandoned lists.  Leaves `h` with no slabs. */
static void heap_abandon(heap *h)
{
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < POOLS; p++) {
        pclass *c = &h->cls[p];
        slab_list *lists[] = {&c->avail, &c->full, &c->empty};
        if (c->active) {
            heap_collect(h, c->active);
            if (c->active->used)
                abandon_slab(h, c->active);
            else
                slab_decommit(c->active);
            set_active(h, p, NULL);
        }
        for (size_t i = 0; i < sizeof lists / sizeof *lists; i++) {
            slab *s;
            while ((s = lists[i]->head) != NULL) {
                list_remove(lists[i], s);
                heap_collect(h, s);
                if (s->used)
                    abandon_slab(h, s);
                else
                    slab_decommit(s);
            }
        }
    }
    pthread_mutex_unlock(&abandoned_lock);
}

void samm__pool_thread_exit(void)
{
    samm__pool_flush();
    heap *h = tls_heap;
    if (!h) return;
    heap_abandon(h);
    tls_heap = NULL;
    pthread_mutex_lock(&heaps_lock);
    h->in_use = false;
    pthread_mutex_unlock(&heaps_lock);
}

/* ------------------------------------------------------------------------
 * Large objects (and everything, with SAMM_POOL=off): calloc'd blocks in
 * an exact live set (open addressing, in stripes chosen by address, each
 * under its own mutex), so their double free is detected exactly; their
 * freed addresses go to the Bloom filter.
 * ---------------------------------------------------------------------- */
#define TOMBSTONE ((uintptr_t)1)
#define STRIPES 16 /* independent locks, so threads rarely contend */

typedef struct {
    pthread_mutex_t lock;
    uintptr_t *keys;
    size_t *sizes;
    size_t cap, count, filled; /* filled counts tombstones too */
    uint64_t allocs, frees, bytes_allocated, bytes_freed;
} stripe;

static stripe stripes[STRIPES];
static pthread_once_t stripes_once = PTHREAD_ONCE_INIT;

static void stripes_init(void)
{
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripes[i].lock, NULL);
}

static uint64_t large_mix(uintptr_t k)
{
    return (uint64_t)(k >> 4) * 0x9E3779B97F4A7C15ull;
}

/* The top bits of the mix pick the stripe, the bits below them the slot. */
static stripe *stripe_of(uintptr_t k)
{
    pthread_once(&stripes_once, stripes_init);
    return &stripes[large_mix(k) >> 60];
}

static size_t large_hash(uintptr_t k, size_t cap)
{
    return (size_t)(large_mix(k) >> 20) & (cap - 1);
}

static bool large_grow(stripe *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    if (t->count * 4 < t->cap) cap = t->cap; /* mostly tombstones: same size */
    uintptr_t *keys = samm__calloc(cap, sizeof *keys);
    size_t *sizes = samm__calloc(cap, sizeof *sizes);
    if (!keys || !sizes) {
        samm__free(keys);
        samm__free(sizes);
        return false;
    }
    for (size_t i = 0; i < t->cap; i++) {
        uintptr_t k = t->keys[i];
        if (k <= TOMBSTONE) continue;
        size_t j = large_hash(k, cap);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = k;
        sizes[j] = t->sizes[i];
    }
    samm__free(t->keys);
    samm__free(t->sizes);
    t->keys = keys;
    t->sizes = sizes;
    t->cap = cap;
    t->filled = t->count;
    return true;
}

static bool large_insert(stripe *t, uintptr_t k, size_t size)
{
    if ((t->filled + 1) * 2 > t->cap && !large_grow(t)) return false;
    size_t j = large_hash(k, t->cap);
    while (t->keys[j] > TOMBSTONE)
        j = (j + 1) & (t->cap - 1);
    if (!t->keys[j]) t->filled++;
    t->keys[j] = k;
    t->sizes[j] = size;
    t->count++;
    t->allocs++;
    t->bytes_allocated += size;
    return true;
}

static bool large_remove(stripe *t, uintptr_t k)
{
    if (!t->cap) return false;
    for (size_t j = large_hash(k, t->cap); t->keys[j]; j = (j + 1) & (t->cap - 1)) {
        if (t->keys[j] == k) {
            t->keys[j] = TOMBSTONE;
            t->count--;
            t->frees++;
            t->bytes_freed += t->sizes[j];
            return true;
        }
    }
    return false;
}

_Static_assert(_Alignof(max_align_t) >= 16, "calloc must give 16-byte alignment");

static void *large_alloc(size_t size, const char *call)
{
    if (size > SIZE_MAX - 15) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "cannot allocate %zu bytes", size);
        return NULL;
    }
    size_t rounded = size ? (size + 15) & ~(size_t)15 : 16;
    void *p = samm__calloc(1, rounded);
    if (!p) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory allocating %zu bytes",
                     size);
        return NULL;
    }
    stripe *t = stripe_of((uintptr_t)p);
    pthread_mutex_lock(&t->lock);
    bool ok = large_insert(t, (uintptr_t)p, rounded);
    pthread_mutex_unlock(&t->lock);
    if (!ok) {
        samm__free(p);
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for the large-object set");
        return NULL;
    }
    return p;
}

static SAMM_COLD void double_free(const void *ptr, const char *call)
{
    atomic_fetch_add(&double_frees, 1);
    samm__report(SAMM_ERR_DOUBLE_FREE, call, ptr, "double free of %p", ptr);
}

/* ------------------------------------------------------------------------
 * Foreign pointers.  DESIGN asks that a block libsamm never allocated be
 * released with free(), as the original runtime did.  A pointer that cannot
 * be a malloc block would make the C library abort instead, so the cheap
 * cases are recognised first: misaligned, on the calling thread's stack,
 * or inside a loaded image (the static data of the program or of a shared
 * library, which dladdr knows).
 * ---------------------------------------------------------------------- */
static SAMM_TLS uintptr_t stack_lo, stack_hi; /* this thread's stack, once known */

static bool on_own_stack(uintptr_t a)
{
    if (stack_hi == 0) {
        pthread_attr_t attr;
        void *base;
        size_t size;
        if (pthread_getattr_np(pthread_self(), &attr) != 0) return false;
        if (pthread_attr_getstack(&attr, &base, &size) == 0) {
            stack_lo = (uintptr_t)base;
            stack_hi = (uintptr_t)base + size;
        }
        pthread_attr_destroy(&attr);
    }
    return a >= stack_lo && a < stack_hi;
}

/* Why `ptr` cannot be a malloc block, or NULL if it may be one. */
static const char *not_from_malloc(const void *ptr)
{
    uintptr_t a = (uintptr_t)ptr;
    if (a % _Alignof(max_align_t) != 0) return "misaligned";
    if (on_own_stack(a)) return "on the stack";
    Dl_info info;
    if (dladdr(ptr, &info) != 0) return "in static data or code";
    return NULL;
}

static SAMM_NOINLINE void large_release(void *ptr, const char *call)
{
    stripe *t = stripe_of((uintptr_t)ptr);
    pthread_mutex_lock(&t->lock);
    bool mine = large_remove(t, (uintptr_t)ptr);
    pthread_mutex_unlock(&t->lock);
    if (mine) {
        samm__bloom_add(ptr, call);
        samm__free(ptr);
    } else if (samm__bloom_query(ptr)) {
        double_free(ptr, call);
    } else {
        /* Not ours: a malloc block made while libsamm was not in charge,
         * released as the original runtime does - unless it cannot be one. */
        const char *why = not_from_malloc(ptr);
        if (why) {
            samm__report(SAMM_ERR_FOREIGN_POINTER, call, ptr,
                         "%p was not allocated by libsamm or malloc (%s); not freed", ptr, why);
            return;
        }
        atomic_fetch_add(&foreign_frees, 1);
        free(ptr);
    }
}

/* ------------------------------------------------------------------------
 * Allocation
 * ---------------------------------------------------------------------- */
static inline int obj_class(size_t size)
{
    return size <= 32 ? 0 : 64 - __builtin_clzll((unsigned long long)size - 1) - 5;
}

/* The common small sizes get inline stores instead of a call to memset. */
static inline void zero_slot(void *ptr, size_t size)
{
    if (size == 32)
        memset(ptr, 0, 32);
    else if (size == 64)
        memset(ptr, 0, 64);
    else
        memset(ptr, 0, size);
}

/* Takes a slot from `s`, the heap's active slab of pool p, or NULL. */
static inline __attribute__((always_inline)) void *slot_take(heap *h, slab *s, int p)
{
    void *ptr = s->free;
    uint32_t i;
    /* Object classes' slot sizes are known without reading the slab. */
    size_t size = p < SAMM_OBJECT_CLASSES ? (size_t)32 << p : s->size;
    if (SAMM_LIKELY(ptr != NULL)) {
        s->free = link_get(ptr);
        i = slot_index(s, ptr);
        UNPOISON(ptr, size);
        VG_UNDEFINED(ptr, size);
        zero_slot(ptr, size);
    } else if (s->bump < s->nslots) {
        i = s->bump++;
        ptr = slot_at(s, i);
        UNPOISON(ptr, size);
        VG_DEFINED(ptr, size); /* never used since (re)commit: zero */
    } else {
        return NULL;
    }
    atomic_store_explicit(&s->state[i], SLOT_USED, memory_order_relaxed);
    s->used++;
    samm__counter_add(&h->allocs[p], 1);
    live_add(h, p, 1);
    return ptr;
}

static SAMM_NOINLINE void *slot_alloc_slow(int p, size_t off_size, const char *call)
{
    pool_init();
    if (pool_off) return large_alloc(off_size, call);
    heap *h = heap_get(call);
    if (!h) return NULL;
    pclass *c = &h->cls[p];
    for (;;) {
        slab *s = c->active;
        void *ptr = s ? slot_take(h, s, p) : NULL;
        if (ptr) return ptr;
        if (s && heap_collect(h, s)) continue;
        if (s) list_push(&c->full, s, W_FULL);
        set_active(h, p, NULL);
        if (!(s = refill(h, p, call))) return NULL;
        s->where = W_ACTIVE;
        set_active(h, p, s);
    }
}

void *samm__obj_alloc(size_t size, const char *call)
{
    if (SAMM_UNLIKELY(size > OBJ_MAX)) return large_alloc(size, call);
    int p = obj_class(size);
    slab *s = tls_active[p]; /* set only once initialised, with pooling on */
    if (SAMM_LIKELY(s != NULL)) {
        void *ptr = slot_take(tls_heap, s, p);
        if (SAMM_LIKELY(ptr != NULL)) return ptr;
    }
    return slot_alloc_slow(p, size, call);
}

static SAMM_COLD void desc_freeze(void)
{
    pool_init();
    pthread_mutex_lock(&desc_lock);
    if (!atomic_load(&desc_frozen)) {
        for (int k = 0; k < 3; k++)
            layouts[SAMM_OBJECT_CLASSES + k] = layout_for(atomic_load(&desc_size[k]));
        atomic_store_explicit(&desc_frozen, 1, memory_order_release);
    }
    pthread_mutex_unlock(&desc_lock);
}

void *samm__desc_alloc(int kind, const char *call)
{
    if (SAMM_UNLIKELY(kind < 0 || kind > SAMM_DESC_ATOM)) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL, "no descriptor pool %d", kind);
        return NULL;
    }
    if (SAMM_UNLIKELY(!atomic_load_explicit(&desc_frozen, memory_order_acquire))) desc_freeze();
    int p = SAMM_OBJECT_CLASSES + kind;
    slab *s = tls_active[p];
    if (SAMM_LIKELY(s != NULL)) {
        void *ptr = slot_take(tls_heap, s, p);
        if (SAMM_LIKELY(ptr != NULL)) return ptr;
    }
    return slot_alloc_slow(p, layouts[p].size, call);
}

int samm_set_descriptor_sizes(size_t string_size, size_t list_size, size_t atom_size)
{
    static const char *call = "samm_set_descriptor_sizes";
    size_t sizes[3] = {string_size, list_size, atom_size};
    for (int k = 0; k < 3; k++) {
        if (sizes[k] < 8 || sizes[k] > 1024) {
            samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL,
                         "descriptor size %zu is outside 8..1024", sizes[k]);
            return -1;
        }
    }
    int rc = 0;
    pthread_mutex_lock(&desc_lock);
    if (atomic_load(&desc_frozen)) {
        rc = -1;
    } else {
        for (int k = 0; k < 3; k++)
            atomic_store(&desc_size[k], (sizes[k] + 7) & ~(size_t)7);
    }
    pthread_mutex_unlock(&desc_lock);
    if (rc)
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL,
                     "descriptor sizes cannot change once a descriptor pool was used");
    return rc;
}

/* ------------------------------------------------------------------------
 * Release
 * ---------------------------------------------------------------------- */
static void count_free(int p, const char *call)
{
    heap *h = tls_heap;
    if (!h) h = heap_create(call);
    if (h)
        samm__counter_add(&h->frees[p], 1);
    else
        atomic_fetch_add(&orphan_frees[p], 1);
}

/* The slot `ptr` starts, or UINT32_MAX (reported) when it starts none. */
static inline uint32_t slot_checked(slab *s, void *ptr, const char *call)
{
    uintptr_t off = (uintptr_t)ptr - (uintptr_t)s;
    uint32_t i = off >= s->first ? slot_index(s, ptr) : UINT32_MAX;
    if (SAMM_UNLIKELY(i >= s->nslots || (uintptr_t)slot_at(s, i) != (uintptr_t)ptr)) {
        samm__report(SAMM_ERR_FOREIGN_POINTER, call, ptr,
                     "%p is not the start of a pool slot; not freed", ptr);
        return UINT32_MAX;
    }
    return i;
}

/* Owner-thread free of slot i: state, free list, poisoning.  The caller
 * updates s->used, the counters and the slab's list.  False (reported)
 * for a double free. */
static inline bool slot_free_local(slab *s, void *ptr, uint32_t i, const char *call)
{
    if (SAMM_UNLIKELY(atomic_load_explicit(&s->state[i], memory_order_relaxed) != SLOT_USED)) {
        double_free(ptr, call);
        return false;
    }
    atomic_store_explicit(&s->state[i], SLOT_FREE, memory_order_relaxed);
    *(void **)ptr = s->free;
    POISON(ptr, s->size);
    VG_NOACCESS(ptr, s->size);
    s->free = ptr;
    return true;
}

static inline void slab_freed_local(heap *h, slab *s, uint32_t n)
{
    int p = s->pool;
    s->used -= n;
    samm__counter_add(&h->frees[p], n);
    live_add(h, p, -(int64_t)n);
    if (SAMM_UNLIKELY(s->where == W_FULL || (s->used == 0 && s->where != W_ACTIVE)))
        slab_reclassify(h, s);
}

static void slot_release(slab *s, void *ptr, const char *call)
{
    uint32_t i = slot_checked(s, ptr, call);
    if (i == UINT32_MAX) return;
    heap *h = tls_heap;
    if (SAMM_LIKELY(h && atomic_load_explicit(&s->owner, memory_order_relaxed) == h)) {
        if (slot_free_local(s, ptr, i, call)) slab_freed_local(h, s, 1);
        return;
    }
    uint8_t expected = SLOT_USED;
    if (!atomic_compare_exchange_strong(&s->state[i], &expected, SLOT_FREE)) {
        double_free(ptr, call);
        return;
    }
    count_free(s->pool, call);
    rbuf_push(s, ptr);
}

void samm__mem_release(void *ptr, const char *call)
{
    if (!ptr) return;
    if (SAMM_LIKELY(registry_has((uintptr_t)ptr)))
        slot_release(slab_of(ptr), ptr, call);
    else
        large_release(ptr, call);
}

/* As samm__mem_release on each pointer in turn, but a run of pointers into
 * one slab this thread owns pays the registry check, the owner check, the
 * counters and the list bookkeeping once: scope cleanup frees objects in
 * the order they were allocated, so runs are long. */
void samm__mem_release_many(void *const *ptrs, size_t n, const char *call)
{
    heap *h = tls_heap;
    size_t i = 0;
    while (i < n) {
        void *ptr = ptrs[i];
        uintptr_t base = (uintptr_t)ptr & ~(uintptr_t)SLAB_MASK;
        slab *s = (slab *)base;
        if (!h || !ptr || !registry_has((uintptr_t)ptr) ||
            atomic_load_explicit(&s->owner, memory_order_relaxed) != h) {
            samm__mem_release(ptr, call);
            i++;
            continue;
        }
        uint32_t freed = 0;
        do {
            ptr = ptrs[i++];
            uint32_t k = slot_checked(s, ptr, call);
            if (k != UINT32_MAX && slot_free_local(s, ptr, k, call)) freed++;
        } while (i < n && ((uintptr_t)ptrs[i] & ~(uintptr_t)SLAB_MASK) == base);
        if (freed) slab_freed_local(h, s, freed);
    }
}

/* ------------------------------------------------------------------------
 * Trimming: the calling thread's heap and the abandoned slabs (other live
 * threads' heaps are theirs alone; they trim as their slabs empty).
 * ---------------------------------------------------------------------- */
void samm__pool_trim(void)
{
    pool_init();
    samm__pool_flush();
    heap *h = tls_heap;
    if (h) {
        for (int p = 0; p < POOLS; p++) {
            pclass *c = &h->cls[p];
            slab_list *lists[] = {&c->avail, &c->full};
            for (size_t i = 0; i < 2; i++) {
                slab *next;
                for (slab *s = lists[i]->head; s; s = next) {
                    next = s->next;
                    if (heap_collect(h, s)) slab_reclassify(h, s);
                }
            }
            slab *s;
            while ((s = c->empty.head) != NULL) {
                list_remove(&c->empty, s);
                slab_decommit(s);
            }
            if ((s = c->active) != NULL) {
                heap_collect(h, s);
                if (!s->used) {
                    set_active(h, p, NULL);
                    slab_decommit(s);
                }
            }
        }
    }
    pthread_mutex_lock(&abandoned_lock);
    for (int p = 0; p < POOLS; p++) {
        slab *next;
        for (slab *s = abandoned[p].head; s; s = next) {
            next = s->next;
            collect_remote(s);
            if (!s->used) {
                list_remove(&abandoned[p], s);
                slab_decommit(s);
            }
        }
    }
    pthread_mutex_unlock(&abandoned_lock);
}

void samm_trim(void)
{
    samm__pool_trim();
}

/* ------------------------------------------------------------------------
 * fork(): hold every pool lock across it; the child takes the heaps of
 * threads that do not exist there and abandons their slabs.
 * ---------------------------------------------------------------------- */
void samm__pool_atfork_prepare(void)
{
    pthread_mutex_lock(&heaps_lock);
    pthread_mutex_lock(&desc_lock);
    pthread_mutex_lock(&abandoned_lock);
    pthread_mutex_lock(&free_lock);
    pthread_once(&stripes_once, stripes_init);
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_lock(&stripes[i].lock);
}

void samm__pool_atfork_parent(void)
{
    for (int i = STRIPES - 1; i >= 0; i--)
        pthread_mutex_unlock(&stripes[i].lock);
    pthread_mutex_unlock(&free_lock);
    pthread_mutex_unlock(&abandoned_lock);
    pthread_mutex_unlock(&desc_lock);
    pthread_mutex_unlock(&heaps_lock);
}

/* The forking thread owns every pool lock in the child too, so it unlocks
 * them (re-initialising a held mutex would leave ThreadSanitizer, and any
 * checking mutex, believing it is still held).  Then the heaps of the
 * threads that did not survive the fork are abandoned for adoption. */
void samm__pool_atfork_child(void)
{
    samm__pool_atfork_parent();
    for (heap *h = all_heaps; h; h = h->next_all) {
        if (h->in_use && h != tls_heap) {
            heap_abandon(h);
            h->in_use = false;
        }
    }
}

/* ------------------------------------------------------------------------
 * Statistics and leaks
 * ---------------------------------------------------------------------- */
typedef struct {
    uint64_t allocs, frees, peak;
} pool_sums;

static void pool_sum(pool_sums sums[POOLS])
{
    memset(sums, 0, POOLS * sizeof *sums);
    pthread_mutex_lock(&heaps_lock);
    for (heap *h = all_heaps; h; h = h->next_all) {
        for (int p = 0; p < POOLS; p++) {
            sums[p].allocs += atomic_load_explicit(&h->allocs[p], memory_order_relaxed);
            sums[p].frees += atomic_load_explicit(&h->frees[p], memory_order_relaxed);
            uint64_t peak = atomic_load_explicit(&h->peak[p], memory_order_relaxed);
            if (peak > sums[p].peak) sums[p].peak = peak;
        }
    }
    pthread_mutex_unlock(&heaps_lock);
    for (int p = 0; p < POOLS; p++)
        sums[p].frees += atomic_load(&orphan_frees[p]);
}

/* The large-object counters over all stripes (only the counters are set). */
static stripe large_sum(void)
{
    stripe sum;
    memset(&sum, 0, sizeof sum);
    pthread_once(&stripes_once, stripes_init);
    for (int i = 0; i < STRIPES; i++) {
        stripe *t = &stripes[i];
        pthread_mutex_lock(&t->lock);
        sum.count += t->count;
        sum.allocs += t->allocs;
        sum.frees += t->frees;
        sum.bytes_allocated += t->bytes_allocated;
        sum.bytes_freed += t->bytes_freed;
        pthread_mutex_unlock(&t->lock);
    }
    return sum;
}

int samm_get_pool_stats(int index, SAMMPoolStats *out)
{
    if (index < 0 || index >= POOLS || !out) return -1;
    pool_init();
    pool_sums sums[POOLS];
    pool_sum(sums);
    pool_sums *s = &sums[index];
    memset(out, 0, sizeof *out);
    out->slot_size = pool_slot_size(index);
    out->slabs = atomic_load(&slab_count[index]);
    out->capacity = out->slabs * layout_for(out->slot_size).nslots;
    out->in_use = s->allocs - s->frees;
    out->peak_in_use = s->peak > out->in_use ? s->peak : out->in_use;
    out->allocations = s->allocs;
    out->frees = s->frees;
    out->bytes_returned_to_os = atomic_load(&returned_bytes[index]);
    return 0;
}

void samm__pool_fill_stats(SAMMStats *out)
{
    pool_init();
    pool_sums sums[POOLS];
    pool_sum(sums);
    for (int p = 0; p < POOLS; p++) {
        uint64_t size = pool_slot_size(p);
        out->objects_allocated += sums[p].allocs;
        out->objects_freed += sums[p].frees;
        out->total_bytes_allocated += sums[p].allocs * size;
        out->total_bytes_freed += sums[p].frees * size;
        out->bytes_returned_to_os += atomic_load(&returned_bytes[p]);
    }
    stripe sum = large_sum();
    out->objects_allocated += sum.allocs;
    out->objects_freed += sum.frees;
    out->total_bytes_allocated += sum.bytes_allocated;
    out->total_bytes_freed += sum.bytes_freed;
    out->double_free_attempts += atomic_load(&double_frees);
    out->foreign_frees += atomic_load(&foreign_frees);
    out->bloom_false_positives += samm__bloom_fp_estimate();
    out->bloom_memory_bytes += samm__bloom_memory();
    out->bloom_false_positive_rate = samm__bloom_fp_rate();
}

void samm__pool_report_leaks(const char *call)
{
    pool_init();
    pool_sums sums[POOLS];
    pool_sum(sums);
    for (int p = 0; p < POOLS; p++) {
        uint64_t n = sums[p].allocs - sums[p].frees;
        size_t size = pool_slot_size(p);
        if (n)
            samm__report(SAMM_ERR_LEAK, call, NULL,
                         "leak: %llu objects (%llu bytes) still in use in the %zu-byte %s pool",
                         (unsigned long long)n, (unsigned long long)(n * size), size,
                         p < SAMM_OBJECT_CLASSES        ? "object"
                         : p == SAMM_OBJECT_CLASSES     ? "string"
                         : p == SAMM_OBJECT_CLASSES + 1 ? "list"
                                                        : "list-atom");
    }
    stripe sum = large_sum();
    uint64_t n = sum.count, bytes = sum.bytes_allocated - sum.bytes_freed;
    if (n)
        samm__report(SAMM_ERR_LEAK, call, NULL,
                     "leak: %llu large objects (%llu bytes) still in use", (unsigned long long)n,
                     (unsigned long long)bytes);
}
