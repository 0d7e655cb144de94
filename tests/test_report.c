/* SPDX-License-Identifier: MIT */
/* test_report.c - reports that show where the memory is: samm_report (the
 * tree of every thread's open scopes, and its JSON form), the leak report
 * (on request, at samm_shutdown, at exit without it), allocation sites,
 * the output all of libsamm's text goes to, and tracing.
 *
 * Reports are read back as text: each case captures what libsamm writes
 * (a memory stream, or samm_set_output_fn) and checks exact lines.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"

typedef struct Obj {
    const dtor_fn *vtable;
    long payload[3];
} Obj; /* 32 bytes: pool 0 */

static atomic_int destroyed;
static void obj_dtor(void *p)
{
    (void)p;
    atomic_fetch_add(&destroyed, 1);
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static void *tracked_obj(void)
{
    Obj *o = samm_alloc_object(sizeof *o);
    REQUIRE(o != NULL);
    o->vtable = obj_vtable;
    samm_track_object(o);
    return o;
}

static void setup(void)
{
    capture_on();
}

/* ------------------------------------------------------------------------
 * Capturing text
 * ---------------------------------------------------------------------- */
typedef struct {
    char *text;
    size_t len;
    FILE *f;
} capture;

static void cap_open(capture *c)
{
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    REQUIRE(c->f != NULL);
}

/* Closes the stream: c->text holds everything written. */
static const char *cap_close(capture *c)
{
    fclose(c->f);
    c->f = NULL;
    return c->text ? c->text : "";
}

/* Text sent to samm_set_output_fn, kept whole. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static char out_text[1 << 16];
static size_t out_len;
static atomic_int out_calls;

static void out_fn(const char *text, void *user)
{
    (void)user;
    pthread_mutex_lock(&out_lock);
    size_t n = strlen(text);
    if (out_len + n < sizeof out_text) {
        memcpy(out_text + out_len, text, n + 1);
        out_len += n;
    }
    pthread_mutex_unlock(&out_lock);
    atomic_fetch_add(&out_calls, 1);
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static bool has(const char *text, const char *needle)
{
    if (strstr(text, needle)) return true;
    fprintf(stderr, "missing \"%s\" in:\n%s\n", needle, text);
    return false;
}

static long my_tid(void)
{
    return (long)syscall(SYS_gettid);
}

/* ------------------------------------------------------------------------
 * samm_report: the calling thread
 * ---------------------------------------------------------------------- */
TEST(report_tree_own_thread)
{
    pthread_setname_np(pthread_self(), "main-thread"); /* valgrind renames it */
    samm_enter_scope();
    for (int i = 0; i < 3; i++)
        tracked_obj();
    samm_enter_scope();
    samm_enter_scope();
    for (int i = 0; i < 2; i++) {
        void *s = samm_alloc(40, SAMM_ALLOC_STRING);
        REQUIRE(s != NULL);
    }
    void *g = samm_alloc(100, SAMM_ALLOC_GENERIC); /* a 128-byte slot */
    REQUIRE(g != NULL);
    void *h = samm_alloc(7, (SAMMAllocType)42);
    REQUIRE(h != NULL);

    capture c;
    cap_open(&c);
    samm_report(c.f);
    const char *r = cap_close(&c);
    char line[160];
    snprintf(line, sizeof line,
             "samm: report (pid %ld): 1 thread, 3 open scopes, 7 tracked objects, 336 B\n",
             (long)getpid());
    CHECK(has(r, line));
    snprintf(line, sizeof line,
             "  thread %ld \"main-thread\" (this thread): depth 3, 7 objects, 336 B\n", my_tid());
    CHECK(has(r, line));
    CHECK(has(r, "    depth 0: empty\n"
                 "    depth 1: 3 objects, 96 B\n"
                 "      OBJECT              3  96 B\n"
                 "    depth 2: empty\n"
                 "    depth 3: 4 objects, 240 B\n"
                 "      STRING              2  80 B\n"
                 "      GENERIC             1  128 B\n"
                 "      type 42             1  32 B\n"));
    CHECK(has(r, "  cleanup: inline, 0 batches queued, no worker running\n"));
    samm_exit_scope();
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(captured.count, 0);
    free(c.text);
}

/* Runs of empty depths are one line; the host's pointers are counted but
 * their bytes are not known. */
TEST(report_empty_ranges_and_host_pointers)
{
    for (int d = 1; d <= 10; d++) {
        samm_enter_scope();
        if (d == 3) tracked_obj();
    }
    void *m = malloc(24);
    REQUIRE(m != NULL);
    samm_track(m, SAMM_ALLOC_GENERIC);
    capture c;
    cap_open(&c);
    samm_report(c.f);
    const char *r = cap_close(&c);
    CHECK(has(r, "    depths 0..2: empty\n"
                 "    depth 3: 1 object, 32 B\n"
                 "      OBJECT              1  32 B\n"
                 "    depths 4..9: empty\n"
                 "    depth 10: 1 object, 0 B\n"
                 "      GENERIC             1  0 B\n"
                 "    (1 of the objects are the host's; their bytes are not known)\n"));
    for (int d = 1; d <= 10; d++)
        samm_exit_scope();
    CHECK_EQ(atomic_load(&destroyed), 1);
    free(c.text);
}

/* The JSON form: the same facts, one line, well formed. */
static bool json_balanced(const char *s)
{
    int depth = 0;
    bool in_str = false;
    for (; *s; s++) {
        if (in_str) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == '"')
                in_str = false;
            continue;
        }
        if (*s == '"')
            in_str = true;
        else if (*s == '{' || *s == '[')
            depth++;
        else if (*s == '}' || *s == ']') {
            if (--depth < 0) return false;
        } else if (*s == '\n' && s[1] != '\0')
            return false; /* one line */
    }
    return depth == 0 && !in_str;
}

