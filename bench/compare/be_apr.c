/* SPDX-License-Identifier: MIT */
/* be_apr.c - APR pools: a pool per scope (a subpool of the enclosing
 * scope's), apr_pool_cleanup_register per object and string; a returned
 * object is copied into the parent pool, its cleanup moved with it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apr_general.h>
#include <apr_pools.h>

#include "backend.h"

static _Thread_local apr_pool_t *stack[BENCH_MAX_DEPTH];
static _Thread_local int depth;

static void check(apr_status_t st)
{
    if (st != APR_SUCCESS) {
        fprintf(stderr, "bench: APR call failed (%d)\n", (int)st);
        exit(1);
    }
}

#define checked(p) bench_checked((p), "bench: APR out of memory")

static apr_status_t obj_cleanup(void *obj)
{
    bench_obj_destroy(obj);
    return APR_SUCCESS;
}

static apr_status_t str_cleanup(void *str)
{
    bench_str_unref(str);
    return APR_SUCCESS;
}

static void apr_bench_init(void)
{
    check(apr_initialize());
}

/* Each thread's root pool is unmanaged with an allocator of its own, so its
 * subpools take no lock. */
static void apr_bench_thread_begin(void)
{
    apr_allocator_t *allocator;
    check(apr_allocator_create(&allocator));
    depth = 0;
    check(apr_pool_create_unmanaged_ex(&stack[0], NULL, allocator));
    apr_allocator_owner_set(allocator, stack[0]);
}

static void apr_bench_thread_end(void)
{
    apr_pool_destroy(stack[0]);
}

static void apr_bench_enter(void)
{
    if (depth + 1 >= BENCH_MAX_DEPTH) abort();
    check(apr_pool_create(&stack[depth + 1], stack[depth]));
    depth++;
}

static void apr_bench_exit(void **items, size_t n, bench_kind kind)
{
    (void)items;
    (void)n;
    (void)kind;
    apr_pool_destroy(stack[depth--]);
}

static void *apr_bench_obj_new(size_t size, bench_counter *owner)
{
    void *o = checked(apr_pcalloc(stack[depth], size));
    bench_obj_init(o, owner);
    apr_pool_cleanup_register(stack[depth], o, obj_cleanup, apr_pool_cleanup_null);
    return o;
}

/* A pool cannot free one block: the destructor runs now, the memory goes
 * with the pool. */
static void apr_bench_obj_delete(void *obj)
{
    check(apr_pool_cleanup_run(stack[depth], obj, obj_cleanup));
}

static void *apr_bench_obj_return(void *obj, size_t size)
{
    apr_pool_t *parent = stack[depth - 1];
    void *moved = checked(apr_palloc(parent, size));
    memcpy(moved, obj, size);
    apr_pool_cleanup_kill(stack[depth], obj, obj_cleanup);
    apr_pool_cleanup_register(parent, moved, obj_cleanup, apr_pool_cleanup_null);
    return moved;
}

static bench_str *apr_bench_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = checked(apr_pcalloc(stack[depth], sizeof *s));
    bench_str_init(s, checked(apr_palloc(stack[depth], len + 1)), len, owner);
    apr_pool_cleanup_register(stack[depth], s, str_cleanup, apr_pool_cleanup_null);
    return s;
}

const bench_backend bench_backend_impl = {
    .name = "apr",
    .obj_dtors = BENCH_DTOR_EXACT,
    .str_dtors = BENCH_DTOR_EXACT,
    .init = apr_bench_init,
    .shutdown = apr_terminate,
    .thread_begin = apr_bench_thread_begin,
    .thread_end = apr_bench_thread_end,
    .enter = apr_bench_enter,
    .exit = apr_bench_exit,
    .obj_new = apr_bench_obj_new,
    .obj_delete = apr_bench_obj_delete,
    .obj_return = apr_bench_obj_return,
    .str_new = apr_bench_str_new,
    .pair32 = NULL,
    .finish = bench_nothing,
};
