/* SPDX-License-Identifier: MIT */
/* scope.c - scope storage: frames of the seed's three parallel arrays, the
 * per-thread stack of them (in segments that never move), and the
 * samm_scope_* ABI on a stack of its own.
 *
 * Order: entries are cleaned newest first, always.  Removing one from the
 * middle leaves a tombstone, so nothing moves; tombstones at the end are
 * popped, and a frame whose tombstones outnumber its entries is compacted
 * (amortised O(1): each compaction follows at least half as many removals
 * as it moves entries).  Entries that are libsamm blocks are found through
 * their slot word; foreign entries through a 256-bit filter and, in frames
 * holding many of them, a hash index.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

char samm__tomb;

#define SEG_FIRST 64
#define SEG_MAX 4096
#define COMPACT_MIN 32 /* tombstones before a compaction is considered */

/* ------------------------------------------------------------------------
 * Filter: one bit of 256 per pointer hash, for foreign entries; a search
 * skips frames whose bit is clear.
 * ---------------------------------------------------------------------- */
static inline unsigned filter_bit(const void *p)
{
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL) >> 56);
}

static inline void filter_add(samm_frame *f, const void *p)
{
    unsigned b = filter_bit(p);
    f->filter[b >> 6] |= (uint64_t)1 << (b & 63);
}

static inline bool filter_may_hold(const samm_frame *f, const void *p)
{
    unsigned b = filter_bit(p);
    return (f->filter[b >> 6] >> (b & 63) & 1) != 0;
}

/* ------------------------------------------------------------------------
 * Hash index of foreign entries: open addressing with linear probing.  A
 * slot holds the entry's 32-bit hash in its high half and (entry index +
 * 1) in its low half; 0 is empty.  index[-1] holds the capacity; the load
 * stays at or below 3/4.
 * ---------------------------------------------------------------------- */
static inline uint32_t hash_ptr(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static inline size_t index_cap(const samm_frame *f)
{
    return (size_t)f->index[-1];
}

static inline uint64_t slot_make(uint32_t hash, size_t idx)
{
    return (uint64_t)hash << 32 | (uint64_t)(idx + 1);
}

static inline size_t slot_idx(uint64_t v)
{
    return (size_t)(uint32_t)v - 1;
}

static inline uint32_t slot_hash(uint64_t v)
{
    return (uint32_t)(v >> 32);
}

static void index_drop(samm_frame *f)
{
    if (f->index) samm__free(f->index - 1);
    f->index = NULL;
}

static void index_insert(samm_frame *f, size_t idx)
{
    size_t mask = index_cap(f) - 1;
    uint32_t h = hash_ptr(f->ptrs[idx]);
    size_t i = h & mask;
    while (f->index[i] != 0)
        i = (i + 1) & mask;
    f->index[i] = slot_make(h, idx);
}

/* Indexes the foreign entries (all of them in samm_scope_* frames, which
 * set every entry foreign); false on OOM or a frame too large for 32-bit
 * entry numbers: searches then scan. */
static bool index_build(samm_frame *f, size_t want, bool all)
{
    if (f->count >= UINT32_MAX / 4 || want >= UINT32_MAX / 4) return false;
    size_t cap = 128;
    while (cap < want * 2)
        cap *= 2;
    uint64_t *mem = samm__calloc(cap + 1, sizeof *mem);
    if (mem == NULL) return false;
    mem[0] = cap;
    index_drop(f);
    f->index = mem + 1;
    for (size_t i = 0; i < f->count; i++) {
        void *p = f->ptrs[i];
        if (p != SAMM_TOMB && (all || !samm__is_ours(p))) index_insert(f, i);
    }
    return true;
}

/* Slot of the newest entry for p, or SIZE_MAX. */
static size_t index_find(const samm_frame *f, const void *p)
{
    size_t mask = index_cap(f) - 1, best = SIZE_MAX, best_idx1 = 0;
    uint32_t h = hash_ptr(p);
    for (size_t i = h & mask; f->index[i] != 0; i = (i + 1) & mask) {
        uint64_t v = f->index[i];
        if (slot_hash(v) == h && slot_idx(v) + 1 > best_idx1 && f->ptrs[slot_idx(v)] == p) {
            best = i;
            best_idx1 = slot_idx(v) + 1;
        }
    }
    return best;
}

static size_t index_slot_of(const samm_frame *f, size_t idx)
{
    size_t mask = index_cap(f) - 1;
    size_t i = hash_ptr(f->ptrs[idx]) & mask;
    while (f->index[i] == 0 || slot_idx(f->index[i]) != idx)
        i = (i + 1) & mask;
    return i;
}

/* Backward-shift deletion keeps probe sequences intact without tombstones. */
static void index_delete_slot(samm_frame *f, size_t i)
{
    size_t mask = index_cap(f) - 1, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (f->index[j] == 0) break;
        size_t k = slot_hash(f->index[j]) & mask;
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (stays) continue;
        f->index[i] = f->index[j];
        i = j;
    }
    f->index[i] = 0;
}

