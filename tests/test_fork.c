/* SPDX-License-Identifier: MIT */
/* test_fork.c - fork() with libsamm in use: the child gets a working
 * library (its scopes clean its copies, samm_wait does not hang, new scopes
 * work, the worker restarts) and the parent's state is untouched; also with
 * background batches pending, from a second thread, and while another
 * thread is reporting errors (no lock inherited held).
 *
 * A child runs its checks with CHECK and _exits with the number that failed.
 * A child that hangs is cut by alarm() in the child (SIGALRM) and, should it
 * hang before it could set one, killed by the parent after a timeout; either
 * way the case fails.
 *
 * ThreadSanitizer: forking a process that has threads (the cleanup worker)
 * and then starting a thread in the child (the child's worker) makes TSan
 * abort the child unless die_after_fork=0; this file sets that default
 * itself (__tsan_default_options), TSAN_OPTIONS can still override it.
 * GCC's libtsan needs one more step, see after_fork_in_child().
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"

#if SAMM_TEST_TSAN
/* Exported (the build hides symbols by default) so the TSan runtime sees it. */
__attribute__((visibility("default"))) const char *__tsan_default_options(void);
__attribute__((visibility("default"))) const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

/* ------------------------------------------------------------------------
 * Objects: counted destructors that may sleep or wait at a gate.
 * ---------------------------------------------------------------------- */
#define MAGIC_LIVE 0xf0f0c0deu
#define MAGIC_DEAD 0xdeadu

typedef struct Obj {
    const dtor_fn *vtable;
    uint32_t magic;
    int sleep_ms;
    long payload;
} Obj;

static atomic_long destroyed, bad_magic;
static void obj_dtor(void *p)
{
    Obj *o = p;
    if (o->magic != MAGIC_LIVE) atomic_fetch_add(&bad_magic, 1);
    o->magic = MAGIC_DEAD;
    if (o->sleep_ms) sleep_ms(o->sleep_ms);
    atomic_fetch_add(&destroyed, 1); /* after the sleep: completed */
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static Obj *new_tracked(int sleep)
{
    Obj *o = samm_alloc_object(sizeof(Obj));
    REQUIRE(o != NULL);
    o->vtable = obj_vtable;
    o->magic = MAGIC_LIVE;
    o->sleep_ms = sleep;
    samm_track_object(o);
    return o;
}

/* A destructor held at a gate until the test opens it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_started, gate_open;

static void gate_dtor(void *p)
{
    pthread_mutex_lock(&gate_lock);
    gate_started = 1;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    obj_dtor(p);
}
DTOR_VTABLE(gate_vtable, gate_dtor);

/* Opens the gate from fork's prepare stage when armed: this file's handler
 * is registered after libsamm's, so it runs first, and libsamm's own then
 * waits for the batch in hand and holds the rest. */
static atomic_int gate_open_at_fork;
static void test_atfork_prepare(void)
{
    if (!atomic_exchange(&gate_open_at_fork, 0)) return;
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_lock);
}

static void setup(void)
{
    samm_set_error_handler(count_error, NULL);
    /* libsamm registered its handlers at samm_init (the harness ran it). */
    REQUIRE(pthread_atfork(test_atfork_prepare, NULL, NULL) == 0);
}

/* Starts the worker (background mode) so that the fork below happens in a
 * process with two threads, the case that matters. */
static void warm_worker(void)
{
    if (!background()) return;
    samm_enter_scope();
    new_tracked(0);
    samm_exit_scope();
    samm_wait();
    atomic_store(&destroyed, 0);
}

/* ------------------------------------------------------------------------
 * Forking and waiting
 * ---------------------------------------------------------------------- */
/* GCC's libtsan (GCC 12) keeps the parent's other threads registered in a
 * fork child, and glibc hands the child's first new thread the cached stack
 * of such a thread, so it gets the same pthread_t: TSan then dies with
 * "dup thread with used id" whatever TSAN_OPTIONS say.  Under GCC TSan only,
 * the child raises the default stack size so that no cached stack fits and
 * the child's cleanup worker gets a fresh one.  (Clang's TSan needs only
 * die_after_fork=0, set above.) */
