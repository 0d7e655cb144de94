/* SPDX-License-Identifier: MIT */
/* bench.h - what the wall-clock benchmarks share: a monotonic clock, the
 * command line (--quick, --runs N, --csv FILE, --cpu N) and the interleaved runner
 * that turns times on a shared machine into ratios worth reading.
 *
 * Absolute times on a shared machine are noise; a ratio against a
 * baseline measured moments before or after is much less so.  The runner
 * therefore measures every side of a comparison in every round, in
 * slices taken in turn in an order that rotates (so no side always runs
 * first, on a cold cache or a slow clock), and takes each round's ratio.  It
 * reports the median ns/op of each side and the min, median and max of the
 * ratio over the rounds; a target is met when the median ratio is at or
 * below it.  Timing never makes a benchmark fail.
 */
#ifndef SAMM_BENCH_H
#define SAMM_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sched.h>
#endif
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define BENCH_GLIBC_THREADED() (!__libc_single_threaded)
#endif
#ifndef BENCH_GLIBC_THREADED
#define BENCH_GLIBC_THREADED() 0
#endif

static inline double bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define BENCH_KEEP(p) __asm__ volatile("" : : "g"(p) : "memory")

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (sorts v). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------------------
 * Timing short sections
 *
 * A side that must leave its setup out of the measurement times each
 * section on its own and sums.  Reading the clock is not free (about
 * 30 ns on a KVM guest, a few percent of a section of 100 frees), so the
 * cost of an empty section is measured once and taken off every section.
 * ---------------------------------------------------------------------- */
static inline double bench_clock_overhead_ns(void)
{
    static double overhead = -1;
    if (overhead < 0) {
        enum { N = 2001 };
        static double v[N];
        for (int i = 0; i < N; i++) {
            double t0 = bench_now_ns();
            v[i] = bench_now_ns() - t0;
        }
        overhead = bench_median(v, N);
    }
    return overhead;
}

/* The time since t0 of a section that started with t0 = bench_now_ns(). */
static inline double bench_section_ns(double t0)
{
    double t = bench_now_ns() - t0 - bench_clock_overhead_ns();
    return t > 0 ? t : 0;
}

/* ------------------------------------------------------------------------
 * Command line
 * ---------------------------------------------------------------------- */
enum { BENCH_MAX_RUNS = 101, BENCH_MAX_SIDES = 8 };

typedef struct {
    const char *bench; /* the program, first column of the CSV rows */
    int quick;         /* --quick: a smoke run of a few seconds */
    int runs;          /* rounds per comparison: 11, --quick 3, or --runs N */
    double min_run_ns; /* each side of a round measures at least this long */
    double slice_ns;   /* in slices of about this long (see bench_compare) */
    FILE *csv;         /* --csv FILE: rows appended, or NULL */
    int cpu;           /* --cpu N: pinned to CPU N; -1: wherever the system puts it */
} bench_opts;

static inline void bench_usage(const char *bench)
{
    fprintf(stderr, "usage: %s [--quick] [--runs N] [--csv FILE] [--cpu N]\n", bench);
    exit(2);
}

/* --cpu N: the process (and the threads it starts) runs on CPU N only.
 * On a VM the virtual CPUs need not be alike (on the 2-CPU machine this
 * was written on, glibc's malloc ran 1.8x slower on one than on the
 * other, libsamm 1.35x), so a run that migrates mixes two machines. */
static inline void bench_pin(const char *bench, int cpu)
{
#ifdef __linux__
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
    if (cpu >= 0 && cpu < CPU_SETSIZE && sched_setaffinity(0, sizeof set, &set) == 0) return;
#endif
    fprintf(stderr, "%s: cannot run on CPU %d only\n", bench, cpu);
    exit(2);
}

/* Parses argv into *o; prints usage and exits on anything else. */
static inline void bench_parse(bench_opts *o, const char *bench, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->bench = bench;
    o->cpu = -1;
    const char *csv = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            o->runs = atoi(argv[++i]);
            if (o->runs < 1 || o->runs > BENCH_MAX_RUNS) bench_usage(bench);
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            csv = argv[++i];
        } else if (strcmp(argv[i], "--cpu") == 0 && i + 1 < argc) {
            o->cpu = atoi(argv[++i]);
            bench_pin(bench, o->cpu);
        } else {
            bench_usage(bench);
        }
    }
    if (o->runs == 0) o->runs = o->quick ? 3 : 11;
    o->min_run_ns = o->quick ? 2e6 : 50e6;
    o->slice_ns = o->quick ? 2e6 : 5e6;
    if (csv != NULL) {
        o->csv = fopen(csv, "a");
        if (o->csv == NULL) {
            perror(csv);
            exit(2);
        }
        if (ftell(o->csv) == 0)
            fprintf(o->csv, "bench,case,runs,base_ns,samm_ns,ratio_min,ratio_med,ratio_max,"
                            "target\n");
    }
}

static inline void bench_done(bench_opts *o)
{
    if (o->csv != NULL) fclose(o->csv);
    o->csv = NULL;
}

/* ------------------------------------------------------------------------
 * The interleaved runner
 * ---------------------------------------------------------------------- */

