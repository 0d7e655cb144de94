/* SPDX-License-Identifier: MIT */
/* types.h - the data structures libsamm's modules share, and every constant
 * that sizes them, each defined once.  Functions are in internal.h.
 *
 * The shape: one context per thread (samm_tld), reached from one
 * thread-local pointer.  It holds the thread's stack of scope frames, its
 * heap (the slabs it allocates from, one pool per size class), its
 * counters, its mailbox for batches the cleanup worker sends back, and its
 * buffer of frees into other threads' slabs.
 */
#ifndef SAMM_TYPES_H
#define SAMM_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samm.h"

/* ------------------------------------------------------------------------
 * Slabs: SAMM_SLAB_SIZE bytes aligned to their size, so the header of the
 * slab holding any pool slot is the slot's address with the low bits
 * cleared.  A huge object (over SAMM_MEDIUM_MAX bytes) gets a span of
 * contiguous slabs whose first holds the same header.
 * ---------------------------------------------------------------------- */
#define SAMM_SLAB_SHIFT 16
#define SAMM_SLAB_SIZE ((size_t)1 << SAMM_SLAB_SHIFT)
#define SAMM_SLAB_MASK (SAMM_SLAB_SIZE - 1)
#define SAMM_CHUNK_SLABS 32 /* slabs mapped at once */

/* Pools, by index (samm_get_pool_stats numbers them the same way):
 * 0..5 the small object classes 32..1024 B, 6..8 the string, list and
 * list-atom descriptors, 9..12 the medium classes 2..16 KiB. */
#define SAMM_SMALL_CLASSES 6
#define SAMM_SMALL_MAX 1024
#define SAMM_DESC_FIRST 6
#define SAMM_DESC_STRING 6
#define SAMM_DESC_LIST 7
#define SAMM_DESC_ATOM 8
#define SAMM_MEDIUM_FIRST 9
#define SAMM_MEDIUM_CLASSES 4
#define SAMM_MEDIUM_MAX 16384
#define SAMM_POOLS 13
#define SAMM_POOL_HUGE 0xFF /* pool byte of a huge object's span */
_Static_assert(SAMM_POOLS == SAMM_POOL_COUNT, "samm.h and types.h agree on the pools");
_Static_assert(SAMM_MEDIUM_FIRST + SAMM_MEDIUM_CLASSES == SAMM_POOLS, "pool numbering");
/* The direct table maps (size + 15) / 16 to a small class's active slab. */
#define SAMM_DIRECT (SAMM_SMALL_MAX / 16 + 1)

/* Slot states, one 32-bit word per slot beside the header.  A tracked
 * slot's word holds the position of its entry in its scope frame, so
 * untrack, retain and free find the entry without searching. */
#define SAMM_META_FREE 0u
#define SAMM_META_LIVE 1u         /* handed out, not tracked */
#define SAMM_META_TRACKED 2u      /* + index of the entry in its frame */
#define SAMM_META_FAR 0xFFFFFFFFu /* tracked at an index too large to store */
#define SAMM_META_MAX_INDEX (SAMM_META_FAR - SAMM_META_TRACKED - 1)
#define SAMM_META_OFF 256 /* bytes from the slab start to its slot words */

/* What a registry byte (one per SAMM_SLAB_SIZE of address space) says. */
enum { SAMM_REG_NONE = 0, SAMM_REG_HEAD = 1, SAMM_REG_BODY = 2 };

/* Slab kinds and which of its heap's lists holds it. */
enum { SAMM_SLAB_FREE = 0, SAMM_SLAB_POOL = 1, SAMM_SLAB_HUGE = 2 };
enum {
    SAMM_IN_NONE,
    SAMM_IN_ACTIVE,
    SAMM_IN_AVAIL,
    SAMM_IN_FULL,
    SAMM_IN_EMPTY,
    SAMM_IN_ABANDONED,
    SAMM_IN_SPANS
};

struct samm_tld;

