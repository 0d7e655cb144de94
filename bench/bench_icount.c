/* SPDX-License-Identifier: MIT */
/* bench_icount.c - instructions per object, counted by callgrind.
 *
 * Time on a shared machine is noise; callgrind's instruction count is not:
 * the same binary and input give the same count, so a change of three
 * instructions per object shows.  Run without arguments, this program runs
 * itself under `valgrind --tool=callgrind` once per workload, counting only
 * inside icount_measured() (--toggle-collect), and prints instructions per
 * object.  `--one NAME N` runs one workload natively (what valgrind runs).
 *
 * The workloads are the nested benchmark's (objects of 16-64 B with a
 * vtable[3] destructor, 100 per scope) written each way, plus the empty
 * scope and explicit frees in random order.  The mimalloc baseline lives
 * in bench_icount_mimalloc (Debian's libmimalloc replaces malloc for the
 * whole program it is linked into).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef ICOUNT_MIMALLOC
#include <mimalloc.h>
#else
#include "samm.h"
#endif

typedef struct Obj {
    void (**vtable)(void *);
    uint64_t payload[7];
} Obj;

static uint64_t destroyed;
static __attribute__((noinline)) void obj_dtor(void *p)
{
    destroyed += ((Obj *)p)->payload[0] != 0;
}
static void (*obj_vtable[4])(void *) = {NULL, NULL, NULL, obj_dtor};

enum { PER_SCOPE = 100 };
static const size_t sizes[4] = {16, 32, 48, 64};
static size_t n_objects;

/* The one function callgrind counts in (inclusively). */
static __attribute__((noinline)) void icount_measured(void (*fn)(size_t), size_t n)
{
    fn(n);
    __asm__ volatile("" ::: "memory");
}

#ifdef ICOUNT_MIMALLOC
static void w_mimalloc(size_t n)
{
    Obj *live[PER_SCOPE];
    for (size_t done = 0; done < n; done += PER_SCOPE) {
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = mi_zalloc(sizes[i & 3]);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            live[i] = o;
        }
        for (size_t i = PER_SCOPE; i-- > 0;) {
            live[i]->vtable[3](live[i]);
            mi_free(live[i]);
        }
    }
}
#else
/* The loop, the vtable store and the destructor call: what every way of
 * doing the work pays. */
static void w_floor(size_t n)
{
    static Obj pool[PER_SCOPE];
    Obj *live[PER_SCOPE];
    for (size_t done = 0; done < n; done += PER_SCOPE) {
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = &pool[i];
            __asm__ volatile("" : "+r"(o));
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            live[i] = o;
        }
        for (size_t i = PER_SCOPE; i-- > 0;)
            live[i]->vtable[3](live[i]);
    }
}

static void w_glibc(size_t n)
{
    Obj *live[PER_SCOPE];
    for (size_t done = 0; done < n; done += PER_SCOPE) {
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = calloc(1, sizes[i & 3]);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            live[i] = o;
        }
        for (size_t i = PER_SCOPE; i-- > 0;) {
            live[i]->vtable[3](live[i]);
            free(live[i]);
        }
    }
}

static void w_samm(size_t n)
{
    for (size_t done = 0; done < n; done += PER_SCOPE) {
        samm_enter_scope();
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = samm_alloc_object(sizes[i & 3]);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            samm_track_object(o);
        }
        samm_exit_scope();
    }
}

static void w_samm_alloc(size_t n)
{
    for (size_t done = 0; done < n; done += PER_SCOPE) {
        samm_enter_scope();
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = samm_alloc(sizes[i & 3], SAMM_ALLOC_OBJECT);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
        }
        samm_exit_scope();
    }
}

static void w_scope(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        samm_enter_scope();
        samm_exit_scope();
    }
}

/* Two calls of an empty function per iteration: what w_scope pays besides
 * the two calls' bodies. */
static __attribute__((noinline)) void nothing(void)
{
    __asm__ volatile("");
}
static void w_scope_loop(size_t n)
{
    for (size_t i = 0; i < n; i++) {
        nothing();
        nothing();
    }
}

static void **scratch; /* objects of the free workloads, in random order */

static void w_free_samm(size_t n)
{
    for (size_t i = 0; i < n; i++)
        samm_free_object(scratch[i]);
}

static void w_free_glibc(size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(scratch[i]);
}
#endif

typedef struct {
    const char *name;
    const char *what;
    void (*fn)(size_t);
    int kind; /* 0: objects, 1: scope pairs, 2: frees (prepared), 3: same, glibc */
    int mode; /* SAMMCleanupMode (libsamm workloads) */
} workload;

static const workload workloads[] = {
#ifdef ICOUNT_MIMALLOC
    {"mimalloc", "mi_zalloc + destructor + mi_free by hand", w_mimalloc, 0, 0},
#else
    {"floor", "floor: loop, vtable store, destructor call", w_floor, 0, 0},
    {"glibc", "calloc + destructor + free by hand (glibc)", w_glibc, 0, 0},
    {"samm-inline", "libsamm inline: alloc_object + track_object", w_samm, 0, SAMM_CLEANUP_INLINE},
    {"samm-auto", "libsamm auto (the default), same code", w_samm, 0, SAMM_CLEANUP_AUTO},
    {"samm-background", "libsamm background (calling thread only)", w_samm, 0,
     SAMM_CLEANUP_BACKGROUND},
    {"samm-alloc", "libsamm inline: samm_alloc (one call)", w_samm_alloc, 0, SAMM_CLEANUP_INLINE},
    {"scope", "empty scope: enter + exit, loop included", w_scope, 1, 0},
    {"scope-loop", "the same loop with two empty calls", w_scope_loop, 1, 0},
    {"free-samm", "samm_free_object of tracked objects, random order", w_free_samm, 2, 0},
    {"free-glibc", "free() by hand, same order", w_free_glibc, 3, 0},
#endif
};
#define N_WORKLOADS (sizeof workloads / sizeof *workloads)

