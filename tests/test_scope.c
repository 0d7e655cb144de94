/* test_scope.c - the scope-storage ABI (samm_scope_*): growth, detach,
 * reset, remove, depth and thread independence, errors and out of memory.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h"

static void *P(size_t i)
{
    return (void *)(uintptr_t)(0x1000 + i * 16);
}

/* Every test that expects an error installs capture_on() (fixtures.h). */

/* Detaches `depth`, checks it holds exactly P(0..n-1) in order with
 * type i%256 and size class (i*7)%256, and frees the arrays. */
static void expect_sequence(int depth, size_t n)
{
    void **ptrs = NULL;
    uint8_t *types = NULL, *sc = NULL;
    size_t count = 12345;
    bool got = samm_scope_detach(depth, &ptrs, &types, &sc, &count);
    CHECK_EQ(got, n > 0);
    if (!got) {
        CHECK_EQ(count, 12345); /* untouched */
        return;
    }
    CHECK_EQ(count, n);
    size_t bad = 0;
    for (size_t i = 0; i < count; i++)
        if (ptrs[i] != P(i) || types[i] != (uint8_t)i || sc[i] != (uint8_t)(i * 7)) bad++;
    CHECK_EQ(bad, 0);
    free(ptrs);
    free(types);
    free(sc);
}

static void fill(int depth, size_t n)
{
    for (size_t i = 0; i < n; i++)
        samm_scope_add(depth, P(i), (uint8_t)i, (uint8_t)(i * 7));
}

static void test_growth_keeps_contents(void)
{
    static const size_t sizes[] = {0, 1, 31, 32, 33, 1000000};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        fill(1, sizes[k]);
        expect_sequence(1, sizes[k]);
        /* The frame is empty and reusable after detach. */
        expect_sequence(1, 0);
        fill(1, 3);
        expect_sequence(1, 3);
    }
}

static void test_reset(void)
{
    fill(2, 100);
    samm_frame *f = samm__frame_get(2);
    REQUIRE(f != NULL);
    size_t cap = f->cap;
    void **arr = f->ptrs;
    samm_scope_reset(2);
    CHECK_EQ(f->count, 0);
    CHECK_EQ(f->cap, cap); /* capacity kept */
    CHECK(f->ptrs == arr);
    expect_sequence(2, 0);
    fill(2, 50);
    CHECK(samm__frame_get(2)->ptrs == arr);
    expect_sequence(2, 50);
    samm_scope_reset(5000); /* never used: a harmless no-op */
    expect_sequence(5000, 0);
}

/* Detaches and checks the frame holds exactly the multiset `want`. */
static void expect_set(int depth, void **want, size_t n)
{
    void **ptrs;
    uint8_t *types, *sc;
    size_t count = 0;
    bool got = samm_scope_detach(depth, &ptrs, &types, &sc, &count);
    CHECK_EQ(got, n > 0);
    if (!got) return;
    CHECK_EQ(count, n);
    char *used = calloc(n, 1);
    size_t missing = 0;
    for (size_t i = 0; i < count; i++) {
        size_t j = 0;
        while (j < n && (used[j] || want[j] != ptrs[i]))
            j++;
        if (j == n) {
            missing++;
            continue;
        }
        used[j] = 1;
        /* Type and size class travel with their pointer. */
        size_t id = ((uintptr_t)ptrs[i] - 0x1000) / 16;
        CHECK_EQ(types[i], (uint8_t)id);
        CHECK_EQ(sc[i], (uint8_t)(id * 7));
    }
    CHECK_EQ(missing, 0);
    free(used);
    free(ptrs);
    free(types);
    free(sc);
}

static void test_remove_small(void)
{
    uint8_t t = 0, s = 0;
    fill(1, 10);
    CHECK(samm_scope_remove(1, P(0), &t, &s)); /* first */
    CHECK_EQ(t, 0);
    CHECK_EQ(s, 0);
    CHECK(samm_scope_remove(1, P(5), &t, &s)); /* middle */
    CHECK_EQ(t, 5);
    CHECK_EQ(s, 35);
    CHECK(samm_scope_remove(1, P(9), NULL, NULL)); /* last, NULL outputs */
    CHECK(!samm_scope_remove(1, P(9), &t, &s));    /* absent now */
    CHECK(!samm_scope_remove(1, P(77), NULL, NULL));
    CHECK(!samm_scope_remove(3, P(1), NULL, NULL)); /* other depth */
    CHECK(!samm_scope_remove(900000, P(1), NULL, NULL));
    void *want[] = {P(1), P(2), P(3), P(4), P(6), P(7), P(8)};
    expect_set(1, want, 7);

    /* Duplicates: each remove takes exactly one entry. */
    samm_scope_add(1, P(3), 3, 21);
    samm_scope_add(1, P(4), 4, 28);
    samm_scope_add(1, P(3), 3, 21);
    CHECK(samm_scope_remove(1, P(3), &t, NULL));
    void *want2[] = {P(3), P(4)};
    expect_set(1, want2, 2);
}

