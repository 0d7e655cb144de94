/* samm.h - libsamm, Scope-Aware Memory Management: the public API.
 *
 * Heap objects are tracked in the lexical scope that made them and cleaned
 * up (destructor run, memory recycled) when that scope exits, unless they
 * were retained to an outer scope.  This header is the whole promise to
 * users; every call is documented where it is declared.
 */
#ifndef SAMM_H
#define SAMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SAMM_API
#else
#define SAMM_API __attribute__((visibility("default")))
#endif

#define SAMM_VERSION_MAJOR 0
#define SAMM_VERSION_MINOR 1
#define SAMM_VERSION_PATCH 0

/* ------------------------------------------------------------------------
 * Errors
 *
 * libsamm never crashes on misuse.  It tells the error handler what went
 * wrong, which call saw it and the pointer involved, then carries on with
 * the call turned into a no-op (or, for out of memory, a NULL result).
 * The default handler prints one line to stderr, for example
 *     samm: double free of 0x5581c2a0 in samm_free_object
 * ---------------------------------------------------------------------- */
typedef enum {
    SAMM_ERR_OUT_OF_MEMORY = 1, /* an allocation failed                        */
    SAMM_ERR_BAD_DEPTH,         /* negative scope depth given to samm_scope_*  */
    SAMM_ERR_EXIT_AT_GLOBAL,    /* samm_exit_scope at depth 0                  */
    SAMM_ERR_DOUBLE_FREE,       /* pointer freed (or cleaned) twice            */
    SAMM_ERR_FOREIGN_POINTER,   /* pointer that libsamm did not allocate       */
    SAMM_ERR_NOT_TRACKED,       /* untrack/retain of a pointer in no scope     */
    SAMM_ERR_SCOPE_IMBALANCE,   /* thread ended or shut down with open scopes  */
    SAMM_ERR_LEAK,              /* warning at shutdown: pooled objects leaked  */
    SAMM_ERR_BAD_ARGUMENT,      /* any other invalid argument                  */
    SAMM_ERR_INTERIOR_POINTER,  /* points inside a libsamm block, not at it    */
    SAMM_ERR_DOUBLE_TRACK,      /* tracking a pointer that is already tracked  */
    SAMM_ERR_NOT_OWNER,         /* tracked in another thread's scope, or in a
                                   scope being cleaned: not the caller's       */
    SAMM_ERR_FREED_POINTER      /* track/untrack/retain of a freed block       */
} SAMMErrorCode;

typedef struct {
    SAMMErrorCode code;
    const char *call;    /* the public function that saw it, e.g. "samm_free_object" */
    const void *ptr;     /* the pointer involved, or NULL                            */
    const char *message; /* the whole message, without the "samm: " prefix          */
} SAMMError;

/* Called on the thread that made the bad call, possibly from the cleanup
 * worker.  It must not longjmp out of libsamm. */
typedef void (*samm_error_fn)(const SAMMError *err, void *user);

/* Installs `fn` (NULL restores the default stderr printer) and returns the
 * previous handler.  Thread-safe; takes effect for errors reported after it. */
SAMM_API samm_error_fn samm_set_error_handler(samm_error_fn fn, void *user);

/* A short constant name for a code, e.g. "double free". */
SAMM_API const char *samm_error_name(SAMMErrorCode code);

/* How many errors have been reported since the process started. */
SAMM_API uint64_t samm_error_count(void);

/* ------------------------------------------------------------------------
 * Types
 *
 * Every tracked pointer carries a one-byte type tag.  0..6 are the
 * FasterBASIC runtime's; 7..255 are free for hosts (cast to SAMMAllocType).
 * The tag picks the release: a hook registered with samm_register_cleanup,
 * or else the default of the table below.
 *
 *   OBJECT             vtable[3](obj) if the first word (vtable) and that
 *                      slot are non-NULL, then the memory goes back to the
 *                      pool it came from (or free() for a foreign block)
 *   STRING, LIST,      the descriptor slot goes back to its pool
 *   LIST_ATOM
 *   ARRAY, GENERIC,    free()
 *   UNKNOWN, 7..255
 * ---------------------------------------------------------------------- */
