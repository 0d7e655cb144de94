/* SPDX-License-Identifier: MIT */
/* samm.h - libsamm, Scope-Aware Memory Management: the public API.
 *
 * Heap objects are tracked in the lexical scope that made them and cleaned
 * up (destructor run, memory recycled) when that scope exits, unless they
 * were retained to an outer scope.  This header is the whole promise to
 * users; every call is documented where it is declared, with what it does
 * with bad input and from which threads it may be called.  The manual
 * pages (samm(3) and the pages it lists) say the same at more length.
 */
#ifndef SAMM_H
#define SAMM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "samm_version.h" /* SAMM_VERSION_MAJOR, _MINOR, _PATCH, SAMM_VERSION_STRING */

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SAMM_API
#else
#define SAMM_API __attribute__((visibility("default")))
#endif

/* Allocation functions: the result is `size` bytes long and ignoring it
 * loses the block.  Those that return an untracked block also say that it
 * aliases nothing (`malloc`); samm_alloc must not, because it keeps the
 * pointer itself: with `malloc` the compiler may assume no later call can
 * reach the block, and drop stores into it that only the scope's cleanup
 * would read. */
#if defined(__GNUC__) || defined(__clang__)
#define SAMM_ALLOC_ATTRS(size_arg) __attribute__((malloc, alloc_size(size_arg), warn_unused_result))
#define SAMM_ALLOC_ATTRS0 __attribute__((malloc, warn_unused_result))
#define SAMM_TRACKED_ALLOC_ATTRS(size_arg) __attribute__((alloc_size(size_arg), warn_unused_result))
#else
#define SAMM_ALLOC_ATTRS(size_arg)
#define SAMM_ALLOC_ATTRS0
#define SAMM_TRACKED_ALLOC_ATTRS(size_arg)
#endif

/* The version of the library the program runs with ("0.2.0"), which may
 * differ from the SAMM_VERSION_* macros it was compiled with.  Any thread. */
SAMM_API const char *samm_version(void);
/* The same as a number: major * 10000 + minor * 100 + patch. */
SAMM_API int samm_version_number(void);

/* ------------------------------------------------------------------------
 * Errors
 *
 * libsamm does not crash on misuse.  It tells the error handler what went
 * wrong, which call saw it and the pointer involved, then carries on with
 * the call turned into a no-op (or, for out of memory, a NULL result); no
 * other object is touched.  The default handler prints one line to the
 * output (stderr unless samm_set_output says otherwise), for example
 *     samm: double free of 0x5581c2a0 in samm_free_object
 * ---------------------------------------------------------------------- */