/* ------------------------------------------------------------------------
 * Frames
 * ---------------------------------------------------------------------- */
void samm__frame_set_cap(samm_frame *f)
{
    size_t cap = f->capacity < SAMM_META_MAX_INDEX ? f->capacity : SAMM_META_MAX_INDEX;
    if (!atomic_load_explicit(&samm__enabled, RELAXED)) cap = 0;
    atomic_store(&f->cap, cap);
    /* Re-checked after the store: a concurrent samm_set_enabled(0) either
     * saw our store (and zeroed it) or we see its flag. */
    if (!atomic_load(&samm__enabled)) atomic_store(&f->cap, 0);
}

static void frame_clear(samm_frame *f)
{
    f->count = 0;
    f->ntomb = 0;
    f->nforeign = 0;
    memset(f->filter, 0, sizeof f->filter);
    index_drop(f);
}

/* Grows the arrays (all of them or none); with_sc: the size-class array
 * of samm_scope_* frames too. */
static bool frame_grow(samm_frame *f, bool with_sc, const char *call)
{
    size_t cap = f->capacity ? f->capacity * 2 : SAMM_FRAME_INITIAL_CAP;
    if (cap < f->capacity || cap > SIZE_MAX / sizeof(void *)) goto oom;
    /* Each array is grown in turn; a failure leaves the earlier ones larger
     * than `capacity` says, which is harmless: it only moves once all fit. */
    void **p = samm__realloc(f->ptrs, cap * sizeof *p);
    if (p == NULL) goto oom;
    f->ptrs = p;
    uint8_t *t = samm__realloc(f->types, cap);
    if (t == NULL) goto oom;
    f->types = t;
    if (with_sc) {
        uint8_t *s = samm__realloc(f->sc, cap);
        if (s == NULL) goto oom;
        f->sc = s;
    }
    f->capacity = cap;
    return true;
oom:
    samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL,
                 "out of memory growing a scope frame of %zu entries", f->count);
    return false;
}

size_t samm__frame_append(samm_frame *f, void *p, uint8_t type, _Atomic uint32_t *meta,
                          const char *call)
{
    if (f->count == f->capacity && !frame_grow(f, false, call)) return SIZE_MAX;
    size_t i = f->count;
    f->ptrs[i] = p;
    f->types[i] = type;
    f->count = i + 1;
    if (meta) {
        STORE(meta, i < SAMM_META_MAX_INDEX ? SAMM_META_TRACKED + (uint32_t)i : SAMM_META_FAR);
    } else {
        f->nforeign++;
        filter_add(f, p);
        if (f->index) {
            if ((f->nforeign + 1) * 4 > index_cap(f) * 3 && !index_build(f, f->nforeign + 1, false))
                index_drop(f);
            else
                index_insert(f, i);
        }
    }
    samm__frame_set_cap(f);
    return i;
}

/* Moves the entries down over the tombstones, in order; the slot words of
 * our entries follow their entries.  A tracked block of ours is a slot of a
 * pool slab or a huge block in the first slab of its span, so its word is
 * found from the pointer alone; only frames holding foreign entries need
 * the registry to tell them apart. */
static void frame_compact(samm_frame *f)
{
    bool mixed = f->nforeign != 0;
    size_t j = 0;
    for (size_t i = 0; i < f->count; i++) {
        void *p = f->ptrs[i];
        if (p == SAMM_TOMB) continue;
        if (i != j) {
            f->ptrs[j] = p;
            f->types[j] = f->types[i];
            if (!mixed || samm__is_ours(p))
                STORE(samm__meta_of(samm__slab_of(p), p),
                      j < SAMM_META_MAX_INDEX ? SAMM_META_TRACKED + (uint32_t)j : SAMM_META_FAR);
        }
        j++;
    }
    f->count = j;
    f->ntomb = 0;
    if (f->index && !index_build(f, f->nforeign, false)) index_drop(f);
}

