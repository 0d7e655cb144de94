/* SPDX-License-Identifier: MIT */
/* bench_alloc.c - libsamm's alloc+free (samm_alloc_object and
 * samm_free_object, no scopes) against malloc/free in the same run: per
 * size class, batches of 100 objects allocated then freed (LIFO), and the
 * same with the frees done on a second thread (remote).
 */
#include <pthread.h>
#include <string.h>

#include "bench.h"
#include "samm.h"

enum { BATCH = 100, TOTAL = 1000000 };

static size_t obj_size;
static void *batch[BATCH];

/* samm zeroes what it hands out, so the baseline is calloc: malloc +
 * memset would be the same or slower. */
static void run_calloc(void *a)
{
    (void)a;
    for (int r = 0; r < TOTAL / BATCH; r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = calloc(1, obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            free(batch[i]);
    }
}

static void run_malloc(void *a)
{
    (void)a;
    for (int r = 0; r < TOTAL / BATCH; r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = malloc(obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            free(batch[i]);
    }
}

static void run_samm(void *a)
{
    (void)a;
    for (int r = 0; r < TOTAL / BATCH; r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = samm_alloc_object(obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            samm_free_object(batch[i]);
    }
}

/* Remote frees: the main thread allocates blocks of objects, a second
 * thread frees each block (and flushes), as the cleanup worker does. */
enum { RBLOCK = 10000 };
static void *rblock[2][RBLOCK];
static pthread_barrier_t rbar;
static int remote_samm;

static void *remote_freer(void *a)
{
    (void)a;
    for (int r = 0; r < TOTAL / RBLOCK; r++) {
        pthread_barrier_wait(&rbar);
        void **v = rblock[r % 2];
        for (int i = 0; i < RBLOCK; i++) {
            if (remote_samm)
                samm_free_object(v[i]);
            else
                free(v[i]);
        }
        if (remote_samm) samm_wait(); /* pushes out the frees held back */
    }
    pthread_barrier_wait(&rbar);
    return NULL;
}

static void run_remote(void *a)
{
    (void)a;
    pthread_t t;
    pthread_barrier_init(&rbar, NULL, 2);
    pthread_create(&t, NULL, remote_freer, NULL);
    for (int r = 0; r < TOTAL / RBLOCK; r++) {
        void **v = rblock[r % 2];
        for (int i = 0; i < RBLOCK; i++)
            v[i] = remote_samm ? samm_alloc_object(obj_size) : calloc(1, obj_size);
        pthread_barrier_wait(&rbar);
    }
    pthread_barrier_wait(&rbar);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&rbar);
}

int main(int argc, char **argv)
{
    int runs = bench_runs(argc, argv);
    static const size_t sizes[] = {32, 64, 128, 256, 512, 1024, 4096};
    printf("alloc+free, batches of %d, ns per pair (best of %d)\n", BATCH, runs);
    printf("%6s %8s %8s %8s %14s\n", "size", "samm", "calloc", "malloc", "samm/calloc");
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        obj_size = sizes[k];
        double s = bench_best(run_samm, NULL, runs, TOTAL);
        double c = bench_best(run_calloc, NULL, runs, TOTAL);
        double m = bench_best(run_malloc, NULL, runs, TOTAL);
        printf("%6zu %8.2f %8.2f %8.2f %13.2fx\n", obj_size, s, c, m, s / c);
    }
    printf("\nalloc on one thread, free on another (batches of %d), ns per pair\n", RBLOCK);
    printf("%6s %8s %8s %14s\n", "size", "samm", "calloc", "samm/calloc");
    for (size_t k = 0; k < 3; k++) {
        obj_size = sizes[k];
        remote_samm = 1;
        double s = bench_best(run_remote, NULL, runs, TOTAL);
        remote_samm = 0;
        double c = bench_best(run_remote, NULL, runs, TOTAL);
        printf("%6zu %8.2f %8.2f %13.2fx\n", obj_size, s, c, s / c);
    }
    return 0;
}
