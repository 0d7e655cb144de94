/* SPDX-License-Identifier: MIT */
/* samm_bridge.h - FasterBASIC's SAMM interface, served by libsamm.
 *
 * A replacement for the FasterBASIC runtime's own samm_bridge.h: the
 * runtime's C files compile against it unchanged and link
 * libsamm_fasterbasic and libsamm instead of samm_core.o and samm_pool.o.
 * Every call declared here is libsamm's, with libsamm's contract (samm.h),
 * except three that go through the compatibility library:
 *   samm_alloc_string  is samm_fb_alloc_string: the original's contract,
 *                      refcount 1, encoding 0, dirty 1, tracked in the
 *                      current scope
 *   samm_is_enabled    is samm_fb_is_enabled
 *   samm_track         is samm_fb_track: a list atom is not tracked, its
 *                      list owns it (a deliberate difference)
 * and samm_get_stats, which fills the original 136-byte SAMMStats below and
 * never writes past it.  Do not include it together with libsamm's samm.h
 * (both declare SAMMAllocType and SAMMStats); samm_fasterbasic.h can be.
 */
#ifndef SAMM_BRIDGE_H
#define SAMM_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

/* The three calls of the compatibility library (before their declarations
 * below, which then declare the samm_fb_ functions). */
#define samm_alloc_string samm_fb_alloc_string
#define samm_is_enabled samm_fb_is_enabled
#define samm_track samm_fb_track

/* Type tags, as libsamm's (samm.h). */
typedef enum {
    SAMM_ALLOC_UNKNOWN = 0,
    SAMM_ALLOC_OBJECT = 1,
    SAMM_ALLOC_STRING = 2,
    SAMM_ALLOC_ARRAY = 3,
    SAMM_ALLOC_LIST = 4,
    SAMM_ALLOC_LIST_ATOM = 5,
    SAMM_ALLOC_GENERIC = 6
} SAMMAllocType;

typedef void (*samm_cleanup_fn)(void *ptr);

/* After SAMMAllocType, which samm_fb_track takes. */
#include "samm_fasterbasic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The original runtime's statistics: 136 bytes on LP64.  libsamm's
 * SAMMStats begins with exactly these fields; samm_get_stats fills these
 * and nothing more. */
typedef struct {
    uint64_t scopes_entered;
    uint64_t scopes_exited;
    uint64_t objects_allocated;
    uint64_t objects_freed;
    uint64_t objects_cleaned;
    uint64_t cleanup_batches;
    uint64_t double_free_attempts;
    uint64_t bloom_false_positives;
    uint64_t retain_calls;
    uint64_t total_bytes_allocated;
    uint64_t total_bytes_freed; /* libsamm's; samm_record_bytes_freed is apart */
    uint64_t strings_tracked;
    uint64_t strings_cleaned;
    int current_scope_depth;
    int peak_scope_depth;
    size_t bloom_memory_bytes;
    double total_cleanup_time_ms;
    int background_worker_active;
} SAMMStats;

#if !defined(__cplusplus) && defined(__LP64__)
_Static_assert(sizeof(SAMMStats) == 136, "the original SAMMStats is 136 bytes");
#endif

/* Lifecycle: optional in libsamm (every call initialises on first use). */
void samm_init(void);
void samm_shutdown(void);
void samm_set_enabled(int enabled);
int samm_is_enabled(void); /* samm_fb_is_enabled */

/* Scopes: per thread, no depth limit. */
void samm_enter_scope(void);
void samm_exit_scope(void);
int samm_scope_depth(void);

/* Objects: [0] vtable, [8] class id, fields from 16; vtable slot 3 is the
 * destructor, run by scope cleanup (DELETE runs it itself, then frees). */
void *samm_alloc_object(size_t size);
void samm_free_object(void *ptr);

/* Tracking in the calling thread's current scope. */
void samm_track(void *ptr, SAMMAllocType type); /* samm_fb_track */
void samm_track_object(void *obj);
void samm_untrack(void *ptr);
void samm_retain(void *ptr, int parent_offset);
void samm_retain_parent(void *ptr);
int samm_is_probably_freed(void *ptr);

/* Descriptors: zeroed, untracked slots of libsamm's pools, except the
 * string one (samm_fb_alloc_string). */
void *samm_alloc_list(void);
void samm_track_list(void *list_header_ptr);
void *samm_alloc_list_atom(void);
void samm_track_string(void *string_desc_ptr);
void *samm_alloc_string(void); /* samm_fb_alloc_string */

/* Cleanup, diagnostics. */
void samm_register_cleanup(SAMMAllocType type, samm_cleanup_fn fn);
void samm_get_stats(SAMMStats *out); /* writes sizeof(SAMMStats) = 136 bytes */
void samm_print_stats(void);
void samm_set_trace(int enabled);
void samm_wait(void);
void samm_record_bytes_freed(uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif
