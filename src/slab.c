/* SPDX-License-Identifier: MIT */
/* slab.c - libsamm's memory: 64 KiB slabs and spans of them, mapped in
 * chunks and never unmapped; the registry that says, for any address,
 * whether it is libsamm's and where its header is; the slot layout of each
 * pool; and the exact classification of a pointer (foreign, interior,
 * free, live, tracked), which reads nothing the registry does not vouch
 * for.
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "track.h"

/* ------------------------------------------------------------------------
 * Layouts.  Slot size S, slot words indexed by (offset >> shift) with
 * 2^shift <= S, so distinct slots have distinct words; the words sit right
 * after the header and slots start after them.
 * ---------------------------------------------------------------------- */
static samm_layout layouts[SAMM_POOLS];
static pthread_mutex_t desc_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int desc_frozen;
static size_t desc_size[3] = {40, 32, 24};

static samm_layout layout_for(size_t size)
{
    samm_layout l;
    l.size = (uint32_t)size;
    l.shift = (uint8_t)(63 - __builtin_clzll((unsigned long long)size));
    size_t words = SAMM_SLAB_SIZE >> l.shift;
    size_t first = (SAMM_META_OFF + words * sizeof(uint32_t) + 63) & ~(size_t)63;
    l.first = (uint32_t)first;
    l.nslots = (uint32_t)((SAMM_SLAB_SIZE - first) / size);
    l.recip = (uint32_t)((((uint64_t)1 << 32) + size - 1) / size);
    return l;
}

void samm__slab_init(void)
{
    for (int p = 0; p < SAMM_SMALL_CLASSES; p++)
        layouts[p] = layout_for((size_t)32 << p);
    for (int p = 0; p < SAMM_MEDIUM_CLASSES; p++)
        layouts[SAMM_MEDIUM_FIRST + p] = layout_for((size_t)2048 << p);
}

const samm_layout *samm__layout(int pool)
{
    SAMM_ASSERT(pool >= 0 && pool < SAMM_POOLS);
    return &layouts[pool];
}

size_t samm__pool_slot_size(int pool)
{
    if (pool >= SAMM_DESC_FIRST && pool < SAMM_DESC_FIRST + 3) {
        pthread_mutex_lock(&desc_lock);
        size_t s = desc_size[pool - SAMM_DESC_FIRST];
        pthread_mutex_unlock(&desc_lock);
        return s;
    }
    return layouts[pool].size;
}

void samm__desc_freeze(void)
{
    if (atomic_load_explicit(&desc_frozen, memory_order_acquire)) return;
    pthread_mutex_lock(&desc_lock);
    if (!atomic_load(&desc_frozen)) {
        for (int k = 0; k < 3; k++)
            layouts[SAMM_DESC_FIRST + k] = layout_for(desc_size[k]);
        atomic_store_explicit(&desc_frozen, 1, memory_order_release);
    }
    pthread_mutex_unlock(&desc_lock);
}

int samm_set_descriptor_sizes(size_t string_size, size_t list_size, size_t atom_size)
{
    static const char call[] = "samm_set_descriptor_sizes";
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
    if (atomic_load(&desc_frozen))
        rc = -1;
    else
        for (int k = 0; k < 3; k++)
            desc_size[k] = (sizes[k] + 7) & ~(size_t)7;
    pthread_mutex_unlock(&desc_lock);
    if (rc)
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL,
                     "descriptor sizes cannot change once a descriptor pool was used");
    return rc;
}

/* ------------------------------------------------------------------------
 * Registry: one byte per SAMM_SLAB_SIZE of a 48-bit address space, in a
 * two-level table whose leaves are installed with CAS and never freed, so
 * any pointer is checked without a lock and without reading it.  Every
 * slab of every chunk is registered when the chunk is mapped.
 * ---------------------------------------------------------------------- */
#define REG_LEAF_BITS SAMM_REG_LEAF_BITS
#define REG_ROOT_BITS SAMM_REG_ROOT_BITS
#define REG_LEAF_SIZE ((size_t)1 << REG_LEAF_BITS)

