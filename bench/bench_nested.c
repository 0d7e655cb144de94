/* SPDX-License-Identifier: MIT */
/* bench_nested.c - issue 8's headline wall-clock target: the nested
 * workload (1,000,000 objects of 16-64 B, each with a vtable[3]
 * destructor, 100 per scope: allocate, track, clean up at scope exit).
 * libsamm against calloc / destructor / free written by hand with glibc
 * (<= 0.5x), and with mimalloc (below 1x), in the same interleaved rounds.
 * Inline cleanup, set explicitly: the target is for the default mode, and
 * a cleanup worker would be a second thread, after which glibc's malloc
 * takes its locks for the rest of the process (see bench.h).
 *
 * Debian's libmimalloc replaces malloc in whatever program links it, so
 * the mimalloc side is this file built again as bench_nested_mimalloc
 * (NESTED_MIMALLOC), a child process this program starts once and asks
 * for its passes' times.
 */
#include "bench.h"

#ifdef NESTED_MIMALLOC
#include <mimalloc.h>
#define BY_HAND_ALLOC(size) mi_zalloc(size)
#define BY_HAND_FREE(p) mi_free(p)
#else
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "samm.h"
#define BY_HAND_ALLOC(size) calloc(1, size)
#define BY_HAND_FREE(p) free(p)
#endif

typedef struct Obj {
    void (**vtable)(void *);
    uint64_t payload[7];
} Obj;

static uint64_t destroyed;
static void obj_dtor(void *p)
{
    destroyed += ((Obj *)p)->payload[0] != 0;
}
static void (*obj_vtable[4])(void *) = {NULL, NULL, NULL, obj_dtor};

enum { PER_SCOPE = 100 };
static const size_t sizes[4] = {16, 32, 48, 64};

/* One repetition is one pass over `total` objects. */
static size_t total = 1000000;

static double by_hand(void *a, size_t reps)
{
    (void)a;
    Obj *live[PER_SCOPE];
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++)
        for (size_t done = 0; done < total; done += PER_SCOPE) {
            for (size_t i = 0; i < PER_SCOPE; i++) {
                Obj *o = BY_HAND_ALLOC(sizes[i & 3]);
                if (o == NULL) abort();
                o->vtable = obj_vtable;
                o->payload[0] = 1;
                live[i] = o;
            }
            for (size_t i = PER_SCOPE; i-- > 0;) {
                live[i]->vtable[3](live[i]);
                BY_HAND_FREE(live[i]);
            }
        }
    return bench_now_ns() - t0;
}

#ifdef NESTED_MIMALLOC
/* The child: bench_nested_mimalloc --serve TOTAL reads a repetition count
 * per line on stdin, runs that many passes and answers the nanoseconds
 * they took, until end of input. */
int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--serve") != 0) {
        fprintf(stderr, "bench_nested_mimalloc: run by bench_nested (--serve TOTAL)\n");
        return 2;
    }
    total = (size_t)strtoull(argv[2], NULL, 10);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        size_t reps = (size_t)strtoull(line, NULL, 10);
        uint64_t before = destroyed;
        double t = by_hand(NULL, reps);
        if (destroyed - before != reps * total) return 1;
        printf("%.0f\n", t);
        fflush(stdout);
    }
    return 0;
}
#else
/* ------------------------------------------------------------------------
 * libsamm, inline cleanup: samm_alloc_object + samm_track_object, and the
 * one call samm_alloc
 * ---------------------------------------------------------------------- */
static void check_destroyed(uint64_t before, size_t reps)
{
    if (destroyed - before != reps * total) {
        fprintf(stderr, "bench_nested: %llu destructors ran, %zu expected\n",
                (unsigned long long)(destroyed - before), reps * total);
        exit(1);
    }
}

static double samm_alloc_track(void *a, size_t reps)
{
    (void)a;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    uint64_t before = destroyed;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++)
        for (size_t done = 0; done < total; done += PER_SCOPE) {
            samm_enter_scope();
            for (size_t i = 0; i < PER_SCOPE; i++) {
                Obj *o = samm_alloc_object(sizes[i & 3]);
                o->vtable = obj_vtable;
                o->payload[0] = 1;
                samm_track_object(o);
            }
            samm_exit_scope();
        }
    double t = bench_now_ns() - t0;
    check_destroyed(before, reps);
    return t;
}