typedef enum {
    SAMM_ALLOC_UNKNOWN = 0,
    SAMM_ALLOC_OBJECT,
    SAMM_ALLOC_STRING,
    SAMM_ALLOC_ARRAY,
    SAMM_ALLOC_LIST,
    SAMM_ALLOC_LIST_ATOM,
    SAMM_ALLOC_GENERIC
} SAMMAllocType;

typedef void (*samm_cleanup_fn)(void *ptr);

/* Index of the destructor in an OBJECT's vtable (its first word). */
#define SAMM_VTABLE_DESTRUCTOR_SLOT 3

/* ------------------------------------------------------------------------
 * Lifecycle
 *
 * Every call initialises the library on first use, so samm_init() is
 * optional.  samm_shutdown() waits for all queued cleanup, cleans every
 * scope the calling thread still has open (the global scope included;
 * open scopes above it are reported as SAMM_ERR_SCOPE_IMBALANCE), stops
 * the worker, reports pooled objects still in use as leaks
 * (SAMM_ERR_LEAK), prints statistics when SAMM_STATS is set, and leaves
 * the library ready to be initialised again.  Both are idempotent.
 * Scopes other threads still have open are cleaned when those threads end.
 * ---------------------------------------------------------------------- */
SAMM_API void samm_init(void);
SAMM_API void samm_shutdown(void);

/* While disabled, enter/exit/track/untrack/retain do nothing (depth does
 * not move); allocation and free still work.  Process-wide. */
SAMM_API void samm_set_enabled(int on);
SAMM_API int samm_is_enabled(void);

/* ------------------------------------------------------------------------
 * Scopes - per thread.  Depth 0 is the global scope; it exists from the
 * start and cannot be exited (samm_exit_scope at depth 0 is reported as
 * SAMM_ERR_EXIT_AT_GLOBAL and ignored).  Depth is limited only by memory.
 * On exit every pointer tracked in the scope is cleaned, newest first.
 * Cleanup hooks and destructors may call any samm function; they run in the
 * cleaning thread's own scope context.  A thread that ends with scopes
 * open has them cleaned (reported as SAMM_ERR_SCOPE_IMBALANCE) and its
 * global scope cleaned silently.
 * ---------------------------------------------------------------------- */
SAMM_API void samm_enter_scope(void);
SAMM_API void samm_exit_scope(void);
SAMM_API int samm_scope_depth(void);

/* Runs the enclosed block in a scope of its own, exited however the block
 * is left (fall-through, break, return):
 *     SAMM_SCOPE { Obj *o = samm_alloc(48, SAMM_ALLOC_OBJECT); ... }
 * Needs GCC or Clang (__attribute__((cleanup))). */
#define SAMM_SCOPE                                                                                 \
    for (int samm_scope_guard_                                                                     \
         __attribute__((cleanup(samm_scope_guard_exit_))) = (samm_enter_scope(), 0);               \
         !samm_scope_guard_; samm_scope_guard_ = 1)

static inline void samm_scope_guard_exit_(int *unused)
{
    (void)unused;
    samm_exit_scope();
}

/* ------------------------------------------------------------------------
 * Tracking - on the calling thread's scopes.  NULL is ignored.
 *
 * samm_track: `ptr` is cleaned with its type's release when the current
 *   scope exits.  Tracking a pointer twice cleans it twice: don't.
 * samm_untrack: forgets `ptr` (searching the innermost scope outward);
 *   the caller owns it again.  A pointer in no scope is ignored.
 * samm_retain: moves `ptr` `levels` scopes outward from the scope it is
 *   found in, clamped at the global scope (levels 0 keeps it where it is).
 *   A pointer in no scope is reported (SAMM_ERR_NOT_TRACKED); a negative
 *   level is reported (SAMM_ERR_BAD_ARGUMENT).
 * Untrack, retain and free are O(1) expected whatever the scope's size.
 * ---------------------------------------------------------------------- */