TEST(report_json)
{
    pthread_setname_np(pthread_self(), "main-thread");
    samm_enter_scope();
    samm_enter_scope();
    tracked_obj();
    tracked_obj();
    capture c;
    cap_open(&c);
    samm_report_json(c.f);
    const char *r = cap_close(&c);
    CHECK(json_balanced(r));
    char head[128];
    snprintf(head, sizeof head,
             "{\"pid\":%ld,\"threads\":[{\"tid\":%ld,\"name\":\"main-thread\",\"self\":true,",
             (long)getpid(), my_tid());
    CHECK(has(r, head));
    CHECK(has(r,
              "\"state\":\"ok\",\"depth\":2,\"objects\":2,\"bytes\":64,\"complete\":true,"
              "\"scopes\":[{\"depth\":2,\"objects\":2,\"bytes\":64,\"types\":[{\"type\":\"OBJECT\","
              "\"code\":1,\"count\":2,\"bytes\":64}]}]}]"));
    CHECK(has(r, "\"queued_batches\":0,"));
    samm_exit_scope();
    samm_exit_scope();
    free(c.text);
}

/* ------------------------------------------------------------------------
 * samm_report: other threads
 * ---------------------------------------------------------------------- */
static atomic_int phase;
static atomic_long other_tid;

/* Holds five objects at depth 1 and passes scope boundaries until told. */
static void *looper(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "looper");
    atomic_store(&other_tid, my_tid());
    samm_enter_scope();
    for (int i = 0; i < 5; i++)
        tracked_obj();
    atomic_store(&phase, 1);
    while (atomic_load(&phase) < 2) {
        samm_enter_scope();
        samm_exit_scope();
        sleep_ms(1);
    }
    samm_exit_scope();
    return NULL;
}

TEST(report_other_thread)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, looper, NULL) == 0);
    while (atomic_load(&phase) < 1)
        sleep_ms(1);
    setenv("SAMM_REPORT_WAIT_MS", "20000", 1); /* the looper answers well before */
    capture c;
    cap_open(&c);
    samm_report(c.f);
    const char *r = cap_close(&c);
    /* The looper answers at a scope entry (depth 1) or exit (depth 2). */
    char line[160];
    snprintf(line, sizeof line, "  thread %ld \"looper\": depth ", atomic_load(&other_tid));
    CHECK(has(r, line));
    CHECK(has(r, "\"looper\": depth 1, 5 objects, 160 B\n"
                 "    depth 0: empty\n"
                 "    depth 1: 5 objects, 160 B\n"
                 "      OBJECT              5  160 B\n") ||
          has(r, "\"looper\": depth 2, 5 objects, 160 B\n"
                 "    depth 0: empty\n"
                 "    depth 1: 5 objects, 160 B\n"
                 "      OBJECT              5  160 B\n"
                 "    depth 2: empty\n"));
    CHECK(has(r, " open scope, 5 tracked objects, 160 B\n"));
    atomic_store(&phase, 2);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&destroyed), 5);
    unsetenv("SAMM_REPORT_WAIT_MS");
    free(c.text);
}

