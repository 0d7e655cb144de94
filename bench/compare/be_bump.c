/* SPDX-License-Identifier: MIT */
/* be_bump.c - the floor: a per-thread bump arena, a scope is a mark that
 * exit resets to.  No destructors, no per-object free; nothing real can be
 * faster, so it bounds what any backend could reach.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"

#define ARENA_BYTES ((size_t)256 << 20)
#define ALIGN16(n) (((n) + 15) & ~(size_t)15)

typedef struct {
    char *mark;     /* top when the scope was entered */
    void *returned; /* object to move below the mark at exit, or NULL */
    size_t returned_size;
} frame;

static _Thread_local char *arena, *top;
static _Thread_local frame frames[BENCH_MAX_DEPTH];
static _Thread_local int depth;

static void bump_thread_begin(void)
{
    arena = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (arena == MAP_FAILED) {
        fprintf(stderr, "bench: cannot map the bump arena\n");
        exit(1);
    }
    top = arena;
    depth = 0;
}

static void bump_thread_end(void)
{
    munmap(arena, ARENA_BYTES);
}

static void *bump(size_t size)
{
    char *p = top;
    top += ALIGN16(size);
    if (top > arena + ARENA_BYTES) {
        fprintf(stderr, "bench: bump arena exhausted\n");
        exit(1);
    }
    return p;
}

static void bump_enter(void)
{
    if (depth + 1 >= BENCH_MAX_DEPTH) abort();
    frames[++depth] = (frame){.mark = top};
}

static void bump_exit(void **items, size_t n, bench_kind kind)
{
    (void)items;
    (void)n;
    (void)kind;
    frame *f = &frames[depth--];
    top = f->mark;
    if (f->returned) memmove(bump(f->returned_size), f->returned, f->returned_size);
}

static void *bump_obj_new(size_t size, bench_counter *owner)
{
    void *o = memset(bump(size), 0, size);
    bench_obj_init(o, owner);
    return o;
}

static void bump_obj_delete(void *obj)
{
    (void)obj;
}

/* The object is moved to the scope's mark when the scope exits. */
static void *bump_obj_return(void *obj, size_t size)
{
    frames[depth].returned = obj;
    frames[depth].returned_size = size;
    return frames[depth].mark;
}

static bench_str *bump_str_new(size_t len, bench_counter *owner)
{
    bench_str *s = memset(bump(sizeof *s), 0, sizeof *s);
    bench_str_init(s, bump(len + 1), len, owner);
    return s;
}

const bench_backend bench_backend_impl = {
    .name = "bump",
    .obj_dtors = BENCH_DTOR_NONE,
    .str_dtors = BENCH_DTOR_NONE,
    .init = bench_nothing,
    .shutdown = bench_nothing,
    .thread_begin = bump_thread_begin,
    .thread_end = bump_thread_end,
    .enter = bump_enter,
    .exit = bump_exit,
    .obj_new = bump_obj_new,
    .obj_delete = bump_obj_delete,
    .obj_return = bump_obj_return,
    .str_new = bump_str_new,
    .pair32 = NULL,
    .finish = bench_nothing,
};