_Atomic(_Atomic uint8_t *) samm__registry[(size_t)1 << SAMM_REG_ROOT_BITS];
#define registry samm__registry

static inline int registry_get(uintptr_t addr)
{
    return samm__registry_get(addr);
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

/* Marks the slabs of [start, start + n slabs); false when a leaf could not
 * be allocated (nothing is marked then). */
static bool registry_mark(uintptr_t start, size_t n, uint8_t head, uint8_t body)
{
    uintptr_t first = start >> SAMM_SLAB_SHIFT;
    if ((first + n - 1) >> (REG_ROOT_BITS + REG_LEAF_BITS)) return false;
    for (uintptr_t k = first; k < first + n; k++)
        if (!registry_leaf(k)) return false;
    for (uintptr_t k = first; k < first + n; k++)
        atomic_store_explicit(&registry_leaf(k)[k & (REG_LEAF_SIZE - 1)], k == first ? head : body,
                              memory_order_release);
    return true;
}

bool samm__is_ours(const void *p)
{
    return registry_get((uintptr_t)p) != SAMM_REG_NONE;
}

/* ------------------------------------------------------------------------
 * Spans.  A chunk is mapped, registered as slabs, and carved from its
 * start; freed spans keep their header page (so a stale pointer into them
 * is still recognised) and wait in lists by length for reuse.  A freed
 * huge span may stay committed for a while (`warm`), so a loop that
 * allocates and frees a 40 KiB object does not fault pages every time.
 * ---------------------------------------------------------------------- */
#define SPAN_LISTS (SAMM_CHUNK_SLABS + 1) /* [k] for k slabs; [0] longer ones */
#define WARM_MAX_BYTES ((size_t)32 << 20)

static pthread_mutex_t span_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_slab *spans_free[SPAN_LISTS]; /* decommitted */
static samm_slab *spans_warm[SPAN_LISTS]; /* committed, huge spans */
static size_t warm_bytes;
static uintptr_t fresh_cur, fresh_end;

static inline size_t list_of(size_t k)
{
    return k <= SAMM_CHUNK_SLABS ? k : 0;
}

static void span_push(samm_slab **lists, samm_slab *s)
{
    size_t i = list_of(s->span);
    s->where = SAMM_IN_SPANS;
    s->next = lists[i];
    lists[i] = s;
}

/* The first span of at least k slabs in lists[0] (longer spans), unlinked. */
static samm_slab *span_take_long(samm_slab **lists, size_t k)
{
    for (samm_slab **pp = &lists[0]; *pp; pp = &(*pp)->next) {
        if ((*pp)->span >= k) {
            samm_slab *s = *pp;
            *pp = s->next;
            return s;
        }
    }
    return NULL;
}

/* Turns the tail of span s (beyond its first k slabs) into a free span. */
static void span_split(samm_slab *s, size_t k)
{
    size_t rest = s->span - k;
    if (rest == 0) return;
    samm_slab *t = (samm_slab *)((char *)s + k * SAMM_SLAB_SIZE);
    /* The tail was decommitted with its span (reads as zero) except when
     * it held a header page of its own: clear what a header says. */
    memset(t, 0, sizeof *t);
    t->span = (uint32_t)rest;
    registry_mark((uintptr_t)t, rest, SAMM_REG_HEAD, SAMM_REG_BODY);
    s->span = (uint32_t)k;
    span_push(spans_free, t);
}

/* Called with span_lock held; NULL or why it failed. */
static const char *map_chunk(size_t k)
{
    size_t n = k > SAMM_CHUNK_SLABS ? k : SAMM_CHUNK_SLABS;
    if (n > SIZE_MAX / SAMM_SLAB_SIZE) return "size out of range";
    char *start = samm__os_map(n * SAMM_SLAB_SIZE, SAMM_SLAB_SIZE);
    if (start == NULL) return "out of memory mapping a slab";
    /* Every slab a head until carved: a pointer into memory not yet handed
     * out finds a zeroed header, which says "no block here". */
    if (!registry_mark((uintptr_t)start, 1, SAMM_REG_HEAD, SAMM_REG_HEAD)) goto no_registry;
    for (size_t i = 1; i < n; i++)
        if (!registry_mark((uintptr_t)start + i * SAMM_SLAB_SIZE, 1, SAMM_REG_HEAD, SAMM_REG_HEAD))
            goto no_registry;
    if (fresh_cur < fresh_end) {
        /* The old chunk's rest becomes a free span. */
        samm_slab *t = (samm_slab *)fresh_cur;
        t->span = (uint32_t)((fresh_end - fresh_cur) / SAMM_SLAB_SIZE);
        registry_mark(fresh_cur, t->span, SAMM_REG_HEAD, SAMM_REG_BODY);
        span_push(spans_free, t);
    }
    fresh_cur = (uintptr_t)start;
    fresh_end = (uintptr_t)start + n * SAMM_SLAB_SIZE;
    return NULL;
no_registry:
    /* The memory stays mapped and some of it registered: keep it as the
     * fresh range rather than leak it into nobody's hands. */
    return "out of memory for the slab registry";
}

samm_slab *samm__span_get(size_t k, bool *dirty, const char *call)
{
    SAMM_ASSERT(k >= 1);
    samm_slab *s = NULL;
    const char *err = NULL;
    *dirty = false;
    pthread_mutex_lock(&span_lock);
    size_t i = list_of(k);
    if (i && (s = spans_warm[i]) != NULL) {
        spans_warm[i] = s->next;
        warm_bytes -= k * SAMM_SLAB_SIZE;
        *dirty = true;
    } else if (i && (s = spans_free[i]) != NULL) {
        spans_free[i] = s->next;
    } else if (fresh_end - fresh_cur >= k * SAMM_SLAB_SIZE) {
        s = (samm_slab *)fresh_cur;
        fresh_cur += k * SAMM_SLAB_SIZE;
        s->span = (uint32_t)k;
    } else {
        for (size_t j = i ? i + 1 : SPAN_LISTS; j < SPAN_LISTS && !s; j++)
            if ((s = spans_free[j]) != NULL) spans_free[j] = s->next;
        if (!s) s = span_take_long(spans_free, k);
        if (!s && !(err = map_chunk(k))) {
            s = (samm_slab *)fresh_cur;
            fresh_cur += k * SAMM_SLAB_SIZE;
            s->span = (uint32_t)k;
        }
    }
    if (s) {
        if (s->span > k) span_split(s, k);
        registry_mark((uintptr_t)s, k, SAMM_REG_HEAD, SAMM_REG_BODY);
        /* The header page was kept when the span was freed: clear it. */
        memset(s, 0, SAMM_META_OFF);
        s->span = (uint32_t)k;
    }
    pthread_mutex_unlock(&span_lock);
    if (!s) samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "%s", err ? err : "out of memory");
    return s;
}

