/* test_fork.c - fork() with libsamm in use: the child gets a working SAMM
 * (its scopes clean its copies, samm_wait does not hang, new scopes work,
 * the worker restarts), and the parent's state is untouched.  Also fork
 * while the background worker has batches pending.
 *
 * Each child runs its checks with CHECK, then exits with the number of
 * checks that failed in it (a hang is cut by alarm(10): SIGALRM).  The
 * parent waits for it and fails unless it exited 0.
 *
 * ThreadSanitizer: forking a process that has threads (the cleanup worker)
 * and then starting a thread in the child (the child's worker) makes TSan
 * abort the child unless die_after_fork=0; this file sets that default
 * itself (__tsan_default_options), TSAN_OPTIONS can still override it.
 * GCC's libtsan needs one more step, see after_fork_in_child().
 */
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
#include "samm.h"

#if SAMM_TEST_TSAN
/* Exported (the build hides symbols by default) so the TSan runtime sees it. */
__attribute__((visibility("default"))) const char *__tsan_default_options(void);
__attribute__((visibility("default"))) const char *__tsan_default_options(void)
{
    return "die_after_fork=0";
}
#endif

/* ------------------------------------------------------------------------
 * Objects: counted destructors; `gen` tells parent-made from child-made.
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

static void reset_counts(void)
{
    samm_wait();
    atomic_store(&destroyed, 0);
    atomic_store(&bad_magic, 0);
}

/* Starts the worker (background mode) so that the fork below happens in a
 * process with two threads, the case that matters. */
static void warm_worker(void)
{
    samm_enter_scope();
    new_tracked(0);
    samm_exit_scope();
    samm_wait();
}

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

static pid_t fork_flushed(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) after_fork_in_child();
    return pid;
}

/* Child side: exit with the number of its failed checks (capped). */
static void child_exit(int failures_before)
{
    int n = check_failures - failures_before;
    fflush(stdout);
    fflush(stderr);
    _exit(n > 100 ? 100 : n);
}

static void expect_child_ok(pid_t pid, const char *what)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0);
    CHECK_EQ(r, pid);
    if (WIFSIGNALED(status))
        fprintf(stderr, "%s: child killed by signal %d%s\n", what, WTERMSIG(status),
                WTERMSIG(status) == SIGALRM ? " (hung: alarm)" : "");
    else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        fprintf(stderr, "%s: child exited %d\n", what, WEXITSTATUS(status));
    CHECK(WIFEXITED(status));
    CHECK_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
}

/* ------------------------------------------------------------------------
 * 1. fork in the middle of a scope
 * ---------------------------------------------------------------------- */
static void test_fork_mid_scope(void)
{
    const int n1 = 3, n2 = 10;
    if (atomic_load(&g_mode) == SAMM_CLEANUP_BACKGROUND) warm_worker();
    reset_counts();
    int e0 = errors_total();
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
        int f0 = check_failures;
        alarm(10);
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
        set_mode(!atomic_load(&g_mode));
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
        CHECK_EQ(atomic_load(&bad_magic), 0);
        CHECK_EQ(errors_total(), e0);
        samm_shutdown();
        CHECK_EQ(errors_total(), e0);
        child_exit(f0);
    }
    expect_child_ok(pid, "test_fork_mid_scope");
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
    CHECK_EQ(atomic_load(&bad_magic), 0);
    CHECK_EQ(errors_total(), e0);
}

/* ------------------------------------------------------------------------
 * 2. fork while the worker has batches pending (background mode; in inline
 *    mode the same steps have nothing pending and must work as well)
 * ---------------------------------------------------------------------- */
static void test_fork_with_pending_batches(void)
{
    const int batches = 6, per = 4, ms = 5, total = batches * per;
    bool bg = atomic_load(&g_mode) == SAMM_CLEANUP_BACKGROUND;
    if (bg) warm_worker();
    reset_counts();
    int e0 = errors_total();
    SAMMStats s0;
    samm_get_stats(&s0);
    for (int b = 0; b < batches; b++) {
        samm_enter_scope();
        for (int i = 0; i < per; i++)
            new_tracked(ms);
        samm_exit_scope();
    }
    long at_fork = atomic_load(&destroyed);
    if (bg)
        CHECK(at_fork < total); /* 120 ms of destructors: still pending */
    else
        CHECK_EQ(at_fork, total);

    pid_t pid = fork_flushed();
    if (pid == 0) {
        int f0 = check_failures;
        alarm(10);
        double t0 = now_ms();
        samm_wait(); /* must not hang; cleans the child's copies of what was pending */
        CHECK(now_ms() - t0 < 5000.0);
        CHECK_EQ(atomic_load(&destroyed), total);
        SAMMStats s;
        samm_get_stats(&s);
        CHECK_EQ(s.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
        /* More work in the child, still in the inherited mode. */
        samm_enter_scope();
        for (int i = 0; i < 5; i++)
            new_tracked(1);
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), total + 5);
        CHECK_EQ(atomic_load(&bad_magic), 0);
        CHECK_EQ(errors_total(), e0);
        samm_shutdown();
        child_exit(f0);
    }
    samm_wait(); /* the parent's own batches all complete */
    CHECK_EQ(atomic_load(&destroyed), total);
    expect_child_ok(pid, "test_fork_with_pending_batches");
    SAMMStats s1;
    samm_get_stats(&s1);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)total);
    CHECK_EQ(s1.cleanup_batches - s0.cleanup_batches, (uint64_t)batches);
    CHECK_EQ(atomic_load(&bad_magic), 0);
    CHECK_EQ(errors_total(), e0);
    /* The parent keeps working after the fork. */
    samm_enter_scope();
    new_tracked(0);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), total + 1);
}

