/* SPDX-License-Identifier: MIT */
/* test_scope.c - the scope-storage ABI (samm_scope.h): growth, detach,
 * reset, remove (swap-with-last, hash index), depth and thread
 * independence, errors, all-or-nothing adds when memory runs out, and the
 * ABI's frames staying apart from the core's scopes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h" /* samm__fail_after / samm__fail_reset only */
#include "samm_scope.h"

/* ------------------------------------------------------------------------
 * Fixtures: entry i is P(i) with type i % 256 and size class (i * 7) % 256,
 * so an entry's type and size class can be checked from its pointer.
 * ---------------------------------------------------------------------- */
static void *P(size_t i)
{
    return (void *)(uintptr_t)(0x1000 + i * 16);
}

static size_t id_of(const void *p)
{
    return ((uintptr_t)p - 0x1000) / 16;
}

static void add(int depth, size_t i)
{
    samm_scope_add(depth, P(i), (uint8_t)i, (uint8_t)(i * 7));
}

static void fill(int depth, size_t n)
{
    for (size_t i = 0; i < n; i++)
        add(depth, i);
}

static void free3(void **p, uint8_t *t, uint8_t *s)
{
    free(p);
    free(t);
    free(s);
}

/* Detaches `depth` and checks it holds exactly the ids want[0..n-1] in
 * that order, each with its own type and size class. */
static void expect_order(int depth, const size_t *want, size_t n)
{
    void **ptrs = NULL;
    uint8_t *types = NULL, *sc = NULL;
    size_t count = 12345;
    bool got = samm_scope_detach(depth, &ptrs, &types, &sc, &count);
    CHECK_EQ(got, n > 0);
    if (!got) {
        CHECK_EQ(count, 12345); /* nothing written */
        CHECK(ptrs == NULL && types == NULL && sc == NULL);
        return;
    }
    CHECK_EQ(count, n);
    size_t bad = 0;
    for (size_t i = 0; i < count && i < n; i++)
        if (ptrs[i] != P(want[i]) || types[i] != (uint8_t)want[i] ||
            sc[i] != (uint8_t)(want[i] * 7))
            bad++;
    CHECK_EQ(bad, 0);
    free3(ptrs, types, sc);
}

/* Detaches `depth` and checks it holds exactly P(0..n-1) in order. */
static void expect_sequence(int depth, size_t n)
{
    void **ptrs = NULL;
    uint8_t *types = NULL, *sc = NULL;
    size_t count = 12345;
    bool got = samm_scope_detach(depth, &ptrs, &types, &sc, &count);
    CHECK_EQ(got, n > 0);
    if (!got) {
        CHECK_EQ(count, 12345);
        return;
    }
    CHECK_EQ(count, n);
    size_t bad = 0;
    for (size_t i = 0; i < count; i++)
        if (ptrs[i] != P(i) || types[i] != (uint8_t)i || sc[i] != (uint8_t)(i * 7)) bad++;
    CHECK_EQ(bad, 0);
    free3(ptrs, types, sc);
}

/* Detaches and checks the frame holds exactly the multiset of ids `want`
 * (any order), each entry with its own type and size class. */
static void expect_set(int depth, const size_t *want, size_t n)
{
    void **ptrs = NULL;
    uint8_t *types = NULL, *sc = NULL;
    size_t count = 0;
    bool got = samm_scope_detach(depth, &ptrs, &types, &sc, &count);
    CHECK_EQ(got, n > 0);
    if (!got) return;
    CHECK_EQ(count, n);
    /* Count per id: ids are small in every caller. */
    size_t maxid = 0;
    for (size_t j = 0; j < n; j++)
        if (want[j] > maxid) maxid = want[j];
    int *tally = calloc(maxid + 1, sizeof *tally);
    REQUIRE(tally != NULL);
    for (size_t j = 0; j < n; j++)
        tally[want[j]]++;
    size_t unexpected = 0, mismatched = 0;
    for (size_t i = 0; i < count; i++) {
        size_t id = id_of(ptrs[i]);
        if (id > maxid || tally[id] == 0) {
            unexpected++;
            continue;
        }
        tally[id]--;
        if (types[i] != (uint8_t)id || sc[i] != (uint8_t)(id * 7)) mismatched++;
    }
    CHECK_EQ(unexpected, 0);
    CHECK_EQ(mismatched, 0);
    free(tally);
    free3(ptrs, types, sc);
}

