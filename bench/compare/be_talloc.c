/* SPDX-License-Identifier: MIT */
/* be_talloc.c - talloc: a context per scope (a child of the enclosing
 * scope's), talloc_set_destructor on every object and string, returned
 * objects stolen into the parent context.
 */
#include <stdio.h>
#include <stdlib.h>
#include <talloc.h>

#include "backend.h"

static _Thread_local void *stack[BENCH_MAX_DEPTH];
static _Thread_local int depth;

#define checked(p) bench_checked((p), "bench: talloc out of memory")

static int obj_destructor(void *obj)
{
    bench_obj_destroy(obj);
    return 0;
}

static int str_destructor(void *str)
{
    bench_str_unref(str);
    return 0;
}

static void tl_thread_begin(void)
{
    depth = 0;
    stack[0] = checked(talloc_new(NULL));
}

static void tl_thread_end(void)
{
    talloc_free(stack[0]);
}

static void tl_enter(void)
{
    if (depth + 1 >= BENCH_MAX_DEPTH) abort();
    stack[depth + 1] = checked(talloc_new(stack[depth]));
    depth++;
}

static void tl_exit(void **items, size_t n, bench_kind kind)
{
    (void)items;
    (void)n;
    (void)kind;
    talloc_free(stack[depth--]);
}

static void *tl_obj_new(size_t size, bench_counter *owner)
{
    void *o = checked(talloc_zero_size(stack[depth], size));
    bench_obj_init(o, owner);
    talloc_set_destructor(o, obj_destructor);
    return o;
}

static void tl_obj_delete(void *obj)
{
    talloc_free(obj);
}

static void *tl_obj_return(void *obj, size_t size)
{
    (void)size;
    return talloc_steal(stack[depth - 1], obj);
}

static bench_str *tl_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = checked(talloc_zero_size(stack[depth], sizeof *s));
    bench_str_init(s, checked(talloc_size(s, len + 1)), len, owner);
    talloc_set_destructor((void *)s, str_destructor);
    return s;
}

const bench_backend bench_backend_impl = {
    .name = "talloc",
    .obj_dtors = BENCH_DTOR_EXACT,
    .str_dtors = BENCH_DTOR_EXACT,
    .init = bench_nothing,
    .shutdown = bench_nothing,
    .thread_begin = tl_thread_begin,
    .thread_end = tl_thread_end,
    .enter = tl_enter,
    .exit = tl_exit,
    .obj_new = tl_obj_new,
    .obj_delete = tl_obj_delete,
    .obj_return = tl_obj_return,
    .str_new = tl_str_new,
    .pair32 = NULL,
    .finish = bench_nothing,
};