/* A thread that passes no scope boundary is reported busy after the wait;
 * it is not disturbed, and answers nothing late. */
static pthread_mutex_t park_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t park_cv = PTHREAD_COND_INITIALIZER;
static bool parked, unpark;

static void *parker(void *arg)
{
    (void)arg;
    atomic_store(&other_tid, my_tid());
    samm_enter_scope();
    for (int i = 0; i < 4; i++)
        tracked_obj();
    pthread_mutex_lock(&park_lock);
    parked = true;
    pthread_cond_broadcast(&park_cv);
    while (!unpark)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    /* Requests were withdrawn: these run as usual. */
    samm_enter_scope();
    tracked_obj();
    samm_exit_scope();
    samm_exit_scope();
    return NULL;
}

TEST(report_busy_thread)
{
    setenv("SAMM_REPORT_WAIT_MS", "30", 1);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, parker, NULL) == 0);
    pthread_mutex_lock(&park_lock);
    while (!parked)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    capture c;
    cap_open(&c);
    samm_report(c.f);
    samm_report_json(c.f);
    const char *r = cap_close(&c);
    char line[160];
    snprintf(line, sizeof line, "  thread %ld: busy - passed no scope entry or exit within 30 ms\n",
             atomic_load(&other_tid));
    CHECK(has(r, line));
    snprintf(line, sizeof line, "{\"tid\":%ld,\"name\":\"\",\"self\":false,\"state\":\"busy\"}",
             atomic_load(&other_tid));
    CHECK(has(r, line));
    pthread_mutex_lock(&park_lock);
    unpark = true;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_lock);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&destroyed), 5);
    CHECK_EQ(captured.count, 0);
    unsetenv("SAMM_REPORT_WAIT_MS");
    free(c.text);
}

/* Reports from two threads at once, while a third passes boundaries. */
static void *reporter(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++) {
        capture c;
        cap_open(&c);
        samm_report(c.f);
        const char *r = cap_close(&c);
        /* It answers at a scope entry or exit: depth 1 or 2. */
        if (!strstr(r, "\"looper\": depth 1, 5 objects") &&
            !strstr(r, "\"looper\": depth 2, 5 objects")) {
            atomic_fetch_add(&phase, 100);
            fprintf(stderr, "MISS len=%zu [%s]\n", strlen(r), r);
        }
        free(c.text);
    }
    return NULL;
}

TEST(report_concurrent)
{
    setenv("SAMM_REPORT_WAIT_MS", "20000", 1);
    pthread_t loop, rep[2];
    REQUIRE(pthread_create(&loop, NULL, looper, NULL) == 0);
    while (atomic_load(&phase) < 1)
        sleep_ms(1);
    for (int i = 0; i < 2; i++)
        REQUIRE(pthread_create(&rep[i], NULL, reporter, NULL) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(rep[i], NULL);
    CHECK_EQ(atomic_load(&phase), 1); /* every report found the looper */
    atomic_store(&phase, 2);
    pthread_join(loop, NULL);
    CHECK_EQ(atomic_load(&destroyed), 5);
    unsetenv("SAMM_REPORT_WAIT_MS");
}

/* ------------------------------------------------------------------------
 * Leaks
 * ---------------------------------------------------------------------- */
TEST(leaks_on_request)
{
    void *keep[3];
    for (int i = 0; i < 3; i++)
        REQUIRE((keep[i] = samm_alloc_object(32)) != NULL);
    void *big = samm_alloc_object(50000);
    REQUIRE(big != NULL);
    samm_enter_scope();
    tracked_obj(); /* tracked: not a leak */
    capture c;
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 4);
    const char *r = cap_close(&c);
    CHECK(has(r, "samm: leak report (on request): 4 blocks (48.9 KiB) allocated and never tracked "
                 "or freed\n"));
    CHECK(has(r, "       1 block  of 50000 B (48.8 KiB) at an unrecorded site\n"));
    CHECK(has(r, "       3 blocks of 32 B (96 B) at an unrecorded site\n"));
    CHECK(has(r, "  this thread has 1 scope open: what they hold is not a leak"));
    free(c.text);
    samm_exit_scope();
    for (int i = 0; i < 3; i++)
        samm_free_object(keep[i]);
    samm_free_object(big);
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 0);
    r = cap_close(&c);
    CHECK(has(r, "samm: leak report (on request): no leaks"));
    free(c.text);
}