static void after_fork_in_child(void)
{
#if SAMM_TEST_TSAN && !defined(__clang__)
    pthread_attr_t a;
    size_t sz = 0;
    if (pthread_getattr_default_np(&a) == 0) {
        pthread_attr_getstacksize(&a, &sz);
        pthread_attr_destroy(&a);
    }
    if (sz < ((size_t)8 << 20)) sz = (size_t)8 << 20;
    if (pthread_attr_init(&a) == 0) {
        pthread_attr_setstacksize(&a, sz + ((size_t)1 << 20));
        pthread_setattr_default_np(&a);
        pthread_attr_destroy(&a);
    }
#endif
}

/* Seconds a child may take before it counts as hung. */
static int child_limit_s(void)
{
    return scale(20, 120);
}

static pid_t fork_flushed(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm((unsigned)child_limit_s()); /* a deadlock ends in SIGALRM */
        after_fork_in_child();
    }
    return pid;
}

/* Child side: _exit with the number of its failed checks (capped). */
static void child_exit(int failures_before)
{
    int n = check_failures - failures_before;
    fflush(stdout);
    fflush(stderr);
    _exit(n > 100 ? 100 : n);
}

/* Parent side: the child's status, killing it (SIGKILL) if it outlives the
 * limit plus a margin (hung before its alarm was set). */
static int wait_child(pid_t pid)
{
    int status = 0;
    double t0 = now_ms();
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, "waitpid: %s\n", strerror(errno));
            return -1;
        }
        if (now_ms() - t0 > (child_limit_s() + 10) * 1000.0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            return status;
        }
        sleep_ms(1);
    }
}

static bool status_ok(int status, const char *what)
{
    if (status == -1) return false;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: child killed by signal %d%s\n", what, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM || WTERMSIG(status) == SIGKILL ? " (hung)" : "");
        return false;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: child exited %d\n", what, WEXITSTATUS(status));
        return false;
    }
    return WIFEXITED(status);
}

static void expect_child_ok(pid_t pid, const char *what)
{
    CHECK(status_ok(wait_child(pid), what));
}

/* ------------------------------------------------------------------------
 * 1. fork in the middle of a scope
 * ---------------------------------------------------------------------- */
TEST_BOTH(fork_mid_scope)
{
    const int n1 = 3, n2 = 10;
    warm_worker();
    samm_enter_scope(); /* depth 1 */
    for (int i = 0; i < n1; i++)
        new_tracked(0);
    samm_enter_scope(); /* depth 2 */
    Obj *kept[10];
    for (int i = 0; i < n2; i++)
        kept[i] = new_tracked(0);
    SAMMStats s_fork;
    samm_get_stats(&s_fork);

    pid_t pid = fork_flushed();
    if (pid == 0) {
        int f0 = check_failures, e0 = errors_total();
        CHECK_EQ(samm_scope_depth(), 2);
        CHECK_EQ(atomic_load(&destroyed), 0);
        /* The child's copies are intact and its scopes clean them. */
        for (int i = 0; i < n2; i++)
            CHECK(kept[i]->magic == MAGIC_LIVE);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(samm_scope_depth(), 1);
        CHECK_EQ(atomic_load(&destroyed), n2);
        /* New scopes and allocations, in the same mode. */
        samm_enter_scope();
        samm_enter_scope();
        Obj *up = new_tracked(0);
        samm_retain_parent(up);
        for (int i = 0; i < 4; i++)
            new_tracked(0);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), n2 + 4);
        CHECK(up->magic == MAGIC_LIVE);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), n2 + 5);
        /* And in the other mode too. */
        samm_set_cleanup_mode(background() ? SAMM_CLEANUP_INLINE : SAMM_CLEANUP_BACKGROUND);
        samm_enter_scope();
        for (int i = 0; i < 7; i++)
            new_tracked(0);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), n2 + 12);
        samm_exit_scope(); /* depth 1: the parent's n1 objects */
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), n2 + 12 + n1);
        CHECK_EQ(samm_scope_depth(), 0);
        SAMMStats s;
        samm_get_stats(&s);
        CHECK_EQ(s.objects_cleaned - s_fork.objects_cleaned, (uint64_t)(n2 + 12 + n1));
        CHECK_EQ(s.objects_freed, s.objects_allocated);
        CHECK_EQ(atomic_load(&bad_magic), 0);
        samm_shutdown();
        CHECK_EQ(errors_total(), e0); /* no leak, no imbalance */
        child_exit(f0);
    }
    expect_child_ok(pid, "fork_mid_scope");
    /* The parent's state is its own. */
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 0);
    CHECK_EQ(samm_scope_depth(), 2);
    for (int i = 0; i < n2; i++)
        CHECK(kept[i]->magic == MAGIC_LIVE);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), n2);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), n2 + n1);
    CHECK_EQ(samm_scope_depth(), 0);
    SAMMStats s;
    samm_get_stats(&s);
    CHECK_EQ(s.objects_cleaned - s_fork.objects_cleaned, (uint64_t)(n2 + n1));
    CHECK_EQ(s.objects_freed, s.objects_allocated);
    CHECK_EQ(atomic_load(&bad_magic), 0);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 2. fork while the worker has batches pending (background mode; in inline
 *    mode the same steps have nothing pending and must work as well).  The
 *    worker is held at a gate until fork has begun, so the batches queued
 *    behind it are still queued when the process is copied.
 * ---------------------------------------------------------------------- */
