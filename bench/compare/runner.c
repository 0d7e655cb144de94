/* SPDX-License-Identifier: MIT */
/* runner.c - runs the comparison suite: fork/execs each bench_cmp_<backend>
 * per workload several times, takes ns/op from the child's RESULT line and
 * peak RSS from wait4(), prints tables, writes CSV and plots (full runs, or
 * wherever --docs says).  It calibrates the heavy workload's work once and
 * hands every backend the same amount.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "work.h"

#define MAX_RUNS 32
#define PATH_LEN 4096

typedef struct {
    const char *name;  /* as the tables show it   */
    const char *exe;   /* bench_cmp_<exe>          */
    const char *label; /* extra words in the table */
} backend;

static const backend backends[] = {
    {"samm-inline", "samm_inline", ""},
    {"samm-background", "samm_background", ""},
    {"samm-auto", "samm_auto", ""},
    {"malloc", "malloc", "(baseline)"},
    {"mimalloc", "mimalloc", ""},
    {"jemalloc", "jemalloc", ""},
    {"talloc", "talloc", ""},
    {"apr", "apr", ""},
    {"boehm", "boehm", ""},
    {"bump", "bump", "(floor)"},
};
#define NB (sizeof backends / sizeof *backends)
#define BASELINE 3 /* malloc */

typedef struct {
    const char *name;
    const char *unit; /* what one operation is */
} workload;

static const workload all_workloads[] = {
    {"nested", "object"},
    {"deep", "object"},
    {"strings", "string"},
    {"delete", "object"},
    {"large", "object"},
    {"heavy", "object; its destructor and the program each do ~1 us of work"},
    {"scopes", "empty scope enter+exit (malloc+free of 32 B where no scopes)"},
    {"threads1", "object, nested on 1 thread"},
    {"threads2", "object, nested on 2 threads"},
    {"threads4", "object, nested on 4 threads"},
};
#define NW_MAX (sizeof all_workloads / sizeof *all_workloads)

typedef struct {
    int ok;
    double ns;
    long rss_kib;
    unsigned long long ops, expected, released, released_final, work_iters;
    char dtors[8];
    char error[128];
} run_result;

typedef struct {
    int nruns;
    run_result runs[MAX_RUNS];
    int failed;
    double median, min, max;
    long rss_kib;
} cell;

static cell cells[NW_MAX][NB];
static int available[NB];
static size_t nw; /* workloads in this run: threads4 only with 4+ CPUs */

static struct {
    int quick, smoke, runs, docs_given;
    unsigned long long work_iters; /* bench_work iterations of ~1 us */
    char bindir[PATH_LEN];
    const char *results, *docs;
} opt = {.results = "bench/results", .docs = "docs"};

/* ------------------------------------------------------------------------
 * Running one child
 * ---------------------------------------------------------------------- */
static void parse_result(const char *out, run_result *r)
{
    const char *line = strstr(out, "RESULT ");
    if (!line) {
        snprintf(r->error, sizeof r->error, "no RESULT line");
        return;
    }
    char buf[1024];
    size_t len = strcspn(line, "\n");
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    int seen = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok;
         tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(tok, "ns_per_op") == 0) r->ns = strtod(v, NULL), seen |= 1;
        if (strcmp(tok, "ops") == 0) r->ops = strtoull(v, NULL, 10), seen |= 2;
        if (strcmp(tok, "expected") == 0) r->expected = strtoull(v, NULL, 10), seen |= 4;
        if (strcmp(tok, "released") == 0) r->released = strtoull(v, NULL, 10), seen |= 8;
        if (strcmp(tok, "released_final") == 0) r->released_final = strtoull(v, NULL, 10);
        if (strcmp(tok, "dtors") == 0) snprintf(r->dtors, sizeof r->dtors, "%s", v), seen |= 16;
        if (strcmp(tok, "work_iters") == 0) r->work_iters = strtoull(v, NULL, 10), seen |= 32;
    }
    if (seen != 63) {
        snprintf(r->error, sizeof r->error, "incomplete RESULT line");
        return;
    }
    if (r->work_iters != opt.work_iters) {
        snprintf(r->error, sizeof r->error, "ran %llu work iterations, not the %llu given",
                 r->work_iters, opt.work_iters);
        return;
    }
    if (!isfinite(r->ns) || r->ns <= 0 || r->ops == 0) {
        snprintf(r->error, sizeof r->error, "bad timing: %g ns/op over %llu ops", r->ns, r->ops);
        return;
    }
    if (strcmp(r->dtors, "exact") == 0 && r->released != r->expected) {
        snprintf(r->error, sizeof r->error, "checksum: %llu of %llu destructors/releases ran",
                 r->released, r->expected);
        return;
    }
    r->ok = 1;
}

