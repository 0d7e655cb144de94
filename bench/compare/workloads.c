/* SPDX-License-Identifier: MIT */
/* workloads.c - the comparison driver linked into every bench_cmp_<backend>
 * executable: runs one workload (warm-up, then timed) against the backend
 * and prints one RESULT line of key=value pairs for the runner.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "work.h"

#define PER_SCOPE 100
#define DEEP_LEVELS 100
#define MAX_THREADS 4
#define PERMS 64

static const bench_backend *be = &bench_backend_impl;

static void obj_destructor(void *self)
{
    bench_obj *o = self;
    atomic_fetch_add_explicit(&o->owner->released, 1, memory_order_relaxed);
}

const bench_method bench_obj_vtable[BENCH_DESTRUCTOR_SLOT + 1] = {NULL, NULL, NULL, obj_destructor};

void bench_nothing(void) {}

void *bench_obj_return_in_place(void *obj, size_t size)
{
    (void)size;
    return obj;
}

static const size_t small_sizes[4] = {16, 32, 48, 64};
static size_t large_sizes[PERMS];
static uint8_t delete_order[PERMS][PER_SCOPE];

/* Fixed-seed generator: the same tables in every backend's process. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void make_tables(void)
{
    for (int i = 0; i < PERMS; i++) {
        large_sizes[i] = 2048 + (size_t)(rng_next() % (6144 / 16 + 1)) * 16;
        for (int k = 0; k < PER_SCOPE; k++)
            delete_order[i][k] = (uint8_t)k;
        for (int k = PER_SCOPE - 1; k > 0; k--) {
            int j = (int)(rng_next() % (uint64_t)(k + 1));
            uint8_t t = delete_order[i][k];
            delete_order[i][k] = delete_order[i][j];
            delete_order[i][j] = t;
        }
    }
}

/* ------------------------------------------------------------------------
 * Workloads.  Each returns the number of operations it performed and adds
 * the number of releases it expects to *expected.
 * ---------------------------------------------------------------------- */

/* A workload's end: `n` operations, each releasing one object or string. */
static uint64_t expect(uint64_t n, uint64_t *expected)
{
    *expected += n;
    return n;
}

/* 100 outer scopes x 100 inner scopes x 100 objects of 16..64 B. */
static uint64_t wl_nested(long outer, bench_counter *c, uint64_t *expected)
{
    for (long o = 0; o < outer; o++) {
        be->enter();
        for (int i = 0; i < PER_SCOPE; i++) {
            void *items[PER_SCOPE];
            be->enter();
            for (int k = 0; k < PER_SCOPE; k++)
                items[k] = be->obj_new(small_sizes[k & 3], c);
            be->exit(items, PER_SCOPE, BENCH_KIND_OBJ);
        }
        be->exit(NULL, 0, BENCH_KIND_OBJ);
    }
    return expect((uint64_t)outer * PER_SCOPE * PER_SCOPE, expected);
}

/* One level of the recursion: 100 objects, the child's returned object
 * joins them, and the last one made is returned to the caller. */
static void *deep_level(int level, bench_counter *c)
{
    void *items[PER_SCOPE + 1];
    size_t n = 0;
    be->enter();
    for (int k = 0; k < PER_SCOPE; k++)
        items[n++] = be->obj_new(small_sizes[k & 3], c);
    if (level + 1 < DEEP_LEVELS) items[n++] = deep_level(level + 1, c);
    void *result = items[PER_SCOPE - 1];
    items[PER_SCOPE - 1] = NULL;
    result = be->obj_return(result, small_sizes[(PER_SCOPE - 1) & 3]);
    be->exit(items, n, BENCH_KIND_OBJ);
    return result;
}

static uint64_t wl_deep(long reps, bench_counter *c, uint64_t *expected)
{
    for (long r = 0; r < reps; r++) {
        be->enter();
        void *kept[1];
        kept[0] = deep_level(0, c);
        be->exit(kept, 1, BENCH_KIND_OBJ);
    }
    return expect((uint64_t)reps * DEEP_LEVELS * PER_SCOPE, expected);
}

static bench_str *str_concat(const bench_str *a, const bench_str *b, bench_counter *c)
{
    bench_str *s = be->str_new(a->len + b->len, c);
    memcpy(s->data, a->data, a->len);
    memcpy(s->data + a->len, b->data, b->len);
    s->data[s->len] = '\0';
    return s;
}

