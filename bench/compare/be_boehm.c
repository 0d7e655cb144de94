/* SPDX-License-Identifier: MIT */
/* be_boehm.c - Boehm GC: GC_MALLOC and no explicit free.  Objects get a
 * finalizer that runs their destructor whenever the collector finds them
 * dead (late: counted and reported); strings need none.
 */
#define GC_THREADS
#include <gc.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"

static _Thread_local int registered;

#define checked(p) bench_checked((p), "bench: GC out of memory")

static void finalizer(void *obj, void *data)
{
    (void)data;
    bench_obj_destroy(obj);
}

static void gc_bench_init(void)
{
    GC_INIT();
    GC_allow_register_threads();
}

/* Collects what is unreachable and runs the finalizers that are due, so
 * the final count says how many destructors ran at all. */
static void gc_bench_shutdown(void)
{
    GC_gcollect();
    GC_invoke_finalizers();
}

static void gc_bench_thread_begin(void)
{
    struct GC_stack_base sb;
    if (GC_get_stack_base(&sb) != GC_SUCCESS) abort();
    registered = GC_register_my_thread(&sb) == GC_SUCCESS;
}

static void gc_bench_thread_end(void)
{
    if (registered) GC_unregister_my_thread();
}

static void gc_bench_exit(void **items, size_t n, bench_kind kind)
{
    (void)items;
    (void)n;
    (void)kind;
}

static void *gc_bench_obj_new(size_t size, bench_counter *owner)
{
    void *o = checked(GC_MALLOC(size));
    bench_obj_init(o, owner);
    GC_REGISTER_FINALIZER(o, finalizer, NULL, NULL, NULL);
    return o;
}

/* The destructor runs now and the finalizer is cancelled; the memory is
 * the collector's to reclaim. */
static void gc_bench_obj_delete(void *obj)
{
    GC_REGISTER_FINALIZER(obj, NULL, NULL, NULL, NULL);
    bench_obj_destroy(obj);
}

static bench_str *gc_bench_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = checked(GC_MALLOC(sizeof *s));
    bench_str_init(s, checked(GC_MALLOC_ATOMIC(len + 1)), len, owner);
    return s;
}

static void gc_bench_pair32(void)
{
    void *p = checked(GC_MALLOC(32));
    __asm__ volatile("" : : "g"(p) : "memory");
}

const bench_backend bench_backend_impl = {
    .name = "boehm",
    .obj_dtors = BENCH_DTOR_LATE,
    .str_dtors = BENCH_DTOR_NONE,
    .init = gc_bench_init,
    .shutdown = gc_bench_shutdown,
    .thread_begin = gc_bench_thread_begin,
    .thread_end = gc_bench_thread_end,
    .enter = bench_nothing,
    .exit = gc_bench_exit,
    .obj_new = gc_bench_obj_new,
    .obj_delete = gc_bench_obj_delete,
    .obj_return = bench_obj_return_in_place,
    .str_new = gc_bench_str_new,
    .pair32 = gc_bench_pair32,
    .finish = bench_nothing,
};