/* Large frames go through the hash index: remove in random order, with
 * duplicates and absent pointers, checking the contents along the way. */
/* A remove looks only at frames that may hold the pointer: a frame whose
 * filter bit for it is clear is not scanned and builds no index. */
static void test_filter_skips_frames(void)
{
    fill(8, 200); /* large enough to build an index on a real search */
    samm_frame *f = samm__frame_get(8);
    REQUIRE(f != NULL && f->index == NULL);
    /* Find a pointer the frame cannot hold. */
    size_t probe = 1000000;
    while (samm__frame_may_hold(f, P(probe)))
        probe++;
    CHECK(!samm_scope_remove(8, P(probe), NULL, NULL));
    CHECK(f->index == NULL); /* skipped: no index was built */
    CHECK(samm_scope_remove(8, P(150), NULL, NULL));
    CHECK(f->index != NULL); /* a real search did build it */
    /* Emptying the frame clears the filter. */
    samm_scope_reset(8);
    CHECK(!samm__frame_may_hold(f, P(0)));
    expect_sequence(8, 0);
}

static void test_remove_large_random(void)
{
    enum { N = 20000 };
    static void *order[N];
    for (size_t i = 0; i < N; i++)
        order[i] = P(i);
    srand(42);
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        void *tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    fill(4, N);
    samm_scope_add(4, P(17), 17, 119); /* a duplicate */
    CHECK(!samm_scope_remove(4, P(N + 5), NULL, NULL));
    size_t failed = 0;
    for (size_t i = 0; i < N / 2; i++) {
        uint8_t t, s;
        size_t id = ((uintptr_t)order[i] - 0x1000) / 16;
        if (!samm_scope_remove(4, order[i], &t, &s) || t != (uint8_t)id || s != (uint8_t)(id * 7))
            failed++;
        /* adds while indexed keep the index right */
        if (i % 1000 == 0) {
            samm_scope_add(4, order[i], (uint8_t)id, (uint8_t)(id * 7));
            if (!samm_scope_remove(4, order[i], NULL, NULL)) failed++;
        }
    }
    CHECK_EQ(failed, 0);
    void **want = malloc((N / 2 + 1) * sizeof *want);
    for (size_t i = N / 2; i < N; i++)
        want[i - N / 2] = order[i];
    /* P(17) was tracked twice, so one copy stays whichever half it was in. */
    want[N / 2] = P(17);
    expect_set(4, want, N / 2 + 1);
    free(want);
}

static void test_depth_independence(void)
{
    for (int d = 0; d < 50; d++)
        samm_scope_add(d, P((size_t)d), (uint8_t)d, (uint8_t)(d * 7));
    CHECK(!samm_scope_remove(3, P(4), NULL, NULL));
    for (int d = 49; d >= 0; d--) {
        void **p;
        uint8_t *t, *s;
        size_t c;
        REQUIRE(samm_scope_detach(d, &p, &t, &s, &c));
        CHECK_EQ(c, 1);
        CHECK(p[0] == P((size_t)d));
        free(p);
        free(t);
        free(s);
    }
}

static void test_deep(void)
{
    const int depth = 100000;
    for (int d = 0; d <= depth; d += 1)
        samm_scope_add(d, P((size_t)d), 1, 2);
    size_t bad = 0;
    for (int d = depth; d >= 0; d--) {
        uint8_t t;
        if (!samm_scope_remove(d, P((size_t)d), &t, NULL) || t != 1) bad++;
    }
    CHECK_EQ(bad, 0);
    expect_sequence(depth, 0);
}

static void test_negative_depth(void)
{
    capture_on();
    samm_scope_add(-1, P(1), 1, 1);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_DEPTH);
    CHECK(strcmp(captured.call, "samm_scope_add") == 0);
    samm_scope_reset(-5);
    CHECK(!samm_scope_remove(-1, P(1), NULL, NULL));
    void **p = NULL;
    uint8_t *t = NULL, *s = NULL;
    size_t c = 0;
    CHECK(!samm_scope_detach(-2, &p, &t, &s, &c));
    CHECK(p == NULL && c == 0);
    CHECK_EQ(captured.count, 4);
    CHECK(!samm_scope_detach(0, NULL, &t, &s, &c));
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    capture_off();
}

/* Fails the k-th bookkeeping allocation of a growing add, for every k that
 * matters, and checks the frame is exactly as before and still usable. */
