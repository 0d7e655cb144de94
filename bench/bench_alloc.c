/* SPDX-License-Identifier: MIT */
/* bench_alloc.c - libsamm's alloc+free (samm_alloc_object and
 * samm_free_object, no scopes) against calloc/free and malloc/free in the
 * same interleaved rounds: per size class, batches of 100 objects
 * allocated then freed (LIFO), and the same with the frees done on a
 * second thread (remote).  Reported only: issue 8 sets no target here.
 * The remote part runs last: once a second thread has existed, glibc's
 * malloc takes its locks for good and every later glibc baseline of the
 * process would be slower.
 */
#include <pthread.h>
#include <string.h>

#include "bench.h"
#include "samm.h"

/* One repetition: PER_REP pairs, in batches of BATCH. */
enum { BATCH = 100, PER_REP = 10000 };

static size_t obj_size;
static void *batch[BATCH];

/* samm zeroes what it hands out, so the baseline is calloc: malloc +
 * memset would be the same or slower. */
static double run_calloc(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps * (PER_REP / BATCH); r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = calloc(1, obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            free(batch[i]);
    }
    return bench_now_ns() - t0;
}

static double run_malloc(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps * (PER_REP / BATCH); r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = malloc(obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            free(batch[i]);
    }
    return bench_now_ns() - t0;
}

static double run_samm(void *a, size_t reps)
{
    (void)a;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps * (PER_REP / BATCH); r++) {
        for (int i = 0; i < BATCH; i++)
            batch[i] = samm_alloc_object(obj_size);
        BENCH_KEEP(batch[0]);
        for (int i = BATCH - 1; i >= 0; i--)
            samm_free_object(batch[i]);
    }
    return bench_now_ns() - t0;
}

/* Remote frees: the main thread allocates blocks of objects, a second
 * thread frees each block (and flushes), as the cleanup worker does. */
enum { RBLOCK = 10000, RBLOCKS = 10 }; /* one repetition: RBLOCKS blocks */
static void *rblock[2][RBLOCK];
static pthread_barrier_t rbar;
static int remote_samm;

static void *remote_freer(void *a)
{
    (void)a;
    for (int r = 0; r < RBLOCKS; r++) {
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

static void remote_once(void)
{
    pthread_t t;
    pthread_barrier_init(&rbar, NULL, 2);
    pthread_create(&t, NULL, remote_freer, NULL);
    for (int r = 0; r < RBLOCKS; r++) {
        void **v = rblock[r % 2];
        for (int i = 0; i < RBLOCK; i++)
            v[i] = remote_samm ? samm_alloc_object(obj_size) : calloc(1, obj_size);
        pthread_barrier_wait(&rbar);
    }
    pthread_barrier_wait(&rbar);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&rbar);
}

/* arg: whether libsamm allocates and frees (else calloc and free). */
static double run_remote(void *samm, size_t reps)
{
    remote_samm = *(int *)samm;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++)
        remote_once();
    return bench_now_ns() - t0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, "bench_alloc", argc, argv);
    bench_header(&o, "alloc+free pairs: samm_alloc_object + samm_free_object, inline cleanup");
    /* The pool classes.  Beyond them glibc gives the top of its heap back
     * with brk after every batch (12-40 us a pair here), which says nothing
     * about libsamm; bench/compare's `large` workload covers big blocks. */
    static const size_t sizes[] = {32, 64, 128, 256, 512, 1024};
    enum { CALLOC, MALLOC, SAMM };
    const bench_side sides[] = {
        [CALLOC] = {run_calloc, NULL}, [MALLOC] = {run_malloc, NULL}, [SAMM] = {run_samm, NULL}};
    char names[2][64];
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        obj_size = sizes[k];
        snprintf(names[0], sizeof names[0], "%zu B batches of %d vs calloc+free", obj_size, BATCH);
        snprintf(names[1], sizeof names[1], "%zu B batches of %d vs malloc+free", obj_size, BATCH);
        const bench_row rows[] = {{names[0], SAMM, CALLOC, 0}, {names[1], SAMM, MALLOC, 0}};
        bench_compare(&o, sides, 3, PER_REP, rows, 2);
    }
    static int yes = 1, no = 0;
    const bench_side remote[] = {{run_remote, &no}, {run_remote, &yes}};
    for (size_t k = 0; k < 3; k++) {
        obj_size = sizes[k];
        snprintf(names[0], sizeof names[0], "%zu B freed on another thread vs calloc+free",
                 obj_size);
        const bench_row row = {names[0], 1, 0, 0};
        bench_compare(&o, remote, 2, RBLOCK * RBLOCKS, &row, 1);
    }
    samm_shutdown();
    bench_done(&o);
    return 0;
}