void samm__span_put(samm_tld *t, samm_slab *s)
{
    SAMM_ASSERT(s->span >= 1);
    size_t page = samm__os_page_size();
    size_t bytes = (size_t)s->span * SAMM_SLAB_SIZE;
    int pool = s->pool;
    bool huge = s->kind == SAMM_SLAB_HUGE;
    atomic_store(&s->owner, NULL);
    s->free = NULL;
    s->kind = SAMM_SLAB_FREE; /* pool and layout stay: stale pointers */
    samm__sites_free(s);
    samm_tool_free((char *)s + s->first, bytes - s->first);
    if (pool != SAMM_POOL_HUGE) samm__add(&t->ctr.slabs_gone[pool], 1);
    bool warm = huge && s->span <= SAMM_CHUNK_SLABS;
    if (warm) {
        pthread_mutex_lock(&span_lock);
        warm = warm_bytes + bytes <= WARM_MAX_BYTES;
        if (warm) {
            warm_bytes += bytes;
            span_push(spans_warm, s);
        }
        pthread_mutex_unlock(&span_lock);
        if (warm) return;
    }
    /* The pages go back before the span is listed: once it is, another
     * thread may take it, and a late decommit would zero its blocks.  The
     * header page stays. */
    samm__os_decommit((char *)s + page, bytes - page);
    if (pool != SAMM_POOL_HUGE) samm__add(&t->ctr.returned[pool], bytes - page);
    pthread_mutex_lock(&span_lock);
    span_push(spans_free, s);
    pthread_mutex_unlock(&span_lock);
}

