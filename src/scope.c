/* scope.c - scope storage: per-thread frames of three parallel arrays
 * (pointer, type, size class), the seed's samm_scope_* ABI, and the lazy
 * hash index that makes removal O(1) in large frames.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FRAME_INITIAL_CAP 32
/* Frames smaller than this are searched linearly (newest first), which is
 * faster than hashing; larger ones build an index on their first remove. */
#define INDEX_MIN_COUNT 64

SAMM_TLS samm_frames samm__tls_frames;

/* ------------------------------------------------------------------------
 * Thread lifetime: a pthread key whose destructor runs the core's hook
 * (clean the scopes the thread left open), then releases the frames.
 * ---------------------------------------------------------------------- */
static _Atomic(void (*)(void)) thread_exit_hook;
static pthread_key_t thread_key;
static pthread_once_t thread_key_once = PTHREAD_ONCE_INIT;
static SAMM_TLS bool thread_registered;

void samm__set_thread_exit_hook(void (*hook)(void))
{
    atomic_store(&thread_exit_hook, hook);
}

static void on_thread_exit(void *unused)
{
    (void)unused;
    thread_registered = false;
    void (*hook)(void) = atomic_load(&thread_exit_hook);
    if (hook) hook();
    /* The hook may have run destructors that tracked again and
     * re-registered; pthread then calls us once more. */
    if (!thread_registered) samm__frames_release_thread();
}

static void make_key(void)
{
    if (pthread_key_create(&thread_key, on_thread_exit) != 0)
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_scope_ensure_init", NULL,
                     "cannot create the thread-exit key; thread scopes will not be released");
}

void samm_scope_ensure_init(void)
{
    pthread_once(&thread_key_once, make_key);
}

void samm__thread_register(void)
{
    if (thread_registered) return;
    samm_scope_ensure_init();
    thread_registered = pthread_setspecific(thread_key, (void *)1) == 0;
}

/* ------------------------------------------------------------------------
 * Frame vector
 * ---------------------------------------------------------------------- */
bool samm__frames_reserve(size_t depth, const char *call)
{
    samm_frames *fs = &samm__tls_frames;
    if (depth < fs->n) return true;
    size_t n = fs->n ? fs->n : 8;
    while (n <= depth) {
        if (n > SIZE_MAX / 2 / sizeof(samm_frame)) {
            n = depth + 1;
            break;
        }
        n *= 2;
    }
    if (n > SIZE_MAX / sizeof(samm_frame)) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for scope depth %zu",
                     depth);
        return false;
    }
    samm_frame *v = samm__realloc(fs->v, n * sizeof *v);
    if (v == NULL) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for scope depth %zu",
                     depth);
        return false;
    }
    memset(v + fs->n, 0, (n - fs->n) * sizeof *v);
    fs->v = v;
    fs->n = n;
    samm__thread_register();
    return true;
}

static void frame_free(samm_frame *f)
{
    samm__frame_drop_index(f);
    samm__free(f->ptrs);
    samm__free(f->types);
    samm__free(f->sc);
    memset(f, 0, sizeof *f);
}

void samm__frames_release_thread(void)
{
    samm_frames *fs = &samm__tls_frames;
    for (size_t i = 0; i < fs->n; i++)
        frame_free(&fs->v[i]);
    samm__free(fs->v);
    fs->v = NULL;
    fs->n = 0;
}

/* ------------------------------------------------------------------------
 * Hash index: open addressing with linear probing.  A slot holds the
 * entry's 32-bit hash in its high half and (entry index + 1) in its low
 * half; 0 is empty.  With the hash in the slot, probing and deletion read
 * the pointer array only to confirm a match.  Slots are 8 bytes because
 * footprint decides the cost in frames larger than the cache: measured
 * here, 16-byte slots holding the pointer itself were slower at 100,000
 * entries than 8-byte ones plus the confirming read.  index[-1] holds the
 * capacity; load stays at or below 3/4 (10.7-21 bytes per entry).
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

void samm__frame_drop_index(samm_frame *f)
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

/* Builds an index able to hold `want` entries; false on OOM or a frame too
 * large for 32-bit entry numbers (callers then fall back to scanning). */
static bool index_build(samm_frame *f, size_t want)
{
    if (want >= UINT32_MAX / 4) return false;
    size_t cap = 128;
    while (cap < want * 2)
        cap *= 2;
    uint64_t *mem = samm__calloc(cap + 1, sizeof *mem);
    if (mem == NULL) return false;
    mem[0] = cap;
    samm__frame_drop_index(f);
    f->index = mem + 1;
    for (size_t i = 0; i < f->count; i++)
        index_insert(f, i);
    return true;
}