/* Blocks of a thread still running are its own: neither the report nor
 * samm_shutdown calls them leaks (issue 12: they used to be). */
static void *holder(void *arg)
{
    (void)arg;
    samm_enter_scope();
    for (int i = 0; i < 4; i++)
        tracked_obj();
    void *loose = samm_alloc_object(64); /* untracked, held */
    REQUIRE(loose != NULL);
    pthread_mutex_lock(&park_lock);
    parked = true;
    pthread_cond_broadcast(&park_cv);
    while (!unpark)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    samm_free_object(loose);
    samm_exit_scope();
    return NULL;
}

TEST(leaks_not_other_threads)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, holder, NULL) == 0);
    pthread_mutex_lock(&park_lock);
    while (!parked)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    capture c;
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 0);
    const char *r = cap_close(&c);
    CHECK(has(r, "no leaks"));
    CHECK(has(r, "  1 other thread is still running: its blocks are not examined\n"));
    free(c.text);
    samm_shutdown();
    CHECK_EQ(captured.count, 0); /* no SAMM_ERR_LEAK for the holder's blocks */
    pthread_mutex_lock(&park_lock);
    unpark = true;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_lock);
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&destroyed), 4);
}

/* An ended thread's untracked blocks are leaks; samm_shutdown reports
 * them, one error per pool. */
static void *leaker(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2; i++)
        REQUIRE(samm_alloc_object(100) != NULL);
    return NULL;
}

TEST(leaks_of_ended_threads)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, leaker, NULL) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(samm_report_leaks(NULL), 2);
    samm_shutdown();
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_LEAK);
    CHECK(has(captured.message,
              "leak: 2 objects (256 bytes) still in use in the 128-byte object pool"));
    expect_errors(1);
}

/* ------------------------------------------------------------------------
 * Allocation sites
 * ---------------------------------------------------------------------- */
void *volatile leak_sink[16];
void leak_site_alpha(int i);
void leak_site_beta(int i);
void leak_site_gamma(int i);

/* Exported (the test is linked with -rdynamic) and not tail calls, so the
 * site is inside these functions and dladdr names them. */
__attribute__((noinline)) void leak_site_alpha(int i)
{
    leak_sink[i] = samm_alloc_object(32);
    REQUIRE(leak_sink[i] != NULL);
}

__attribute__((noinline)) void leak_site_beta(int i)
{
    leak_sink[i] = samm_alloc_object(32);
    REQUIRE(leak_sink[i] != NULL);
}

__attribute__((noinline)) void leak_site_gamma(int i)
{
    leak_sink[i] = samm_alloc_string();
    REQUIRE(leak_sink[i] != NULL);
}

static void free_sinks(void)
{
    for (int i = 0; i < 16; i++) {
        samm_free_object(leak_sink[i]);
        leak_sink[i] = NULL;
    }
}

/* Finds the group line of `fn` and returns its block count, or -1. */
static int group_count(const char *report, const char *fn)
{
    const char *at = strstr(report, fn);
    if (at == NULL) return -1;
    const char *line = at;
    while (line > report && line[-1] != '\n')
        line--;
    return atoi(line);
}

TEST(leaks_by_site)
{
    CHECK_EQ(samm_set_sites(1), 0);
    for (int i = 0; i < 2; i++)
        leak_site_alpha(i);
    for (int i = 2; i < 5; i++)
        leak_site_beta(i);
    leak_site_gamma(5);
    capture c;
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 6);
    const char *r = cap_close(&c);
    CHECK_EQ(group_count(r, "at leak_site_alpha+0x"), 2);
    CHECK_EQ(group_count(r, "at leak_site_beta+0x"), 3);
    CHECK_EQ(group_count(r, "at leak_site_gamma+0x"), 1);
    CHECK(has(r, "B) at leak_site_beta+0x")); /* largest group first */
    CHECK(strstr(r, "leak_site_beta") < strstr(r, "leak_site_alpha"));
    CHECK(has(r, "(test_report)\n"));
    CHECK(strstr(r, "unrecorded") == NULL);
    free(c.text);
    free_sinks();
    CHECK_EQ(samm_set_sites(0), 1);
}

/* Blocks allocated while sites are off show no site, also after they are
 * switched on, and switching off forgets them: never a stale site. */