static void setup(void)
{
    capture_on();
}

/* ------------------------------------------------------------------------
 * Growth, detach, reset
 * ---------------------------------------------------------------------- */
TEST(ensure_init_idempotent)
{
    samm_shutdown();
    samm_scope_ensure_init();
    samm_scope_ensure_init();
    fill(2, 5);
    expect_sequence(2, 5);
    CHECK_EQ(captured.count, 0);
}

/* Growth across the initial capacity and far beyond keeps every entry, in
 * order, with its type and size class; after detach the frame is empty and
 * takes entries again. */
TEST(growth_keeps_contents)
{
    static const size_t sizes[] = {0, 1, 31, 32, 33, 1000000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        fill(1, sizes[k]);
        expect_sequence(1, sizes[k]);
        expect_sequence(1, 0); /* empty after detach */
        fill(1, 3);
        expect_sequence(1, 3);
    }
    CHECK_EQ(captured.count, 0);
}

/* Detached arrays are the caller's: written, then freed with free() (the
 * leak checkers and ASan see a mismatch or a leak otherwise). */
TEST(detach_hands_over_arrays)
{
    fill(3, 100);
    void **p;
    uint8_t *t, *s;
    size_t c;
    REQUIRE(samm_scope_detach(3, &p, &t, &s, &c));
    CHECK_EQ(c, 100);
    fill(3, 10); /* the frame goes on with arrays of its own */
    memset(p, 0, c * sizeof *p);
    memset(t, 0xFF, c);
    memset(s, 0xFF, c);
    free3(p, t, s);
    expect_sequence(3, 10);
}

TEST(null_pointers_are_entries)
{
    samm_scope_add(1, NULL, 9, 10);
    add(1, 5);
    samm_scope_add(1, NULL, 11, 12);
    uint8_t t = 0, s = 0;
    CHECK(samm_scope_remove(1, NULL, &t, &s)); /* the newest NULL */
    CHECK_EQ(t, 11);
    CHECK_EQ(s, 12);
    void **p;
    uint8_t *ty, *sc;
    size_t c;
    REQUIRE(samm_scope_detach(1, &p, &ty, &sc, &c));
    CHECK_EQ(c, 2);
    CHECK(p[0] == NULL && ty[0] == 9 && sc[0] == 10);
    CHECK(p[1] == P(5));
    free3(p, ty, sc);
    CHECK_EQ(captured.count, 0);
}

