/* SPDX-License-Identifier: MIT */
/* samm_fasterbasic.c - the FasterBASIC runtime's SAMM interface on top of
 * libsamm's public API: the slab-pool objects and calls (samm_pool.h), the
 * original contract of samm_alloc_string, the runtime's release functions
 * registered as cleanup hooks, list atoms owned by their list, and an
 * error handler that keeps quiet where the original was silent.
 * Everything else the runtime and the compiled program call is libsamm's
 * own.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samm.h"
#include "samm_fasterbasic.h"
#include "samm_pool.h"

/* ------------------------------------------------------------------------
 * The runtime's side: its string descriptor, its lists, and its release
 * functions.
 * ---------------------------------------------------------------------- */
/* The runtime's StringDescriptor, as far as a new one is concerned. */
typedef struct {
    void *data;
    int64_t length;   /* characters */
    int64_t capacity; /* characters */
    int32_t refcount;
    uint8_t encoding; /* 0 ASCII, 1 UTF-32 */
    uint8_t dirty;    /* utf8_cache is stale */
    uint8_t padding[2];
    char *utf8_cache;
} fb_string;

_Static_assert(sizeof(fb_string) == STRING_DESC_POOL_SLOT_SIZE, "StringDescriptor is 40 bytes");
_Static_assert(offsetof(fb_string, refcount) == 24 && offsetof(fb_string, encoding) == 28 &&
                   offsetof(fb_string, dirty) == 29 && offsetof(fb_string, utf8_cache) == 32,
               "StringDescriptor layout");

/* The runtime's ListAtom and ListHeader (list_ops.h), as far as walking a
 * list's chain is concerned. */
typedef struct fb_atom {
    int32_t type;
    int32_t pad;
    uint64_t value;
    struct fb_atom *next;
} fb_atom;

typedef struct {
    int32_t type;
    int32_t flags;
    int64_t length;
    fb_atom *head;
    fb_atom *tail;
} fb_list;

_Static_assert(sizeof(fb_atom) == LIST_ATOM_POOL_SLOT_SIZE && offsetof(fb_atom, next) == 16,
               "ListAtom layout");
_Static_assert(sizeof(fb_list) == LIST_HEADER_POOL_SLOT_SIZE && offsetof(fb_list, head) == 16,
               "ListHeader layout");

/* Defined by the runtime (string_utf32.c, list_ops.c).  Weak: a program
 * without them links, and those types keep libsamm's default release. */
extern void string_release(void *desc) __attribute__((weak));
extern void list_free_from_samm(void *header) __attribute__((weak));
extern void list_atom_free_from_samm(void *atom) __attribute__((weak));

/* ------------------------------------------------------------------------
 * A list owns its atoms
 *
 * The runtime tracks each atom in the scope that appends it, not in its
 * list's: an APPEND in a SUB to a list of the caller's puts the atom in
 * the SUB's scope, which frees it at the SUB's exit while the list still
 * links it (and a list RETAINed out of the scope that filled it would lose
 * its atoms the same way).  The original's late cleanup on its worker hid
 * this; inline cleanup shows it at once.  So atoms are not tracked at all: the LIST
 * release walks the chain and frees each atom, and every other way an
 * atom leaves a list (ERASE, SHIFT, POP, REMOVE, CLEAR) already frees it
 * by hand.  Only when the runtime has both release functions.
 * ---------------------------------------------------------------------- */
static int lists_own_atoms(void)
{
    return list_free_from_samm != NULL && list_atom_free_from_samm != NULL;
}

void samm_fb_track(void *ptr, SAMMAllocType type)
{
    if (type == SAMM_ALLOC_LIST_ATOM && lists_own_atoms()) return;
    samm_track(ptr, type);
}

enum { FB_ATOM_LIST = 4 }; /* list_ops.h: the atom holds a nested ListHeader */

/* The LIST hook: the atoms (and through them their strings), then the
 * header.  A nested list is left to the scope list_create tracked it in:
 * freeing it here as well would free it twice whenever that scope's
 * entry is cleaned first (a list made after the list it is appended to,
 * in the same scope, is cleaned before it).  The next link is read
 * before an atom goes. */
static void release_list(void *header)
{
    fb_list *list = header;
    for (fb_atom *a = list->head, *next; a != NULL; a = next) {
        next = a->next;
        if (a->type == FB_ATOM_LIST) a->value = 0;
        list_atom_free_from_samm(a);
    }
    list_free_from_samm(header);
}