TEST_BOTH(fork_with_pending_batches)
{
    const int batches = 6, per = 4, ms = 10, total = 1 + batches * per;
    bool bg = background();
    warm_worker();
    SAMMStats s0;
    samm_get_stats(&s0);
    if (!bg) gate_open = 1;
    samm_enter_scope();
    Obj *g = samm_alloc_object(sizeof(Obj));
    REQUIRE(g != NULL);
    g->vtable = gate_vtable;
    g->magic = MAGIC_LIVE;
    samm_track_object(g);
    samm_exit_scope();
    if (bg) {
        pthread_mutex_lock(&gate_lock);
        while (!gate_started)
            pthread_cond_wait(&gate_cv, &gate_lock);
        pthread_mutex_unlock(&gate_lock);
    }
    for (int b = 0; b < batches; b++) {
        samm_enter_scope();
        for (int i = 0; i < per; i++)
            new_tracked(ms);
        samm_exit_scope();
    }
    if (bg)
        CHECK_EQ(atomic_load(&destroyed), 0); /* all held behind the gate */
    else
        CHECK_EQ(atomic_load(&destroyed), total);

    atomic_store(&gate_open_at_fork, bg);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        int f0 = check_failures, e0 = errors_total();
        long at_fork = atomic_load(&destroyed);
        /* Background: the gate's batch finished before the copy (fork
         * waits for the batch in hand), and the worker held the rest from
         * then on: 24 x 10 ms of destructors cannot all have run. */
        if (bg) CHECK(at_fork >= 1 && at_fork < total);
        samm_wait(); /* must not hang; cleans the child's copies of what was pending */
        CHECK_EQ(atomic_load(&destroyed), total);
        SAMMStats s;
        samm_get_stats(&s);
        CHECK_EQ(s.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
        CHECK_EQ(s.cleanup_batches - s0.cleanup_batches, (uint64_t)batches + 1);
        /* More work in the child, still in the inherited mode. */
        samm_enter_scope();
        for (int i = 0; i < 5; i++)
            new_tracked(1);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), total + 5);
        CHECK_EQ(atomic_load(&bad_magic), 0);
        samm_get_stats(&s);
        CHECK_EQ(s.objects_freed, s.objects_allocated);
        samm_shutdown();
        CHECK_EQ(errors_total(), e0);
        child_exit(f0);
    }
    CHECK_EQ(atomic_load(&gate_open_at_fork), 0); /* the handler ran */
    samm_wait();                                  /* the parent's own batches all complete */
    CHECK_EQ(atomic_load(&destroyed), total);
    expect_child_ok(pid, "fork_with_pending_batches");
    SAMMStats s1;
    samm_get_stats(&s1);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
    CHECK_EQ(s1.cleanup_batches - s0.cleanup_batches, (uint64_t)batches + 1);
    CHECK_EQ(atomic_load(&bad_magic), 0);
    /* The parent keeps working after the fork. */
    samm_enter_scope();
    new_tracked(0);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), total + 1);
    samm_get_stats(&s1);
    CHECK_EQ(s1.objects_freed, s1.objects_allocated);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 3. fork from a second thread while the main thread's scopes hold objects,
 *    then the child forks again (a grandchild): libsamm works at every
 *    level.  In the child only the forking thread exists; the main thread's
 *    objects cannot be cleaned there (its scopes are dropped with it).
 * ---------------------------------------------------------------------- */
typedef struct {
    int child_status;
    bool forked;
} ForkerCtx;

static void child_work(int expect_depth_after)
{
    samm_enter_scope();
    for (int i = 0; i < 3; i++)
        new_tracked(0);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(samm_scope_depth(), expect_depth_after);
}