TEST(reset)
{
    fill(2, 100);
    samm_scope_reset(2);
    expect_sequence(2, 0);
    CHECK(!samm_scope_remove(2, P(5), NULL, NULL)); /* gone, index too */
    /* The arrays keep their capacity: refilling up to it allocates nothing,
     * so it works while every allocation fails. */
    fill(2, 100);
    samm_scope_reset(2);
    samm__fail_after(0, 1000000);
    fill(2, 100);
    samm__fail_reset();
    CHECK_EQ(captured.count, 0);
    expect_sequence(2, 100);
    samm_scope_reset(5000); /* never used: a harmless no-op */
    expect_sequence(5000, 0);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Remove
 * ---------------------------------------------------------------------- */
/* Removal swaps the last entry into the hole, in all three arrays, as
 * samm_scope.h documents. */
TEST(remove_small)
{
    uint8_t t = 0, s = 0;
    fill(1, 10);                               /* 0 1 2 3 4 5 6 7 8 9 */
    CHECK(samm_scope_remove(1, P(9), &t, &s)); /* last */
    CHECK_EQ(t, 9);
    CHECK_EQ(s, 63);
    CHECK(samm_scope_remove(1, P(0), &t, &s)); /* first: 8 1 2 3 4 5 6 7 */
    CHECK_EQ(t, 0);
    CHECK_EQ(s, 0);
    CHECK(samm_scope_remove(1, P(4), &t, &s)); /* middle: 8 1 2 3 7 5 6 */
    CHECK_EQ(t, 4);
    CHECK_EQ(s, 28);
    t = s = 77;
    CHECK(samm_scope_remove(1, P(5), NULL, NULL)); /* NULL outs: 8 1 2 3 7 6 */
    CHECK(samm_scope_remove(1, P(2), &t, NULL));   /* 8 1 6 3 7 */
    CHECK_EQ(t, 2);
    CHECK_EQ(s, 77);
    CHECK(samm_scope_remove(1, P(3), NULL, &s)); /* 8 1 6 7 */
    CHECK_EQ(s, 21);
    /* Absent: false, out-pointers untouched. */
    t = s = 99;
    CHECK(!samm_scope_remove(1, P(9), &t, &s));
    CHECK(!samm_scope_remove(1, P(77), &t, &s));
    CHECK(!samm_scope_remove(3, P(1), &t, &s));      /* another depth */
    CHECK(!samm_scope_remove(900000, P(1), &t, &s)); /* a depth never used */
    CHECK(t == 99 && s == 99);
    static const size_t want[] = {8, 1, 6, 7};
    expect_order(1, want, 4);
    CHECK(!samm_scope_remove(1, P(8), NULL, NULL)); /* detached: empty */
    CHECK_EQ(captured.count, 0);
}

/* Duplicates: each remove takes exactly one entry, the newest first. */
TEST(remove_duplicates)
{
    add(1, 3);
    add(1, 4);
    samm_scope_add(1, P(3), 100, 101); /* a newer entry for P(3) */
    uint8_t t = 0, s = 0;
    CHECK(samm_scope_remove(1, P(3), &t, &s));
    CHECK_EQ(t, 100);
    CHECK_EQ(s, 101);
    CHECK(samm_scope_remove(1, P(3), &t, &s));
    CHECK_EQ(t, 3);
    CHECK_EQ(s, 21);
    CHECK(!samm_scope_remove(1, P(3), NULL, NULL));
    static const size_t want[] = {4};
    expect_order(1, want, 1);
    CHECK_EQ(captured.count, 0);
}

/* Large frames go through the hash index: remove in random order, with
 * duplicates, absent pointers, and adds while indexed. */
TEST(remove_large_random)
{
    enum { N = 20000 };
    static size_t order[N];
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    srand(42);
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    fill(4, N);
    add(4, 17); /* a duplicate of P(17) */
    CHECK(!samm_scope_remove(4, P(N + 5), NULL, NULL));
    /* The newest of two entries goes first in an indexed frame too. */
    samm_scope_add(4, P(23), 200, 201);
    uint8_t t = 0, s = 0;
    CHECK(samm_scope_remove(4, P(23), &t, &s));
    CHECK(t == 200 && s == 201);
    size_t failed = 0;
    for (size_t i = 0; i < N / 2; i++) {
        size_t id = order[i];
        if (!samm_scope_remove(4, P(id), &t, &s) || t != (uint8_t)id || s != (uint8_t)(id * 7))
            failed++;
        /* Adds while indexed keep the index right. */
        if (i % 1000 == 0) {
            add(4, id);
            if (!samm_scope_remove(4, P(id), NULL, NULL)) failed++;
            if (samm_scope_remove(4, P(id), NULL, NULL)) failed++; /* only one was there */
        }
    }
    CHECK_EQ(failed, 0);
    static size_t want[N / 2 + 1];
    for (size_t i = N / 2; i < N; i++)
        want[i - N / 2] = order[i];
    want[N / 2] = 17; /* P(17) was there twice: one copy stays */
    expect_set(4, want, N / 2 + 1);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Depths and threads
 * ---------------------------------------------------------------------- */
TEST(depth_independence)
{
    for (int d = 0; d < 50; d++)
        add(d, (size_t)d);
    CHECK(!samm_scope_remove(3, P(4), NULL, NULL));
    for (int d = 49; d >= 0; d--) {
        size_t want = (size_t)d;
        expect_order(d, &want, 1);
    }
    CHECK_EQ(captured.count, 0);
}

TEST(deep)
{
    const int depth = 100000;
    for (int d = 0; d <= depth; d++)
        samm_scope_add(d, P((size_t)d), 1, 2);
    CHECK_EQ(samm_scope_depth(), 0); /* the core's depth did not move */
    size_t bad = 0;
    for (int d = depth; d >= 0; d--) {
        uint8_t t = 0, s = 0;
        if (!samm_scope_remove(d, P((size_t)d), &t, &s) || t != 1 || s != 2) bad++;
    }
    CHECK_EQ(bad, 0);
    expect_sequence(depth, 0);
    expect_sequence(0, 0);
    CHECK_EQ(captured.count, 0);
}

/* Four threads use the same depths at once and see only their own
 * entries; what they leave behind is released when they end. */
static void *thread_body(void *arg)
{
    size_t base = (size_t)(uintptr_t)arg * 100000;
    size_t bad = 0;
    for (int round = 0; round < 20; round++) {
        for (int d = 0; d < 8; d++)
            for (size_t i = 0; i < 300; i++)
                samm_scope_add(d, P(base + i), (uint8_t)d, (uint8_t)(base / 100000));
        for (int d = 0; d < 8; d++) {
            if (!samm_scope_remove(d, P(base + 7), NULL, NULL)) bad++;
            if (samm_scope_remove(d, P(7), NULL, NULL)) bad++; /* another thread's */
            void **p;
            uint8_t *t, *s;
            size_t c;
            if (!samm_scope_detach(d, &p, &t, &s, &c)) {
                bad++;
                continue;
            }
            if (c != 299) bad++;
            for (size_t i = 0; i < c; i++) {
                size_t id = id_of(p[i]);
                if (id < base || id >= base + 300 || id == base + 7 || t[i] != d ||
                    s[i] != (uint8_t)(base / 100000))
                    bad++;
            }
            free3(p, t, s);
        }
    }
    for (int d = 0; d < 8; d++)
        for (size_t i = 0; i < 1000; i++)
            samm_scope_add(d, P(base + i), 1, 1);
    return (void *)(uintptr_t)bad;
}

/* A new thread finds every depth empty, whatever ended threads left (a new
 * thread may take over an ended thread's context): all four start before
 * any ends, so between them they take every context the first four left. */
static pthread_barrier_t fresh_barrier;
static void *fresh_body(void *arg)
{
    (void)arg;
    size_t bad = 0;
    for (int d = 0; d < 8; d++) {
        void **p;
        uint8_t *t, *s;
        size_t c;
        if (samm_scope_detach(d, &p, &t, &s, &c)) {
            bad++;
            free3(p, t, s);
        }
        if (samm_scope_remove(d, P(100000 + 5), NULL, NULL)) bad++;
    }
    pthread_barrier_wait(&fresh_barrier);
    return (void *)(uintptr_t)bad;
}

TEST(threads_independent)
{
    fill(3, 10); /* this thread's depth 3 */
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, thread_body, (void *)(i + 1)) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        CHECK_EQ((uintptr_t)bad, 0);
    }
    expect_sequence(3, 10); /* untouched by them */
    expect_sequence(0, 0);
    pthread_barrier_init(&fresh_barrier, NULL, 4);
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, fresh_body, NULL) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        CHECK_EQ((uintptr_t)bad, 0);
    }
    pthread_barrier_destroy(&fresh_barrier);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */
