/* SPDX-License-Identifier: MIT */
/* backend.h - the interface every comparison backend implements, and the
 * object and string layouts they all share, so that every backend does the
 * same work and the driver (workloads.c) can check what it did.
 */
#ifndef BENCH_CMP_BACKEND_H
#define BENCH_CMP_BACKEND_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Deepest scope nesting a workload reaches (deep: 100 levels, plus one). */
#define BENCH_MAX_DEPTH 128

/* Counts destructors and string releases of one thread's objects.  A
 * destructor may run on another thread (a cleanup worker, a GC), hence the
 * atomic; one cache line per counter so threads do not share it. */
typedef struct {
    alignas(64) atomic_uint_least64_t released;
} bench_counter;

/* ------------------------------------------------------------------------
 * Objects: the first word is the vtable; slot 3 is the destructor (the
 * FasterBASIC / libsamm protocol).  16 bytes of header, the rest payload.
 * ---------------------------------------------------------------------- */
typedef void (*bench_method)(void *self);

typedef struct {
    const bench_method *vtable;
    bench_counter *owner;
} bench_obj;

#define BENCH_DESTRUCTOR_SLOT 3
extern const bench_method bench_obj_vtable[BENCH_DESTRUCTOR_SLOT + 1];

static inline void bench_obj_init(void *obj, bench_counter *owner)
{
    bench_obj *o = obj;
    o->vtable = bench_obj_vtable;
    o->owner = owner;
}

/* What every backend calls when an object dies (libsamm calls the slot
 * itself). */
static inline void bench_obj_destroy(void *obj)
{
    ((bench_obj *)obj)->vtable[BENCH_DESTRUCTOR_SLOT](obj);
}

/* ------------------------------------------------------------------------
 * Strings: the BASIC runtime's 40-byte refcounted descriptor pointing at a
 * separately allocated character buffer.
 * ---------------------------------------------------------------------- */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    int32_t refcount;
    uint32_t flags;
    bench_counter *owner;
} bench_str;

_Static_assert(sizeof(bench_str) == 40, "string descriptors are 40 bytes");

static inline void bench_str_init(bench_str *s, char *data, size_t len, bench_counter *owner)
{
    s->data = data;
    s->len = len;
    s->cap = len + 1;
    s->refcount = 1;
    s->owner = owner;
}

/* Drops one reference; when it was the last, counts the release and
 * returns 1: the caller then frees the buffer and the descriptor. */
static inline int bench_str_unref(bench_str *s)
{
    if (--s->refcount != 0) return 0;
    atomic_fetch_add_explicit(&s->owner->released, 1, memory_order_relaxed);
    return 1;
}

/* ------------------------------------------------------------------------
 * Helpers the backends share
 * ---------------------------------------------------------------------- */

/* Returns `p`; when it is NULL, prints `oom_message` and exits. */
static inline void *bench_checked(void *p, const char *oom_message)
{
    if (!p) {
        fprintf(stderr, "%s\n", oom_message);
        exit(1);
    }
    return p;
}

/* For the hooks a backend has no work in (defined in workloads.c). */
void bench_nothing(void);

/* obj_return for backends whose objects do not belong to a scope: the
 * object stays where it is (defined in workloads.c). */
void *bench_obj_return_in_place(void *obj, size_t size);

/* ------------------------------------------------------------------------
 * The backend
 * ---------------------------------------------------------------------- */
typedef enum { BENCH_KIND_OBJ, BENCH_KIND_STR } bench_kind;

/* When destructors run: exactly at scope exit or delete; late (a GC's
 * finalizers: counted and reported, never a failure); or not at all (the
 * bump-arena floor, GC'd strings). */
typedef enum { BENCH_DTOR_EXACT, BENCH_DTOR_LATE, BENCH_DTOR_NONE } bench_dtor_policy;

typedef struct {
    const char *name;
    bench_dtor_policy obj_dtors;
    bench_dtor_policy str_dtors;
    void (*init)(void);     /* once, on the main thread            */
    void (*shutdown)(void); /* once, after all work; may run dtors */
    void (*thread_begin)(void);
    void (*thread_end)(void);
    void (*enter)(void);
    /* Leaves the innermost scope.  `items` are the objects or strings made
     * in it that are still alive (NULL entries: deleted or returned); the
     * backends that have no scopes release them, the others ignore them. */
    void (*exit)(void **items, size_t n, bench_kind kind);
    /* A zeroed object of `size` bytes, initialised with bench_obj_init and
     * owned by the current scope. */
    void *(*obj_new)(size_t size, bench_counter *owner);
    /* Runs the destructor and frees the object now. */
    void (*obj_delete)(void *obj);
    /* Hands the object to the parent scope; returns its address there,
     * valid once the current scope has exited. */
    void *(*obj_return)(void *obj, size_t size);
    /* A descriptor with an uninitialised buffer of len + 1 bytes, set up by
     * bench_str_init and owned by the current scope. */
    bench_str *(*str_new)(size_t len, bench_counter *owner);
    /* Backends without scopes: one allocation + free of 32 bytes, the
     * reference the scopes workload compares against.  NULL otherwise. */
    void (*pair32)(void);
    /* Returns when all cleanup started so far has completed. */
    void (*finish)(void);
} bench_backend;

/* Each bench_cmp_<backend> executable links exactly one definition. */
extern const bench_backend bench_backend_impl;

#endif
