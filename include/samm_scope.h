/* SPDX-License-Identifier: MIT */
/* samm_scope.h - the scope-storage ABI of libsamm (the seed design's Phase 2).
 *
 * A primitive usable on its own: per-thread frames of three parallel arrays
 * (pointer, type tag, size class), indexed by depth.  It does no locking
 * and holds no policy.  The core (samm.h) keeps its scopes in frames of the
 * same module, with the same layout, but on a stack of its own: the frames
 * reached through these calls belong to their caller alone, so adding an
 * entry here tracks nothing in the core's scopes, and detaching a frame
 * here cannot take the core's entries away.
 *
 * Thread rules: every frame belongs to the calling thread.  Two threads that
 * use the same depth never see each other's entries, and a thread's frames
 * are released when the thread exits.
 *
 * Depth: any depth >= 0 that memory allows (no cap at 256).  A negative depth
 * is rejected: the call does nothing (or returns false) and the library's
 * error handler is told (SAMM_ERR_BAD_DEPTH).
 */
#ifndef SAMM_SCOPE_H
#define SAMM_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Prepares the module.  Idempotent; every other call does it implicitly. */
SAMM_API void samm_scope_ensure_init(void);

/* The frame at `depth` becomes empty.  Its arrays keep their capacity. */
SAMM_API void samm_scope_reset(int depth);

/* Appends (ptr, type, size_class) to the frame at `depth`.  Amortised O(1).
 * Either all three arrays receive the entry or none does: when memory runs
 * out the frame is left exactly as it was and SAMM_ERR_OUT_OF_MEMORY is
 * reported.  NULL pointers are stored like any other value. */
SAMM_API void samm_scope_add(int depth, void *ptr, uint8_t type, uint8_t size_class);

/* Removes one entry for `ptr` from the frame at `depth`, newest first, and
 * stores its type and size class through the out-pointers that are not NULL.
 * Returns false (and touches nothing) when the frame holds no such entry.
 * O(1) expected: large frames build a hash index on first use.  The order of
 * the remaining entries may change (the last entry takes the removed one's
 * place in all three arrays); a removed entry never reaches detach. */
SAMM_API bool samm_scope_remove(int depth, void *ptr, uint8_t *out_type, uint8_t *out_sc);

/* Hands the frame's three arrays to the caller, who releases each of them
 * with plain free(), and leaves the frame empty and reusable.  Returns false
 * for an empty frame (and then writes nothing).  All out-pointers are
 * required. */
SAMM_API bool samm_scope_detach(int depth, void ***out_ptrs, uint8_t **out_types, uint8_t **out_sc,
                                size_t *out_count);

#ifdef __cplusplus
}
#endif

#endif /* SAMM_SCOPE_H */