/* ------------------------------------------------------------------------
 * Errors the original did not report
 * ---------------------------------------------------------------------- */
/* The handler samm_fb_install replaced, with its user pointer: both read
 * together, on any thread that reports. */
static pthread_mutex_t next_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_error_fn next_handler;
static void *next_user;

int samm_fb_is_silent_error(int code, const char *call)
{
    if (call == NULL) return 0;
    switch (code) {
    case SAMM_ERR_EXIT_AT_GLOBAL:
        return strcmp(call, "samm_exit_scope") == 0;
    case SAMM_ERR_NOT_TRACKED:
    case SAMM_ERR_BAD_ARGUMENT:
        return strcmp(call, "samm_retain") == 0 || strcmp(call, "samm_retain_parent") == 0;
    default:
        return 0;
    }
}

void samm_fb_error_handler(const SAMMError *err, void *user)
{
    (void)user; /* ours is NULL; the replaced handler gets its own */
    if (samm_fb_is_silent_error((int)err->code, err->call)) return;
    pthread_mutex_lock(&next_lock);
    samm_error_fn next = next_handler;
    void *next_arg = next_user;
    pthread_mutex_unlock(&next_lock);
    if (next != NULL)
        next(err, next_arg);
    else
        samm_default_error_handler(err, NULL);
}

void samm_fb_install(void)
{
    if (string_release) samm_register_cleanup(SAMM_ALLOC_STRING, string_release);
    if (lists_own_atoms())
        samm_register_cleanup(SAMM_ALLOC_LIST, release_list);
    else if (list_free_from_samm)
        samm_register_cleanup(SAMM_ALLOC_LIST, list_free_from_samm);
    /* Unused while lists own their atoms; an atom a program tracks with
     * libsamm's own samm_track still gets the runtime's release. */
    if (list_atom_free_from_samm)
        samm_register_cleanup(SAMM_ALLOC_LIST_ATOM, list_atom_free_from_samm);
    /* Installed again (ours in place): the chain stays as it is. */
    void *user;
    samm_error_fn prev = samm_get_error_handler(&user);
    if (prev == samm_fb_error_handler) return;
    pthread_mutex_lock(&next_lock);
    next_handler = prev;
    next_user = user;
    pthread_mutex_unlock(&next_lock);
    samm_set_error_handler(samm_fb_error_handler, NULL);
}

/* At load, before main: the program's own calls (samm_init, scopes,
 * RETAIN) are emitted into its assembly and go to libsamm directly, so
 * this library sees none of them and cannot wait for one.  The hooks and
 * the handler must be in place before the first scope is cleaned and the
 * first error reported.  Registering them only stores pointers: libsamm
 * is not initialised here, but at the program's first call (which reads
 * SAMM_CLEANUP and the other SAMM_* variables then). */
__attribute__((constructor)) static void samm_fb_load(void)
{
    samm_fb_install();
    /* The runtime's reference counts are plain integers: string_release
     * (and CLASS destructors, which call it) must not run on a cleanup
     * worker while the program touches the same strings.  libsamm's default
     * mode (auto) may hand an expensive scope to one, so these types are
     * pinned to the exiting thread - unless SAMM_CLEANUP asks for a mode,
     * which the program's user then chose knowingly (background restores
     * the original's timing).  Pinning only stores flags. */
    const char *mode = getenv("SAMM_CLEANUP");
    if (mode == NULL || *mode == '\0') {
        static const SAMMAllocType pinned[] = {SAMM_ALLOC_OBJECT, SAMM_ALLOC_STRING,
                                               SAMM_ALLOC_LIST, SAMM_ALLOC_LIST_ATOM,
                                               SAMM_ALLOC_ARRAY, SAMM_ALLOC_GENERIC};
        for (size_t i = 0; i < sizeof pinned / sizeof *pinned; i++)
            samm_pin_type(pinned[i], 1);
    }
}

/* ------------------------------------------------------------------------
 * Strings and the enable flag
 * ---------------------------------------------------------------------- */
/* A function of its own, not a macro for libsamm's, so that runtime
 * objects compiled against samm_bridge.h keep calling this library if it
 * ever answers differently from libsamm (samm_fasterbasic.h says where
 * the original's contract differs). */