SAMM_API void samm_track(void *ptr, SAMMAllocType type);
SAMM_API void samm_track_object(void *ptr);
SAMM_API void samm_untrack(void *ptr);
SAMM_API void samm_retain(void *ptr, int parent_offset);
SAMM_API void samm_retain_parent(void *ptr);

/* ------------------------------------------------------------------------
 * Allocation
 *
 * samm_alloc_object: zeroed, 16-byte aligned memory of at least `size`
 *   bytes from size-class pools (32, 64, 128, 256, 512, 1024 B); larger
 *   from malloc.  size 0 gives a minimal object.  NULL (reported) when
 *   memory runs out.  Not tracked: call samm_track_object, or use
 *   samm_alloc.
 * samm_free_object: untracks `ptr` if tracked, then returns its memory to
 *   the pool it came from - found from the pointer itself.  A block libsamm
 *   never allocated is released with free(), as the original runtime does,
 *   except a pointer that cannot be a malloc block (misaligned, on the
 *   calling thread's stack, or in a program or library image), which is
 *   reported as SAMM_ERR_FOREIGN_POINTER and not freed; so is a pointer
 *   into the middle of a pool slot.  A second free is reported
 *   (SAMM_ERR_DOUBLE_FREE) and ignored.  No destructor runs.  NULL is
 *   ignored.
 * samm_alloc: allocates (zeroed) and tracks in one call; `type` picks the
 *   release at scope exit.  OBJECT, ARRAY, GENERIC and host types use the
 *   object pools; STRING, LIST and LIST_ATOM use the descriptor pools when
 *   `size` fits their slot.
 * samm_alloc_string / samm_alloc_list / samm_alloc_list_atom: zeroed
 *   descriptor slots (40, 32 and 24 bytes unless changed with
 *   samm_set_descriptor_sizes before first use); not tracked.  Freed by
 *   samm_free_object or by scope cleanup.
 * samm_track_string / samm_track_list: samm_track(ptr, STRING / LIST).
 * ---------------------------------------------------------------------- */
SAMM_API void *samm_alloc_object(size_t size);
SAMM_API void samm_free_object(void *ptr);
SAMM_API void *samm_alloc(size_t size, SAMMAllocType type);
SAMM_API void *samm_alloc_string(void);
SAMM_API void *samm_alloc_list(void);
SAMM_API void *samm_alloc_list_atom(void);
SAMM_API void samm_track_string(void *desc);
SAMM_API void samm_track_list(void *list);

/* Slot sizes of the string, list and list-atom pools (each 8..1024, rounded
 * up to 8).  Returns 0, or -1 (reported) once a descriptor pool was used. */
SAMM_API int samm_set_descriptor_sizes(size_t string_size, size_t list_size, size_t atom_size);

/* Gives every empty pool slab back to the operating system. */
SAMM_API void samm_trim(void);

/* Bloom-filter query over the addresses of freed large (malloc'd) objects:
 * 1 if `ptr` was probably freed by samm_free_object or cleanup, 0 if
 * certainly not.  False positives happen; the rate is in the statistics. */
SAMM_API int samm_is_probably_freed(void *ptr);

/* ------------------------------------------------------------------------
 * Cleanup
 *
 * samm_register_cleanup: `fn` replaces the default release for `type`
 *   (0..255) and owns the memory from then on: it may call
 *   samm_free_object, free(), or keep it.  NULL restores the default.
 * Cleanup runs either inline, on the thread that exits the scope (so
 *   destructors run before samm_exit_scope returns), or in the background,
 *   on one worker thread fed through a bounded queue (a full queue makes
 *   the exiting thread clean inline; nothing is lost).  In background mode
 *   the worker runs the destructors and hooks; the memory of default
 *   releases goes back to the pools on the thread that exited the scope,
 *   the next time it exits a scope, calls samm_wait, or ends (freeing on
 *   the owning thread is what keeps it cheap).  samm_shutdown releases
 *   whatever is still waiting.  The environment variable
 *   SAMM_CLEANUP=inline|background picks the mode at init.
 * samm_wait: returns once every batch queued (by any thread) before the
 *   call has been cleaned - every destructor and hook has returned - and
 *   the memory of the calling thread's batches is back in the pools.
 *   Immediate in inline mode.
 * ---------------------------------------------------------------------- */