/* Slot holding the newest entry for ptr, or SIZE_MAX. */
static size_t index_find(const samm_frame *f, const void *ptr)
{
    size_t mask = index_cap(f) - 1, best = SIZE_MAX, best_idx1 = 0;
    uint32_t h = hash_ptr(ptr);
    for (size_t i = h & mask; f->index[i] != 0; i = (i + 1) & mask) {
        uint64_t v = f->index[i];
        if (slot_hash(v) == h && slot_idx(v) + 1 > best_idx1 && f->ptrs[slot_idx(v)] == ptr) {
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
 * Frame operations
 * ---------------------------------------------------------------------- */
static bool frame_grow(samm_frame *f, const char *call)
{
    size_t cap = f->cap ? f->cap * 2 : FRAME_INITIAL_CAP;
    if (cap < f->cap || cap > SIZE_MAX / sizeof(void *)) goto oom;
    /* Each array is grown in turn; a failure leaves the earlier ones larger
     * than `cap` says, which is harmless: cap only moves once all three fit. */
    void **p = samm__realloc(f->ptrs, cap * sizeof *p);
    if (p == NULL) goto oom;
    f->ptrs = p;
    uint8_t *t = samm__realloc(f->types, cap);
    if (t == NULL) goto oom;
    f->types = t;
    uint8_t *s = samm__realloc(f->sc, cap);
    if (s == NULL) goto oom;
    f->sc = s;
    f->cap = cap;
    return true;
oom:
    samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL,
                 "out of memory growing a scope frame of %zu entries", f->count);
    return false;
}

bool samm__frame_add_slow(samm_frame *f, void *ptr, uint8_t type, uint8_t sc, const char *call)
{
    if (f->count == f->cap && !frame_grow(f, call)) return false;
    if (f->index && (f->count + 1) * 4 > index_cap(f) * 3 && !index_build(f, f->count + 1)) {
        /* Cannot keep the index: drop it; removal falls back to scanning. */
        samm__frame_drop_index(f);
    }
    size_t i = f->count;
    f->ptrs[i] = ptr;
    f->types[i] = type;
    f->sc[i] = sc;
    if (f->index) index_insert(f, i);
    f->count = i + 1;
    samm__filter_add(f, ptr);
    return true;
}

static void take_entry(samm_frame *f, size_t idx, uint8_t *out_type, uint8_t *out_sc)
{
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
}

bool samm__frame_remove(samm_frame *f, void *ptr, uint8_t *out_type, uint8_t *out_sc)
{
    if (!samm__frame_may_hold(f, ptr)) return false;
    if (f->index == NULL && f->count >= INDEX_MIN_COUNT) index_build(f, f->count);
    if (f->index) {
        size_t h = index_find(f, ptr);
        if (h == SIZE_MAX) return false;
        size_t idx = slot_idx(f->index[h]);
        index_delete_slot(f, h);
        take_entry(f, idx, out_type, out_sc);
        return true;
    }
    for (size_t i = f->count; i-- > 0;) {
        if (f->ptrs[i] == ptr) {
            take_entry(f, i, out_type, out_sc);
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------------------
 * The exported ABI
 * ---------------------------------------------------------------------- */
static bool depth_ok(int depth, const char *call)
{
    if (SAMM_LIKELY(depth >= 0)) return true;
    samm__report(SAMM_ERR_BAD_DEPTH, call, NULL, "negative scope depth %d", depth);
    return false;
}

void samm_scope_reset(int depth)
{
    if (!depth_ok(depth, "samm_scope_reset")) return;
    samm_frame *f = samm__frame_get((size_t)depth);
    if (f) samm__frame_reset(f);
}

void samm_scope_add(int depth, void *ptr, uint8_t type, uint8_t size_class)
{
    if (!depth_ok(depth, "samm_scope_add")) return;
    samm__frame_add((size_t)depth, ptr, type, size_class, "samm_scope_add");
}

bool samm_scope_remove(int depth, void *ptr, uint8_t *out_type, uint8_t *out_sc)
{
    if (!depth_ok(depth, "samm_scope_remove")) return false;
    samm_frame *f = samm__frame_get((size_t)depth);
    return f && samm__frame_remove(f, ptr, out_type, out_sc);
}

bool samm_scope_detach(int depth, void ***out_ptrs, uint8_t **out_types, uint8_t **out_sc,
                       size_t *out_count)
{
    if (!depth_ok(depth, "samm_scope_detach")) return false;
    if (!out_ptrs || !out_types || !out_sc || !out_count) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_scope_detach", NULL, "NULL out-pointer passed");
        return false;
    }
    samm_frame *f = samm__frame_get((size_t)depth);
    if (f == NULL || f->count == 0) return false;
    samm_batch b = samm__frame_take(f);
    *out_ptrs = b.ptrs;
    *out_types = b.types;
    *out_sc = b.sc;
    *out_count = b.count;
    return true;
}