static void test_out_of_memory(void)
{
    capture_on();
    for (long k = 0; k < 4; k++) {
        fill(6, 32); /* full at the initial capacity: the next add grows */
        samm__fail_after(k, 1);
        int before = captured.count;
        samm_scope_add(6, P(32), 32, (uint8_t)(32 * 7));
        samm__fail_reset();
        if (k < 3) {
            CHECK_EQ(captured.count, before + 1);
            CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
            expect_sequence(6, 32); /* unchanged */
        } else {
            CHECK_EQ(captured.count, before); /* all three reallocs fit */
            expect_sequence(6, 33);
        }
        fill(6, 40); /* usable afterwards */
        expect_sequence(6, 40);
    }
    /* A new depth whose frame vector cannot grow. */
    int before = captured.count;
    samm__fail_after(0, 1);
    samm_scope_add(1 << 20, P(1), 1, 7);
    samm__fail_reset();
    CHECK_EQ(captured.count, before + 1);
    expect_sequence(1 << 20, 0);
    /* An indexed frame whose index cannot grow keeps working by scanning:
     * 64 entries build a 128-slot index on the first remove, the arrays
     * grow to 128 while allocation works, then the index must grow at 97
     * entries while every allocation fails. */
    fill(7, 64);
    CHECK(samm_scope_remove(7, P(63), NULL, NULL));
    REQUIRE(samm__frame_get(7)->index != NULL);
    for (size_t i = 63; i < 96; i++)
        samm_scope_add(7, P(i), (uint8_t)i, (uint8_t)(i * 7));
    before = captured.count;
    samm__fail_after(0, 1000);
    for (size_t i = 96; i < 128; i++)
        samm_scope_add(7, P(i), (uint8_t)i, (uint8_t)(i * 7));
    CHECK(samm__frame_get(7)->index == NULL);
    CHECK(samm_scope_remove(7, P(127), NULL, NULL));
    CHECK(samm_scope_remove(7, P(0), NULL, NULL));
    CHECK(!samm_scope_remove(7, P(0), NULL, NULL));
    samm__fail_reset();
    CHECK_EQ(captured.count, before); /* losing the index is not an error */
    CHECK_EQ(samm__frame_get(7)->count, 126);
    samm_scope_reset(7);
    capture_off();
}

/* Four threads use the same depths at once and see only their own entries. */
static void *thread_body(void *arg)
{
    size_t base = (size_t)(uintptr_t)arg * 1000000;
    size_t bad = 0;
    for (int round = 0; round < 20; round++) {
        for (int d = 0; d < 8; d++)
            for (size_t i = 0; i < 300; i++)
                samm_scope_add(d, P(base + i), (uint8_t)d, 0);
        for (int d = 0; d < 8; d++) {
            if (!samm_scope_remove(d, P(base + 7), NULL, NULL)) bad++;
            void **p;
            uint8_t *t, *s;
            size_t c;
            if (!samm_scope_detach(d, &p, &t, &s, &c)) {
                bad++;
                continue;
            }
            if (c != 299) bad++;
            for (size_t i = 0; i < c; i++) {
                size_t id = ((uintptr_t)p[i] - 0x1000) / 16;
                if (id < base || id >= base + 300 || t[i] != d) bad++;
            }
            free(p);
            free(t);
            free(s);
        }
    }
    /* Leave entries behind: they must be released when the thread exits. */
    fill(3, 1000);
    return (void *)(uintptr_t)bad;
}

static atomic_int hook_calls;
static void count_hook(void)
{
    atomic_fetch_add(&hook_calls, 1);
}

static void test_threads(void)
{
    pthread_t th[4];
    atomic_store(&hook_calls, 0);
    samm__set_thread_exit_hook(count_hook);
    for (uintptr_t i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, thread_body, (void *)(i + 1)) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        pthread_join(th[i], &bad);
        CHECK_EQ((uintptr_t)bad, 0);
    }
    samm__set_thread_exit_hook(NULL);
    CHECK_EQ(atomic_load(&hook_calls), 4);
    /* This thread's depth 3 was never touched by them. */
    expect_sequence(3, 0);
}

int main(void)
{
    samm_scope_ensure_init();
    samm_scope_ensure_init(); /* idempotent */
    RUN(test_growth_keeps_contents);
    RUN(test_reset);
    RUN(test_remove_small);
    RUN(test_filter_skips_frames);
    RUN(test_remove_large_random);
    RUN(test_depth_independence);
    RUN(test_deep);
    RUN(test_negative_depth);
    RUN(test_out_of_memory);
    RUN(test_threads);
    samm__frames_release_thread();
    return check_exit();
}