static const workload *find(const char *name)
{
    for (size_t i = 0; i < N_WORKLOADS; i++)
        if (strcmp(workloads[i].name, name) == 0) return &workloads[i];
    return NULL;
}

#ifndef ICOUNT_MIMALLOC
static void shuffle(void **v, size_t n)
{
    uint64_t x = 88172645463325252ull;
    for (size_t i = n - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(x % (i + 1));
        void *t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* The free workloads: n objects allocated (and, for libsamm, tracked in
 * one scope), put in random order; the measured loop frees them. */
static void prepare_frees(const workload *w, size_t n)
{
    scratch = malloc(n * sizeof *scratch);
    if (scratch == NULL) abort();
    if (w->kind == 2) samm_enter_scope();
    for (size_t i = 0; i < n; i++) {
        if (w->kind == 2) {
            scratch[i] = samm_alloc_object(sizes[i & 3]);
            samm_track_object(scratch[i]);
        } else {
            scratch[i] = calloc(1, sizes[i & 3]);
        }
    }
    shuffle(scratch, n);
}
#endif

/* One workload, natively: warm up, then the counted run. */
static int run_one(const char *name, size_t n)
{
    const workload *w = find(name);
    if (w == NULL) {
        fprintf(stderr, "bench_icount: no workload %s\n", name);
        return 2;
    }
#ifndef ICOUNT_MIMALLOC
    samm_set_cleanup_mode((SAMMCleanupMode)w->mode);
    if (w->kind >= 2) {
        /* Warm the pools with the same number of objects, then measure. */
        prepare_frees(w, n);
        w->fn(n);
        free(scratch);
        prepare_frees(w, n);
        icount_measured(w->fn, n);
        if (w->kind == 2) samm_exit_scope();
        free(scratch);
        samm_shutdown();
        return 0;
    }
#endif
    w->fn(n / 10 > PER_SCOPE ? n / 10 : PER_SCOPE);
    icount_measured(w->fn, n);
#ifndef ICOUNT_MIMALLOC
    samm_wait();
    samm_shutdown();
#endif
    if (w->kind == 0 && destroyed == 0) {
        fprintf(stderr, "bench_icount: destructors did not run\n");
        return 1;
    }
    return 0;
}

/* Runs `exe --one name n` under callgrind; instructions counted, or -1. */
static double count_under_callgrind(const char *valgrind, const char *exe, const char *name,
                                    size_t n)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        char nbuf[32];
        snprintf(nbuf, sizeof nbuf, "%zu", n);
        execl(valgrind, valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
              "--collect-atstart=no", "--toggle-collect=icount_measured", exe, "--one", name, nbuf,
              (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char line[512];
    double collected = -1;
    while (f && fgets(line, sizeof line, f)) {
        const char *c = strstr(line, "Collected :");
        if (c) collected = strtod(c + 11, NULL);
    }
    if (f) fclose(f);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    return collected;
}

static int report(const char *vg, const char *exe, const workload *w, size_t n)
{
    double c = count_under_callgrind(vg, exe, w->name, n);
    if (c < 0) {
        printf("  %-16s %-52s failed\n", w->name, w->what);
        return 1;
    }
    printf("  %-16s %-52s %8.1f per %s\n", w->name, w->what, c / (double)n,
           w->kind == 1 ? "pair" : "object");
    fflush(stdout);
    return 0;
}

static const char *find_valgrind(void)
{
    static char path[4096];
    const char *env = getenv("VALGRIND");
    if (env && *env) return env;
    const char *p = getenv("PATH");
    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(path, sizeof path, "%.*s/valgrind", (int)len, p);
        if (access(path, X_OK) == 0) return path;
        p = colon ? colon + 1 : NULL;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    n_objects = 1000000;
    if (argc >= 3 && strcmp(argv[1], "--one") == 0)
        return run_one(argv[2], argc >= 4 ? (size_t)strtoull(argv[3], NULL, 10) : n_objects);
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const char *vg = find_valgrind();
    if (vg == NULL) {
        printf("instruction counts: valgrind not found, skipped (apt-get install valgrind)\n");
        return 0;
    }
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 1;
    exe[len] = '\0';
    printf("instructions counted by callgrind (deterministic)%s\n", quick ? ", quick sizes" : "");
    int failed = 0;
    for (size_t i = 0; i < N_WORKLOADS; i++) {
        const workload *w = &workloads[i];
        size_t n = quick ? 20000 : (w->kind >= 2 ? 100000 : 1000000);
        failed |= report(vg, exe, w, n);
    }
#ifndef ICOUNT_MIMALLOC
    /* The mimalloc baseline, if it was built, sits beside this program. */
    char *slash = strrchr(exe, '/');
    if (slash && (size_t)(slash - exe) + sizeof "/bench_icount_mimalloc" < sizeof exe) {
        strcpy(slash, "/bench_icount_mimalloc");
        static const workload mi = {"mimalloc", "mi_zalloc + destructor + mi_free by hand", NULL, 0,
                                    0};
        if (access(exe, X_OK) == 0)
            failed |= report(vg, exe, &mi, quick ? 20000 : 1000000);
        else
            printf("  %-16s %-52s not built (apt-get install libmimalloc-dev)\n", mi.name, mi.what);
    }
#endif
    return failed;
}