/* Per scope, 50 times: piece$ = "ITEM" + 4 digits; joined$ = prev$ + piece$. */
static uint64_t wl_strings(long scopes, bench_counter *c, uint64_t *expected)
{
    for (long sc = 0; sc < scopes; sc++) {
        void *items[PER_SCOPE];
        size_t n = 0;
        bench_str *prev = NULL;
        be->enter();
        for (int k = 0; k < PER_SCOPE / 2; k++) {
            bench_str *piece = be->str_new(8, c);
            memcpy(piece->data, "ITEM", 4);
            piece->data[4] = (char)('0' + (sc / 10) % 10);
            piece->data[5] = (char)('0' + sc % 10);
            piece->data[6] = (char)('0' + k / 10);
            piece->data[7] = (char)('0' + k % 10);
            piece->data[8] = '\0';
            items[n++] = piece;
            items[n++] = str_concat(prev ? prev : piece, piece, c);
            prev = piece;
        }
        be->exit(items, n, BENCH_KIND_STR);
    }
    return expect((uint64_t)scopes * PER_SCOPE, expected);
}

/* Per scope 100 objects; 50 of them deleted in a fixed random order. */
static uint64_t wl_delete(long scopes, bench_counter *c, uint64_t *expected)
{
    for (long sc = 0; sc < scopes; sc++) {
        void *items[PER_SCOPE];
        be->enter();
        for (int k = 0; k < PER_SCOPE; k++)
            items[k] = be->obj_new(small_sizes[k & 3], c);
        const uint8_t *order = delete_order[sc % PERMS];
        for (int k = 0; k < PER_SCOPE / 2; k++) {
            be->obj_delete(items[order[k]]);
            items[order[k]] = NULL;
        }
        be->exit(items, PER_SCOPE, BENCH_KIND_OBJ);
    }
    return expect((uint64_t)scopes * PER_SCOPE, expected);
}

/* Per scope 100 objects of 2..8 KiB. */
static uint64_t wl_large(long scopes, bench_counter *c, uint64_t *expected)
{
    for (long sc = 0; sc < scopes; sc++) {
        void *items[PER_SCOPE];
        be->enter();
        for (int k = 0; k < PER_SCOPE; k++)
            items[k] = be->obj_new(large_sizes[(sc + k) % PERMS], c);
        be->exit(items, PER_SCOPE, BENCH_KIND_OBJ);
    }
    return expect((uint64_t)scopes * PER_SCOPE, expected);
}

/* The heavy workload's objects: the program computes `value` when it makes
 * one, and the destructor computes on from it, each ~1 us of bench_work. */
typedef struct {
    bench_obj base;
    uint64_t value;
} heavy_obj;

static const size_t heavy_sizes[4] = {32, 32, 48, 64};
static uint64_t heavy_iters; /* bench_work iterations of ~1 us: --work-iters */

static void heavy_destructor(void *self)
{
    heavy_obj *o = self;
    o->value = bench_work(heavy_iters, o->value);
    atomic_fetch_add_explicit(&o->base.owner->released, 1, memory_order_relaxed);
}

static const bench_method heavy_vtable[BENCH_DESTRUCTOR_SLOT + 1] = {NULL, NULL, NULL,
                                                                     heavy_destructor};

/* nested's shape (100 objects per inner scope, 100 inner scopes per outer
 * scope), `scopes` inner scopes in all, with expensive destructors and as
 * much work again by the program for each object it makes: where
 * background cleanup can pay. */
static uint64_t wl_heavy(long scopes, bench_counter *c, uint64_t *expected)
{
    uint64_t seed = 0;
    for (long done = 0; done < scopes;) {
        be->enter();
        for (int i = 0; i < PER_SCOPE && done < scopes; i++, done++) {
            void *items[PER_SCOPE];
            be->enter();
            for (int k = 0; k < PER_SCOPE; k++) {
                heavy_obj *h = be->obj_new(heavy_sizes[k & 3], c);
                h->base.vtable = heavy_vtable;
                h->value = bench_work(heavy_iters, seed++);
                items[k] = h;
            }
            be->exit(items, PER_SCOPE, BENCH_KIND_OBJ);
        }
        be->exit(NULL, 0, BENCH_KIND_OBJ);
    }
    return expect((uint64_t)scopes * PER_SCOPE, expected);
}

/* Empty scope enter + exit; a malloc + free of 32 B where there are no
 * scopes. */
static uint64_t wl_scopes(long pairs, bench_counter *c, uint64_t *expected)
{
    (void)c;
    (void)expected;
    if (be->pair32) {
        for (long i = 0; i < pairs; i++)
            be->pair32();
    } else {
        for (long i = 0; i < pairs; i++) {
            be->enter();
            be->exit(NULL, 0, BENCH_KIND_OBJ);
        }
    }
    return (uint64_t)pairs;
}

/* ------------------------------------------------------------------------
 * Threads: the nested workload on each of N threads.
 * ---------------------------------------------------------------------- */
typedef struct {
    pthread_t tid;
    long outer;
    bench_counter *counter;
    uint64_t ops, expected;
} thread_job;

static void *thread_main(void *arg)
{
    thread_job *j = arg;
    be->thread_begin();
    j->ops = wl_nested(j->outer, j->counter, &j->expected);
    be->thread_end();
    return NULL;
}