/* What samm__frame_remove_at leaves to a call: a foreign entry (index and
 * counts), an emptied frame, or tombstones to compact. */
void samm__frame_remove_slow(samm_frame *f, size_t i, bool foreign)
{
    if (foreign) {
        if (f->index) index_delete_slot(f, index_slot_of(f, i));
        f->nforeign--;
    }
    if (i + 1 == f->count) {
        f->count = i;
        while (f->count > 0 && f->ptrs[f->count - 1] == SAMM_TOMB) {
            f->count--;
            f->ntomb--;
        }
    } else {
        f->ptrs[i] = SAMM_TOMB;
        f->ntomb++;
    }
    if (f->count == 0)
        frame_clear(f);
    else if (f->ntomb >= COMPACT_MIN && (size_t)f->ntomb * 2 >= f->count)
        frame_compact(f);
    SAMM_ASSERT_INTERNAL(f->ntomb <= f->count && f->nforeign <= f->count);
}

size_t samm__frame_find(samm_frame *f, const void *p)
{
    if (f->nforeign == 0 || !filter_may_hold(f, p)) return SIZE_MAX;
    if (f->index == NULL && f->nforeign >= SAMM_INDEX_MIN) index_build(f, f->nforeign, false);
    if (f->index) {
        size_t h = index_find(f, p);
        return h == SIZE_MAX ? SIZE_MAX : slot_idx(f->index[h]);
    }
    for (size_t i = f->count; i-- > 0;)
        if (f->ptrs[i] == p) return i;
    return SIZE_MAX;
}

samm_batch samm__frame_take(samm_frame *f)
{
    samm_batch b = {f->ptrs, f->types, f->count, f->capacity, f->ntomb, f->nforeign, NULL, 0, 0, false, 0};
    f->ptrs = NULL;
    f->types = NULL;
    f->capacity = 0;
    frame_clear(f);
    atomic_store(&f->cap, 0);
    return b;
}

void samm__batch_free_arrays(samm_batch *b)
{
    free(b->ptrs);
    free(b->types);
    b->ptrs = NULL;
    b->types = NULL;
}

void samm__frame_adopt_arrays(samm_frame *f, samm_batch *b)
{
    if (f == NULL || f->capacity != 0 || b->ptrs == NULL) {
        samm__batch_free_arrays(b);
        return;
    }
    SAMM_ASSERT_INTERNAL(f->count == 0);
    f->ptrs = b->ptrs;
    f->types = b->types;
    f->capacity = b->capacity;
    b->ptrs = NULL;
    b->types = NULL;
    samm__frame_set_cap(f);
}

/* ------------------------------------------------------------------------
 * The stack of frames: segments of 64, 128, ... 4096 frames that never
 * move.  limit (enter) and floor (exit) tell the fast paths when to stop:
 * at the end of the segment or one past the deepest frame entered yet
 * (so that peak_depth stays exact), and at the segment's first frame.
 * ---------------------------------------------------------------------- */
static samm_frame_seg *seg_new(samm_frame_seg *prev, const char *call)
{
    size_t n = prev ? (prev->n * 2 < SEG_MAX ? prev->n * 2 : SEG_MAX) : SEG_FIRST;
    int base = prev ? prev->f[0].depth + (int)prev->n : 0;
    if (prev && (size_t)base + n > (size_t)INT32_MAX) {
        samm__report(SAMM_ERR_BAD_DEPTH, call, NULL, "scope depth overflow");
        return NULL;
    }
    samm_frame_seg *s = samm__calloc(1, sizeof *s + n * sizeof(samm_frame));
    if (s == NULL) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for scope depth %d", base);
        return NULL;
    }
    s->n = n;
    s->prev = prev;
    for (size_t i = 0; i < n; i++)
        s->f[i].depth = base + (int)i;
    if (prev) prev->next = s;
    return s;
}

bool samm__scopes_init(samm_tld *t, const char *call)
{
    if (t->segs == NULL && (t->segs = seg_new(NULL, call)) == NULL) return false;
    t->seg = t->segs;
    t->cur = &t->segs->f[0];
    t->peak_depth = 0;
    return true;
}

