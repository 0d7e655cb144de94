/* SPDX-License-Identifier: MIT */
/* test_asan.c - AddressSanitizer reports a use of a pooled block after it
 * was freed or cleaned, like one of a malloc block.  Built twice: in the
 * ASan build (libsamm's hooks compiled in), and in the release build as an
 * instrumented program linked with the uninstrumented release libsamm,
 * which must notice ASan at run time.  Each bad access happens in a child
 * process; the case checks that ASan stopped it and said why.
 */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"

typedef struct Obj {
    const dtor_fn *vtable;
    long payload[5];
} Obj;

static atomic_int destroyed;
static void obj_dtor(void *p)
{
    (void)p;
    atomic_fetch_add(&destroyed, 1);
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static volatile long sink;

/* Runs fn in a child and returns what it wrote to stderr (status in *st). */
static void child(void (*fn)(void), char *out, size_t cap, int *st)
{
    int fd[2];
    REQUIRE(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        alarm(20);
        fn();
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fd[0]);
    REQUIRE(waitpid(pid, st, 0) == pid);
}

/* The child was stopped by ASan for a bad access to poisoned memory. */
static void expect_report(void (*fn)(void))
{
    static char out[65536];
    int st;
    child(fn, out, sizeof out, &st);
    CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    CHECK(strstr(out, "AddressSanitizer") != NULL);
    CHECK(strstr(out, "use-after-poison") != NULL);
    if (check_failures) fprintf(stderr, "child said:\n%s\n", out);
}

static void use_after_free(void)
{
    Obj *o = samm_alloc_object(sizeof *o);
    o->payload[0] = 1;
    samm_free_object(o);
    sink = o->payload[0];
}

static void use_after_scope_exit(void)
{
    samm_enter_scope();
    Obj *o = samm_alloc_object(sizeof *o);
    o->vtable = obj_vtable;
    samm_track_object(o);
    samm_exit_scope();
    samm_wait();
    sink = o->payload[1];
}

static void use_after_free_string(void)
{
    long *s = samm_alloc_string();
    samm_free_object(s);
    sink = s[2];
}

static void use_after_free_huge(void)
{
    long *h = samm_alloc_object(100000);
    h[5000] = 1;
    samm_free_object(h);
    sink = h[5000];
}

/* Fresh slots never handed out are poisoned too. */
static void use_of_unallocated_neighbour(void)
{
    Obj *o = samm_alloc_object(sizeof *o);
    long *q = (long *)o;
    __asm__ volatile("" : "+r"(q)); /* beyond what alloc_size lets GCC see */
    sink = q[8];                    /* the next 64-byte slot, never handed out */
}

TEST_BOTH(use_after_free)
{
    expect_report(use_after_free);
}

TEST_BOTH(use_after_scope_exit)
{
    expect_report(use_after_scope_exit);
}

TEST(use_after_free_string)
{
    expect_report(use_after_free_string);
}

TEST(use_after_free_huge)
{
    expect_report(use_after_free_huge);
}

TEST(use_of_unallocated_neighbour)
{
    expect_report(use_of_unallocated_neighbour);
}

/* Correct use is not reported: a block handed out again is usable. */
TEST_BOTH(no_false_reports)
{
    for (int r = 0; r < 100; r++) {
        samm_enter_scope();
        for (int i = 0; i < 100; i++) {
            Obj *o = samm_alloc(sizeof *o, SAMM_ALLOC_OBJECT);
            o->vtable = obj_vtable;
            memset(o->payload, 0xab, sizeof o->payload);
            long *s = samm_alloc_string();
            s[4] = i;
            samm_track_string(s);
            char *big = samm_alloc(3000 + (size_t)i * 100, SAMM_ALLOC_GENERIC);
            memset(big, 1, 3000 + (size_t)i * 100);
        }
        samm_exit_scope();
    }
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 100 * 100);
}

CHECK_MAIN(NULL)