typedef enum { SAMM_CLEANUP_INLINE = 0, SAMM_CLEANUP_BACKGROUND = 1 } SAMMCleanupMode;

SAMM_API void samm_register_cleanup(SAMMAllocType type, samm_cleanup_fn fn);
SAMM_API void samm_set_cleanup_mode(SAMMCleanupMode mode);
SAMM_API SAMMCleanupMode samm_get_cleanup_mode(void);
SAMM_API void samm_wait(void);

/* ------------------------------------------------------------------------
 * Diagnostics
 *
 * Statistics are exact: allocated and freed bytes count the same unit
 * (the slot or block size actually handed out), so after everything is
 * freed total_bytes_freed == total_bytes_allocated.  The first block of
 * fields is the original runtime's, in its order.
 * ---------------------------------------------------------------------- */
typedef struct {
    uint64_t scopes_entered;
    uint64_t scopes_exited;
    uint64_t objects_allocated;
    uint64_t objects_freed;   /* memory released, by free_object or cleanup */
    uint64_t objects_cleaned; /* tracked pointers released at scope exit   */
    uint64_t cleanup_batches;
    uint64_t double_free_attempts;
    uint64_t bloom_false_positives; /* estimated from the filter's fill     */
    uint64_t retain_calls;
    uint64_t total_bytes_allocated;
    uint64_t total_bytes_freed;
    uint64_t strings_tracked;
    uint64_t strings_cleaned;
    int current_scope_depth; /* of the calling thread */
    int peak_scope_depth;    /* over all threads      */
    size_t bloom_memory_bytes;
    double total_cleanup_time_ms;
    int background_worker_active;
    /* libsamm's additions */
    uint64_t objects_tracked;
    uint64_t queue_high_water; /* most batches ever waiting at once       */
    uint64_t inline_fallbacks; /* batches cleaned inline: queue was full  */
    uint64_t foreign_frees;    /* blocks samm never allocated, free()d    */
    uint64_t bytes_returned_to_os;
    double bloom_false_positive_rate; /* current estimate, 0..1            */
    uint64_t cleaned_by_type[256];
    uint64_t host_bytes_freed; /* what the host reported with
                                  samm_record_bytes_freed (not in
                                  total_bytes_freed)                    */
} SAMMStats;

/* Statistics of one pool: index 0..5 the object classes (32..1024 B),
 * 6 strings, 7 lists, 8 list atoms, 9..12 the medium object classes
 * (2, 4, 8 and 16 KiB). */
typedef struct {
    size_t slot_size;
    uint64_t slabs;    /* slabs currently held              */
    uint64_t capacity; /* slots in those slabs              */
    uint64_t in_use;
    uint64_t peak_in_use;
    uint64_t allocations;
    uint64_t frees;
    uint64_t bytes_returned_to_os;
} SAMMPoolStats;

#define SAMM_POOL_COUNT 13

SAMM_API void samm_get_stats(SAMMStats *out);
/* Fills `out` for pool `index`; returns 0, or -1 for a bad index. */
SAMM_API int samm_get_pool_stats(int index, SAMMPoolStats *out);
/* Prints the statistics to stderr. */
SAMM_API void samm_print_stats(void);
/* One stderr line per scope enter/exit and cleanup batch while on. */
SAMM_API void samm_set_trace(int on);
/* Measures total_cleanup_time_ms while on (also with SAMM_STATS or
 * tracing); off, no clock is read. */
SAMM_API void samm_set_timing(int on);
/* Adds to total_bytes_freed, for hosts that free memory libsamm counted. */
SAMM_API void samm_record_bytes_freed(uint64_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* SAMM_H */