TEST(negative_depth)
{
    samm_scope_add(-1, P(1), 1, 1);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_DEPTH);
    CHECK(strcmp(captured.call, "samm_scope_add") == 0);
    samm_scope_reset(-5);
    CHECK_EQ(captured.count, 2);
    CHECK(strcmp(captured.call, "samm_scope_reset") == 0);
    uint8_t t = 7, s = 7;
    CHECK(!samm_scope_remove(-1, P(1), &t, &s));
    CHECK_EQ(captured.count, 3);
    CHECK(strcmp(captured.call, "samm_scope_remove") == 0);
    CHECK(t == 7 && s == 7);
    void **p = NULL;
    uint8_t *ty = NULL, *sc = NULL;
    size_t c = 0;
    CHECK(!samm_scope_detach(-2, &p, &ty, &sc, &c));
    CHECK(p == NULL && ty == NULL && sc == NULL && c == 0);
    CHECK_EQ(captured.count, 4);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_DEPTH);
    CHECK(strcmp(captured.call, "samm_scope_detach") == 0);
    samm_scope_add(INT32_MIN, P(1), 1, 1);
    CHECK_EQ(captured.count, 5);
    /* Nothing was stored anywhere. */
    expect_sequence(0, 0);
    expect_sequence(1, 0);
    expect_errors(5);
}