int samm_fb_is_enabled(void)
{
    return samm_is_enabled();
}

/* libsamm's string slots hold a descriptor unless a host made them
 * smaller (samm_set_descriptor_sizes): checked once. */
static atomic_int string_slot_checked;

static void check_string_slot(void)
{
    SAMMPoolStats ps;
    if (samm_get_pool_stats(6, &ps) == 0 && ps.slot_size < sizeof(fb_string)) {
        fprintf(stderr,
                "samm-fasterbasic: libsamm's string slots are %zu bytes, a FasterBASIC "
                "string descriptor needs %zu (samm_set_descriptor_sizes)\n",
                ps.slot_size, sizeof(fb_string));
        abort();
    }
    atomic_store_explicit(&string_slot_checked, 1, memory_order_relaxed);
}

void *samm_fb_alloc_string(void)
{
    if (!atomic_load_explicit(&string_slot_checked, memory_order_relaxed)) check_string_slot();
    fb_string *d = samm_alloc_string();
    if (d == NULL) return NULL;
    d->refcount = 1;
    d->encoding = 0;
    d->dirty = 1;
    if (samm_is_enabled()) samm_track_string(d);
    return d;
}

/* ------------------------------------------------------------------------
 * Pools
 * ---------------------------------------------------------------------- */
SammSlabPool g_string_desc_pool;
SammSlabPool g_list_header_pool;
SammSlabPool g_list_atom_pool;
SammSlabPool g_object_pools[SAMM_OBJECT_SIZE_CLASSES];

#define POOL_MAGIC 0x53464250u /* "PBFS" */

/* libsamm's pool index (samm_get_pool_stats) of a global pool, or -1. */
static int global_index(const SammSlabPool *pool)
{
    if (pool == &g_string_desc_pool) return 6;
    if (pool == &g_list_atom_pool) return 8;
    if (pool == &g_list_header_pool) return 7;
    for (int i = 0; i < SAMM_OBJECT_SIZE_CLASSES; i++)
        if (pool == &g_object_pools[i]) return i;
    return -1;
}

static const char *global_name(int index)
{
    static const char *const names[] = {"Object32",   "Object64",   "Object128",
                                        "Object256",  "Object512",  "Object1024",
                                        "StringDesc", "ListHeader", "ListAtom"};
    return names[index];
}

static const char *pool_name(const SammSlabPool *pool)
{
    if (pool->name_ != NULL) return pool->name_;
    int g = global_index(pool);
    return g >= 0 ? global_name(g) : "(unnamed)";
}

static uint64_t load64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void samm_slab_pool_init(SammSlabPool *pool, uint32_t slot_size, uint32_t slots_per_slab,
                         const char *name)
{
    if (pool == NULL) return;
    memset(pool, 0, sizeof *pool);
    pool->slot_size_ = slot_size;
    pool->slots_per_slab_ = slots_per_slab ? slots_per_slab : 1;
    pool->name_ = name;
    __atomic_store_n(&pool->magic_, POOL_MAGIC, __ATOMIC_RELEASE);
}

static int own_pool_ready(const SammSlabPool *pool, const char *call)
{
    if (pool != NULL && __atomic_load_n(&pool->magic_, __ATOMIC_ACQUIRE) == POOL_MAGIC) return 1;
    fprintf(stderr, "samm-fasterbasic: %s on a pool that was never initialised (%p)\n", call,
            (const void *)pool);
    return 0;
}

void samm_slab_pool_destroy(SammSlabPool *pool)
{
    if (pool == NULL || global_index(pool) >= 0) return;
    if (!own_pool_ready(pool, "samm_slab_pool_destroy")) return;
    samm_slab_pool_check_leaks(pool);
    __atomic_store_n(&pool->magic_, 0, __ATOMIC_RELEASE);
}

