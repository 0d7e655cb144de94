/* SPDX-License-Identifier: MIT */
/* bench_scope.c - cost of the scope-storage ABI against a plain growing
 * array in the same interleaved rounds: samm_scope_add per entry, and a
 * whole frame's fill + reset / fill + detach (+ free of the arrays) at
 * several sizes.  Reported only: issue 8 sets no target here, and the
 * ABI involves no cleanup, so there is no cleanup mode to set.
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

/* Entries per frame; one repetition fills (and resets or detaches) one. */
static size_t frame_n;

static double run_plain_reset(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            plain_push((void *)(uintptr_t)(i * 16), 1, 0);
        BENCH_KEEP(plain.p);
        plain.n = 0;
    }
    return bench_now_ns() - t0;
}

static double run_samm_reset(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            samm_scope_add(1, (void *)(uintptr_t)(i * 16), 1, 0);
        samm_scope_reset(1);
    }
    return bench_now_ns() - t0;
}

static double run_plain_detach(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < frame_n; i++)
            plain_push((void *)(uintptr_t)(i * 16), 1, 0);
        BENCH_KEEP(plain.p);
        free(plain.p);
        free(plain.t);
        free(plain.s);
        memset(&plain, 0, sizeof plain);
    }
    return bench_now_ns() - t0;
}

static double run_samm_detach(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
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
    return bench_now_ns() - t0;
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, "bench_scope", argc, argv);
    bench_header(&o, "the scope-storage ABI (samm_scope_*) against three arrays grown by hand");
    samm_scope_ensure_init();
    enum { PLAIN_RESET, SAMM_RESET, PLAIN_DETACH, SAMM_DETACH };
    const bench_side sides[] = {[PLAIN_RESET] = {run_plain_reset, NULL},
                                [SAMM_RESET] = {run_samm_reset, NULL},
                                [PLAIN_DETACH] = {run_plain_detach, NULL},
                                [SAMM_DETACH] = {run_samm_detach, NULL}};

    /* Per-entry append cost in a frame that keeps its capacity. */
    frame_n = 1000;
    const bench_row add = {"samm_scope_add per entry vs array append", SAMM_RESET, PLAIN_RESET, 0};
    bench_compare(&o, sides, 2, (double)frame_n, &add, 1);

    /* Whole frames, per frame. */
    static const size_t sizes[] = {0, 10, 100, 10000};
    char names[2][64];
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        frame_n = sizes[k];
        snprintf(names[0], sizeof names[0], "frame of %zu: fill+reset vs by hand", frame_n);
        snprintf(names[1], sizeof names[1], "frame of %zu: fill+detach+free vs by hand", frame_n);
        const bench_row rows[] = {{names[0], SAMM_RESET, PLAIN_RESET, 0},
                                  {names[1], SAMM_DETACH, PLAIN_DETACH, 0}};
        bench_compare(&o, sides, 4, 1, rows, 2);
    }
    free(plain.p);
    free(plain.t);
    free(plain.s);
    bench_done(&o);
    return 0;
}