typedef enum {
    SAMM_ERR_OUT_OF_MEMORY = 1, /* an allocation failed                        */
    SAMM_ERR_BAD_DEPTH,         /* negative scope depth given to samm_scope_*  */
    SAMM_ERR_EXIT_AT_GLOBAL,    /* samm_exit_scope at depth 0                  */
    SAMM_ERR_DOUBLE_FREE,       /* a block freed (or cleaned) already          */
    SAMM_ERR_FOREIGN_POINTER,   /* not libsamm's, and not a malloc block       */
    SAMM_ERR_NOT_TRACKED,       /* retain of a pointer in no scope             */
    SAMM_ERR_SCOPE_IMBALANCE,   /* thread ended or shut down with open scopes  */
    SAMM_ERR_LEAK,              /* warning at shutdown: blocks still allocated */
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

/* Called on the thread that made the bad call, or on the cleanup worker for
 * what a background cleanup finds.  It must not longjmp out of libsamm; it
 * may call libsamm: errors it causes go to the default printer (the
 * handler is not entered again from inside itself). */
typedef void (*samm_error_fn)(const SAMMError *err, void *user);

/* Installs `fn` (NULL restores the default printer) and returns the
 * previous handler.  Any thread; takes effect for errors reported after it. */
SAMM_API samm_error_fn samm_set_error_handler(samm_error_fn fn, void *user);

/* The default printer: one line, "samm: MESSAGE in CALL", to the output
 * (samm_set_output).  A handler of the program's may call it for what it
 * does not handle itself; `user` is ignored.  Any thread. */
SAMM_API void samm_default_error_handler(const SAMMError *err, void *user);

/* The handler installed now (NULL: the default printer), and its `user`
 * in *user when `user` is not NULL: what a handler that chains to the one
 * it replaces needs.  Any thread. */
SAMM_API samm_error_fn samm_get_error_handler(void **user);

/* A short constant name for a code, e.g. "double free".  Any thread. */
SAMM_API const char *samm_error_name(SAMMErrorCode code);

/* How many errors have been reported since the process started.  Any thread. */
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
 *                      slot are non-NULL, then the block is freed
 *   every other type   the block is freed
 *
 * "Freed" means returned to libsamm for a libsamm block, and free() for a
 * malloc block (a pointer libsamm did not allocate, tracked by the host).
 * A plain struct has no vtable: track it as SAMM_ALLOC_GENERIC (or any
 * type but OBJECT), or its first field is taken for one.
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
 * the workers, reports as leaks (SAMM_ERR_LEAK, one per pool) the blocks of
 * this thread and of ended threads that are neither tracked nor freed,
 * prints the leak report when SAMM_LEAKS is set and statistics when
 * SAMM_STATS is, and leaves the library ready to be initialised again
 * (SAMM_* variables are read again then).  Both are idempotent.  Blocks of
 * threads still running are theirs, not leaks; the scopes they have open
 * are cleaned when they end.  A program that never calls samm_shutdown
 * gets the same reports at exit (an atexit handler) when SAMM_STATS or
 * SAMM_LEAKS is set.  Threads: samm_init any; samm_shutdown from one
 * thread while no other thread is inside a libsamm call (other threads may
 * go on using libsamm afterwards: it initialises again).
 * ---------------------------------------------------------------------- */
SAMM_API void samm_init(void);
SAMM_API void samm_shutdown(void);

/* While disabled, enter/exit/track/untrack/retain do nothing (depth does
 * not move); allocation and free still work.  Process-wide, and seen by
 * every thread's next call.  Any thread. */
SAMM_API void samm_set_enabled(int on);
SAMM_API int samm_is_enabled(void);

/* ------------------------------------------------------------------------
 * Scopes - per thread.  Depth 0 is the global scope; it exists from the
 * start and cannot be exited (samm_exit_scope at depth 0 is reported as
 * SAMM_ERR_EXIT_AT_GLOBAL and ignored).  Depth is limited only by memory:
 * a scope entered when memory runs out is reported, still counts, and
 * hands what is tracked in it to the scope around it.  On exit every
 * pointer tracked in the scope is cleaned, newest first.  Cleanup hooks
 * and destructors may call any samm function; they run in the cleaning
 * thread's own scope context.  A thread that ends with scopes open has
 * them cleaned (reported as SAMM_ERR_SCOPE_IMBALANCE) and its global scope
 * cleaned silently.  Threads: each thread has its own scopes.
 * ---------------------------------------------------------------------- */
SAMM_API void samm_enter_scope(void);
SAMM_API void samm_exit_scope(void);
SAMM_API int samm_scope_depth(void);

/* A scope for the rest of the enclosing block: put SAMM_AUTO_SCOPE; as the
 * first statement of a block, and the scope is exited however the block is
 * left - falling off its end, break, continue, return or goto.  Nested
 * blocks each get their own (the names are unique, -Wshadow is quiet).
 *     for (int i = 0; i < n; i++) {
 *         SAMM_AUTO_SCOPE;
 *         Point *p = samm_alloc(sizeof *p, SAMM_ALLOC_GENERIC);
 *         if (skip(p)) continue;          // p is cleaned here
 *         ...
 *     }
 * Needs GCC or Clang (__attribute__((cleanup))). */
#define SAMM_AUTO_SCOPE SAMM_AUTO_SCOPE_1_(__COUNTER__)
#define SAMM_AUTO_SCOPE_1_(n) SAMM_AUTO_SCOPE_2_(n)
#define SAMM_AUTO_SCOPE_2_(n)                                                                      \
    int samm_auto_scope_##n __attribute__((cleanup(samm_scope_guard_exit_), unused)) =             \
        (samm_enter_scope(), 0)

/* Runs the following block in a scope of its own, exited however the block
 * is left:
 *     SAMM_SCOPE { Point *p = samm_alloc(sizeof *p, SAMM_ALLOC_GENERIC); ... }
 * Its limit: it is a one-pass loop, so a break or continue inside it leaves
 * the SAMM_SCOPE block, not a loop around it.  Use SAMM_AUTO_SCOPE where
 * the block must break or continue an outer loop.  Needs GCC or Clang. */
#define SAMM_SCOPE SAMM_SCOPE_1_(__COUNTER__)
#define SAMM_SCOPE_1_(n) SAMM_SCOPE_2_(n)
#define SAMM_SCOPE_2_(n)                                                                           \
    for (int samm_scope_##n                                                                        \
         __attribute__((cleanup(samm_scope_guard_exit_))) = (samm_enter_scope(), 0);               \
         !samm_scope_##n; samm_scope_##n = 1)

static inline void samm_scope_guard_exit_(int *unused)
{
    (void)unused;
    samm_exit_scope();
}

/* ------------------------------------------------------------------------
 * Tracking - on the calling thread's scopes.  NULL is ignored.
 *
 * samm_track: `ptr` is cleaned with its type's release when the current
 *   scope exits.  A libsamm block already tracked (in any scope of any
 *   thread) is reported as SAMM_ERR_DOUBLE_TRACK and stays where it is; so
 *   is a malloc block already in one of the calling thread's scopes.  A
 *   freed libsamm block is SAMM_ERR_FREED_POINTER, a pointer into the
 *   middle of one SAMM_ERR_INTERIOR_POINTER; neither is tracked.  Other
 *   pointers are taken as the host says (a malloc block for the default
 *   release, anything its hook knows for host types).
 * samm_untrack: forgets `ptr` (searching the innermost scope outward);
 *   the caller owns it again.  A pointer in none of the calling thread's
 *   scopes is ignored; one tracked by another thread, or by a scope being
 *   cleaned, is reported (SAMM_ERR_NOT_OWNER).
 * samm_retain: moves `ptr` `levels` scopes outward from the scope it is
 *   found in, clamped at the global scope; levels 0 (or a pointer already
 *   in the global scope) leaves it where it is, in its place.  A pointer in
 *   no scope is reported (SAMM_ERR_NOT_TRACKED); a negative level is
 *   reported (SAMM_ERR_BAD_ARGUMENT).
 * Untrack, retain and free are O(1) expected whatever the scope's size.
 * Threads: the calling thread's scopes only.
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
 *   bytes: from size-class pools (32 B .. 16 KiB), larger blocks in memory
 *   of their own, all of it mapped and known by libsamm.  size 0 gives a
 *   minimal block.  NULL (reported) when memory runs out.  Not tracked:
 *   call samm_track_object, or use samm_alloc.
 * samm_free_object: untracks `ptr` if the calling thread tracks it, then
 *   frees it.  No destructor runs (DELETE runs it first, then frees).
 *   - A libsamm block already freed: SAMM_ERR_DOUBLE_FREE, ignored.
 *   - A pointer inside a libsamm block (or its bookkeeping):
 *     SAMM_ERR_INTERIOR_POINTER, ignored.
 *   - A block tracked by another thread, or in a batch being cleaned:
 *     SAMM_ERR_NOT_OWNER, ignored (its scope cleans it).
 *   - A pointer that is not libsamm's is released with free(), as the
 *     original runtime does - when it can be a malloc block: aligned,
 *     mapped, not on the stack of a thread that uses libsamm, not in a
 *     program or library image.  Otherwise SAMM_ERR_FOREIGN_POINTER, and
 *     it is left alone.
 *   NULL is ignored.  Any thread may free an untracked block.
 * samm_alloc: allocates (zeroed) and tracks in one call; `type` picks the
 *   release at scope exit.  STRING, LIST and LIST_ATOM take a descriptor
 *   slot when `size` fits it, the others an object block.  NULL when
 *   either fails (nothing is leaked).  While tracking is disabled the block
 *   is returned untracked.
 * samm_alloc_string / samm_alloc_list / samm_alloc_list_atom: zeroed
 *   descriptor slots (40, 32 and 24 bytes unless changed with
 *   samm_set_descriptor_sizes before first use); not tracked.  Freed by
 *   samm_free_object or by scope cleanup.
 * samm_track_string / samm_track_list: samm_track(ptr, STRING / LIST).
 * Threads: any; blocks belong to the thread that allocated them, and one
 * freed on another thread is handed back to it in batches.
 * ---------------------------------------------------------------------- */
SAMM_API void *samm_alloc_object(size_t size) SAMM_ALLOC_ATTRS(1);
SAMM_API void samm_free_object(void *ptr);
SAMM_API void *samm_alloc(size_t size, SAMMAllocType type) SAMM_TRACKED_ALLOC_ATTRS(1);
SAMM_API void *samm_alloc_string(void) SAMM_ALLOC_ATTRS0;
SAMM_API void *samm_alloc_list(void) SAMM_ALLOC_ATTRS0;
SAMM_API void *samm_alloc_list_atom(void) SAMM_ALLOC_ATTRS0;
SAMM_API void samm_track_string(void *desc);
SAMM_API void samm_track_list(void *list);

/* Slot sizes of the string, list and list-atom pools (each 8..1024, rounded
 * up to 8).  Returns 0, or -1 (reported) once a descriptor pool was used.
 * Any thread, before the first descriptor is allocated. */
SAMM_API int samm_set_descriptor_sizes(size_t string_size, size_t list_size, size_t atom_size);

/* Gives the calling thread's empty pool memory, and that of ended threads,
 * back to the operating system.  Any thread (its own pools). */
SAMM_API void samm_trim(void);

/* Bloom-filter query over the addresses of freed large blocks (over
 * 1024 B): 1 if `ptr` was probably freed by samm_free_object or cleanup, 0
 * if certainly not.  False positives happen; the rate is in the
 * statistics.  It answers questions only: what libsamm frees, and what it
 * calls a double free, is known exactly.  Any thread. */
SAMM_API int samm_is_probably_freed(void *ptr);

/* ------------------------------------------------------------------------
 * Cleanup
 *
 * samm_register_cleanup: `fn` replaces the default release for `type`
 *   (0..255) and owns the block from then on: it may call
 *   samm_free_object, free(), or keep it.  NULL restores the default.  Any
 *   thread; a batch being cleaned may still use the hook it looked up.
 * Cleanup runs in one of three modes, picked by SAMM_CLEANUP=auto|inline|
 *   background at init or samm_set_cleanup_mode at any time (any thread;
 *   batches already queued finish as they were):
 *   inline      on the thread that exits the scope: destructors run before
 *               samm_exit_scope returns.
 *   background  on worker threads fed through a bounded queue (a full
 *               queue makes the exiting thread clean inline; nothing is
 *               lost): samm_exit_scope returns at once.
 *   auto        (the default) per batch: a scope whose cleanup would take
 *               long enough to pay for the hand-over goes to a worker,
 *               others are cleaned inline.  The cost is learnt from the
 *               thread's own batches (its first two, then one in sixteen
 *               are cleaned inline and timed).
 *   Background and auto run destructors and hooks on another thread, so
 *   they must be safe to run there.  A program whose destructors are not
 *   (a runtime whose refcounts are plain integers) picks inline, or pins
 *   the types concerned.  On a worker, destructors and hooks run there;
 *   the memory of default
 *   releases goes back to the thread that exited the scope, the next time
 *   it exits a scope (any scope), calls samm_wait, or ends.
 * samm_pin_type: `pin` non-zero keeps the destructors and hooks of
 *   `type` on the thread that exits the scope: in auto and background
 *   mode a batch holding one is cleaned inline.  Returns the previous
 *   setting, or -1 (reported) for a type outside 0..255.  Any thread;
 *   batches already queued finish as they were.
 * samm_set_workers: how many worker threads (1..64; 0: the default, one
 *   less than the CPUs, at most 8; SAMM_WORKERS sets it at init).  Returns
 *   the previous number, or -1 (reported).  Fewer: the running workers
 *   finish what is queued and stop.  Any thread but a worker.
 * samm_wait: returns once every batch queued (by any thread) before the
 *   call has been cleaned - every destructor and hook has returned - and
 *   the memory of the calling thread's batches is back in its pools.
 *   Immediate when nothing is queued.  On a worker (in a hook) it returns
 *   at once.
 * ---------------------------------------------------------------------- */
typedef enum {
    SAMM_CLEANUP_INLINE = 0,
    SAMM_CLEANUP_BACKGROUND = 1,
    SAMM_CLEANUP_AUTO = 2
} SAMMCleanupMode;

SAMM_API void samm_register_cleanup(SAMMAllocType type, samm_cleanup_fn fn);
SAMM_API void samm_set_cleanup_mode(SAMMCleanupMode mode);
SAMM_API SAMMCleanupMode samm_get_cleanup_mode(void);
SAMM_API int samm_pin_type(SAMMAllocType type, int pin);
SAMM_API int samm_set_workers(int n);
SAMM_API int samm_get_workers(void);
SAMM_API void samm_wait(void);

/* ------------------------------------------------------------------------
 * Diagnostics
 *
 * Statistics are exact: allocated and freed bytes count the same unit (the
 * slot or block size actually handed out), so after everything is freed
 * total_bytes_freed == total_bytes_allocated.  Each thread counts what it
 * does and publishes its counts in bulk (at every scope exit that cleans,
 * every slab change, samm_wait and when it ends); samm_get_stats counts
 * the calling thread's exactly and waits for queued background batches
 * first.  So the totals are exact once other threads have ended or are
 * idle after such a point; objects tracked in scopes that other running
 * threads still hold open are counted when those scopes exit.
 *
 * ABI: SAMMStats only grows, at its end.  The first block of fields is the
 * original runtime's (136 bytes), in its order.  A program passes its own
 * sizeof (the samm_get_stats macro does), and libsamm writes no more than
 * that: a program built against an older header (or the original's) never
 * has bytes written past its struct.
 * ---------------------------------------------------------------------- */
typedef struct {
    uint64_t scopes_entered;
    uint64_t scopes_exited;
    uint64_t objects_allocated;
    uint64_t objects_freed;   /* blocks released, by free_object or cleanup */
    uint64_t objects_cleaned; /* tracked pointers released at scope exit    */
    uint64_t cleanup_batches;
    uint64_t double_free_attempts;
    uint64_t bloom_false_positives; /* estimated from the filter's fill      */
    uint64_t retain_calls;
    uint64_t total_bytes_allocated;
    uint64_t total_bytes_freed; /* libsamm's own; the host's are apart     */
    uint64_t strings_tracked;
    uint64_t strings_cleaned;
    int current_scope_depth; /* of the calling thread */
    int peak_scope_depth;    /* over all threads      */
    size_t bloom_memory_bytes;
    double total_cleanup_time_ms; /* measured while timing is on (below) */
    int background_worker_active;
    /* libsamm's additions, after the original's 136 bytes */
    uint64_t objects_tracked;
    uint64_t queue_high_water; /* most batches ever waiting at once       */
    uint64_t inline_fallbacks; /* batches cleaned inline: queue was full  */
    uint64_t foreign_frees;    /* malloc blocks released with free()      */
    uint64_t bytes_returned_to_os;
    double bloom_false_positive_rate; /* current estimate, 0..1            */
    uint64_t cleaned_by_type[256];
    uint64_t host_bytes_freed; /* reported by samm_record_bytes_freed      */
} SAMMStats;

/* The size of the original runtime's SAMMStats: what samm_get_stats, called
 * as a function, writes. */
#define SAMM_STATS_V1_SIZE 136

/* Statistics of one pool: index 0..5 the object classes (32..1024 B),
 * 6 strings, 7 lists, 8 list atoms, 9..12 the medium object classes (2, 4,
 * 8 and 16 KiB). */
typedef struct {
    size_t slot_size;
    uint64_t slabs;    /* slabs currently held              */
    uint64_t capacity; /* slots in those slabs              */
    uint64_t in_use;
    uint64_t peak_in_use; /* the most one thread held when sampled (scope
                             releases, slab changes, statistics
                             calls): a lower bound of the true peak */
    uint64_t allocations;
    uint64_t frees;
    uint64_t bytes_returned_to_os;
} SAMMPoolStats;

#define SAMM_POOL_COUNT 13

/* Fills the first `size` bytes of `out` (at most sizeof(SAMMStats)) and
 * returns how many it filled.  Any thread. */
SAMM_API size_t samm_get_stats_sized(SAMMStats *out, size_t size);
/* Fills the original runtime's 136 bytes of `out`, and no more: the symbol
 * that programs built against the original header call.  Programs built
 * against this header call samm_get_stats_sized through the macro below. */
SAMM_API void samm_get_stats(SAMMStats *out);
#define samm_get_stats(out) ((void)samm_get_stats_sized((out), sizeof *(out)))
/* Fills `out` for pool `index`; returns 0, or -1 for a bad index.  Any thread. */
SAMM_API int samm_get_pool_stats(int index, SAMMPoolStats *out);
/* Prints the statistics to the output.  Any thread. */
SAMM_API void samm_print_stats(void);
/* While on, one line to the output for every scope entered or exited, every
 * retain and every cleanup batch (SAMM_TRACE=1 at init).  Tracing makes
 * every samm_enter_scope and samm_exit_scope take the slow path; other
 * threads start tracing at their next scope entry or exit.  Any thread;
 * process-wide. */
SAMM_API void samm_set_trace(int on);
/* Measures total_cleanup_time_ms while on (also with SAMM_STATS or
 * tracing); off, no clock is read.  Any thread; process-wide. */
SAMM_API void samm_set_timing(int on);
/* For hosts that free memory of their own that they count with libsamm's
 * (the original runtime reports its string buffers): adds to
 * host_bytes_freed, never to total_bytes_freed.  Any thread. */
SAMM_API void samm_record_bytes_freed(uint64_t bytes);

/* ------------------------------------------------------------------------
 * Reports: where the memory is
 *
 * samm_report: every program thread's open scopes, each with its objects
 *   grouped by type (count and bytes), as a tree to read at a glance:
 *     samm: report (pid 4242): 2 threads, 2 open scopes, 10 tracked objects, 336 B
 *       thread 4242 "demo" (this thread): depth 2, 10 objects, 336 B
 *         depth 0 (global): 2 objects, 64 B
 *           OBJECT              2  64 B
 *         depth 1: empty
 *         depth 2: 8 objects, 272 B
 *           OBJECT              6  192 B
 *           STRING              2  80 B
 *       thread 4250 "loader": busy - passed no scope entry or exit within 100 ms
 *       cleanup: inline, 0 batches queued, no worker running
 *   A thread's scopes are read by that thread: each one is asked, and
 *   answers at its next scope entry or exit; one that passes none within
 *   SAMM_REPORT_WAIT_MS (default 100) is shown as busy.  Workers are not
 *   listed; bytes of pointers the host tracked are not known.  `out` NULL:
 *   the output.  Any thread (one report at a time).
 * samm_report_json: the same as one line of JSON: {"pid", "threads": [{"tid",
 *   "name", "self", "state": "ok"|"busy", "depth", "objects", "bytes",
 *   "complete", "scopes": [{"depth", "objects", "bytes", "types": [{"type",
 *   "code", "count", "bytes"}]}]}], "queued_batches", "workers"}.
 * samm_report_leaks: the blocks of the calling thread and of ended threads
 *   that are neither tracked nor freed, grouped by allocation site (when
 *   recorded) and size, largest first; returns how many.  At exit these
 *   are leaks; before, the program may still hold some.  Blocks of other
 *   threads still running are not examined.  Any thread.
 * samm_set_sites: records, for every block allocated while on, the
 *   address of the call that allocated it (SAMM_SITES=1 at init); the leak
 *   report then names the function (dladdr: link the program with
 *   -rdynamic for its own functions, or give the printed file+offset to
 *   addr2line).  While on, every allocation takes the slow path; off, it
 *   costs nothing.  Other threads start recording at their next scope
 *   entry or exit, or slab change.  Returns the previous setting.  Any
 *   thread.
 * samm_set_output: where libsamm's text goes - error lines of the default
 *   handler, statistics, traces, reports with `out` NULL, the reports at
 *   exit: `out` (NULL: stderr, the default), written whole lines at a
 *   time and flushed.  samm_set_output_fn sends the same text to `fn`
 *   instead (NULL: back to the file), one or more whole lines per call,
 *   possibly from several threads at once; `fn` may call libsamm.  Any
 *   thread.
 * ---------------------------------------------------------------------- */
SAMM_API void samm_report(FILE *out);
SAMM_API void samm_report_json(FILE *out);
SAMM_API size_t samm_report_leaks(FILE *out);
SAMM_API int samm_set_sites(int on);
typedef void (*samm_output_fn)(const char *text, void *user);
SAMM_API void samm_set_output(FILE *out);
SAMM_API void samm_set_output_fn(samm_output_fn fn, void *user);

#ifdef __cplusplus
}
#endif

#endif /* SAMM_H */
