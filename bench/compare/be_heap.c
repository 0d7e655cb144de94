/* SPDX-License-Identifier: MIT */
/* be_heap.c - the hand-written baselines: every object and string freed by
 * the code that made it, with glibc malloc (BENCH_HEAP_MALLOC), mimalloc's
 * mi_* API (BENCH_HEAP_MIMALLOC) or jemalloc (BENCH_HEAP_JEMALLOC).
 */
#include <stdio.h>
#include <stdlib.h>

#include "backend.h"

#if defined(BENCH_HEAP_MIMALLOC)
#include <mimalloc.h>
#define HEAP_NAME "mimalloc"
#define heap_zalloc(n) mi_zalloc(n)
#define heap_alloc(n) mi_malloc(n)
#define heap_free(p) mi_free(p)
#elif defined(BENCH_HEAP_JEMALLOC)
/* Debian builds jemalloc without a prefix: malloc and free are jemalloc's
 * in this executable; heap_check below proves it. */
#include <jemalloc/jemalloc.h>
#define HEAP_NAME "jemalloc"
#define heap_zalloc(n) calloc(1, n)
#define heap_alloc(n) malloc(n)
#define heap_free(p) free(p)
#elif defined(BENCH_HEAP_MALLOC)
#define HEAP_NAME "malloc"
#define heap_zalloc(n) calloc(1, n)
#define heap_alloc(n) malloc(n)
#define heap_free(p) free(p)
#else
#error "define BENCH_HEAP_MALLOC, BENCH_HEAP_MIMALLOC or BENCH_HEAP_JEMALLOC"
#endif

#define checked(p) bench_checked((p), "bench: out of memory")

static void heap_init(void)
{
#if defined(BENCH_HEAP_JEMALLOC)
    uint64_t before = 0, after = 0;
    size_t len = sizeof before;
    mallctl("thread.allocated", &before, &len, NULL, 0);
    void *p = checked(malloc(1000));
    mallctl("thread.allocated", &after, &len, NULL, 0);
    free(p);
    if (after <= before) {
        fprintf(stderr, "bench: malloc is not jemalloc in this executable\n");
        exit(1);
    }
#endif
}

static void heap_exit(void **items, size_t n, bench_kind kind)
{
    for (size_t i = 0; i < n; i++) {
        if (!items[i]) continue;
        if (kind == BENCH_KIND_OBJ) {
            bench_obj_destroy(items[i]);
        } else {
            bench_str *s = items[i];
            if (!bench_str_unref(s)) continue;
            heap_free(s->data);
        }
        heap_free(items[i]);
    }
}

static void *heap_obj_new(size_t size, bench_counter *owner)
{
    void *o = checked(heap_zalloc(size));
    bench_obj_init(o, owner);
    return o;
}

static void heap_obj_delete(void *obj)
{
    bench_obj_destroy(obj);
    heap_free(obj);
}

static bench_str *heap_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = checked(heap_zalloc(sizeof *s));
    bench_str_init(s, checked(heap_alloc(len + 1)), len, owner);
    return s;
}

static void heap_pair32(void)
{
    void *p = checked(heap_alloc(32));
    __asm__ volatile("" : : "g"(p) : "memory");
    heap_free(p);
}

const bench_backend bench_backend_impl = {
    .name = HEAP_NAME,
    .obj_dtors = BENCH_DTOR_EXACT,
    .str_dtors = BENCH_DTOR_EXACT,
    .init = heap_init,
    .shutdown = bench_nothing,
    .thread_begin = bench_nothing,
    .thread_end = bench_nothing,
    .enter = bench_nothing,
    .exit = heap_exit,
    .obj_new = heap_obj_new,
    .obj_delete = heap_obj_delete,
    .obj_return = bench_obj_return_in_place,
    .str_new = heap_str_new,
    .pair32 = heap_pair32,
    .finish = bench_nothing,
};