void *samm_slab_pool_alloc(SammSlabPool *pool)
{
    if (pool == &g_string_desc_pool) return samm_alloc_string();
    if (pool == &g_list_atom_pool) return samm_alloc_list_atom();
    if (pool == &g_list_header_pool) return samm_alloc_list();
    int g = global_index(pool);
    if (g >= 0) return samm_alloc_object((size_t)32 << g);
    if (!own_pool_ready(pool, "samm_slab_pool_alloc")) return NULL;
    void *p = samm_alloc_object(pool->slot_size_);
    if (p == NULL) return NULL;
    uint64_t n = __atomic_add_fetch(&pool->allocs_, 1, __ATOMIC_RELAXED);
    uint64_t in_use = n - load64(&pool->frees_);
    uint64_t peak = load64(&pool->peak_);
    while (in_use > peak && in_use <= n &&
           !__atomic_compare_exchange_n(&pool->peak_, &peak, in_use, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    return p;
}

void samm_slab_pool_free(SammSlabPool *pool, void *ptr)
{
    if (ptr == NULL) return;
    samm_free_object(ptr);
    if (pool != NULL && global_index(pool) < 0 &&
        __atomic_load_n(&pool->magic_, __ATOMIC_ACQUIRE) == POOL_MAGIC)
        __atomic_add_fetch(&pool->frees_, 1, __ATOMIC_RELAXED);
}

typedef struct {
    uint64_t in_use, capacity, peak, slabs, allocs, frees;
} pool_numbers;

static int pool_numbers_of(const SammSlabPool *pool, pool_numbers *out)
{
    memset(out, 0, sizeof *out);
    if (pool == NULL) return -1;
    int g = global_index(pool);
    if (g >= 0) {
        SAMMPoolStats ps;
        if (samm_get_pool_stats(g, &ps) != 0) return -1;
        *out = (pool_numbers){ps.in_use, ps.capacity,    ps.peak_in_use,
                              ps.slabs,  ps.allocations, ps.frees};
        return 0;
    }
    if (__atomic_load_n(&pool->magic_, __ATOMIC_ACQUIRE) != POOL_MAGIC) return -1;
    out->frees = load64(&pool->frees_);
    out->allocs = load64(&pool->allocs_);
    out->in_use = out->allocs > out->frees ? out->allocs - out->frees : 0;
    out->peak = load64(&pool->peak_);
    uint64_t per = pool->slots_per_slab_;
    out->slabs = (out->peak + per - 1) / per;
    out->capacity = out->slabs * per;
    return 0;
}

void samm_slab_pool_stats(const SammSlabPool *pool, size_t *out_in_use, size_t *out_capacity,
                          size_t *out_peak, size_t *out_slabs, size_t *out_allocs,
                          size_t *out_frees)
{
    pool_numbers n;
    pool_numbers_of(pool, &n);
    if (out_in_use) *out_in_use = (size_t)n.in_use;
    if (out_capacity) *out_capacity = (size_t)n.capacity;
    if (out_peak) *out_peak = (size_t)n.peak;
    if (out_slabs) *out_slabs = (size_t)n.slabs;
    if (out_allocs) *out_allocs = (size_t)n.allocs;
    if (out_frees) *out_frees = (size_t)n.frees;
}

void samm_slab_pool_print_stats(const SammSlabPool *pool)
{
    pool_numbers n;
    if (pool_numbers_of(pool, &n) != 0) {
        fprintf(stderr, "samm-fasterbasic: no statistics for pool %p (not initialised)\n",
                (const void *)pool);
        return;
    }
    char line[320];
    snprintf(line, sizeof line,
             "samm-fasterbasic: pool %s: %" PRIu64 " in use (peak %" PRIu64 "), %" PRIu64
             " slots in %" PRIu64 " slabs, %" PRIu64 " allocs, %" PRIu64 " frees\n",
             pool_name(pool), n.in_use, n.peak, n.capacity, n.slabs, n.allocs, n.frees);
    fputs(line, stderr);
}

bool samm_slab_pool_validate(const SammSlabPool *pool)
{
    if (pool == NULL) return false;
    if (global_index(pool) >= 0) return true;
    if (__atomic_load_n(&pool->magic_, __ATOMIC_ACQUIRE) != POOL_MAGIC) return false;
    return load64(&pool->frees_) <= load64(&pool->allocs_) &&
           load64(&pool->peak_) <= load64(&pool->allocs_);
}

void samm_slab_pool_check_leaks(const SammSlabPool *pool)
{
    pool_numbers n;
    if (pool_numbers_of(pool, &n) != 0 || n.in_use == 0) return;
    char line[256];
    snprintf(line, sizeof line, "samm-fasterbasic: pool %s has %" PRIu64 " slot(s) still in use\n",
             pool_name(pool), n.in_use);
    fputs(line, stderr);
}
