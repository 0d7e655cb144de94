/* SPDX-License-Identifier: MIT */
/* test_misuse.c - bad input: each misuse is reported with the right code,
 * names the call and the pointer, and leaves everything else intact (no
 * crash, no leak, no live object destroyed).  The numbered cases of issue
 * 9 each have a case here (or in test_pool / test_threads, as noted).
 */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"

typedef struct Obj {
    const dtor_fn *vtable;
    int id;
    int dtor_runs;
    char pad[16];
} Obj;

static atomic_int destroyed;
static void obj_dtor(void *p)
{
    ((Obj *)p)->dtor_runs++;
    atomic_fetch_add(&destroyed, 1);
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static Obj *new_obj(int id)
{
    Obj *o = samm_alloc_object(sizeof *o);
    REQUIRE(o != NULL);
    o->vtable = obj_vtable;
    o->id = id;
    return o;
}

static int dtors(void)
{
    samm_wait();
    return atomic_load(&destroyed);
}

static void setup(void)
{
    capture_on();
}

/* The last error was `code`, from `call`, about `p`. */
static void check_error(SAMMErrorCode code, const char *call, const void *p)
{
    CHECK_EQ(captured.code, code);
    CHECK(strcmp(captured.call, call) == 0);
    CHECK(captured.ptr == p);
}

/* ------------------------------------------------------------------------
 * 1. Tracking twice
 * ---------------------------------------------------------------------- */
/* Issue 9, case 1: tracked in an outer and an inner scope; the inner exit
 * must not free it, so a new allocation cannot take its slot, and the outer
 * exit cleans it once - never an unrelated object. */
TEST_BOTH(double_track_outer_inner)
{
    samm_enter_scope();
    Obj *a = new_obj(1);
    samm_track_object(a);
    samm_enter_scope();
    samm_track_object(a);
    check_error(SAMM_ERR_DOUBLE_TRACK, "samm_track_object", a);
    samm_exit_scope();
    CHECK_EQ(dtors(), 0);
    CHECK_EQ(a->id, 1);  /* alive and intact */
    Obj *b = new_obj(2); /* untracked */
    CHECK(b != a);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1); /* a, once (its memory is gone now) */
    CHECK_EQ(b->dtor_runs, 0);
    samm_free_object(b); /* correct, and silent */
    CHECK_EQ(captured.count, 1);
    expect_errors(1);
}

TEST_BOTH(double_track_same_scope)
{
    samm_enter_scope();
    Obj *a = new_obj(1);
    samm_track_object(a);
    samm_track(a, SAMM_ALLOC_GENERIC);
    check_error(SAMM_ERR_DOUBLE_TRACK, "samm_track", a);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1); /* once */
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_tracked, 1);
    CHECK_EQ(st.objects_freed, 1);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(1);
}

/* A malloc block tracked twice, in one scope and across two: freed once
 * (glibc would abort on the second free()). */
TEST_BOTH(double_track_malloc_block)
{
    samm_enter_scope();
    void *m = malloc(100);
    samm_track(m, SAMM_ALLOC_GENERIC);
    samm_track(m, SAMM_ALLOC_GENERIC);
    check_error(SAMM_ERR_DOUBLE_TRACK, "samm_track", m);
    samm_enter_scope();
    samm_track(m, SAMM_ALLOC_ARRAY);
    check_error(SAMM_ERR_DOUBLE_TRACK, "samm_track", m);
    samm_exit_scope();
    samm_exit_scope();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.foreign_frees, 1);
    expect_errors(2);
}

/* Tracking a block a hook is cleaning, or one freed, is reported. */
TEST_BOTH(track_freed_and_interior)
{
    Obj *b = new_obj(2); /* before a is freed: it would take a's slot */
    Obj *a = new_obj(1);
    samm_free_object(a);
    samm_enter_scope();
    samm_track_object(a);
    check_error(SAMM_ERR_FREED_POINTER, "samm_track_object", a);
    samm_track_object((char *)b + 8);
    check_error(SAMM_ERR_INTERIOR_POINTER, "samm_track_object", (char *)b + 8);
    samm_untrack(a);
    check_error(SAMM_ERR_FREED_POINTER, "samm_untrack", a);
    samm_retain(a, 1);
    check_error(SAMM_ERR_FREED_POINTER, "samm_retain", a);
    samm_exit_scope();
    CHECK_EQ(dtors(), 0); /* nothing was tracked */
    CHECK_EQ(b->id, 2);
    samm_free_object(b);
    expect_errors(4);
}

/* ------------------------------------------------------------------------
 * 2. Interior and garbage pointers
 * ---------------------------------------------------------------------- */
/* Issue 9, case 2: inside a small, a medium and a huge block. */
TEST(interior_pointers)
{
    static const size_t sizes[] = {48, 5000, 100000};
    for (size_t i = 0; i < 3; i++) {
        char *big = samm_alloc_object(sizes[i]);
        REQUIRE(big != NULL);
        memset(big, 7, sizes[i]);
        samm_free_object(big + 16);
        check_error(SAMM_ERR_INTERIOR_POINTER, "samm_free_object", big + 16);
        samm_free_object(big + sizes[i] - 1);
        CHECK_EQ(captured.code, SAMM_ERR_INTERIOR_POINTER);
        CHECK_EQ(big[0] + big[sizes[i] - 1], 14); /* untouched */
        samm_free_object(big);
    }
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, 3);
    CHECK_EQ(st.foreign_frees, 0);
    expect_errors(6);
}

