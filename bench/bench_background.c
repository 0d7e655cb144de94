/* SPDX-License-Identifier: MIT */
/* bench_background.c - where background cleanup pays: objects whose
 * destructor does `cost` ns of work while the program does as much work
 * per object, 100 objects per scope, for destructor costs of 0 (the nested
 * workload), 100 ns, 1 us and 10 us; cleaned inline, in the background and
 * in auto mode.  Time per object, median and range of interleaved runs,
 * and the throughput relative to inline.  --threads T runs T program
 * threads at once; --csv FILE and --plot FILE.svg write the sweep.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "samm.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Work of a given length: a chain of dependent multiplies, calibrated. */
static double iters_per_ns;
/* Per thread: a shared sink would bounce between the cores on every call. */
static _Thread_local volatile uint64_t work_sink;

static __attribute__((noinline)) uint64_t spin(uint64_t n)
{
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint64_t i = 0; i < n; i++)
        x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

static void work(double ns)
{
    if (ns > 0) work_sink += spin((uint64_t)(ns * iters_per_ns));
}

static void calibrate(void)
{
    double best = 1e300;
    for (int r = 0; r < 5; r++) {
        double t0 = now_ns();
        work_sink += spin(10000000);
        double t = now_ns() - t0;
        if (t < best) best = t;
    }
    iters_per_ns = 10000000.0 / best;
}

typedef struct Obj {
    void (**vtable)(void *);
    uint64_t payload[5];
} Obj;

static double dtor_cost;
static atomic_uint_fast64_t destroyed;
static void obj_dtor(void *p)
{
    work(dtor_cost);
    ((Obj *)p)->payload[0] = 0;
    atomic_fetch_add_explicit(&destroyed, 1, memory_order_relaxed);
}
static void (*obj_vtable[4])(void *) = {NULL, NULL, NULL, obj_dtor};

enum { PER_SCOPE = 100 };
static const size_t sizes[4] = {16, 32, 48, 64};

typedef struct {
    size_t n;
} job;

static void *program(void *arg)
{
    job *j = arg;
    for (size_t done = 0; done < j->n; done += PER_SCOPE) {
        samm_enter_scope();
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = samm_alloc_object(sizes[i & 3]);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            samm_track_object(o);
            work(dtor_cost); /* the program's own work, as much again */
        }
        samm_exit_scope();
    }
    samm_wait();
    return NULL;
}

static int threads = 1;