TEST(sites_never_stale)
{
    leak_site_alpha(0); /* off: no site */
    samm_set_sites(1);
    leak_site_beta(1);
    samm_set_sites(0);
    leak_site_alpha(2); /* off again, maybe in beta's old slot */
    capture c;
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 3);
    const char *r = cap_close(&c);
    CHECK(has(r, "3 blocks of 32 B (96 B) at an unrecorded site"));
    free(c.text);
    samm_free_object(leak_sink[1]);
    samm_set_sites(1);
    leak_site_beta(1); /* on: recorded */
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 3);
    r = cap_close(&c);
    CHECK_EQ(group_count(r, "at an unrecorded site"), 2);
    CHECK_EQ(group_count(r, "at leak_site_beta+0x"), 1);
    free(c.text);
    free_sinks();
    samm_set_sites(0);
}

/* Another thread records from its next slow path on: its leaks, once it
 * has ended, carry their site. */
static void *site_thread(void *arg)
{
    (void)arg;
    samm_enter_scope(); /* a context, before sites are on */
    samm_exit_scope();
    pthread_mutex_lock(&park_lock);
    parked = true;
    pthread_cond_broadcast(&park_cv);
    while (!unpark)
        pthread_cond_wait(&park_cv, &park_lock);
    pthread_mutex_unlock(&park_lock);
    samm_enter_scope(); /* sees the switch */
    samm_exit_scope();
    leak_site_gamma(7);
    leak_site_gamma(8);
    return NULL;
}

TEST(sites_other_thread)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, site_thread, NULL) == 0);
    pthread_mutex_lock(&park_lock);
    while (!parked)
        pthread_cond_wait(&park_cv, &park_lock);
    samm_set_sites(1);
    unpark = true;
    pthread_cond_broadcast(&park_cv);
    pthread_mutex_unlock(&park_lock);
    pthread_join(th, NULL);
    capture c;
    cap_open(&c);
    CHECK_EQ(samm_report_leaks(c.f), 2);
    const char *r = cap_close(&c);
    CHECK_EQ(group_count(r, "at leak_site_gamma+0x"), 2);
    free(c.text);
    free_sinks();
    samm_set_sites(0);
}

/* ------------------------------------------------------------------------
 * Reports at exit, without samm_shutdown: run in a child process that
 * writes its output into a pipe.
 * ---------------------------------------------------------------------- */
typedef void (*child_fn)(void);

/* Runs fn in a child with `var`=1 set before libsamm starts again; returns
 * what the child wrote to the output, and checks that it exited with 0. */
