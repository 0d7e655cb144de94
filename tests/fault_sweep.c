/* SPDX-License-Identifier: MIT */
/* fault_sweep.c - the fault-injection sweep (SQLite-style): runs a program
 * once per k with SAMM_FAIL_AT=k, so that the k-th allocation libsamm makes
 * fails, for k = 1, 2, ... until a run never reaches k.  Every run must end
 * on its own (no signal, no hang) with status 0, or with `--oom-status`
 * for a program that stops cleanly on out of memory; under ASan a leak or
 * a bad access fails the run.  The program checks its own accounting.
 *
 *   fault_sweep [--sample N] [--oom-status S] -- PROGRAM ARGS...
 *
 * --sample N: k = 1..N/2, then N/2 values spread over the rest of the
 * range a first, uninjected run reports (for make test); without it every
 * k (make fuzz).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TIMEOUT_S 120

static char **prog;
static int oom_status = -1;

/* Runs the program with SAMM_FAIL_AT=k; its stderr in out. */
static int run(long long k, char *out, size_t cap, int *status)
{
    int fd[2];
    if (pipe(fd) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        char v[32];
        snprintf(v, sizeof v, "%lld", k);
        setenv("SAMM_FAIL_AT", v, 1);
        dup2(fd[1], 2);
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) dup2(devnull, 1);
        close(fd[0]);
        close(fd[1]);
        execv(prog[0], prog);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    time_t t0 = time(NULL);
    while ((r = read(fd[0], out + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        n += (size_t)r;
        if (n + 1 >= cap) n = 0; /* keep the tail: the report line is last */
        if (time(NULL) - t0 > TIMEOUT_S) break;
    }
    out[n] = '\0';
    close(fd[0]);
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) return 0;
        if (time(NULL) - t0 > TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return 1; /* hung */
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

/* 1: the k-th allocation failed, 0: never made (*made set), -1: bad run. */
static int one(long long k, long long *made)
{
    static char out[1 << 16];
    int status;
    int r = run(k, out, sizeof out, &status);
    const char *never = strstr(out, "never made (");
    int ok = r == 0 && WIFEXITED(status) &&
             (WEXITSTATUS(status) == 0 || (int)WEXITSTATUS(status) == oom_status);
    if (!ok) {
        fprintf(stderr, "fault_sweep: k=%lld: %s", k,
                r == 1                ? "hung (killed)\n"
                : WIFSIGNALED(status) ? "killed by a signal\n"
                                      : "bad exit status\n");
        if (WIFSIGNALED(status)) fprintf(stderr, "  signal %d\n", WTERMSIG(status));
        if (WIFEXITED(status)) fprintf(stderr, "  status %d\n", WEXITSTATUS(status));
        fprintf(stderr, "--- its stderr ---\n%s\n---\n", out);
        return -1;
    }
    if (never) {
        *made = atoll(never + strlen("never made ("));
        return 0;
    }
    if (!strstr(out, "failed")) {
        fprintf(stderr, "fault_sweep: k=%lld: no fault-injection report\n%s\n", k, out);
        return -1;
    }
    return 1;
}

int main(int argc, char **argv)
{
    long long sample = 0;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--sample") == 0 && i + 1 < argc)
            sample = atoll(argv[++i]);
        else if (strcmp(argv[i], "--oom-status") == 0 && i + 1 < argc)
            oom_status = atoi(argv[++i]);
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: fault_sweep [--sample N] [--oom-status S] -- PROGRAM ARGS...\n");
        return 2;
    }
    prog = &argv[i + 1];
    /* First, no failure: how many allocations does a run make? */
    long long made = 0;
    if (one((long long)1 << 40, &made) != 0) return 1;
    long long runs = 0, fired = 0;
    for (long long k = 1;;) {
        long long m;
        int r = one(k, &m);
        runs++;
        if (r < 0) return 1;
        if (r == 0) break; /* this run made fewer than k allocations */
        fired++;
        long long step = 1;
        if (sample > 1 && k >= sample / 2) {
            step = (made - sample / 2) / (sample / 2);
            if (step < 1) step = 1;
        }
        k += step;
    }
    printf("fault_sweep: %s: %lld runs, %lld with an injected failure, %lld allocations in a "
           "clean run: all ended cleanly\n",
           prog[0], runs, fired, made);
    return 0;
}