static long static_data[4];

TEST(garbage_pointers)
{
    long on_stack[4];
    void *bad[] = {(void *)0x10,
                   (void *)(uintptr_t)0xdead0000dead0000ull,
                   (void *)(uintptr_t)0x7fffdeadbee0ull,
                   (void *)1,
                   &static_data[1],
                   &on_stack[2],
                   (char *)malloc(64) + 3};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        samm_free_object(bad[i]);
        check_error(SAMM_ERR_FOREIGN_POINTER, "samm_free_object", bad[i]);
        CHECK(strstr(captured.message, "not freed") != NULL);
    }
    free((char *)bad[6] - 3);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.foreign_frees, 0);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(7);
}

/* Garbage tracked into a scope: reported when the scope cleans it, and
 * left alone. */
TEST_BOTH(garbage_tracked)
{
    long on_stack[2] = {1, 2};
    samm_enter_scope();
    samm_track(on_stack, SAMM_ALLOC_GENERIC);
    samm_track(&static_data[0], SAMM_ALLOC_GENERIC);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    CHECK_EQ(on_stack[0] + on_stack[1], 3); /* untouched */
    expect_errors(2);
}

/* ------------------------------------------------------------------------
 * 3. Double free, foreign blocks
 * ---------------------------------------------------------------------- */
TEST(double_free_every_size)
{
    static const size_t sizes[] = {1, 32, 100, 1024, 3000, 16384, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        void *p = samm_alloc_object(sizes[i]);
        samm_free_object(p);
        samm_free_object(p);
        check_error(SAMM_ERR_DOUBLE_FREE, "samm_free_object", p);
        CHECK(is_double_free_message(p));
    }
    void *s = samm_alloc_string();
    samm_free_object(s);
    samm_free_object(s);
    check_error(SAMM_ERR_DOUBLE_FREE, "samm_free_object", s);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.double_free_attempts, 8);
    CHECK_EQ(st.objects_allocated, st.objects_freed);
    expect_errors(8);
}

/* Issue 9, case 4: malloc blocks are freed (never taken for double frees),
 * also after libsamm freed large blocks of its own; and stack, static and
 * misaligned pointers are foreign pointers, not double frees. */
TEST(foreign_malloc_blocks_freed)
{
    enum { N = 200 };
    for (int i = 0; i < N; i++)
        samm_free_object(samm_alloc_object(2000 + (size_t)i * 64));
    for (int i = 0; i < N; i++) {
        void *m = malloc(2000 + (size_t)i * 64);
        REQUIRE(m != NULL);
        samm_free_object(m); /* a leak here is a failure under ASan/Valgrind */
    }
    long on_stack[2];
    samm_free_object(&on_stack[0]);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    samm_free_object(&static_data[2]);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.foreign_frees, N);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(2);
}

/* A destructor that frees its own object: reported, the object is
 * released once. */
static void self_freeing_dtor(void *p)
{
    atomic_fetch_add(&destroyed, 1);
    samm_free_object(p);
}
DTOR_VTABLE(self_freeing_vtable, self_freeing_dtor);

TEST_BOTH(destructor_frees_itself)
{
    samm_enter_scope();
    Obj *o = new_obj(1);
    o->vtable = self_freeing_vtable;
    samm_track_object(o);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    CHECK_EQ(captured.code, SAMM_ERR_NOT_OWNER);
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_freed, 1);
    CHECK_EQ(st.double_free_attempts, 0);
    expect_errors(1);
}

/* After the scope exit, in background mode, the object is the worker's
 * until it is cleaned: freeing it then is reported, not done twice. */
TEST(free_after_scope_exit)
{
    samm_enter_scope();
    Obj *o = new_obj(1);
    samm_track_object(o);
    samm_exit_scope();
    samm_free_object(o); /* inline: already freed */
    check_error(SAMM_ERR_DOUBLE_FREE, "samm_free_object", o);
    CHECK_EQ(dtors(), 1);
    expect_errors(1);
}

/* ------------------------------------------------------------------------
 * 4. Scopes
 * ---------------------------------------------------------------------- */
TEST_BOTH(exit_at_global)
{
    samm_exit_scope();
    check_error(SAMM_ERR_EXIT_AT_GLOBAL, "samm_exit_scope", NULL);
    samm_enter_scope();
    samm_exit_scope();
    samm_exit_scope();
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(samm_scope_depth(), 0);
    expect_errors(2);
}

TEST(bad_type_and_level)
{
    Obj *o = new_obj(1);
    samm_track(o, (SAMMAllocType)256);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    samm_enter_scope();
    samm_track_object(o);
    samm_retain(o, -2);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    samm_exit_scope();
    CHECK_EQ(dtors(), 1);
    expect_errors(2);
}

/* Shutdown reports pooled objects still allocated as leaks, per pool. */
TEST(leak_report_at_shutdown)
{
    void *a = samm_alloc_object(40);
    void *b = samm_alloc_object(40);
    void *c = samm_alloc_object(100000);
    (void)a;
    (void)b;
    (void)c;
    samm_shutdown();
    CHECK_EQ(captured.code, SAMM_ERR_LEAK);
    CHECK_EQ(captured.count, 2); /* the 64-byte pool, the large objects */
    CHECK(strstr(captured.message, "large") != NULL);
    samm_free_object(a);
    samm_free_object(b);
    samm_free_object(c);
    expect_errors(2);
}

CHECK_MAIN(setup)