/* Warm huge spans go back to the system (samm_trim). */
void samm__span_trim(void)
{
    size_t page = samm__os_page_size();
    pthread_mutex_lock(&span_lock);
    for (size_t i = 0; i < SPAN_LISTS; i++) {
        samm_slab *s;
        while ((s = spans_warm[i]) != NULL) {
            spans_warm[i] = s->next;
            warm_bytes -= s->span * SAMM_SLAB_SIZE;
            samm__os_decommit((char *)s + page, (size_t)s->span * SAMM_SLAB_SIZE - page);
            span_push(spans_free, s);
        }
    }
    pthread_mutex_unlock(&span_lock);
}

void samm__slab_format(samm_slab *s, int pool, samm_tld *owner)
{
    const samm_layout *l = &layouts[pool];
    size_t page = samm__os_page_size();
    s->free = NULL;
    s->nalloc = s->nfree = s->folded = 0;
    s->shift = l->shift;
    s->pool = (uint8_t)pool;
    s->kind = SAMM_SLAB_POOL;
    s->where = SAMM_IN_NONE;
    s->size = l->size;
    s->first = l->first;
    s->nslots = l->nslots;
    s->recip = l->recip;
    s->bump = 0;
    s->next = s->prev = NULL;
    atomic_store_explicit(&s->remote, NULL, RELAXED);
    /* The slot words: the kept header page may hold an older layout's, and
     * a recently freed huge span was kept committed with its data.  The
     * tools saw those bytes as free slots. */
    (void)page;
    samm_tool_alloc((char *)s + SAMM_META_OFF, l->first - SAMM_META_OFF);
    memset((char *)s + SAMM_META_OFF, 0, l->first - SAMM_META_OFF);
    samm_tool_free((char *)s + l->first, SAMM_SLAB_SIZE - l->first);
    atomic_store(&s->owner, owner);
}

void samm__slab_atfork_prepare(void)
{
    pthread_mutex_lock(&desc_lock);
    pthread_mutex_lock(&span_lock);
}

void samm__slab_atfork_release(void)
{
    pthread_mutex_unlock(&span_lock);
    pthread_mutex_unlock(&desc_lock);
}

/* ------------------------------------------------------------------------
 * Classification
 * ---------------------------------------------------------------------- */
samm_ptr_kind samm__classify(const void *p, samm_ptr_info *out)
{
    out->slab = NULL;
    out->meta = NULL;
    out->word = 0;
    uintptr_t a = (uintptr_t)p;
    int reg = registry_get(a);
    if (reg == SAMM_REG_NONE) return out->kind = SAMM_PTR_FOREIGN;
    uintptr_t h = a & ~(uintptr_t)SAMM_SLAB_MASK;
    while (reg == SAMM_REG_BODY) {
        h -= SAMM_SLAB_SIZE;
        reg = registry_get(h);
    }
    samm_slab *s = (samm_slab *)h;
    out->slab = s;
    if (reg != SAMM_REG_HEAD || s->size == 0) return out->kind = SAMM_PTR_INTERIOR;
    uintptr_t off = a - h;
    if (s->pool == SAMM_POOL_HUGE) {
        if (off != s->first) return out->kind = SAMM_PTR_INTERIOR;
    } else {
        if (off >= SAMM_SLAB_SIZE || off < s->first) return out->kind = SAMM_PTR_INTERIOR;
        uint32_t k = (uint32_t)(((uint64_t)(off - s->first) * s->recip) >> 32);
        if (k >= s->nslots || s->first + (uintptr_t)k * s->size != off)
            return out->kind = SAMM_PTR_INTERIOR;
    }
    out->meta = samm__meta_of(s, p);
    out->word = LOAD(out->meta);
    if (out->word == SAMM_META_FREE) return out->kind = SAMM_PTR_FREE;
    if (out->word == SAMM_META_LIVE) return out->kind = SAMM_PTR_LIVE;
    return out->kind = SAMM_PTR_TRACKED;
}
