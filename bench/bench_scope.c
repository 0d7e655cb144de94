/* SPDX-License-Identifier: MIT */
/* bench_scope.c - cost of the scope-storage ABI against a plain growing
 * array in the same run: samm_scope_add per entry, and a whole frame's
 * fill + reset / fill + detach (+ free of the arrays) at several sizes.
 */
#include <string.h>

#include "bench.h"
#include "samm_scope.h"

typedef struct {
    void **p;
    uint8_t *t, *s;
    size_t n, cap;
} plain_array;

static plain_array plain;

/* The baseline: what a C programmer writes by hand, three arrays grown by
 * doubling with realloc. */
static void plain_push(void *ptr, uint8_t t, uint8_t s)
{
    if (plain.n == plain.cap) {
        plain.cap = plain.cap ? plain.cap * 2 : 32;
        plain.p = realloc(plain.p, plain.cap * sizeof *plain.p);
        plain.t = realloc(plain.t, plain.cap);
        plain.s = realloc(plain.s, plain.cap);
        if (!plain.p || !plain.t || !plain.s) abort();
    }
    plain.p[plain.n] = ptr;
    plain.t[plain.n] = t;
    plain.s[plain.n] = s;
    plain.n++;
}

static size_t frame_n;
static size_t reps;

static void run_plain_reset(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            plain_push((void *)(uintptr_t)(i * 16), 1, 0);
        BENCH_KEEP(plain.p);
        plain.n = 0;
    }
}

static void run_samm_reset(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            samm_scope_add(1, (void *)(uintptr_t)(i * 16), 1, 0);
        samm_scope_reset(1);
    }
}

static void run_plain_detach(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            plain_push((void *)(uintptr_t)(i * 16), 1, 0);
        BENCH_KEEP(plain.p);
        free(plain.p);
        free(plain.t);
        free(plain.s);
        memset(&plain, 0, sizeof plain);
    }
}

static void run_samm_detach(void *a)
{
    (void)a;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            samm_scope_add(1, (void *)(uintptr_t)(i * 16), 1, 0);
        void **p;
        uint8_t *t, *s;
        size_t c;
        if (samm_scope_detach(1, &p, &t, &s, &c)) {
            free(p);
            free(t);
            free(s);
        }
    }
}

int main(int argc, char **argv)
{
    int runs = bench_runs(argc, argv);
    samm_scope_ensure_init();

    /* Per-entry append cost in a frame that keeps its capacity. */
    frame_n = 1000;
    reps = 2000;
    double ops = (double)frame_n * (double)reps;
    run_plain_reset(NULL);
    run_samm_reset(NULL);
    double tp = bench_best(run_plain_reset, NULL, runs, ops);
    double ts = bench_best(run_samm_reset, NULL, runs, ops);
    printf("samm_scope_add per entry:   %6.2f ns   plain array append: %6.2f ns   ratio %.2fx\n",
           ts, tp, ts / tp);

    static const size_t sizes[] = {0, 10, 100, 10000};
    printf("\n%-8s %14s %14s %7s   %14s %14s %7s\n", "entries", "samm fill+reset", "plain", "ratio",
           "samm fill+detach", "plain+free", "ratio");
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        frame_n = sizes[k];
        reps = frame_n ? 2000000 / frame_n : 2000000;
        double rtp = bench_best(run_plain_reset, NULL, runs, (double)reps);
        double rts = bench_best(run_samm_reset, NULL, runs, (double)reps);
        double dtp = bench_best(run_plain_detach, NULL, runs, (double)reps);
        double dts = bench_best(run_samm_detach, NULL, runs, (double)reps);
        printf("%-8zu %12.1f ns %11.1f ns %6.2fx   %13.1f ns %11.1f ns %6.2fx\n", frame_n, rts, rtp,
               rts / rtp, dts, dtp, dts / dtp);
    }
    free(plain.p);
    free(plain.t);
    free(plain.s);
    return 0;
}