static uint64_t run_threads(int nthreads, long outer, bench_counter *counters, uint64_t *expected)
{
    thread_job jobs[MAX_THREADS];
    for (int t = 0; t < nthreads; t++) {
        jobs[t] = (thread_job){.outer = outer, .counter = &counters[t]};
        if (pthread_create(&jobs[t].tid, NULL, thread_main, &jobs[t]) != 0) {
            fprintf(stderr, "bench: pthread_create failed\n");
            exit(1);
        }
    }
    uint64_t ops = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(jobs[t].tid, NULL);
        ops += jobs[t].ops;
        *expected += jobs[t].expected;
    }
    return ops;
}

/* ------------------------------------------------------------------------
 * main: bench_cmp_<backend> WORKLOAD [--quick] [--work-iters N]
 * ---------------------------------------------------------------------- */
typedef struct {
    const char *name;
    uint64_t (*fn)(long scale, bench_counter *c, uint64_t *expected);
    long full, quick; /* scale: outer or inner scopes, repetitions or pairs */
    bench_kind kind;
} workload;

static const workload workloads[] = {
    {"nested", wl_nested, 100, 10, BENCH_KIND_OBJ},
    {"deep", wl_deep, 300, 30, BENCH_KIND_OBJ},
    {"strings", wl_strings, 10000, 1000, BENCH_KIND_STR},
    {"delete", wl_delete, 10000, 1000, BENCH_KIND_OBJ},
    {"large", wl_large, 1000, 100, BENCH_KIND_OBJ},
    {"heavy", wl_heavy, 2000, 50, BENCH_KIND_OBJ},
    {"scopes", wl_scopes, 10000000, 1000000, BENCH_KIND_OBJ},
};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t released(const bench_counter *c, int n)
{
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        sum += atomic_load(&c[i].released);
    return sum;
}

static const char *policy_name(bench_dtor_policy p)
{
    return p == BENCH_DTOR_EXACT ? "exact" : p == BENCH_DTOR_LATE ? "late" : "none";
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_cmp_%s nested|deep|strings|delete|large|heavy|scopes|threadsN "
            "[--quick] [--work-iters N]\n"
            "  --work-iters N  bench_work iterations per unit of heavy's work (the runner\n"
            "                  passes the ~1 us it calibrated; by hand, calibrated here)\n",
            be->name);
    return 2;
}

int main(int argc, char **argv)
{
    static bench_counter warm[MAX_THREADS], counters[MAX_THREADS];
    if (argc < 2) return usage();
    int quick = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--work-iters") == 0 && i + 1 < argc)
            heavy_iters = strtoull(argv[++i], NULL, 10);
        else
            return usage();
    }
    int nthreads = 0;
    const workload *w = NULL;
    if (strncmp(argv[1], "threads", 7) == 0) {
        nthreads = atoi(argv[1] + 7);
        if (nthreads < 1 || nthreads > MAX_THREADS) return usage();
        w = &workloads[0];
    } else {
        for (size_t i = 0; i < sizeof workloads / sizeof *workloads; i++)
            if (strcmp(argv[1], workloads[i].name) == 0) w = &workloads[i];
        if (!w) return usage();
    }
    alarm(300); /* a hung backend dies instead of hanging the runner */
    make_tables();
    if (w->fn == wl_heavy && heavy_iters == 0) heavy_iters = bench_work_calibrate(1000);

    be->init();
    be->thread_begin();
    long scale = quick ? w->quick : w->full;
    uint64_t expected = 0, ops;
    w->fn(scale / 10 > 0 ? scale / 10 : 1, &warm[0], &expected);
    be->finish();

    expected = 0;
    double t0 = now_ns();
    if (nthreads)
        ops = run_threads(nthreads, scale, counters, &expected);
    else
        ops = w->fn(scale, &counters[0], &expected);
    be->finish();
    double elapsed = now_ns() - t0;
    uint64_t done = released(counters, MAX_THREADS);

    be->thread_end();
    be->shutdown();
    uint64_t done_final = released(counters, MAX_THREADS);

    bench_dtor_policy policy = w->fn == wl_scopes          ? BENCH_DTOR_NONE
                               : w->kind == BENCH_KIND_STR ? be->str_dtors
                                                           : be->obj_dtors;
    printf("RESULT backend=%s workload=%s threads=%d ops=%llu ns_per_op=%.4f expected=%llu "
           "released=%llu released_final=%llu dtors=%s work_iters=%llu\n",
           be->name, argv[1], nthreads ? nthreads : 1, (unsigned long long)ops,
           elapsed / (double)ops, (unsigned long long)(policy == BENCH_DTOR_NONE ? 0 : expected),
           (unsigned long long)done, (unsigned long long)done_final, policy_name(policy),
           (unsigned long long)heavy_iters);
    return 0;
}