static void run_child(const char *path, const char *wl_name, run_result *r)
{
    memset(r, 0, sizeof *r);
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(r->error, sizeof r->error, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(r->error, sizeof r->error, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        char iters[32];
        snprintf(iters, sizeof iters, "%llu", opt.work_iters);
        char *argv[] = {
            (char *)path, (char *)wl_name, "--work-iters", iters, opt.quick ? "--quick" : NULL,
            NULL};
        execv(path, argv);
        fprintf(stderr, "bench: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char out[8192];
    size_t used = 0;
    for (;;) {
        ssize_t got = read(fds[0], out + used, sizeof out - 1 - used);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        used += (size_t)got;
        if (used == sizeof out - 1) { /* keep the tail: the RESULT line comes last */
            memmove(out, out + sizeof out / 2, used - sizeof out / 2);
            used -= sizeof out / 2;
        }
    }
    out[used] = '\0';
    close(fds[0]);
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            snprintf(r->error, sizeof r->error, "wait4: %s", strerror(errno));
            return;
        }
    r->rss_kib = ru.ru_maxrss;
    if (WIFSIGNALED(status)) {
        snprintf(r->error, sizeof r->error, "killed by signal %d", WTERMSIG(status));
        return;
    }
    if (WEXITSTATUS(status) != 0) {
        snprintf(r->error, sizeof r->error, "exit status %d", WEXITSTATUS(status));
        return;
    }
    parse_result(out, r);
}

/* ------------------------------------------------------------------------
 * Statistics and tables
 * ---------------------------------------------------------------------- */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarise(cell *c)
{
    double v[MAX_RUNS];
    int n = 0;
    c->rss_kib = 0;
    for (int i = 0; i < c->nruns; i++) {
        if (!c->runs[i].ok) {
            c->failed = 1;
            continue;
        }
        v[n++] = c->runs[i].ns;
        if (c->runs[i].rss_kib > c->rss_kib) c->rss_kib = c->runs[i].rss_kib;
    }
    if (n == 0) return;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    c->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    c->min = v[0];
    c->max = v[n - 1];
}

static const run_result *last_ok(const cell *c)
{
    for (int i = c->nruns - 1; i >= 0; i--)
        if (c->runs[i].ok) return &c->runs[i];
    return NULL;
}

static const char *first_error(const cell *c)
{
    for (int i = 0; i < c->nruns; i++)
        if (!c->runs[i].ok) return c->runs[i].error;
    return "";
}

static void describe_dtors(const cell *c, char *buf, size_t size)
{
    const run_result *r = last_ok(c);
    if (!r || strcmp(r->dtors, "none") == 0)
        snprintf(buf, size, "-");
    else if (strcmp(r->dtors, "exact") == 0)
        snprintf(buf, size, "%llu/%llu ok", r->released, r->expected);
    else
        snprintf(buf, size, "late: %llu/%llu ran, %llu after a full GC", r->released, r->expected,
                 r->released_final);
}

static void print_table(size_t w)
{
    const cell *base = available[BASELINE] ? &cells[w][BASELINE] : NULL;
    int runs = opt.runs;
    printf("\n== %s: ns per %s, %d run%s ==\n", all_workloads[w].name, all_workloads[w].unit, runs,
           runs == 1 ? "" : "s");
    printf("%-16s %-10s %10s %21s %10s %12s  %s\n", "backend", "", "median", "min - max",
           "vs malloc", "peak RSS", "destructors");
    for (size_t b = 0; b < NB; b++) {
        if (!available[b]) continue;
        const cell *c = &cells[w][b];
        if (c->failed && !last_ok(c)) {
            printf("%-16s %-10s FAILED: %s\n", backends[b].name, backends[b].label, first_error(c));
            continue;
        }
        char ratio[16] = "-", dt[96];
        if (base && !base->failed && base->median > 0)
            snprintf(ratio, sizeof ratio, "%.2fx", c->median / base->median);
        describe_dtors(c, dt, sizeof dt);
        printf("%-16s %-10s %10.2f %10.2f - %8.2f %10s %8.1f MiB  %s%s%s\n", backends[b].name,
               backends[b].label, c->median, c->min, c->max, ratio, (double)c->rss_kib / 1024.0, dt,
               c->failed ? "  FAILED: " : "", c->failed ? first_error(c) : "");
    }
}

static void print_threads_summary(void)
{
    size_t t1 = NW_MAX;
    for (size_t w = 0; w < nw; w++)
        if (strcmp(all_workloads[w].name, "threads1") == 0) t1 = w;
    if (t1 == NW_MAX) return;
    printf("\n== threads: throughput (M objects/s) and speed-up vs 1 thread ==\n");
    printf("%-16s", "backend");
    for (size_t w = t1; w < nw; w++)
        printf(" %10s", all_workloads[w].name);
    for (size_t w = t1 + 1; w < nw; w++) {
        char label[32];
        snprintf(label, sizeof label, "speed-up x%s", all_workloads[w].name + 7);
        printf(" %14s", label);
    }
    printf("\n");
    for (size_t b = 0; b < NB; b++) {
        if (!available[b]) continue;
        printf("%-16s", backends[b].name);
        for (size_t w = t1; w < nw; w++) {
            const cell *c = &cells[w][b];
            if (c->median > 0)
                printf(" %10.1f", 1e3 / c->median);
            else
                printf(" %10s", "failed");
        }
        for (size_t w = t1 + 1; w < nw; w++) {
            const cell *c = &cells[w][b], *one = &cells[t1][b];
            if (c->median > 0 && one->median > 0)
                printf(" %13.2fx", one->median / c->median);
            else
                printf(" %14s", "-");
        }
        printf("\n");
    }
}

/* ------------------------------------------------------------------------
 * Files: CSV always, plots on full runs when gnuplot is installed
 * ---------------------------------------------------------------------- */
static int mkdir_p(const char *dir)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(path, 0777) != 0 && errno != EEXIST ? -1 : 0;
}

static FILE *open_out(const char *dir, const char *name)
{
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
    return f;
}

static void write_csv(void)
{
    if (mkdir_p(opt.results) != 0) {
        fprintf(stderr, "bench: cannot create %s: %s\n", opt.results, strerror(errno));
        return;
    }
    FILE *runs = open_out(opt.results, "compare-runs.csv");
    FILE *sum = open_out(opt.results, "compare-summary.csv");
    if (runs)
        fprintf(runs, "workload,backend,run,ns_per_op,peak_rss_kib,ops,expected,released,"
                      "released_final,dtors,status\n");
    if (sum)
        fprintf(sum, "workload,backend,runs,median_ns,min_ns,max_ns,ratio_vs_malloc,"
                     "peak_rss_kib\n");
    for (size_t w = 0; w < nw; w++) {
        const cell *base = &cells[w][BASELINE];
        for (size_t b = 0; b < NB; b++) {
            if (!available[b]) continue;
            const cell *c = &cells[w][b];
            for (int i = 0; runs && i < c->nruns; i++) {
                const run_result *r = &c->runs[i];
                fprintf(runs, "%s,%s,%d,%.4f,%ld,%llu,%llu,%llu,%llu,%s,%s\n",
                        all_workloads[w].name, backends[b].name, i + 1, r->ns, r->rss_kib, r->ops,
                        r->expected, r->released, r->released_final, r->dtors,
                        r->ok ? "ok" : r->error);
            }
            if (sum && c->median > 0)
                fprintf(sum, "%s,%s,%d,%.4f,%.4f,%.4f,%.4f,%ld\n", all_workloads[w].name,
                        backends[b].name, c->nruns, c->median, c->min, c->max,
                        base->median > 0 ? c->median / base->median : 0.0, c->rss_kib);
        }
    }
    if (runs) fclose(runs);
    if (sum) fclose(sum);
    printf("\nCSV: %s/compare-runs.csv, %s/compare-summary.csv\n", opt.results, opt.results);
}

static int find_in_path(const char *prog, char *out, size_t size)
{
    const char *path = getenv("PATH");
    while (path && *path) {
        size_t len = strcspn(path, ":");
        snprintf(out, size, "%.*s/%s", (int)len, path, prog);
        if (len && access(out, X_OK) == 0) return 1;
        path += len + (path[len] == ':');
    }
    return 0;
}

static int run_gnuplot(const char *gnuplot, const char *script)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(gnuplot, gnuplot, script, (char *)NULL);
        _exit(127);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
           WEXITSTATUS(status) == 0;
}