/* ns per object for one run of mode m at the current cost. */
static double run(SAMMCleanupMode m, size_t n)
{
    samm_set_cleanup_mode(m);
    atomic_store(&destroyed, 0);
    job j = {n};
    pthread_t th[64];
    double t0 = now_ns();
    for (int i = 1; i < threads; i++)
        pthread_create(&th[i], NULL, program, &j);
    program(&j);
    for (int i = 1; i < threads; i++)
        pthread_join(th[i], NULL);
    samm_wait();
    double t = now_ns() - t0;
    if (atomic_load(&destroyed) != n * (size_t)threads) {
        fprintf(stderr, "bench_background: %llu of %zu destructors ran\n",
                (unsigned long long)atomic_load(&destroyed), n * (size_t)threads);
        exit(1);
    }
    return t / (double)(n * (size_t)threads);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int runs = 5;
    double only = -1; /* --cost C: just that destructor cost */
    const char *csv = NULL, *plot = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) runs = 2;
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) csv = argv[++i];
        if (strcmp(argv[i], "--plot") == 0 && i + 1 < argc) plot = argv[++i];
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        if (strcmp(argv[i], "--cost") == 0 && i + 1 < argc) only = atof(argv[++i]);
    }
    if (runs < 1 || runs > 16) runs = 5;
    if (threads < 1 || threads > 64) threads = 1;
    calibrate();
    static const double costs[] = {0, 100, 1000, 10000};
    static const SAMMCleanupMode modes[] = {SAMM_CLEANUP_INLINE, SAMM_CLEANUP_BACKGROUND,
                                            SAMM_CLEANUP_AUTO};
    static const char *names[] = {"inline", "background", "auto"};
    enum { NC = 4, NM = 3 };
    double med[NC][NM], lo[NC][NM], hi[NC][NM];
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    printf("background cleanup: destructor doing C ns of work, the program as much per object, "
           "%d per scope, %d program thread(s), %ld CPUs, %d workers; median (min-max) of %d "
           "interleaved runs\n",
           PER_SCOPE, threads, cpus, samm_get_workers(), runs);
    printf("%8s %24s %24s %24s   %s\n", "cost", "inline ns/obj", "background ns/obj", "auto ns/obj",
           "throughput vs inline: bg, auto");
    for (int c = 0; c < NC; c++) {
        if (only >= 0 && costs[c] != only) {
            med[c][0] = med[c][1] = med[c][2] = lo[c][0] = lo[c][1] = lo[c][2] = 0;
            hi[c][0] = hi[c][1] = hi[c][2] = 0;
            continue;
        }
        dtor_cost = costs[c];
        double per = 2 * costs[c] + 20;
        size_t n = (size_t)((runs > 2 ? 3e8 : 6e7) / per / threads);
        if (n < 2000) n = 2000;
        n -= n % PER_SCOPE;
        double t[NM][16];
        run(SAMM_CLEANUP_INLINE, n / 10 - n / 10 % PER_SCOPE + PER_SCOPE); /* warm up */
        for (int r = 0; r < runs; r++)
            for (int m = 0; m < NM; m++)
                t[m][r] = run(modes[m], n);
        for (int m = 0; m < NM; m++) {
            qsort(t[m], (size_t)runs, sizeof(double), cmp_double);
            med[c][m] = t[m][runs / 2];
            lo[c][m] = t[m][0];
            hi[c][m] = t[m][runs - 1];
        }
        printf("%8.0f", costs[c]);
        for (int m = 0; m < NM; m++) {
            char cell[64];
            snprintf(cell, sizeof cell, "%.1f (%.1f-%.1f)", med[c][m], lo[c][m], hi[c][m]);
            printf(" %24s", cell);
        }
        printf("   %.2fx, %.2fx\n", med[c][0] / med[c][1], med[c][0] / med[c][2]);
        fflush(stdout);
    }
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (f) {
            fprintf(f, "cost_ns,mode,threads,median_ns,min_ns,max_ns,throughput_vs_inline\n");
            for (int c = 0; c < NC; c++)
                for (int m = 0; m < NM; m++)
                    fprintf(f, "%.0f,%s,%d,%.2f,%.2f,%.2f,%.3f\n", costs[c], names[m], threads,
                            med[c][m], lo[c][m], hi[c][m], med[c][0] / med[c][m]);
            fclose(f);
        }
    }
    if (plot) {
        char script[4096];
        int k = snprintf(script, sizeof script,
                         "set terminal svg size 720,420 dynamic font 'sans,11'\n"
                         "set output '%s'\n"
                         "set title 'Background cleanup: throughput relative to inline "
                         "(higher is better), %d program thread(s), %ld CPUs'\n"
                         "set xlabel 'destructor work per object (ns); the program does as much'\n"
                         "set ylabel 'throughput / inline'\n"
                         "set yrange [0:*]\nset grid ytics\nset key top left\n"
                         "set style data histograms\nset style histogram clustered gap 1\n"
                         "set style fill solid 0.8 border -1\nset boxwidth 0.9\n"
                         "plot '-' using 2:xtic(1) title 'background', "
                         "'' using 2:xtic(1) title 'auto', "
                         "'' using 0:2:(sprintf('%%.2f',$2)) with labels offset -2,0.6 notitle, "
                         "'' using 0:2:(sprintf('%%.2f',$2)) with labels offset 2,0.6 notitle\n",
                         plot, threads, cpus);
        for (int series = 0; series < 4; series++) {
            int m = series % 2 == 0 ? 1 : 2;
            for (int c = 0; c < NC && k < (int)sizeof script - 64; c++)
                k += snprintf(script + k, sizeof script - (size_t)k, "%.0f %.3f\n", costs[c],
                              med[c][0] / med[c][m]);
            k += snprintf(script + k, sizeof script - (size_t)k, "e\n");
        }
        FILE *g = popen("gnuplot", "w");
        if (g) {
            fputs(script, g);
            if (pclose(g) != 0)
                fprintf(stderr, "bench_background: gnuplot failed (not installed?)\n");
        }
    }
    samm_shutdown();
    return 0;
}
