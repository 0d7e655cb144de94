/* SPDX-License-Identifier: MIT */
/* bench_core.c - the core's costs as ratios against baselines measured in
 * the same run: empty scope enter+exit vs one malloc(32)+free pair; track +
 * scope-exit cleanup per object vs a raw array append; random-order
 * untrack and free at 100 vs 100,000 objects per scope.  Run once per
 * cleanup mode.
 */
#include <string.h>

#include "bench.h"
#include "samm.h"

static size_t reps;
static size_t per_scope;
static void **objs;
static void *volatile sink;

static void run_malloc_free(void *a)
{
    (void)a;
    for (size_t i = 0; i < reps; i++) {
        void *p = malloc(32);
        sink = p;
        free(p);
    }
}

static void run_empty_scopes(void *a)
{
    (void)a;
    for (size_t i = 0; i < reps; i++) {
        samm_enter_scope();
        samm_exit_scope();
    }
}

/* Releases nothing: isolates the core's bookkeeping from the pools. */
static void noop_release(void *p)
{
    (void)p;
}
#define NOOP_TYPE ((SAMMAllocType)200)

static void run_track_exit(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        samm_enter_scope();
        for (size_t i = 0; i < per_scope; i++)
            samm_track(objs[i], NOOP_TYPE);
        samm_exit_scope();
    }
    samm_wait();
}

static void **plain;
static void run_array_append(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < per_scope; i++)
            plain[i] = objs[i];
        BENCH_KEEP(plain);
    }
}

/* Untrack in random order: objs is shuffled once; ops per run = n. */
static void shuffle(void **v, size_t n)
{
    srand(12345);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        void *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static double untrack_cost(size_t n, int runs)
{
    double best = 1e300;
    for (int r = 0; r < runs; r++) {
        samm_enter_scope();
        for (size_t i = 0; i < n; i++)
            samm_track(objs[i], NOOP_TYPE);
        shuffle(objs, n);
        double t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++)
            samm_untrack(objs[i]);
        double t = (bench_now_ns() - t0) / (double)n;
        samm_exit_scope();
        if (t < best) best = t;
    }
    return best;
}

/* samm_free_object of tracked pool objects in random order (DELETE). */
static double delete_cost(size_t n, int runs)
{
    double best = 1e300;
    void **mine = malloc(n * sizeof *mine);
    for (int r = 0; r < runs; r++) {
        samm_enter_scope();
        for (size_t i = 0; i < n; i++) {
            mine[i] = samm_alloc_object(48);
            samm_track(mine[i], SAMM_ALLOC_GENERIC);
        }
        shuffle(mine, n);
        double t0 = bench_now_ns();
        for (size_t i = 0; i < n; i++)
            samm_free_object(mine[i]);
        double t = (bench_now_ns() - t0) / (double)n;
        samm_exit_scope();
        if (t < best) best = t;
    }
    free(mine);
    return best;
}

int main(int argc, char **argv)
{
    int runs = bench_runs(argc, argv);
    size_t big = 100000;
    objs = malloc(big * sizeof *objs);
    plain = malloc(big * sizeof *plain);
    for (size_t i = 0; i < big; i++)
        objs[i] = (void *)(uintptr_t)(0x10000 + i * 64);
    samm_register_cleanup(NOOP_TYPE, noop_release);

    for (int m = 0; m < 2; m++) {
        SAMMCleanupMode mode = m ? SAMM_CLEANUP_BACKGROUND : SAMM_CLEANUP_INLINE;
        samm_set_cleanup_mode(mode);
        printf("== cleanup mode: %s\n", m ? "background" : "inline");

        reps = 5000000;
        double base = bench_best(run_malloc_free, NULL, runs, (double)reps);
        double scope = bench_best(run_empty_scopes, NULL, runs, (double)reps);
        printf("empty scope enter+exit     %6.2f ns   malloc(32)+free %6.2f ns   ratio %.2fx "
               "(goal <= 0.5x)\n",
               scope, base, scope / base);

        per_scope = 100;
        reps = 50000;
        double ops = (double)reps * (double)per_scope;
        double app = bench_best(run_array_append, NULL, runs, ops);
        double tr = bench_best(run_track_exit, NULL, runs, ops);
        printf("track + exit, per object   %6.2f ns   array append    %6.2f ns   ratio %.2fx\n", tr,
               app, tr / app);

        double u100 = untrack_cost(100, runs * 200);
        double u100k = untrack_cost(big, runs);
        printf("untrack, random order      %6.2f ns at 100   %6.2f ns at 100,000   ratio %.2fx "
               "(goal <= 2x)\n",
               u100, u100k, u100k / u100);
        double d100 = delete_cost(100, runs * 200);
        double d100k = delete_cost(big, runs);
        printf("free_object (DELETE)       %6.2f ns at 100   %6.2f ns at 100,000   ratio %.2fx "
               "(goal <= 2x)\n",
               d100, d100k, d100k / d100);
    }
    samm_register_cleanup(NOOP_TYPE, NULL);
    samm_shutdown();
    free(objs);
    free(plain);
    return 0;
}