/* The machine the numbers come from, for the plots' subtitle: the CPU
 * model (/proc/cpuinfo), the CPUs online and the kernel (uname). */
static void describe_machine(char *out, size_t size)
{
    char model[256] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v += strspn(v + 1, " \t") + 1;
        snprintf(model, sizeof model, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    if (f) fclose(f);
    struct utsname u;
    int have_uname = uname(&u) == 0;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(out, size, "%s%s%ld CPUs, %s %s %s", model, model[0] ? ", " : "", cpus,
             have_uname ? u.sysname : "?", have_uname ? u.release : "",
             have_uname ? u.machine : "");
}

/* s for a gnuplot double-quoted string: " and \\ escaped. */
static void gp_quote(char *out, size_t size, const char *s)
{
    size_t n = 0;
    for (; *s && n + 2 < size; s++) {
        if (*s == '"' || *s == '\\') out[n++] = '\\';
        out[n++] = *s;
    }
    out[n] = '\0';
}

/* The value written on a bar: three significant figures or so. */
static void bar_label(char *out, size_t size, double v)
{
    snprintf(out, size, v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v);
}

/* One SVG per workload: median ns per operation as bars (libsamm's in
 * blue), min-max as error bars, the median written on each bar, a linear
 * scale from 0, and the date, machine and number of runs under the title. */
static void write_plots(void)
{
    char gnuplot[PATH_LEN];
    if (!find_in_path("gnuplot", gnuplot, sizeof gnuplot)) {
        printf("plots: gnuplot not found, none drawn\n");
        return;
    }
    if (mkdir_p(opt.docs) != 0 || mkdir_p(opt.results) != 0) return;
    char machine[512], machine_q[1024], date[32];
    describe_machine(machine, sizeof machine);
    gp_quote(machine_q, sizeof machine_q, machine);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
    int drawn = 0;
    for (size_t w = 0; w < nw; w++) {
        const char *name = all_workloads[w].name;
        char file[PATH_LEN];
        snprintf(file, sizeof file, "%s/%s.dat", opt.results, name);
        FILE *dat = fopen(file, "w");
        if (!dat) continue;
        double top = 0;
        int bars = 0;
        for (size_t b = 0; b < NB; b++) {
            const cell *c = &cells[w][b];
            if (!available[b] || c->median <= 0) continue;
            char label[32];
            bar_label(label, sizeof label, c->median);
            unsigned colour = strncmp(backends[b].name, "samm", 4) == 0 ? 0x3b75afu : 0x9a9a9au;
            fprintf(dat, "\"%s\" %.4f %.4f %.4f \"%s\" %u\n", backends[b].name, c->median, c->min,
                    c->max, label, colour);
            if (c->max > top) top = c->max;
            bars++;
        }
        fclose(dat);
        if (bars == 0) continue;
        char script[PATH_LEN];
        snprintf(script, sizeof script, "%s/%s.gp", opt.results, name);
        FILE *gp = fopen(script, "w");
        if (!gp) continue;
        fprintf(gp,
                "set terminal svg size 820,460 dynamic background rgb 'white' font 'sans,12'\n"
                "set output '%s/bench-%s.svg'\n"
                "set title \"%s: ns per %s (lower is better)\\n"
                "median of %d runs, bars min-max; %s; %s\" noenhanced\n"
                "set ylabel 'ns'\n"
                "set yrange [0:%.6g]\nset xrange [-0.6:%d.4]\nset boxwidth 0.6\n"
                "set style fill solid 0.7 border rgb 'black'\n"
                "set xtics rotate by -30 noenhanced nomirror\nset ytics nomirror\nset grid y\n"
                "plot '%s' using 0:2:6:xtic(1) with boxes lc rgb variable notitle, "
                "'' using 0:2:3:4:2:(0.2) with candlesticks whiskerbars 0.3 lc rgb 'black' "
                "fs empty notitle, "
                "'' using 0:4:5 with labels offset 0,0.8 font ',11' noenhanced notitle\n",
                opt.docs, name, name, all_workloads[w].unit, opt.runs, date, machine_q, top * 1.15,
                bars - 1, file);
        fclose(gp);
        drawn += run_gnuplot(gnuplot, script);
    }
    printf("plots: %d SVG files in %s/ (bench-<workload>.svg)\n", drawn, opt.docs);
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */
static void usage(void)
{
    fprintf(stderr, "usage: bench_cmp_runner [--quick] [--smoke] [--runs N] [--bindir DIR]\n"
                    "                        [--results DIR] [--docs DIR]\n"
                    "  --quick   smaller workloads, 2 runs, no plots unless --docs is given\n"
                    "  --smoke   --quick, and fail unless every built backend ran and produced\n"
                    "            sane numbers (never fails on timing)\n");
    exit(2);
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            opt.quick = 1;
        } else if (strcmp(a, "--smoke") == 0) {
            opt.quick = opt.smoke = 1;
        } else if (strcmp(a, "--runs") == 0 && v) {
            opt.runs = atoi(v), i++;
        } else if (strcmp(a, "--bindir") == 0 && v) {
            snprintf(opt.bindir, sizeof opt.bindir, "%s", v), i++;
        } else if (strcmp(a, "--results") == 0 && v) {
            opt.results = v, i++;
        } else if (strcmp(a, "--docs") == 0 && v) {
            opt.docs = v, opt.docs_given = 1, i++;
        } else {
            usage();
        }
    }
    if (opt.runs == 0) opt.runs = opt.quick ? 2 : 5;
    if (opt.runs < 1 || opt.runs > MAX_RUNS) usage();
    if (!opt.bindir[0]) {
        ssize_t n = readlink("/proc/self/exe", opt.bindir, sizeof opt.bindir - 1);
        if (n <= 0) usage();
        opt.bindir[n] = '\0';
        char *slash = strrchr(opt.bindir, '/');
        if (slash) *slash = '\0';
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    nw = cpus >= 4 ? NW_MAX : NW_MAX - 1;

    char paths[NB][PATH_LEN];
    int nbackends = 0;
    for (size_t b = 0; b < NB; b++) {
        int len = snprintf(paths[b], PATH_LEN, "%s/bench_cmp_%s", opt.bindir, backends[b].exe);
        available[b] = len < PATH_LEN && access(paths[b], X_OK) == 0;
        nbackends += available[b];
        if (!available[b])
            printf("note: %s skipped: %s not built (library not installed or backend disabled)\n",
                   backends[b].name, paths[b]);
    }
    if (nbackends == 0) {
        fprintf(stderr, "bench: no backend executables in %s\n", opt.bindir);
        return 1;
    }
    printf("comparison: %d backends, %zu workloads, %d runs each, %s sizes, %ld CPUs\n", nbackends,
           nw, opt.runs, opt.quick ? "quick" : "full", cpus);
    opt.work_iters = bench_work_calibrate(1000);
    printf("heavy: ~1 us of work = %llu iterations of bench_work (calibrated here, the same for "
           "every backend)\n",
           opt.work_iters);

    int failures = 0;
    for (size_t w = 0; w < nw; w++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        /* Runs interleave across backends so drift hits them all alike. */
        for (int r = 0; r < opt.runs; r++)
            for (size_t b = 0; b < NB; b++)
                if (available[b])
                    run_child(paths[b], all_workloads[w].name,
                              &cells[w][b].runs[cells[w][b].nruns++]);
        int bad = 0;
        for (size_t b = 0; b < NB; b++)
            if (available[b]) {
                summarise(&cells[w][b]);
                bad += cells[w][b].failed;
            }
        failures += bad;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("[%zu/%zu] %-9s %d backends x %d runs  %5.1f s%s\n", w + 1, nw,
               all_workloads[w].name, nbackends, opt.runs,
               (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
               bad ? "  (failures: see table)" : "");
    }

    for (size_t w = 0; w < nw; w++)
        print_table(w);
    print_threads_summary();
    write_csv();
    if (!opt.quick || opt.docs_given) write_plots();

    if (failures) {
        printf("\nFAILED: %d backend/workload pairs did not run cleanly (see tables)\n", failures);
        return 1;
    }
    if (opt.smoke)
        printf("\nsmoke: all %d built backends ran every workload with sane numbers\n", nbackends);
    return 0;
}
