/* SPDX-License-Identifier: MIT */
/* work.h - the busy work of the heavy workload (its destructors, and the
 * program's own work beside them) and its calibration.  The runner
 * calibrates once and hands every backend the same number of iterations.
 */
#ifndef BENCH_CMP_WORK_H
#define BENCH_CMP_WORK_H

#include <stdint.h>
#include <time.h>

/* `iters` steps of a 64-bit LCG from `seed`.  Each step needs the one
 * before, and the empty volatile asm makes every step observable, so no
 * compiler can shorten the chain or drop a call whose result is unused. */
static __attribute__((noinline, unused)) uint64_t bench_work(uint64_t iters, uint64_t seed)
{
    uint64_t x = seed;
    for (uint64_t i = 0; i < iters; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

/* Iterations of bench_work that take `ns` on this machine, from the
 * fastest of several timed runs: load from other jobs on a shared machine
 * only slows a run down, so the fastest is the machine's own speed. */
static __attribute__((unused)) uint64_t bench_work_calibrate(double ns)
{
    enum { TRIALS = 7 };
    const uint64_t n = 2000000;
    double best = 0;
    uint64_t sink = 0;
    for (int t = 0; t < TRIALS; t++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        sink += bench_work(n, sink + (uint64_t)t);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double took = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        if (t == 0 || took < best) best = took;
    }
    __asm__ volatile("" : : "r"(sink));
    uint64_t iters = (uint64_t)(ns * (double)n / best + 0.5);
    return iters > 0 ? iters : 1;
}

#endif