static void *forker_thread(void *arg)
{
    ForkerCtx *c = arg;
    /* This thread has scopes of its own. */
    samm_enter_scope();
    new_tracked(0);
    new_tracked(0);
    pid_t pid = fork_flushed();
    if (pid == 0) {
        int f0 = check_failures, e0 = errors_total(), leaks0 = errors(SAMM_ERR_LEAK);
        /* Only this thread exists here; its scopes are as they were. */
        CHECK_EQ(samm_scope_depth(), 1);
        long d0 = atomic_load(&destroyed);
        child_work(1);
        CHECK_EQ(atomic_load(&destroyed), d0 + 3);
        pid_t g = fork_flushed();
        if (g == 0) {
            int g0 = check_failures, ge = errors_total();
            child_work(1);
            samm_exit_scope();
            samm_wait();
            CHECK_EQ(atomic_load(&destroyed), d0 + 3 + 3 + 2);
            CHECK_EQ(samm_scope_depth(), 0);
            CHECK_EQ(errors_total(), ge);
            samm_shutdown();
            CHECK_EQ(errors(SAMM_ERR_LEAK), leaks0 + 1);
            CHECK_EQ(errors_total(), ge + 1);
            child_exit(g0);
        }
        expect_child_ok(g, "grandchild");
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), d0 + 3 + 2);
        CHECK_EQ(samm_scope_depth(), 0);
        CHECK_EQ(atomic_load(&bad_magic), 0);
        CHECK_EQ(errors_total(), e0);
        /* The main thread's five objects stay behind in the child: its
         * shutdown reports them (one leak report, the 32-byte pool). */
        samm_shutdown();
        CHECK_EQ(errors(SAMM_ERR_LEAK), leaks0 + 1);
        CHECK_EQ(errors_total(), e0 + 1);
        child_exit(f0);
    }
    c->forked = true;
    c->child_status = wait_child(pid);
    samm_exit_scope();
    return NULL;
}

TEST_BOTH(fork_from_thread)
{
    warm_worker();
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        new_tracked(0);
    ForkerCtx c = {0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, forker_thread, &c) == 0);
    pthread_join(th, NULL);
    CHECK(c.forked);
    CHECK(status_ok(c.child_status, "fork_from_thread"));
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 2); /* the forker's own scope */
    CHECK_EQ(samm_scope_depth(), 1);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 7);
    CHECK_EQ(atomic_load(&bad_magic), 0);
    SAMMStats s;
    samm_get_stats(&s);
    CHECK_EQ(s.objects_freed, s.objects_allocated);
    CHECK_EQ(errors_total(), 0);
}

/* ------------------------------------------------------------------------
 * 4. fork while another thread is inside libsamm's error reporting: the
 *    child must not inherit a held lock (each child reports an error and
 *    uses scopes; a hang is cut by alarm).
 * ---------------------------------------------------------------------- */
static atomic_int stop_reporting;
static atomic_long reported;
static void *reporter_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_reporting)) {
        samm_exit_scope(); /* at depth 0: SAMM_ERR_EXIT_AT_GLOBAL, reported */
        atomic_fetch_add(&reported, 1);
    }
    return NULL;
}

TEST_BOTH(fork_while_reporting)
{
    warm_worker();
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reporter_thread, NULL) == 0);
    while (atomic_load(&reported) == 0)
        sleep_ms(1);
    const int forks = scale(40, 8); /* a child under valgrind costs ~0.2 s */
    int failed = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork_flushed();
        if (pid == 0) {
            int f0 = check_failures;
            int e = errors(SAMM_ERR_EXIT_AT_GLOBAL), all = errors_total();
            samm_exit_scope(); /* reports: needs the error path's lock */
            CHECK_EQ(errors(SAMM_ERR_EXIT_AT_GLOBAL), e + 1);
            samm_enter_scope();
            new_tracked(0);
            samm_exit_scope();
            samm_wait();
            CHECK_EQ(atomic_load(&destroyed), 1);
            samm_shutdown();
            CHECK_EQ(errors_total(), all + 1);
            child_exit(f0);
        }
        if (!status_ok(wait_child(pid), "fork_while_reporting")) failed++;
    }
    atomic_store(&stop_reporting, 1);
    pthread_join(th, NULL);
    CHECK_EQ(failed, 0);
    CHECK_EQ(errors(SAMM_ERR_EXIT_AT_GLOBAL), atomic_load(&reported));
    CHECK_EQ(errors_total(), atomic_load(&reported));
    expect_errors((uint64_t)atomic_load(&reported));
}

CHECK_MAIN(setup)
