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
    SAMM_ERR_BAD_ARGUMENT       /* any other invalid argument                  */
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

#ifdef __cplusplus
}
#endif

#endif /* SAMM_H */