typedef struct samm_slab {
    /* The owner's fields, read and written on the fast paths. */
    void *free;      /* free slots, linked through their first word */
    uint32_t nalloc; /* slots handed out, ever (wraps; see nfree)    */
    uint32_t nfree;  /* slots given back, ever: used = nalloc - nfree */
    uint8_t shift;   /* slot word index = (ptr & SLAB_MASK) >> shift */
    uint8_t pool;    /* pool index, or SAMM_POOL_HUGE                 */
    uint8_t kind;    /* SAMM_SLAB_*                                   */
    uint8_t where;   /* SAMM_IN_*                                     */
    uint32_t size;   /* slot size (huge: the rounded object size)     */
    uint32_t first;  /* offset of slot 0                              */
    uint32_t nslots;
    uint32_t recip;               /* 2^32 / size, rounded up: slot number by multiply */
    uint32_t bump;                /* slots from here on were never handed out      */
    uint32_t folded;              /* nalloc already counted in the owner's counters */
    uint32_t empty_ms;            /* when it joined its heap's empty list          */
    uint32_t span;                /* slabs in this span (1 for pool slabs)         */
    uint32_t touch_nfree;         /* nfree when that batch first touched it       */
    _Atomic uint64_t touch;       /* the release batch (numbered process-wide)
                                  that last touched it (read by any releaser) */
    struct samm_slab *touch_next; /* slabs touched by the batch           */
    struct samm_slab *next, *prev;
    _Atomic(struct samm_tld *) owner; /* NULL while abandoned or free     */
    size_t huge_size;                 /* huge objects: bytes asked for                 */
    uint32_t owner_gen;               /* huge: the owner context's generation then     */
    uint32_t sites_gen;               /* the site generation `sites` belongs to        */
    const void **sites;               /* allocation site per slot (SAMM_SITES), or NULL */
    const void *site;                 /* huge: its block's allocation site             */
    /* Written by other threads: a cache line of its own. */
    _Alignas(64) _Atomic(void *) remote; /* slots freed by other threads  */
} samm_slab;
_Static_assert(sizeof(samm_slab) <= SAMM_META_OFF, "slot words follow the header");

typedef struct {
    samm_slab *head, *tail;
    size_t n;
} samm_slab_list;

/* A pool of the thread's heap. */
typedef struct {
    samm_slab *active;
    samm_slab_list avail, full, empty;
    uint64_t peak; /* most slots of this pool this thread held at once */
} samm_pclass;

/* ------------------------------------------------------------------------
 * Scope frames: the seed's three parallel arrays.  A removed entry becomes
 * a tombstone (its pointer replaced by SAMM_TOMB) so the remaining entries
 * keep their order; tombstones are compacted away before they outnumber
 * the entries.  `cap` is what the fast path may append up to: the real
 * capacity normally, 0 when appends must take the slow path (the library
 * is disabled, or the frame keeps a hash index).
 * ---------------------------------------------------------------------- */
#define SAMM_FRAME_INITIAL_CAP 32
#define SAMM_INDEX_MIN 64 /* entries before a frame is worth a hash index */

typedef struct samm_frame {
    size_t count;       /* entries, tombstones included                */
    _Atomic size_t cap; /* fast-path append limit (see above)          */
    void **ptrs;
    uint8_t *types;
    uint8_t *sc;       /* size classes: frames of samm_scope_* only   */
    size_t capacity;   /* allocated entries of the arrays             */
    uint32_t ntomb;    /* tombstones among the entries                */
    uint32_t nforeign; /* entries that are not libsamm blocks          */
    int depth;
    uint64_t *index;    /* hash index of entries, or NULL (index[-1]: size) */
    uint64_t filter[4]; /* a bit per hash of the foreign entries       */
} samm_frame;

/* Frames live in segments that never move, so a frame's address is stable
 * for the thread's lifetime (other threads may poke its `cap`). */
typedef struct samm_frame_seg {
    struct samm_frame_seg *prev, *next;
    size_t n;
    samm_frame f[];
} samm_frame_seg;

/* A frame's entries taken out for cleaning: the arrays, malloc'd, which
 * whoever finishes with them releases with free(). */
typedef struct samm_batch {
    void **ptrs;
    uint8_t *types;
    size_t count, capacity;
    uint32_t ntomb, nforeign;
    struct samm_tld *owner; /* whose memory it is, for the worker's reply */
    uint64_t seq;           /* queued as the seq-th batch (samm_wait)      */
    size_t nrelease;        /* back from the worker: the last nrelease
                               pointers still need their memory released */
    bool timed;             /* auto mode: the worker times its cleanup...  */
    uint32_t entry_ns;      /* ...and leaves the cost per entry here       */
} samm_batch;

#define SAMM_MAILBOX_CAP 32 /* finished batches waiting for their owner */
#define SAMM_SPARE_ARRAYS 4 /* their arrays kept for the next frames      */

/* ------------------------------------------------------------------------
 * Counters: each thread writes its own (relaxed load + store: plain moves,
 * never a locked instruction), readers sum every thread's.  They are
 * written in bulk: per scope exit, batch, slab change or flush.
 * ---------------------------------------------------------------------- */