/* ------------------------------------------------------------------------
 * 3. fork from a second thread while the main thread's scopes hold objects,
 *    then the child forks again (a grandchild): SAMM works at every level.
 * ---------------------------------------------------------------------- */
typedef struct {
    int child_status;
    bool forked;
} ForkerCtx;

static void grandchild_or_child_work(int expect_depth_after)
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
        int f0 = check_failures;
        alarm(10);
        /* Only this thread exists here; its scopes are as they were. */
        CHECK_EQ(samm_scope_depth(), 1);
        long d0 = atomic_load(&destroyed);
        grandchild_or_child_work(1);
        CHECK_EQ(atomic_load(&destroyed), d0 + 3);
        pid_t g = fork_flushed();
        if (g == 0) {
            int g0 = check_failures;
            alarm(10);
            grandchild_or_child_work(1);
            samm_exit_scope();
            samm_wait();
            CHECK_EQ(atomic_load(&destroyed), d0 + 3 + 3 + 2);
            samm_shutdown();
            child_exit(g0);
        }
        expect_child_ok(g, "grandchild");
        samm_exit_scope();
        samm_wait();
        CHECK_EQ(atomic_load(&destroyed), d0 + 3 + 2);
        CHECK_EQ(samm_scope_depth(), 0);
        CHECK_EQ(atomic_load(&bad_magic), 0);
        samm_shutdown();
        child_exit(f0);
    }
    c->forked = true;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
    }
    c->child_status = status;
    samm_exit_scope();
    return NULL;
}

static void test_fork_from_thread(void)
{
    if (atomic_load(&g_mode) == SAMM_CLEANUP_BACKGROUND) warm_worker();
    reset_counts();
    int e0 = errors_total();
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        new_tracked(0);
    ForkerCtx c = {0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, forker_thread, &c) == 0);
    pthread_join(th, NULL);
    CHECK(c.forked);
    if (WIFSIGNALED(c.child_status))
        fprintf(stderr, "test_fork_from_thread: child killed by signal %d\n",
                WTERMSIG(c.child_status));
    CHECK(WIFEXITED(c.child_status));
    CHECK_EQ(WIFEXITED(c.child_status) ? WEXITSTATUS(c.child_status) : -1, 0);
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 2); /* the forker's own scope */
    CHECK_EQ(samm_scope_depth(), 1);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 7);
    CHECK_EQ(atomic_load(&bad_magic), 0);
    CHECK_EQ(errors_total(), e0);
}

/* ------------------------------------------------------------------------
 * 4. fork while another thread is inside libsamm's error reporting: the
 *    child must not inherit a held lock (each child reports an error and
 *    uses scopes; a hang is cut by alarm).
 * ---------------------------------------------------------------------- */
static atomic_int stop_reporting;
static void *reporter_thread(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_reporting))
        samm_exit_scope(); /* at depth 0: SAMM_ERR_EXIT_AT_GLOBAL, reported */
    return NULL;
}

static void test_fork_while_reporting(void)
{
    if (atomic_load(&g_mode) == SAMM_CLEANUP_BACKGROUND) warm_worker();
    reset_counts();
    atomic_store(&stop_reporting, 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reporter_thread, NULL) == 0);
    const int forks = scale(60, 8); /* a child under valgrind costs ~0.2 s */
    int hung = 0, failed = 0;
    for (int i = 0; i < forks && hung == 0; i++) {
        pid_t pid = fork_flushed();
        if (pid == 0) {
            int f0 = check_failures;
            alarm(2);
            int e = errors_total();
            samm_exit_scope(); /* reports: needs the error path's lock */
            CHECK_EQ(errors_total(), e + 1);
            samm_enter_scope();
            new_tracked(0);
            samm_exit_scope();
            samm_wait();
            CHECK_EQ(atomic_load(&destroyed), 1);
            samm_shutdown();
            child_exit(f0);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0) {
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            hung++;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    atomic_store(&stop_reporting, 1);
    pthread_join(th, NULL);
    if (hung) fprintf(stderr, "test_fork_while_reporting: a child hung (deadlock after fork)\n");
    CHECK_EQ(hung, 0);
    CHECK_EQ(failed, 0);
}

int main(void)
{
    double t0 = suite_begin(count_error);
    RUN_BOTH(test_fork_mid_scope);
    RUN_BOTH(test_fork_with_pending_batches);
    RUN_BOTH(test_fork_from_thread);
    RUN_BOTH(test_fork_while_reporting);
    return suite_end("test_fork", t0);
}