/* Every out-pointer of detach is required: a NULL one is reported and the
 * frame is left as it was. */
TEST(detach_null_out_pointer)
{
    fill(2, 5);
    void **p = NULL;
    uint8_t *t = NULL, *s = NULL;
    size_t c = 0;
    CHECK(!samm_scope_detach(2, NULL, &t, &s, &c));
    CHECK(!samm_scope_detach(2, &p, NULL, &s, &c));
    CHECK(!samm_scope_detach(2, &p, &t, NULL, &c));
    CHECK(!samm_scope_detach(2, &p, &t, &s, NULL));
    CHECK_EQ(captured.count, 4);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK(strcmp(captured.call, "samm_scope_detach") == 0);
    CHECK(p == NULL && t == NULL && s == NULL && c == 0);
    expect_sequence(2, 5);
    /* On an empty frame too. */
    CHECK(!samm_scope_detach(9, NULL, NULL, NULL, NULL));
    CHECK_EQ(captured.count, 5);
    expect_errors(5);
}

/* Fails the k-th allocation of a growing add, for every k that matters
 * (three arrays grow in turn), and checks the frame is exactly as before
 * (all or nothing) and still usable. */
TEST(out_of_memory_all_or_nothing)
{
    int reported = 0;
    for (long k = 0; k < 4; k++) {
        fill(6, 32); /* full at the initial capacity: the next add grows */
        samm__fail_after(k, 1);
        int before = captured.count;
        add(6, 32);
        samm__fail_reset();
        if (k < 3) {
            CHECK_EQ(captured.count, before + 1);
            CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
            CHECK(strcmp(captured.call, "samm_scope_add") == 0);
            reported++;
            expect_sequence(6, 32); /* unchanged */
        } else {
            CHECK_EQ(captured.count, before); /* every array could grow */
            expect_sequence(6, 33);
        }
        fill(6, 40); /* usable afterwards */
        expect_sequence(6, 40);
    }
    /* A new depth whose frame vector cannot grow: reported, nothing kept. */
    int before = captured.count;
    samm__fail_after(0, 1);
    add(1 << 20, 1);
    samm__fail_reset();
    CHECK_EQ(captured.count, before + 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    reported++;
    expect_sequence(1 << 20, 0);
    CHECK(!samm_scope_remove(1 << 20, P(1), NULL, NULL));
    expect_errors((uint64_t)reported);
}

/* An indexed frame whose index cannot grow keeps working (by scanning),
 * and losing the index is not an error: 64 entries build an index on the
 * first remove, the arrays grow to 128 while allocation works, then the
 * index must grow while every allocation fails. */
TEST(out_of_memory_index)
{
    fill(7, 64);
    CHECK(samm_scope_remove(7, P(63), NULL, NULL));
    for (size_t i = 63; i < 96; i++)
        add(7, i);
    samm__fail_after(0, 1000000);
    for (size_t i = 96; i < 128; i++)
        add(7, i);
    uint8_t t = 0;
    CHECK(samm_scope_remove(7, P(127), &t, NULL));
    CHECK_EQ(t, 127);
    CHECK(samm_scope_remove(7, P(0), NULL, NULL));
    CHECK(!samm_scope_remove(7, P(0), NULL, NULL));
    CHECK(samm_scope_remove(7, P(100), NULL, NULL));
    samm__fail_reset();
    CHECK_EQ(captured.count, 0);
    static size_t want[125];
    size_t n = 0;
    for (size_t i = 1; i < 127; i++)
        if (i != 100) want[n++] = i;
    expect_set(7, want, n);
}

/* ------------------------------------------------------------------------
 * The ABI's frames are not the core's scopes
 * ---------------------------------------------------------------------- */
typedef struct {
    const dtor_fn *vtable;
    int id;
} Obj;

static atomic_int destroyed;
static void obj_dtor(void *p)
{
    (void)p;
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

/* samm_scope_add at the core's current depth: the core neither cleans nor
 * sees those entries, and tracking the same pointer in the core is not a
 * double track. */
TEST_BOTH(abi_apart_from_core_scopes)
{
    samm_enter_scope();
    int d = samm_scope_depth();
    REQUIRE(d == 1);
    Obj *a = new_obj(1); /* tracked in the core and added to the ABI frame */
    Obj *b = new_obj(2); /* only in the ABI frame */
    samm_scope_add(d, a, SAMM_ALLOC_OBJECT, 0);
    samm_track_object(a);
    samm_scope_add(d, b, SAMM_ALLOC_OBJECT, 0);
    samm_scope_add(d + 5, b, 9, 9); /* a depth the core never entered */
    CHECK_EQ(samm_scope_depth(), 1);
    samm_untrack(b); /* in no core scope: ignored */
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_tracked, 1); /* a only */
    samm_exit_scope();               /* cleans a, not b */
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 1);
    CHECK_EQ(samm_scope_depth(), 0);
    /* The ABI frames still hold what was added, in order. */
    void **p;
    uint8_t *t, *s;
    size_t c;
    REQUIRE(samm_scope_detach(d, &p, &t, &s, &c));
    CHECK_EQ(c, 2);
    CHECK(c == 2 && p[0] == (void *)a && p[1] == (void *)b);
    free3(p, t, s);
    REQUIRE(samm_scope_detach(d + 5, &p, &t, &s, &c));
    CHECK(c == 1 && p[0] == (void *)b && t[0] == 9);
    free3(p, t, s);
    /* b was never the core's: still live, freed without complaint. */
    CHECK_EQ(b->id, 2);
    samm_free_object(b);
    samm_get_stats(&st);
    CHECK_EQ(st.objects_cleaned, 1);
    CHECK_EQ(st.objects_freed, 2);
    CHECK_EQ(captured.count, 0);
}