enum {
    SAMM_C_SCOPES_ENTERED,
    SAMM_C_SCOPES_EXITED,
    SAMM_C_REMOVED,         /* tracked entries untracked or freed        */
    SAMM_C_STRINGS_REMOVED, /* of which strings                          */
    SAMM_C_CLEANED,
    SAMM_C_BATCHES,
    SAMM_C_RETAINS,
    SAMM_C_CLEANUP_NS,
    SAMM_C_INLINE_FALLBACKS,
    SAMM_C_HOST_BYTES_FREED,
    SAMM_C_DOUBLE_FREES,
    SAMM_C_FOREIGN_FREES,
    SAMM_C_BYTES_TO_OS,
    SAMM_C_HUGE_ALLOCS,
    SAMM_C_HUGE_FREES,
    SAMM_C_HUGE_BYTES_ALLOCATED,
    SAMM_C_HUGE_BYTES_FREED,
    SAMM_C_PEAK_DEPTH, /* merged with max, not summed */
    SAMM_C__COUNT
};

typedef struct {
    _Atomic uint64_t c[SAMM_C__COUNT];
    _Atomic uint64_t allocs[SAMM_POOLS], frees[SAMM_POOLS], peak[SAMM_POOLS];
    _Atomic uint64_t slabs_made[SAMM_POOLS], slabs_gone[SAMM_POOLS], returned[SAMM_POOLS];
    _Atomic uint64_t by_type[256];
} samm_counters;

/* ------------------------------------------------------------------------
 * The per-thread context.  The fast paths read its first cache lines.
 * ---------------------------------------------------------------------- */
#define SAMM_RBUF_N 8 /* slabs of other threads with frees held back */

typedef struct {
    samm_slab *s;
    void *head, *tail;
    uint32_t n;
} samm_rbuf;

typedef struct samm_tld {
    /* Fast paths. */
    samm_frame *cur;                /* the innermost open scope's frame      */
    _Atomic uintptr_t limit;        /* enter is slow from this frame on      */
    _Atomic uintptr_t floor;        /* exit is slow at or below this frame   */
    void *last_alloc;               /* last block allocated, and its slot word */
    uint64_t exited;                /* scope exits, published in bulk        */
    _Atomic uint32_t *last_meta;    /* (apart: two adjacent stores would be
                                       merged into four vector instructions) */
    samm_slab *direct[SAMM_DIRECT]; /* by (size + 15) / 16: small classes  */
    samm_slab *pdirect[SAMM_POOLS]; /* by pool: the active slab, or an
                                       empty one (never NULL)            */

    /* The heap. */
    samm_pclass pc[SAMM_POOLS];
    _Atomic uint64_t remote_pending; /* other threads spliced frees to us */
    samm_rbuf rbuf[SAMM_RBUF_N];
    uint32_t rbuf_busy;

    /* Scopes. */
    samm_frame_seg *seg;  /* the segment holding cur               */
    samm_frame_seg *segs; /* the first segment (depth 0 = global)  */
    int peak_depth;
    int phantom;     /* scopes entered without a frame (out of
                        memory): their exits do nothing, what
                        they track goes to the frame below   */
    samm_frame *abi; /* samm_scope_* frames, by depth         */
    size_t abi_n;

    /* Cleanup. */
    samm_batch spare[SAMM_SPARE_ARRAYS]; /* arrays back from the worker, for
                                            frames that have none      */
    unsigned nspare;
    samm_batch mail[SAMM_MAILBOX_CAP]; /* finished batches (worker lock)  */
    _Atomic size_t nmail;
    uint64_t submitted; /* batches this thread queued            */
    uint64_t inflight;  /* of which not yet back (worker lock)   */
    /* Auto mode: what cleaning one entry costs on this thread, in ns (an
     * estimate from sampled batches), the last sample, and the batch
     * counter that picks them. */
    uint32_t entry_ns;
    uint32_t last_ns;
    uint32_t auto_tick;

    samm_counters ctr;

    /* Reports (report.c): the site of the allocation in progress (while
     * sites are recorded), the site generation this thread's fast-path
     * tables follow, and a snapshot another thread asked for. */
    const void *site;
    uint32_t sites_gen;
    _Atomic(struct samm_snap *) snap_req;

    /* Identity and bookkeeping. */
    uintptr_t stack_lo, stack_hi; /* for telling stack pointers apart     */
    long tid;                     /* the kernel's thread id                */
    uint32_t gen;                 /* bumped each time a thread takes it    */
    bool in_use;                  /* attached to a live thread             */
    bool is_worker;
    bool exiting;
    struct samm_tld *next_all; /* every context ever made (never freed) */
} samm_tld;

#endif /* SAMM_TYPES_H */
