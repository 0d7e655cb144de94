/* SPDX-License-Identifier: MIT */
/* be_samm.c - libsamm: objects from samm_alloc_object tracked in the
 * current scope, returned ones retained to the parent, strings from the
 * descriptor pool released by a cleanup hook.  BENCH_SAMM_INLINE,
 * BENCH_SAMM_BACKGROUND or BENCH_SAMM_AUTO picks the cleanup mode.
 */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"
#include "samm.h"

#if defined(BENCH_SAMM_INLINE)
#define BENCH_SAMM_NAME "samm-inline"
#define BENCH_SAMM_MODE SAMM_CLEANUP_INLINE
#elif defined(BENCH_SAMM_BACKGROUND)
#define BENCH_SAMM_NAME "samm-background"
#define BENCH_SAMM_MODE SAMM_CLEANUP_BACKGROUND
#elif defined(BENCH_SAMM_AUTO)
#define BENCH_SAMM_NAME "samm-auto"
#define BENCH_SAMM_MODE SAMM_CLEANUP_AUTO
#else
#error "define BENCH_SAMM_INLINE, BENCH_SAMM_BACKGROUND or BENCH_SAMM_AUTO"
#endif

_Static_assert(BENCH_DESTRUCTOR_SLOT == SAMM_VTABLE_DESTRUCTOR_SLOT, "same destructor slot");

#define checked(p) bench_checked((p), "bench: libsamm out of memory")

/* The release hook for SAMM_ALLOC_STRING: owns the descriptor from here. */
static void str_cleanup(void *str)
{
    bench_str *s = str;
    if (!bench_str_unref(s)) return;
    free(s->data);
    samm_free_object(s);
}

static void samm_bench_init(void)
{
    samm_init();
    samm_set_cleanup_mode(BENCH_SAMM_MODE);
    samm_register_cleanup(SAMM_ALLOC_STRING, str_cleanup);
}

static void samm_bench_exit(void **items, size_t n, bench_kind kind)
{
    (void)items;
    (void)n;
    (void)kind;
    samm_exit_scope();
}

static void *samm_bench_obj_new(size_t size, bench_counter *owner)
{
    void *o = checked(samm_alloc_object(size));
    bench_obj_init(o, owner);
    samm_track_object(o);
    return o;
}

static void samm_bench_obj_delete(void *obj)
{
    bench_obj_destroy(obj);
    samm_free_object(obj);
}

static void *samm_bench_obj_return(void *obj, size_t size)
{
    (void)size;
    samm_retain_parent(obj);
    return obj;
}

static bench_str *samm_bench_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = checked(samm_alloc_string());
    bench_str_init(s, checked(malloc(len + 1)), len, owner);
    samm_track_string(s);
    return s;
}

const bench_backend bench_backend_impl = {
    .name = BENCH_SAMM_NAME,
    .obj_dtors = BENCH_DTOR_EXACT,
    .str_dtors = BENCH_DTOR_EXACT,
    .init = samm_bench_init,
    .shutdown = samm_shutdown,
    .thread_begin = bench_nothing,
    .thread_end = bench_nothing,
    .enter = samm_enter_scope,
    .exit = samm_bench_exit,
    .obj_new = samm_bench_obj_new,
    .obj_delete = samm_bench_obj_delete,
    .obj_return = samm_bench_obj_return,
    .str_new = samm_bench_str_new,
    .pair32 = NULL,
    .finish = samm_wait,
};