/* And the other way: the ABI does not see or disturb the core's scopes. */
TEST_BOTH(core_apart_from_abi_frames)
{
    samm_enter_scope();
    samm_enter_scope();
    int d = samm_scope_depth();
    Obj *c1 = new_obj(1);
    samm_track_object(c1);
    Obj *c2 = new_obj(2);
    samm_track_object(c2);
    CHECK(!samm_scope_remove(d, c1, NULL, NULL)); /* the core's entry is not the ABI's */
    CHECK(!samm_scope_remove(d - 1, c1, NULL, NULL));
    CHECK(!samm_scope_remove(0, c1, NULL, NULL));
    void **p = NULL;
    uint8_t *t = NULL, *s = NULL;
    size_t n = 0;
    CHECK(!samm_scope_detach(d, &p, &t, &s, &n)); /* empty, whatever the core holds */
    samm_scope_add(d, c2, 1, 1);
    samm_scope_reset(d); /* resets the ABI frame only */
    samm_scope_reset(0);
    CHECK_EQ(atomic_load(&destroyed), 0);
    samm_exit_scope(); /* c1 and c2 still die here, once each */
    samm_wait();
    CHECK_EQ(atomic_load(&destroyed), 2);
    samm_exit_scope();
    SAMMStats st;
    samm_get_stats(&st);
    CHECK_EQ(st.objects_tracked, 2);
    CHECK_EQ(st.objects_cleaned, 2);
    CHECK_EQ(st.objects_freed, 2);
    CHECK_EQ(captured.count, 0);
}

CHECK_MAIN(setup)