static char *run_child(const char *var, child_fn fn)
{
    int st = -1;
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        alarm(60);
        samm_shutdown(); /* the parent's state; then start as a new program would */
        samm_set_error_handler(NULL, NULL);
        setenv(var, "1", 1);
        samm_init();
        FILE *out = fdopen(fds[1], "w");
        if (out == NULL) _exit(90);
        samm_set_output(out);
        fn();
        exit(0); /* atexit handlers run: the reports */
    }
    close(fds[1]);
    static char buf[1 << 15];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    close(fds[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return buf;
}

static void leak_two_and_exit(void)
{
    samm_enter_scope();
    tracked_obj(); /* open at exit: not a leak */
    leak_sink[0] = samm_alloc_object(32);
    leak_sink[1] = samm_alloc_object(32);
}

TEST(leaks_at_exit)
{
    const char *out = run_child("SAMM_LEAKS", leak_two_and_exit);
    CHECK(has(out,
              "samm: leak report (at exit): 2 blocks (64 B) allocated and never tracked or freed\n"
              "       2 blocks of 32 B (64 B) at an unrecorded site\n"));
    CHECK(has(out, "  this thread has 1 scope open: what they hold is not a leak"));
    CHECK_EQ(count_lines_with(out, "samm: leak report"), 1);
    CHECK(strstr(out, "samm: statistics") == NULL);
}

static void sites_leak_and_exit(void)
{
    leak_site_alpha(0);
    leak_site_beta(1);
    leak_site_beta(2);
}

TEST(leaks_at_exit_by_site)
{
    setenv("SAMM_SITES", "1", 1);
    const char *out = run_child("SAMM_LEAKS", sites_leak_and_exit);
    unsetenv("SAMM_SITES");
    CHECK(has(out, "samm: leak report (at exit): 3 blocks (96 B)"));
    CHECK_EQ(group_count(out, "at leak_site_beta+0x"), 2);
    CHECK_EQ(group_count(out, "at leak_site_alpha+0x"), 1);
}

static void clean_exit(void)
{
    samm_enter_scope();
    tracked_obj();
    samm_exit_scope();
}

TEST(stats_at_exit)
{
    const char *out = run_child("SAMM_STATS", clean_exit);
    CHECK(has(out, "samm: statistics\n"));
    CHECK(has(out, "  objects tracked / cleaned 1 / 1\n"));
    CHECK(strstr(out, "leak report") == NULL);
}

/* After samm_shutdown, exit prints nothing more: shutdown reported. */
static void shutdown_then_exit(void)
{
    leak_sink[0] = samm_alloc_object(32);
    samm_shutdown();
}

TEST(no_exit_report_after_shutdown)
{
    const char *out = run_child("SAMM_LEAKS", shutdown_then_exit);
    CHECK(has(out, "samm: leak: 1 objects (32 bytes) still in use in the 32-byte object pool in "
                   "samm_shutdown\n"));
    CHECK(has(out, "samm: leak report (at samm_shutdown): 1 block (32 B)"));
    CHECK(strstr(out, "(at exit)") == NULL);
}

/* ------------------------------------------------------------------------
 * Output, tracing and the error handler
 * ---------------------------------------------------------------------- */
TEST(output_fn_gets_every_text)
{
    samm_set_error_handler(NULL, NULL); /* the default printer */
    samm_set_output_fn(out_fn, NULL);
    samm_exit_scope(); /* at depth 0: reported */
    samm_print_stats();
    samm_report(NULL);
    samm_report_leaks(NULL);
    samm_set_output_fn(NULL, NULL);
    samm_set_output(stderr);
    pthread_mutex_lock(&out_lock);
    CHECK(has(
        out_text,
        "samm: exit at depth 0 (the global scope cannot be exited); ignored in samm_exit_scope\n"));
    CHECK(has(out_text, "samm: statistics\n"));
    CHECK(has(out_text, "samm: report (pid"));
    CHECK(has(out_text, "samm: leak report (on request): no leaks"));
    pthread_mutex_unlock(&out_lock);
    CHECK_EQ(atomic_load(&out_calls), 4); /* each text whole, in one call */
    expect_errors(1);
}

/* Every scope entry and exit is traced, also those the fast paths would
 * take (a depth used before, an empty scope), on every thread. */
static atomic_int warm;
static void *traced_thread(void *arg)
{
    (void)arg;
    samm_enter_scope();
    samm_exit_scope(); /* fast paths warm */
    atomic_store(&warm, 1);
    while (atomic_load(&phase) < 1)
        sleep_ms(1);
    for (int i = 0; i < 3; i++) {
        samm_enter_scope();
        samm_exit_scope();
    }
    return NULL;
}

TEST(trace_every_boundary)
{
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, traced_thread, NULL) == 0);
    while (!atomic_load(&warm))
        sleep_ms(1);
    for (int i = 0; i < 3; i++) {
        samm_enter_scope();
        samm_exit_scope(); /* warm: these would be fast */
    }
    samm_set_output_fn(out_fn, NULL);
    samm_set_trace(1);
    atomic_store(&phase, 1);
    for (int i = 0; i < 5; i++) {
        samm_enter_scope();
        samm_exit_scope();
    }
    pthread_join(th, NULL);
    samm_set_trace(0);
    samm_enter_scope();
    samm_exit_scope(); /* not traced */
    samm_set_output_fn(NULL, NULL);
    pthread_mutex_lock(&out_lock);
    CHECK_EQ(count_lines_with(out_text, "enter scope, depth 1\n"), 8);
    CHECK_EQ(count_lines_with(out_text, "exit scope, depth 1\n"), 8);
    pthread_mutex_unlock(&out_lock);
}

/* A handler that makes another error is not entered again: the second
 * error goes to the default printer. */
static atomic_int handler_calls;
static void nesting_handler(const SAMMError *e, void *user)
{
    (void)e;
    (void)user;
    atomic_fetch_add(&handler_calls, 1);
    samm_exit_scope(); /* at depth 0 again */
}

TEST(handler_not_reentered)
{
    samm_set_error_handler(nesting_handler, NULL);
    samm_set_output_fn(out_fn, NULL);
    samm_exit_scope();
    samm_set_output_fn(NULL, NULL);
    samm_set_error_handler(NULL, NULL);
    CHECK_EQ(atomic_load(&handler_calls), 1);
    pthread_mutex_lock(&out_lock);
    CHECK_EQ(count_lines_with(out_text, "samm: exit at depth 0"), 1);
    pthread_mutex_unlock(&out_lock);
    expect_errors(2);
}

CHECK_MAIN(setup)