/* One side of a comparison: fn performs `reps` repetitions of its work
 * and returns the nanoseconds spent on the measured part (the whole call,
 * or the sum of its sections, or what a child process reports). */
typedef double (*bench_fn)(void *arg, size_t reps);

typedef struct {
    bench_fn fn;
    void *arg;
} bench_side;

/* A line of the table: side `samm` against side `base`.  target > 0: met
 * when the median ratio is <= target; 0: reported only. */
typedef struct {
    const char *name; /* what is compared; no commas (it is a CSV field) */
    int samm, base;
    double target;
} bench_row;

static inline void bench_header(const bench_opts *o, const char *what)
{
    printf("%s: %s\n", o->bench, what);
    printf("ratio = libsamm / baseline in each round; %d interleaved rounds, the faster side "
           ">= %.0f ms a round in slices of %.0f ms",
           o->runs, o->min_run_ns / 1e6, o->slice_ns / 1e6);
    if (o->cpu >= 0) printf(", on CPU %d only", o->cpu);
    printf("%s\n", o->quick ? " (--quick: smoke run, not a measurement)" : "");
    printf("  %-56s %9s %9s  %-20s %7s  %s\n", "what", "base ns", "samm ns", "ratio min-med-max",
           "target", "result");
}

/* Repetitions per slice: enough that the fastest side measures at least
 * o->slice_ns (or what one repetition takes, if that is longer).  The
 * calls also warm every side up.  *fastest: its time for that many. */
static inline size_t bench_calibrate(const bench_opts *o, const bench_side *sides, int nsides,
                                     double *fastest)
{
    size_t reps = 1;
    for (int tries = 0; tries < 20; tries++) {
        *fastest = 1e300;
        for (int s = 0; s < nsides; s++) {
            double t = sides[s].fn(sides[s].arg, reps);
            if (t < *fastest) *fastest = t;
        }
        if (*fastest >= o->slice_ns) break;
        double scale = *fastest > 1e3 ? 1.2 * o->slice_ns / *fastest : 1000;
        if (scale > 1000) scale = 1000;
        if (scale < 1.5) scale = 1.5;
        reps = (size_t)((double)reps * scale) + 1;
    }
    return reps;
}

/* Runs every side o->runs times, interleaved, each time the same number
 * of repetitions of `ops_per_rep` operations, and prints (and appends to
 * the CSV) one line per row.  A round is cut into slices of about
 * o->slice_ns a side, taken in turn, so that a burst of load from
 * elsewhere on the machine falls on every side of the round alike. */
static inline void bench_compare(const bench_opts *o, const bench_side *sides, int nsides,
                                 double ops_per_rep, const bench_row *rows, int nrows)
{
    static double ns[BENCH_MAX_SIDES][BENCH_MAX_RUNS];
    if (nsides > BENCH_MAX_SIDES) abort();
    double fastest;
    size_t reps = bench_calibrate(o, sides, nsides, &fastest);
    int slices = (int)(o->min_run_ns / fastest) + 1;
    double ops = ops_per_rep * (double)reps * slices;
    for (int r = 0; r < o->runs; r++) {
        double t[BENCH_MAX_SIDES] = {0};
        for (int sl = 0; sl < slices; sl++)
            for (int k = 0; k < nsides; k++) {
                int s = (r + sl + k) % nsides;
                t[s] += sides[s].fn(sides[s].arg, reps);
            }
        for (int s = 0; s < nsides; s++)
            ns[s][r] = t[s] / ops;
    }

    for (int i = 0; i < nrows; i++) {
        const bench_row *w = &rows[i];
        double ratio[BENCH_MAX_RUNS] = {0}, b[BENCH_MAX_RUNS] = {0}, c[BENCH_MAX_RUNS] = {0};
        for (int r = 0; r < o->runs; r++) {
            b[r] = ns[w->base][r];
            c[r] = ns[w->samm][r];
            ratio[r] = c[r] / b[r];
        }
        double base = bench_median(b, o->runs), samm = bench_median(c, o->runs);
        double med = bench_median(ratio, o->runs); /* ratio is sorted now */
        double lo = ratio[0], hi = ratio[o->runs - 1];
        char range[32], target[16];
        snprintf(range, sizeof range, "%.2f-%.2f-%.2f", lo, med, hi);
        const char *result = "-";
        if (w->target > 0) {
            snprintf(target, sizeof target, "<= %.2f", w->target);
            result = med <= w->target ? "met" : "missed";
        } else {
            snprintf(target, sizeof target, "-");
        }
        printf("  %-56s %9.2f %9.2f  %-20s %7s  %s\n", w->name, base, samm, range, target, result);
        if (o->csv != NULL) {
            fprintf(o->csv, "%s,%s,%d,%.3f,%.3f,%.4f,%.4f,%.4f,", o->bench, w->name, o->runs, base,
                    samm, lo, med, hi);
            if (w->target > 0) fprintf(o->csv, "%.2f", w->target);
            fputc('\n', o->csv);
        }
    }
    /* glibc never goes back to its lock-free single-thread paths. */
    static int warned;
    if (BENCH_GLIBC_THREADED() && !warned++)
        printf("  (a second thread has run in this process: from then on glibc's malloc takes "
               "its locks)\n");
    fflush(stdout);
    if (o->csv != NULL) fflush(o->csv);
}

#endif