/* fork child: t's thread does not exist here, so nothing will clean its
 * scopes.  Their blocks become plain live blocks, which the leak report
 * then counts, instead of staying "tracked" by a scope that is gone. */
static void orphan_frame(samm_frame *f)
{
    for (size_t i = 0; i < f->count; i++) {
        samm_ptr_info in;
        if (f->ptrs[i] != SAMM_TOMB && samm__classify(f->ptrs[i], &in) == SAMM_PTR_TRACKED)
            STORE(in.meta, SAMM_META_LIVE);
    }
}

void samm__scopes_orphan(samm_tld *t)
{
    for (samm_frame_seg *s = t->segs; s; s = s->next)
        for (size_t i = 0; i < s->n; i++)
            orphan_frame(&s->f[i]);
    for (size_t i = 0; i < t->abi_n; i++)
        orphan_frame(&t->abi[i]);
}

void samm__scopes_release(samm_tld *t)
{
    samm_frame_seg *s = t->segs, *next;
    for (; s; s = next) {
        next = s->next;
        for (size_t i = 0; i < s->n; i++) {
            samm_frame *f = &s->f[i];
            frame_clear(f);
            free(f->ptrs);
            free(f->types);
        }
        samm__free(s);
    }
    t->segs = t->seg = NULL;
    t->cur = NULL;
    for (size_t i = 0; i < t->abi_n; i++) {
        samm_frame *f = &t->abi[i];
        frame_clear(f);
        free(f->ptrs);
        free(f->types);
        free(f->sc);
    }
    samm__free(t->abi);
    t->abi = NULL;
    t->abi_n = 0;
    while (t->nspare)
        samm__batch_free_arrays(&t->spare[--t->nspare]);
}

uintptr_t samm__frame_limit(samm_tld *t)
{
    samm_frame_seg *s = t->seg;
    int peak_in_seg = t->peak_depth - s->f[0].depth;
    size_t stop = peak_in_seg + 1 < (int)s->n ? (size_t)peak_in_seg + 1 : s->n;
    return (uintptr_t)&s->f[stop];
}

uintptr_t samm__frame_floor(samm_tld *t)
{
    return (uintptr_t)&t->seg->f[0];
}

bool samm__frame_enter_slow(samm_tld *t, const char *call)
{
    samm_frame_seg *s = t->seg;
    samm_frame *f = t->cur + 1;
    if (f == &s->f[s->n]) {
        if (s->next == NULL && seg_new(s, call) == NULL) return false;
        s = t->seg = s->next;
        f = &s->f[0];
    }
    t->cur = f;
    if (f->depth > t->peak_depth) {
        t->peak_depth = f->depth;
        if (f->depth > (int)LOAD(&t->ctr.c[SAMM_C_PEAK_DEPTH]))
            STORE(&t->ctr.c[SAMM_C_PEAK_DEPTH], (uint64_t)f->depth);
    }
    if (f->capacity) samm__frame_set_cap(f);
    return true;
}

void samm__frame_exit_step(samm_tld *t)
{
    samm_frame_seg *s = t->seg;
    SAMM_ASSERT(t->cur->depth > 0);
    if (t->cur == &s->f[0]) {
        t->seg = s->prev;
        t->cur = &t->seg->f[t->seg->n - 1];
    } else {
        t->cur--;
    }
}

samm_frame *samm__frame_at(samm_tld *t, int depth)
{
    if (depth < 0 || depth > t->cur->depth) return NULL;
    samm_frame_seg *s = t->seg;
    while (depth < s->f[0].depth)
        s = s->prev;
    return &s->f[depth - s->f[0].depth];
}

void samm__frames_poke(samm_tld *t, bool disabled)
{
    for (samm_frame_seg *s = t->segs; s; s = s->next)
        for (size_t i = 0; i < s->n; i++)
            if (disabled)
                atomic_store(&s->f[i].cap, 0);
            else if (s->f[i].capacity)
                samm__frame_set_cap(&s->f[i]);
}

/* ------------------------------------------------------------------------
 * The exported ABI: frames of its own per thread, indexed by depth, whose
 * entries are anything the caller adds (each counts as foreign: the core's
 * tracking state is never touched through here).  Removal swaps the last
 * entry in, as the seed's module does.
 * ---------------------------------------------------------------------- */