static double samm_one_call(void *a, size_t reps)
{
    (void)a;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    uint64_t before = destroyed;
    double t0 = bench_now_ns();
    for (size_t r = 0; r < reps; r++)
        for (size_t done = 0; done < total; done += PER_SCOPE) {
            samm_enter_scope();
            for (size_t i = 0; i < PER_SCOPE; i++) {
                Obj *o = samm_alloc(sizes[i & 3], SAMM_ALLOC_OBJECT);
                o->vtable = obj_vtable;
                o->payload[0] = 1;
            }
            samm_exit_scope();
        }
    double t = bench_now_ns() - t0;
    check_destroyed(before, reps);
    return t;
}

/* ------------------------------------------------------------------------
 * mimalloc by hand, in a child process that stays up for the whole run
 * ---------------------------------------------------------------------- */
extern char **environ;
static FILE *to_child, *from_child;
static pid_t child;

/* Starts bench_nested_mimalloc from beside this program: 1 if it runs. */
static int mimalloc_start(void)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return 0;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    static const char name[] = "/bench_nested_mimalloc";
    if (slash == NULL || (size_t)(slash - exe) + sizeof name > sizeof exe) return 0;
    strcpy(slash, name);
    if (access(exe, X_OK) != 0) return 0;
    signal(SIGPIPE, SIG_IGN); /* a dead child is reported, not fatal */
    int in[2], out[2];
    if (pipe(in) != 0) return 0;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return 0;
    }
    char ntotal[32];
    snprintf(ntotal, sizeof ntotal, "%zu", total);
    char serve[] = "--serve";
    char *args[] = {exe, serve, ntotal, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    int err = posix_spawn(&child, exe, &fa, NULL, args, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    to_child = fdopen(in[1], "w");
    from_child = fdopen(out[0], "r");
    if (err != 0 || to_child == NULL || from_child == NULL) {
        fprintf(stderr, "bench_nested: cannot run %s\n", exe);
        exit(1);
    }
    return 1;
}

static void mimalloc_stop(void)
{
    fclose(to_child);
    fclose(from_child);
    int status;
    waitpid(child, &status, 0);
}

/* The nanoseconds the child measured for `reps` passes. */
static double mimalloc_by_hand(void *a, size_t reps)
{
    (void)a;
    char line[64];
    fprintf(to_child, "%zu\n", reps);
    fflush(to_child);
    if (fgets(line, sizeof line, from_child) == NULL) {
        fprintf(stderr, "bench_nested: bench_nested_mimalloc failed\n");
        exit(1);
    }
    return strtod(line, NULL);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, "bench_nested", argc, argv);
    if (o.quick) total = 100000;
    char what[128];
    snprintf(what, sizeof what,
             "nested workload, %zu objects of 16-64 B, vtable[3] destructor, %d "
             "per scope, inline cleanup",
             total, PER_SCOPE);
    bench_header(&o, what);

    enum { GLIBC, TRACK, ONE_CALL, MIMALLOC };
    const bench_side sides[] = {
        [GLIBC] = {by_hand, NULL},
        [TRACK] = {samm_alloc_track, NULL},
        [ONE_CALL] = {samm_one_call, NULL},
        [MIMALLOC] = {mimalloc_by_hand, NULL},
    };
    const bench_row rows[] = {
        {"alloc_object+track_object inline vs glibc by hand", TRACK, GLIBC, 0.5},
        {"samm_alloc inline vs glibc by hand", ONE_CALL, GLIBC, 0.5},
        {"alloc_object+track_object inline vs mimalloc by hand", TRACK, MIMALLOC, 1.0},
        {"samm_alloc inline vs mimalloc by hand", ONE_CALL, MIMALLOC, 1.0},
    };
    int have_mimalloc = mimalloc_start();
    bench_compare(&o, sides, have_mimalloc ? 4 : 3, (double)total, rows, have_mimalloc ? 4 : 2);
    if (have_mimalloc)
        mimalloc_stop();
    else
        printf("  mimalloc by hand: bench_nested_mimalloc not built (apt-get install "
               "libmimalloc-dev); bench/compare has it too\n");
    samm_shutdown();
    bench_done(&o);
    return 0;
}
#endif
