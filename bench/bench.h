/* SPDX-License-Identifier: MIT */
/* bench.h - timing helpers shared by the benchmarks: a monotonic clock, a
 * best-of-N runner and a compiler barrier so measured work is not elided.
 * Benchmarks report ratios against a baseline measured in the same run.
 */
#ifndef SAMM_BENCH_H
#define SAMM_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define BENCH_KEEP(p) __asm__ volatile("" : : "g"(p) : "memory")

/* Runs fn(arg) `runs` times and returns the fastest run in ns divided by
 * `ops` (the number of operations one run performs). */
static inline double bench_best(void (*fn)(void *), void *arg, int runs, double ops)
{
    double best = 1e300;
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now_ns();
        fn(arg);
        double t = bench_now_ns() - t0;
        if (t < best) best = t;
    }
    return best / ops;
}

/* Repeat count: argv[1] == "--quick" shortens every benchmark. */
static inline int bench_runs(int argc, char **argv)
{
    return (argc > 1 && argv[1][0] == '-' && argv[1][2] == 'q') ? 2 : 7;
}

#endif