static bool depth_ok(int depth, const char *call)
{
    if (SAMM_LIKELY(depth >= 0)) return true;
    samm__report(SAMM_ERR_BAD_DEPTH, call, NULL, "negative scope depth %d", depth);
    return false;
}

static samm_frame *abi_frame(int depth, bool create, const char *call)
{
    samm_tld *t = samm__tld_get(call);
    if (t == NULL) return NULL;
    if ((size_t)depth < t->abi_n) return &t->abi[depth];
    if (!create) return NULL;
    size_t n = t->abi_n ? t->abi_n : 8;
    while (n <= (size_t)depth)
        n *= 2;
    samm_frame *v = samm__realloc(t->abi, n * sizeof *v);
    if (v == NULL) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for scope depth %d", depth);
        return NULL;
    }
    memset(v + t->abi_n, 0, (n - t->abi_n) * sizeof *v);
    for (size_t i = t->abi_n; i < n; i++)
        v[i].depth = (int)i;
    t->abi = v;
    t->abi_n = n;
    return &t->abi[depth];
}

void samm_scope_ensure_init(void)
{
    samm__ensure_init();
}

void samm_scope_reset(int depth)
{
    if (!depth_ok(depth, "samm_scope_reset")) return;
    samm_frame *f = abi_frame(depth, false, "samm_scope_reset");
    if (f) frame_clear(f);
}

void samm_scope_add(int depth, void *ptr, uint8_t type, uint8_t size_class)
{
    static const char call[] = "samm_scope_add";
    if (!depth_ok(depth, call)) return;
    samm_frame *f = abi_frame(depth, true, call);
    if (f == NULL) return;
    if (f->count == f->capacity && !frame_grow(f, true, call)) return;
    if (f->index && (f->count + 1) * 4 > index_cap(f) * 3 && !index_build(f, f->count + 1, true))
        index_drop(f);
    size_t i = f->count;
    f->ptrs[i] = ptr;
    f->types[i] = type;
    f->sc[i] = size_class;
    f->count = i + 1;
    f->nforeign++;
    filter_add(f, ptr);
    if (f->index) index_insert(f, i);
}

bool samm_scope_remove(int depth, void *ptr, uint8_t *out_type, uint8_t *out_sc)
{
    if (!depth_ok(depth, "samm_scope_remove")) return false;
    samm_frame *f = abi_frame(depth, false, "samm_scope_remove");
    if (f == NULL || f->count == 0 || !filter_may_hold(f, ptr)) return false;
    if (f->index == NULL && f->count >= SAMM_INDEX_MIN) index_build(f, f->count, true);
    size_t idx = SIZE_MAX;
    if (f->index) {
        size_t h = index_find(f, ptr);
        if (h == SIZE_MAX) return false;
        idx = slot_idx(f->index[h]);
        index_delete_slot(f, h);
    } else {
        for (size_t i = f->count; i-- > 0 && idx == SIZE_MAX;)
            if (f->ptrs[i] == ptr) idx = i;
        if (idx == SIZE_MAX) return false;
    }
    if (out_type) *out_type = f->types[idx];
    if (out_sc) *out_sc = f->sc[idx];
    size_t last = f->count - 1;
    if (idx != last) {
        if (f->index) {
            size_t slot = index_slot_of(f, last);
            f->index[slot] = slot_make(slot_hash(f->index[slot]), idx);
        }
        f->ptrs[idx] = f->ptrs[last];
        f->types[idx] = f->types[last];
        f->sc[idx] = f->sc[last];
    }
    f->count = last;
    f->nforeign--;
    if (f->count == 0) {
        memset(f->filter, 0, sizeof f->filter);
        index_drop(f);
    }
    return true;
}

bool samm_scope_detach(int depth, void ***out_ptrs, uint8_t **out_types, uint8_t **out_sc,
                       size_t *out_count)
{
    static const char call[] = "samm_scope_detach";
    if (!depth_ok(depth, call)) return false;
    if (!out_ptrs || !out_types || !out_sc || !out_count) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, call, NULL, "NULL out-pointer passed");
        return false;
    }
    samm_frame *f = abi_frame(depth, false, call);
    if (f == NULL || f->count == 0) return false;
    *out_ptrs = f->ptrs;
    *out_types = f->types;
    *out_sc = f->sc;
    *out_count = f->count;
    f->ptrs = NULL;
    f->types = NULL;
    f->sc = NULL;
    f->capacity = 0;
    frame_clear(f);
    return true;
}
