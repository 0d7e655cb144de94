/* SPDX-License-Identifier: MIT */
/* samm_pool.h - FasterBASIC's slab-pool interface, served by libsamm.
 *
 * A replacement for the FasterBASIC runtime's own samm_pool.h: the runtime
 * compiles against it unchanged and links libsamm_fasterbasic and libsamm
 * instead of samm_pool.o and samm_core.o.  The pool objects keep their
 * names, size (128 bytes) and alignment (16); their contents are this
 * library's, and the runtime only passes their addresses to the calls
 * below.  The memory behind them is libsamm's:
 *   g_string_desc_pool  libsamm's string descriptor pool (40-byte slots)
 *   g_list_header_pool  libsamm's list pool (32-byte slots)
 *   g_list_atom_pool    libsamm's list-atom pool (24-byte slots)
 *   g_object_pools[i]   libsamm's object blocks of 32 << i bytes
 *   any other pool      libsamm object blocks of the pool's slot size,
 *                       once samm_slab_pool_init has set it up
 * They work before samm_init and after samm_shutdown (no init is needed),
 * from any thread, and a slot of one is freed by samm_slab_pool_free,
 * samm_free_object or a scope's cleanup alike.
 */
#ifndef SAMM_POOL_H
#define SAMM_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SAMM_FB_API
#if defined(_WIN32)
#define SAMM_FB_API
#else
#define SAMM_FB_API __attribute__((visibility("default")))
#endif
#endif

/* Fields end in _ : they are this library's, not the runtime's. */
typedef struct SammSlabPool {
    uint32_t magic_; /* set by samm_slab_pool_init */
    uint32_t slot_size_;
    uint32_t slots_per_slab_;
    uint32_t reserved0_;
    const char *name_;
    uint64_t allocs_; /* pools of the program's own (not the globals below) */
    uint64_t frees_;
    uint64_t peak_;
    unsigned char reserved_[80];
} __attribute__((aligned(16))) SammSlabPool;

#if !defined(__cplusplus) && defined(__LP64__)
_Static_assert(sizeof(SammSlabPool) == 128, "SammSlabPool is 128 bytes, as the original's");
#endif

/* The slot sizes and slab sizes the original runtime gave its pools. */
#define STRING_DESC_POOL_SLOT_SIZE 40
#define STRING_DESC_POOL_SLOTS_PER_SLAB 256
#define LIST_HEADER_POOL_SLOT_SIZE 32
#define LIST_HEADER_POOL_SLOTS_PER_SLAB 256
#define LIST_ATOM_POOL_SLOT_SIZE 24
#define LIST_ATOM_POOL_SLOTS_PER_SLAB 512
#define SAMM_OBJECT_SIZE_CLASSES 6 /* 32, 64, 128, 256, 512, 1024 bytes */

SAMM_FB_API extern SammSlabPool g_string_desc_pool;
SAMM_FB_API extern SammSlabPool g_list_header_pool;
SAMM_FB_API extern SammSlabPool g_list_atom_pool;
SAMM_FB_API extern SammSlabPool g_object_pools[SAMM_OBJECT_SIZE_CLASSES];

/* Sets up a pool of the program's own: slots of `slot_size` bytes (libsamm
 * object blocks, 16-byte aligned); `slots_per_slab` is kept for the
 * statistics only.  For the global pools above it only records the name.
 * `name` is not copied. */
SAMM_FB_API void samm_slab_pool_init(SammSlabPool *pool, uint32_t slot_size,
                                     uint32_t slots_per_slab, const char *name);

/* A pool of the program's own: warns on stderr if slots are still in use,
 * then forgets the pool (its slots stay allocated until freed; libsamm
 * counts those still allocated at shutdown as leaks).  A global pool: no
 * effect (libsamm owns its memory). */
SAMM_FB_API void samm_slab_pool_destroy(SammSlabPool *pool);

/* A zeroed slot, not tracked in any scope; NULL when memory runs out or
 * (reported on stderr) for a pool of the program's own that was never
 * initialised. */
SAMM_FB_API void *samm_slab_pool_alloc(SammSlabPool *pool);

/* Frees `ptr` with samm_free_object: a double free or a pointer that is
 * not a block is reported by libsamm, not passed on.  NULL is ignored. */
SAMM_FB_API void samm_slab_pool_free(SammSlabPool *pool, void *ptr);

/* Slots in use, slots held, most slots in use, slabs held, allocations
 * and frees; any out-pointer may be NULL.  The global pools answer from
 * libsamm's pool statistics (every slot of that size class, whoever
 * allocated it); a pool of the program's own counts its own calls, and
 * its "slabs" are the slabs of slots_per_slab its peak would have taken. */
SAMM_FB_API void samm_slab_pool_stats(const SammSlabPool *pool, size_t *out_in_use,
                                      size_t *out_capacity, size_t *out_peak, size_t *out_slabs,
                                      size_t *out_allocs, size_t *out_frees);

/* One line of statistics on stderr. */
SAMM_FB_API void samm_slab_pool_print_stats(const SammSlabPool *pool);

/* true for a global pool, and for an initialised pool of the program's own
 * whose counts are consistent.  (libsamm checks its own structures.) */
SAMM_FB_API bool samm_slab_pool_validate(const SammSlabPool *pool);

/* Warns on stderr if slots of the pool are still in use. */
SAMM_FB_API void samm_slab_pool_check_leaks(const SammSlabPool *pool);

/* Percent of the slots held that are in use. */
static inline double samm_slab_pool_usage_percent(const SammSlabPool *pool)
{
    size_t in_use = 0, capacity = 0;
    samm_slab_pool_stats(pool, &in_use, &capacity, NULL, NULL, NULL, NULL);
    return capacity ? 100.0 * (double)in_use / (double)capacity : 0.0;
}

#ifdef __cplusplus
}
#endif

#endif
