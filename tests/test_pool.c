/* SPDX-License-Identifier: MIT */
/* test_pool.c - the allocation layer through the public API: size classes,
 * alignment, zeroing, byte accounting, descriptors, double frees and
 * interior pointers (exact, also after slabs were trimmed and reused),
 * foreign pointers, the Bloom filter, trim, and frees across threads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h" /* samm__fail_*; SAMM_SLAB_MASK where a case says so */

/* ------------------------------------------------------------------------
 * Fixtures
 * ---------------------------------------------------------------------- */
static SAMMStats stats(void)
{
    SAMMStats s;
    samm_get_stats(&s);
    return s;
}

static SAMMPoolStats pstats(int i)
{
    SAMMPoolStats s;
    REQUIRE(samm_get_pool_stats(i, &s) == 0);
    return s;
}

/* The object pools (the descriptor pools 6..8 have cases of their own). */
static const int object_pools[] = {0, 1, 2, 3, 4, 5, 9, 10, 11, 12};
#define NOBJ_POOLS ((int)(sizeof object_pools / sizeof *object_pools))

/* The pool an object of `size` bytes comes from, or -1 for a huge one. */
static int pool_of(size_t size)
{
    if (size > 16384) return -1;
    if (size <= 1024) {
        int c = 0;
        while (((size_t)32 << c) < size)
            c++;
        return c;
    }
    int c = 0;
    while (((size_t)2048 << c) < size)
        c++;
    return 9 + c;
}

static size_t slot_of(int pool)
{
    return pool < 6 ? (size_t)32 << pool : (size_t)2048 << (pool - 9);
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, c + i, 8);
        if (w) return 0;
    }
    for (; i < n; i++)
        if (c[i]) return 0;
    return 1;
}

static int filled_with(const void *p, size_t n, unsigned char v)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != v) return 0;
    return 1;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static size_t duplicates(void **v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_ptr);
    size_t dup = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] == v[i - 1]) dup++;
    return dup;
}

/* Errors: the last one (captured, fixtures.h) and a tally by code. */
static void record_error(const SAMMError *e, void *user)
{
    capture_fn(e, user);
    count_error(e, user);
}

static void setup(void)
{
    memset(&captured, 0, sizeof captured);
    samm_set_error_handler(record_error, NULL);
}

/* ------------------------------------------------------------------------
 * Sizes, alignment, zeroing
 * ---------------------------------------------------------------------- */
/* Every size up to 4096 live at once, twice (the second round reuses the
 * dirty slots of the first): 16-byte aligned, zeroed, no overlap, and
 * each from the pool its size belongs to. */
TEST(every_size_small)
{
    enum { N = 4096 };
    static unsigned char *p[N + 1];
    SAMMPoolStats before[NOBJ_POOLS];
    for (int k = 0; k < NOBJ_POOLS; k++)
        before[k] = pstats(object_pools[k]);
    for (int round = 0; round < 2; round++) {
        size_t bad_align = 0, not_zero = 0, clobbered = 0;
        for (size_t n = 0; n <= N; n++) {
            p[n] = samm_alloc_object(n);
            REQUIRE(p[n] != NULL);
            if ((uintptr_t)p[n] % 16) bad_align++;
            if (!all_zero(p[n], n)) not_zero++;
            memset(p[n], (int)(n & 0xFF) | 1, n); /* dirty it for the next round */
        }
        for (size_t n = 0; n <= N; n++)
            if (!filled_with(p[n], n, (unsigned char)((n & 0xFF) | 1))) clobbered++;
        CHECK_EQ(bad_align, 0);
        CHECK_EQ(not_zero, 0);
        CHECK_EQ(clobbered, 0);
        for (size_t n = 0; n <= N; n++)
            samm_free_object(p[n]);
    }
    for (int k = 0; k < NOBJ_POOLS; k++) {
        int pool = object_pools[k];
        uint64_t sizes = 0;
        for (size_t n = 0; n <= N; n++)
            sizes += pool_of(n) == pool;
        SAMMPoolStats a = pstats(pool);
        CHECK_EQ(a.allocations - before[k].allocations, 2 * sizes);
        CHECK_EQ(a.frees - before[k].frees, 2 * sizes);
        CHECK_EQ(a.in_use, 0);
        CHECK_EQ(a.slot_size, slot_of(pool));
    }
    CHECK_EQ(captured.count, 0);
}

/* Sizes 4097..20000 (every size natively, a stride under valgrind), then
 * 100000 and 5000000: aligned and zeroed, also when the block is handed
 * out again right after it was dirtied and freed. */
static size_t check_size_twice(size_t n)
{
    size_t bad = 0;
    unsigned char *a = samm_alloc_object(n);
    REQUIRE(a != NULL);
    if ((uintptr_t)a % 16 || !all_zero(a, n)) bad++;
    memset(a, 0xA5, n);
    samm_free_object(a);
    unsigned char *b = samm_alloc_object(n);
    REQUIRE(b != NULL);
    if ((uintptr_t)b % 16 || !all_zero(b, n)) bad++;
    memset(b, 0x5A, n);
    samm_free_object(b);
    return bad;
}

TEST(every_size_large)
{
    size_t bad = 0;
    const size_t step = (size_t)scale(1, 13);
    for (size_t n = 4097; n <= 20000; n += step)
        bad += check_size_twice(n);
    bad += check_size_twice(100000);
    bad += check_size_twice(5000000);
    CHECK_EQ(bad, 0);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_allocated, s.objects_freed);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    CHECK_EQ(captured.count, 0);
}

/* Each class boundary lands in the right pool and is charged the slot it
 * takes (a huge block: its size, rounded up a little at most), and the
 * free gives back exactly what the allocation charged. */
TEST(class_boundaries)
{
    static const size_t sizes[] = {
        0,    1,    31,   32,    33,    63,    64,    65,    127,   128,    129,    255,  256,
        257,  511,  512,  513,   1023,  1024,  1025,  2047,  2048,  2049,   4095,   4096, 4097,
        8191, 8192, 8193, 16383, 16384, 16385, 20000, 65536, 65537, 100000, 5000000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        int want = pool_of(n);
        SAMMPoolStats b[NOBJ_POOLS], a;
        for (int k = 0; k < NOBJ_POOLS; k++)
            b[k] = pstats(object_pools[k]);
        SAMMStats s0 = stats();
        void *p = samm_alloc_object(n);
        REQUIRE(p != NULL);
        SAMMStats s1 = stats();
        size_t moved = 0;
        for (int k = 0; k < NOBJ_POOLS; k++) {
            a = pstats(object_pools[k]);
            uint64_t d = a.allocations - b[k].allocations;
            if (object_pools[k] == want) {
                CHECK_EQ(d, 1);
                CHECK_EQ(a.in_use, b[k].in_use + 1);
            }
            moved += d;
        }
        CHECK_EQ(moved, want >= 0 ? 1 : 0);
        CHECK_EQ(s1.objects_allocated - s0.objects_allocated, 1);
        uint64_t charged = s1.total_bytes_allocated - s0.total_bytes_allocated;
        if (want >= 0) {
            CHECK_EQ(charged, slot_of(want));
        } else {
            CHECK(charged >= n && charged < n + 4096);
        }
        samm_free_object(p);
        SAMMStats s2 = stats();
        CHECK_EQ(s2.objects_freed - s1.objects_freed, 1);
        CHECK_EQ(s2.total_bytes_freed - s1.total_bytes_freed, charged);
        if (want >= 0) {
            a = pstats(want);
            CHECK_EQ(a.in_use, b[want < 6 ? want : want - 3].in_use);
        }
    }
    CHECK_EQ(captured.count, 0);
}

/* Bytes and counts balance exactly, per pool and in total, whether the
 * memory comes back through samm_free_object or through scope cleanup. */
TEST_BOTH(byte_accounting)
{
    static const size_t sizes[] = {0,    1,    31,   32,    33,    100,   500,    1000,
                                   1024, 1025, 3000, 16384, 16385, 70000, 1000000};
    enum { NS = sizeof sizes / sizeof *sizes };
    uint64_t pool_allocs[SAMM_POOL_COUNT] = {0};
    void *p[NS];
    SAMMStats a = stats();
    for (int i = 0; i < NS; i++) {
        p[i] = samm_alloc_object(sizes[i]);
        REQUIRE(p[i] != NULL);
        if (pool_of(sizes[i]) >= 0) pool_allocs[pool_of(sizes[i])]++;
    }
    void *d[3] = {samm_alloc_string(), samm_alloc_list(), samm_alloc_list_atom()};
    REQUIRE(d[0] && d[1] && d[2]);
    uint64_t desc_bytes = 40 + 32 + 24;
    SAMMStats b = stats();
    CHECK_EQ(b.objects_allocated - a.objects_allocated, NS + 3);
    uint64_t expect = desc_bytes;
    for (int i = 0; i < NS; i++)
        if (pool_of(sizes[i]) >= 0) expect += slot_of(pool_of(sizes[i]));
    uint64_t huge_bytes = b.total_bytes_allocated - a.total_bytes_allocated - expect;
    CHECK(huge_bytes >= 16385 + 70000 + 1000000 && huge_bytes < 16385 + 70000 + 1000000 + 3 * 4096);
    for (int k = 0; k < NOBJ_POOLS; k++) {
        SAMMPoolStats ps = pstats(object_pools[k]);
        CHECK_EQ(ps.allocations, pool_allocs[object_pools[k]]);
        CHECK_EQ(ps.in_use, pool_allocs[object_pools[k]]);
        CHECK_EQ(ps.frees, 0);
    }
    for (int k = 0; k < 3; k++) {
        SAMMPoolStats ps = pstats(6 + k);
        CHECK_EQ(ps.allocations, 1);
        CHECK_EQ(ps.in_use, 1);
    }
    /* Half by hand, the rest (and the descriptors) by a scope's cleanup. */
    samm_enter_scope();
    for (int i = 0; i < NS; i++) {
        if (i % 2)
            samm_free_object(p[i]);
        else
            samm_track(p[i], SAMM_ALLOC_GENERIC);
    }
    samm_track_string(d[0]);
    samm_track_list(d[1]);
    samm_track(d[2], SAMM_ALLOC_LIST_ATOM);
    samm_exit_scope();
    SAMMStats c = stats(); /* waits for background cleanup */
    CHECK_EQ(c.objects_freed - b.objects_freed, NS + 3);
    CHECK_EQ(c.total_bytes_freed - b.total_bytes_freed,
             b.total_bytes_allocated - a.total_bytes_allocated);
    CHECK_EQ(c.total_bytes_freed, c.total_bytes_allocated);
    CHECK_EQ(c.objects_freed, c.objects_allocated);
    for (int k = 0; k < SAMM_POOL_COUNT; k++) {
        SAMMPoolStats ps = pstats(k);
        CHECK_EQ(ps.in_use, 0);
        CHECK_EQ(ps.frees, ps.allocations);
    }
    CHECK_EQ(captured.count, 0);
}

/* Random sizes, freed in random order: every block keeps its contents
 * until it is freed. */
TEST(interleaved_random)
{
    enum { N = 3000 };
    static unsigned char *p[N];
    static size_t sz[N], order[N];
    uint32_t seed = 12345;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        sz[i] = (size_t)(seed >> 8) % 20000 + 1;
        p[i] = samm_alloc_object(sz[i]);
        REQUIRE(p[i] != NULL);
        memset(p[i], (int)(i % 251) + 1, sz[i]);
        order[i] = i;
    }
    for (size_t i = N - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        size_t j = (seed >> 8) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t bad = 0;
    for (size_t k = 0; k < N; k++) {
        size_t i = order[k];
        if (!filled_with(p[i], sz[i], (unsigned char)(i % 251 + 1))) bad++;
        samm_free_object(p[i]);
    }
    CHECK_EQ(bad, 0);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_freed, N);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    CHECK_EQ(captured.count, 0);
}

/* When memory runs out at any step of an allocation, the call gives NULL
 * and reports it once; the next call works.  The first allocation of a
 * thread needs several (its context, a slab, the registry), so the k-th of
 * them is made to fail for every k until the call needs no more. */
static int oom_sweep(void *(*alloc)(size_t), size_t size, void **out)
{
    int reported = 0;
    for (long k = 0; k < 64; k++) {
        int before = captured.count;
        samm__fail_after(k, 1);
        void *p = alloc(size);
        samm__fail_reset();
        if (p != NULL) {
            CHECK_EQ(captured.count, before);
            *out = p;
            return reported;
        }
        CHECK_EQ(captured.count, before + 1);
        CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
        reported++;
    }
    CHECK(!"an allocation that never succeeds");
    *out = NULL;
    return reported;
}

static void *alloc_string_sized(size_t size)
{
    (void)size;
    return samm_alloc_string();
}

TEST(out_of_memory)
{
    void *small, *huge, *desc;
    int reported = oom_sweep(samm_alloc_object, 64, &small);
    CHECK(reported >= 1); /* at least the thread's first slab */
    reported += oom_sweep(samm_alloc_object, 100000, &huge);
    reported += oom_sweep(alloc_string_sized, 0, &desc);
    REQUIRE(small && huge && desc);
    CHECK(all_zero(small, 64) && all_zero(huge, 100000) && all_zero(desc, 40));
    /* Freeing a huge block while memory is short still frees it (the
     * Bloom filter, made on the first such free, may not be). */
    uint64_t freed = stats().objects_freed;
    int before = captured.count;
    samm__fail_after(0, 1000);
    samm_free_object(huge);
    samm__fail_reset();
    reported += captured.count - before;
    CHECK(captured.count - before <= 1);
    CHECK_EQ(stats().objects_freed, freed + 1);
    samm_free_object(small);
    samm_free_object(desc);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_freed, s.objects_allocated);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    CHECK_EQ(captured.count, reported);
    expect_errors((uint64_t)reported);
}

/* samm_shutdown reports what is still in use, per pool and for huge
 * blocks. */
TEST(leak_report_at_shutdown)
{
    void *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = samm_alloc_object(20);
    void *big = samm_alloc_object(20000);
    REQUIRE(p[0] && p[1] && p[2] && big);
    samm_shutdown();
    CHECK_EQ(errors(SAMM_ERR_LEAK), 2);
    CHECK_EQ(captured.code, SAMM_ERR_LEAK);
    CHECK(strcmp(captured.call, "samm_shutdown") == 0);
    samm_init();
    samm_free_object(big);
    samm_shutdown();
    CHECK_EQ(errors(SAMM_ERR_LEAK), 3);
    CHECK(strcmp(captured.message,
                 "leak: 3 objects (96 bytes) still in use in the 32-byte object pool") == 0);
    samm_init();
    for (int i = 0; i < 3; i++)
        samm_free_object(p[i]);
    expect_errors(3);
}

/* ------------------------------------------------------------------------
 * Descriptors
 * ---------------------------------------------------------------------- */
TEST(descriptor_defaults_and_reuse)
{
    unsigned char *s = samm_alloc_string(), *l = samm_alloc_list(), *a = samm_alloc_list_atom();
    REQUIRE(s && l && a);
    CHECK_EQ(pstats(6).slot_size, 40);
    CHECK_EQ(pstats(7).slot_size, 32);
    CHECK_EQ(pstats(8).slot_size, 24);
    CHECK((uintptr_t)s % 8 == 0 && (uintptr_t)l % 8 == 0 && (uintptr_t)a % 8 == 0);
    CHECK(all_zero(s, 40) && all_zero(l, 32) && all_zero(a, 24));
    memset(s, 0xEE, 40);
    memset(l, 0xEE, 32);
    memset(a, 0xEE, 24);
    samm_free_object(s);
    samm_free_object(l);
    samm_free_object(a);
    /* The dirty slots come back zeroed. */
    s = samm_alloc_string();
    l = samm_alloc_list();
    a = samm_alloc_list_atom();
    CHECK(all_zero(s, 40) && all_zero(l, 32) && all_zero(a, 24));
    CHECK_EQ(pstats(6).in_use + pstats(7).in_use + pstats(8).in_use, 3);
    samm_free_object(s);
    samm_free_object(l);
    samm_free_object(a);
    CHECK_EQ(pstats(6).in_use + pstats(7).in_use + pstats(8).in_use, 0);
    SAMMPoolStats ps;
    CHECK_EQ(samm_get_pool_stats(SAMM_POOL_COUNT, &ps), -1);
    CHECK_EQ(samm_get_pool_stats(-1, &ps), -1);
    CHECK_EQ(samm_get_pool_stats(0, NULL), -1);
    CHECK_EQ(captured.count, 0);
}

/* Settable before the first descriptor is allocated (rounded up to 8),
 * rejected and reported afterwards; out-of-range sizes are reported. */
TEST(descriptor_sizes)
{
    CHECK_EQ(samm_set_descriptor_sizes(4, 32, 24), -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK(strcmp(captured.call, "samm_set_descriptor_sizes") == 0);
    CHECK_EQ(samm_set_descriptor_sizes(40, 1025, 24), -1);
    CHECK_EQ(samm_set_descriptor_sizes(40, 32, 0), -1);
    CHECK_EQ(captured.count, 3);
    CHECK_EQ(samm_set_descriptor_sizes(44, 32, 20), 0);
    CHECK_EQ(samm_set_descriptor_sizes(44, 1024, 17), 0); /* again, still before use */
    CHECK_EQ(captured.count, 3);
    unsigned char *d = samm_alloc_string();
    REQUIRE(d != NULL);
    CHECK_EQ(pstats(6).slot_size, 48);
    CHECK_EQ(pstats(7).slot_size, 1024);
    CHECK_EQ(pstats(8).slot_size, 24);
    CHECK((uintptr_t)d % 8 == 0);
    CHECK(all_zero(d, 48));
    memset(d, 0x5A, 48);
    CHECK_EQ(pstats(6).in_use, 1);
    CHECK_EQ(samm_set_descriptor_sizes(40, 32, 24), -1); /* a pool was used */
    CHECK_EQ(captured.count, 4);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK_EQ(pstats(6).slot_size, 48); /* unchanged */
    samm_free_object(d);
    d = samm_alloc_string();
    CHECK(all_zero(d, 48));
    unsigned char *l = samm_alloc_list(), *a = samm_alloc_list_atom();
    REQUIRE(l && a);
    CHECK(all_zero(l, 1024) && all_zero(a, 24));
    SAMMStats st = stats();
    CHECK_EQ(st.total_bytes_allocated, 48 + 48 + 1024 + 24);
    samm_free_object(d);
    samm_free_object(l);
    samm_free_object(a);
    CHECK_EQ(pstats(6).in_use + pstats(7).in_use + pstats(8).in_use, 0);
    CHECK_EQ(captured.count, 4);
    expect_errors(4);
}

/* Reading the statistics is not using a descriptor pool: the sizes can
 * still be set after it. */
TEST(descriptor_sizes_after_stats)
{
    SAMMPoolStats ps;
    REQUIRE(samm_get_pool_stats(6, &ps) == 0);
    CHECK_EQ(ps.slot_size, 40);
    SAMMStats st = stats();
    CHECK_EQ(st.objects_allocated, 0);
    CHECK_EQ(samm_set_descriptor_sizes(48, 32, 24), 0);
    CHECK_EQ(pstats(6).slot_size, 48);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Double frees and interior pointers
 * ---------------------------------------------------------------------- */
/* Frees `p` a second time and checks the report. */
static void second_free(void *p)
{
    int before = captured.count;
    uint64_t df = stats().double_free_attempts;
    samm_free_object(p);
    CHECK_EQ(captured.count, before + 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(strcmp(captured.call, "samm_free_object") == 0);
    CHECK(captured.ptr == p);
    CHECK(is_double_free_message(p));
    CHECK_EQ(stats().double_free_attempts, df + 1);
}

/* After a double free of a slot of `size`, the pool's free list is intact:
 * 1000 new blocks, all distinct from each other and from `keep`. */
static void free_list_intact(size_t size, void *keep)
{
    enum { N = 1000 };
    static void *v[N + 1];
    for (int i = 0; i < N; i++) {
        v[i] = samm_alloc_object(size);
        REQUIRE(v[i] != NULL);
    }
    v[N] = keep;
    CHECK_EQ(duplicates(v, N + 1), 0);
    for (int i = 0; i <= N; i++)
        if (v[i] != keep) samm_free_object(v[i]);
}

TEST(double_free_small)
{
    void *p = samm_alloc_object(48);
    void *q = samm_alloc_object(48);
    samm_free_object(p);
    CHECK_EQ(captured.count, 0);
    second_free(p);
    free_list_intact(48, q);
    samm_free_object(q);
    CHECK_EQ(pstats(1).in_use, 0);
    expect_errors(1);
}

TEST(double_free_medium)
{
    void *p = samm_alloc_object(3000);
    void *q = samm_alloc_object(3000);
    samm_free_object(p);
    second_free(p);
    free_list_intact(3000, q);
    samm_free_object(q);
    CHECK_EQ(pstats(10).in_use, 0);
    expect_errors(1);
}

TEST(double_free_huge)
{
    void *p = samm_alloc_object(70000);
    REQUIRE(p != NULL);
    samm_free_object(p);
    second_free(p);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_freed, 1);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    expect_errors(1);
}

TEST(double_free_descriptor)
{
    void *d = samm_alloc_list();
    void *a = samm_alloc_list_atom();
    samm_free_object(d);
    second_free(d);
    samm_free_object(a);
    second_free(a);
    CHECK_EQ(pstats(7).in_use + pstats(8).in_use, 0);
    expect_errors(2);
}

/* A pointer into a block, or into libsamm's bookkeeping, is reported and
 * frees nothing. */
static void interior(void *p)
{
    int before = captured.count;
    samm_free_object(p);
    CHECK_EQ(captured.count, before + 1);
    CHECK_EQ(captured.code, SAMM_ERR_INTERIOR_POINTER);
    CHECK(captured.ptr == p);
}

TEST(interior_pointers)
{
    char *s = samm_alloc_object(64), *m = samm_alloc_object(3000), *h = samm_alloc_object(200000);
    REQUIRE(s && m && h);
    memset(s, 1, 64);
    memset(m, 2, 3000);
    memset(h, 3, 200000);
    SAMMStats before = stats();
    interior(s + 16);
    interior(s + 63);
    interior(m + 16);
    interior(m + 2048);
    interior(h + 16);
    interior(h + 150000); /* in a later slab of the huge block's span */
    interior(h - 16);     /* its span's header */
    /* The header of the slab holding s (slabs are SAMM_SLAB_MASK + 1 bytes,
     * aligned to their size: an internal constant, used only to aim here). */
    interior((void *)((uintptr_t)s & ~(uintptr_t)SAMM_SLAB_MASK));
    SAMMStats after = stats();
    CHECK_EQ(after.objects_freed, before.objects_freed);
    CHECK_EQ(pstats(1).in_use, 1);
    CHECK_EQ(pstats(10).in_use, 1);
    CHECK(filled_with(s, 64, 1) && filled_with(m, 3000, 2) && filled_with(h, 200000, 3));
    samm_free_object(s);
    samm_free_object(m);
    samm_free_object(h);
    CHECK_EQ(captured.count, 8);
    CHECK_EQ(stats().objects_freed, 3);
    expect_errors(8);
}

/* A block libsamm never allocated is free()d (counted) if it can be a
 * malloc block; what cannot be one (the stack, static data, misaligned) is
 * reported and left alone. */
TEST(foreign_pointers)
{
    void *m = malloc(100);
    REQUIRE(m != NULL);
    samm_free_object(m);
    CHECK_EQ(captured.count, 0);
    CHECK_EQ(stats().foreign_frees, 1);
    static long in_static[4];
    long on_stack[4] = {0};
    char *inside = malloc(64);
    REQUIRE(inside != NULL);
    void *bad[] = {on_stack, in_static, inside + 3};
    static const char *const why[] = {"stack", "image", "misaligned"};
    for (int i = 0; i < 3; i++) {
        int before = captured.count;
        samm_free_object(bad[i]);
        CHECK_EQ(captured.count, before + 1);
        CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
        CHECK(captured.ptr == bad[i]);
        CHECK(strstr(captured.message, why[i]) != NULL);
    }
    CHECK_EQ(stats().foreign_frees, 1);
    CHECK_EQ(on_stack[0] + in_static[0], 0);
    free(inside);
    expect_errors(3);
}

/* ------------------------------------------------------------------------
 * Stale pointers into memory that was trimmed and reused by another class
 * ---------------------------------------------------------------------- */
/* Frees each stale pointer and checks what happens against the live blocks
 * of `size` bytes now there (sorted in `live`):
 *   - inside a live block, not at its start: SAMM_ERR_INTERIOR_POINTER;
 *   - elsewhere (a free slot start, bookkeeping): reported as a double free
 *     or an interior pointer;
 *   - exactly at a live block's start: cannot be told from a valid free,
 *     so not tried here (see try_live_start).
 * Every call must report exactly one error and free nothing; `wrong`
 * counts those that did not. */
typedef struct {
    size_t inside, elsewhere, at_start, wrong;
    char *a_start; /* a stale pointer at a live block's start, if any */
} stale_result;

static char *live_at_or_below(char **live, size_t n, const char *s)
{
    size_t lo = 0, hi = n; /* first index with live[i] > s */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uintptr_t)live[mid] <= (uintptr_t)s)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? live[lo - 1] : NULL;
}

static stale_result free_stale(char *const *stale, size_t nstale, char **live, size_t nlive,
                               size_t size)
{
    stale_result r = {0, 0, 0, 0, NULL};
    for (size_t i = 0; i < nstale; i++) {
        char *s = stale[i];
        char *q = live_at_or_below(live, nlive, s);
        if (q == s) {
            r.at_start++;
            if (!r.a_start) r.a_start = s;
            continue;
        }
        bool in = q && (uintptr_t)s < (uintptr_t)q + size;
        int before = captured.count;
        samm_free_object(s);
        if (captured.count != before + 1 || captured.ptr != s) {
            r.wrong++;
            continue;
        }
        if (in) {
            r.inside++;
            if (captured.code != SAMM_ERR_INTERIOR_POINTER) r.wrong++;
        } else {
            r.elsewhere++;
            if (captured.code != SAMM_ERR_INTERIOR_POINTER && captured.code != SAMM_ERR_DOUBLE_FREE)
                r.wrong++;
        }
    }
    return r;
}

static void fill_pattern(char *p, size_t size, size_t id)
{
    memset(p, (int)(id % 251) + 1, size);
}

static size_t count_damaged(char **live, const size_t *ids, size_t n, size_t size)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (live[i] && !filled_with(live[i], size, (unsigned char)(ids[i] % 251 + 1))) bad++;
    return bad;
}

/* A stale pointer at a live block's start: the free goes through (or not);
 * nothing may crash.  Returns whether the live block was freed. */
static bool try_live_start(char *s, int pool)
{
    uint64_t in_use = pstats(pool).in_use;
    uint64_t errs = samm_error_count();
    samm_free_object(s);
    expect_errors(samm_error_count() - errs); /* whatever it says is accepted */
    return pstats(pool).in_use + 1 == in_use;
}

/* The scenario of issue 9 item 8: slabs full of `from`-byte blocks are
 * emptied and trimmed, blocks of `to` bytes (another class) reuse them,
 * then the old pointers are freed again. */
static void stale_after_reuse(size_t from, int from_pool, size_t nfrom, size_t to, int to_pool,
                              size_t nto)
{
    char **old = malloc(nfrom * sizeof *old);
    char **live = malloc((nto + 100) * sizeof *live);
    size_t *ids = malloc((nto + 100) * sizeof *ids);
    REQUIRE(old && live && ids);
    for (size_t i = 0; i < nfrom; i++) {
        old[i] = samm_alloc_object(from);
        REQUIRE(old[i] != NULL);
    }
    CHECK(pstats(from_pool).slabs >= 2);
    for (size_t i = 0; i < nfrom; i++)
        samm_free_object(old[i]);
    samm_trim();
    CHECK_EQ(pstats(from_pool).slabs, 0);
    for (size_t i = 0; i < nto; i++) {
        live[i] = samm_alloc_object(to);
        REQUIRE(live[i] != NULL);
    }
    qsort(live, nto, sizeof *live, cmp_ptr);
    for (size_t i = 0; i < nto; i++) {
        ids[i] = i;
        fill_pattern(live[i], to, i);
    }
    uint64_t in_use = pstats(to_pool).in_use;
    SAMMStats s0 = stats();
    int df0 = errors(SAMM_ERR_DOUBLE_FREE), ip0 = errors(SAMM_ERR_INTERIOR_POINTER);

    stale_result r = free_stale(old, nfrom, live, nto, to);
    printf("stale %zu-byte pointers over %zu-byte blocks: %zu inside, %zu elsewhere, %zu at a "
           "start\n",
           from, to, r.inside, r.elsewhere, r.at_start);
    REQUIRE(r.inside > 0); /* the slabs were reused: the scenario happened */
    CHECK_EQ(r.wrong, 0);
    int df = errors(SAMM_ERR_DOUBLE_FREE) - df0, ip = errors(SAMM_ERR_INTERIOR_POINTER) - ip0;
    CHECK_EQ((size_t)(df + ip), r.inside + r.elsewhere);
    expect_errors((uint64_t)(df + ip));
    SAMMStats s1 = stats();
    CHECK_EQ(s1.double_free_attempts - s0.double_free_attempts, (uint64_t)df);
    CHECK_EQ(s1.objects_freed, s0.objects_freed); /* nothing was freed */
    CHECK_EQ(pstats(to_pool).in_use, in_use);
    CHECK_EQ(pstats(from_pool).in_use, 0);
    CHECK_EQ(count_damaged(live, ids, nto, to), 0);

    /* The free lists are intact: new blocks are none of the live ones, and
     * writing them damages nothing. */
    for (size_t i = nto; i < nto + 100; i++) {
        live[i] = samm_alloc_object(to);
        REQUIRE(live[i] != NULL);
        CHECK(all_zero(live[i], to));
        ids[i] = i;
        fill_pattern(live[i], to, i);
    }
    char **all = malloc((nto + 100) * sizeof *all);
    REQUIRE(all != NULL);
    memcpy(all, live, (nto + 100) * sizeof *all);
    CHECK_EQ(duplicates((void **)all, nto + 100), 0);
    free(all);
    CHECK_EQ(count_damaged(live, ids, nto + 100, to), 0);

    /* A stale pointer at a live block's start: no assertion but no crash. */
    if (r.a_start) {
        for (size_t i = 0; i < nto; i++)
            if (live[i] == r.a_start && try_live_start(r.a_start, to_pool)) live[i] = NULL;
    }
    uint64_t errs = samm_error_count();
    for (size_t i = 0; i < nto + 100; i++)
        samm_free_object(live[i]);
    CHECK_EQ(samm_error_count(), errs);
    CHECK_EQ(pstats(to_pool).in_use, 0);
    free(old);
    free(live);
    free(ids);
}

TEST(stale_small_after_trim_and_reuse)
{
    stale_after_reuse(32, 0, 5000, 1024, 5, 400);
}

TEST(stale_medium_after_trim_and_reuse)
{
    stale_after_reuse(64, 1, 3000, 2048, 9, 400);
}

/* A huge block's span, freed and kept committed, may become a pool slab:
 * the stale huge pointers are then judged against the slab's blocks, and
 * the slab's blocks come out zeroed and free-tracked like any others. */
TEST(stale_huge_after_reuse)
{
    enum { HUGE = 40000, NLIVE = 50, NSLAB = 2500 };
    char *h = samm_alloc_object(HUGE);
    REQUIRE(h != NULL);
    memset(h, 0x5A, HUGE);
    samm_free_object(h);
    static char *stale[HUGE / 16];
    for (size_t i = 0; i < HUGE / 16; i++)
        stale[i] = h + i * 16;
    static char *live[NSLAB];
    static size_t ids[NSLAB];
    for (size_t i = 0; i < NLIVE; i++) {
        live[i] = samm_alloc_object(32);
        REQUIRE(live[i] != NULL);
        CHECK(all_zero(live[i], 32));
    }
    qsort(live, NLIVE, sizeof *live, cmp_ptr);
    size_t reused = 0;
    for (size_t i = 0; i < NLIVE; i++) {
        ids[i] = i;
        fill_pattern(live[i], 32, i);
        reused += (uintptr_t)live[i] >= (uintptr_t)h && (uintptr_t)live[i] < (uintptr_t)h + HUGE;
    }
    REQUIRE(reused > 0); /* the span was reused: the scenario happened */
    uint64_t e0 = samm_error_count();
    stale_result r = free_stale(stale, HUGE / 16, live, NLIVE, 32);
    CHECK_EQ(r.wrong, 0);
    CHECK_EQ(samm_error_count() - e0, r.inside + r.elsewhere);
    expect_errors(samm_error_count() - e0);
    CHECK_EQ(pstats(0).in_use, NLIVE);
    CHECK_EQ(count_damaged(live, ids, NLIVE, 32), 0);
    /* The rest of that slab and more: zeroed, distinct. */
    size_t not_zero = 0;
    for (size_t i = NLIVE; i < NSLAB; i++) {
        live[i] = samm_alloc_object(32);
        REQUIRE(live[i] != NULL);
        if (!all_zero(live[i], 32)) not_zero++;
        ids[i] = i;
        fill_pattern(live[i], 32, i);
    }
    CHECK_EQ(not_zero, 0);
    CHECK_EQ(count_damaged(live, ids, NSLAB, 32), 0);
    e0 = samm_error_count();
    for (size_t i = 0; i < NSLAB; i++)
        samm_free_object(live[i]);
    CHECK_EQ(samm_error_count(), e0);
    CHECK_EQ(pstats(0).in_use, 0);
}

/* ------------------------------------------------------------------------
 * The Bloom filter (samm_is_probably_freed)
 * ---------------------------------------------------------------------- */
TEST(probably_freed_huge)
{
    enum { N = 200 };
    void *keep = samm_alloc_object(50000); /* never freed until the end */
    REQUIRE(keep != NULL);
    CHECK_EQ(stats().bloom_memory_bytes, 0);
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = samm_alloc_object(16385 + (size_t)i * 100);
    for (int i = 0; i < N; i++)
        samm_free_object(p[i]);
    int freed_yes = 0;
    for (int i = 0; i < N; i++)
        freed_yes += samm_is_probably_freed(p[i]);
    CHECK_EQ(freed_yes, N);
    CHECK_EQ(samm_is_probably_freed(keep), 0);
    CHECK_EQ(samm_is_probably_freed(NULL), 0);
    /* Addresses never freed at all. */
    static char never[1000 * 16];
    int never_yes = 0;
    for (int i = 0; i < 1000; i++)
        never_yes += samm_is_probably_freed(&never[i * 16]);
    CHECK(never_yes <= 2);
    SAMMStats s = stats();
    CHECK_EQ(s.bloom_memory_bytes, 65536);
    CHECK(s.bloom_false_positive_rate > 0 && s.bloom_false_positive_rate < 1e-6);
    CHECK(s.bloom_false_positives <= (uint64_t)never_yes + 1);
    samm_free_object(keep);
    CHECK_EQ(captured.count, 0);
}

/* samm.h: "large" blocks are those over 1024 bytes. */
TEST(probably_freed_medium)
{
    void *keep = samm_alloc_object(2000);
    void *p = samm_alloc_object(2000);
    void *q = samm_alloc_object(9000);
    REQUIRE(keep && p && q);
    samm_free_object(p);
    samm_free_object(q);
    CHECK_EQ(samm_is_probably_freed(p), 1);
    CHECK_EQ(samm_is_probably_freed(q), 1);
    CHECK_EQ(samm_is_probably_freed(keep), 0);
    samm_free_object(keep);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Trim
 * ---------------------------------------------------------------------- */
static long rss_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(f);
    return rss;
}

/* Resident pages among `pages` (page addresses), from mincore: exact under
 * every tool. */
static size_t resident(const uintptr_t *pages, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char v = 0;
        if (mincore((void *)pages[i], 1, &v) == 0) count += v & 1;
    }
    return count;
}

/* After a spike of a million 64-byte objects, all freed, samm_trim gives
 * the memory back: the pages that held them are no longer resident, and
 * the process RSS falls to at most a fifth of the spike. */
TEST(trim_after_spike)
{
    const size_t n = (size_t)scale(1000000, 100000);
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void **v = malloc(n * sizeof *v);
    uintptr_t *pages = malloc((n * 64 / page + n / 64 + 16) * sizeof *pages);
    REQUIRE(v != NULL && pages != NULL);
    memset(v, 0xFF, n * sizeof *v); /* resident before the baseline */
    memset(pages, 0xFF, (n * 64 / page + n / 64 + 16) * sizeof *pages);
    samm_trim();
    long base = rss_pages();
    REQUIRE(base > 0);
    uint64_t returned = stats().bytes_returned_to_os;
    size_t npages = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = samm_alloc_object(64);
        REQUIRE(v[i] != NULL);
        ((char *)v[i])[0] = 1;
        uintptr_t pg = (uintptr_t)v[i] & ~(uintptr_t)(page - 1);
        if (!npages || pages[npages - 1] != pg) pages[npages++] = pg;
    }
    long spike = rss_pages();
    size_t pages_spike = resident(pages, npages);
    SAMMPoolStats ps = pstats(1);
    CHECK(ps.capacity >= n);
    CHECK_EQ(ps.in_use, n);
    CHECK(ps.peak_in_use >= n);
    for (size_t i = 0; i < n; i++)
        samm_free_object(v[i]);
    samm_trim();
    long after = rss_pages();
    size_t pages_after = resident(pages, npages);
    printf(
        "trim: rss base %ld, spike %ld, after trim %ld pages; object pages resident %zu -> %zu\n",
        base, spike, after, pages_spike, pages_after);
    ps = pstats(1);
    CHECK_EQ(ps.slabs, 0);
    CHECK_EQ(ps.in_use, 0);
    CHECK(ps.bytes_returned_to_os >= (uint64_t)n * 64 * 9 / 10);
    CHECK(stats().bytes_returned_to_os - returned >= (uint64_t)n * 64 * 9 / 10);
    CHECK(pages_spike >= n * 64 / page);
    CHECK(pages_after * 10 <= pages_spike);
    /* The process RSS too, except where the tool keeps shadow memory of
     * the freed pages resident (valgrind, ThreadSanitizer); the mincore
     * check above holds under every tool. */
    if (!ON_VALGRIND() && !SAMM_TEST_TSAN) CHECK((after - base) * 5 <= spike - base);
    free(v);
    free(pages);
    CHECK_EQ(captured.count, 0);
}

/* ------------------------------------------------------------------------
 * Across threads
 * ---------------------------------------------------------------------- */
enum { RN = 20000 };
static void *objs[RN];

static void *free_range(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < n; i++)
        samm_free_object(objs[i]);
    return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, fn, arg) == 0);
    pthread_join(t, NULL);
}

/* Another thread frees this thread's blocks: they come back to this
 * thread (no new slabs), zeroed; a remote double free is caught. */
TEST(remote_free_reuse)
{
    for (size_t i = 0; i < RN; i++) {
        objs[i] = samm_alloc_object(i % 2 ? 64 : 100);
        REQUIRE(objs[i] != NULL);
        memset(objs[i], 0x77, 64);
    }
    uint64_t slabs64 = pstats(1).slabs, slabs128 = pstats(2).slabs;
    run_thread(free_range, (void *)(uintptr_t)RN);
    CHECK_EQ(pstats(1).in_use + pstats(2).in_use, 0);
    size_t not_zero = 0;
    for (size_t i = 0; i < RN; i++) {
        objs[i] = samm_alloc_object(i % 2 ? 64 : 100);
        REQUIRE(objs[i] != NULL);
        if (!all_zero(objs[i], i % 2 ? 64 : 100)) not_zero++;
    }
    CHECK_EQ(not_zero, 0);
    CHECK_EQ(pstats(1).slabs, slabs64);
    CHECK_EQ(pstats(2).slabs, slabs128);
    CHECK_EQ(pstats(1).in_use + pstats(2).in_use, RN);
    run_thread(free_range, (void *)(uintptr_t)RN);
    CHECK_EQ(captured.count, 0);
    run_thread(free_range, (void *)(uintptr_t)1); /* objs[0] again, remotely */
    CHECK_EQ(errors(SAMM_ERR_DOUBLE_FREE), 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(captured.ptr == objs[0]);
    CHECK(is_double_free_message(objs[0]));
    CHECK_EQ(duplicates(objs, RN), 0);
    CHECK_EQ(pstats(1).in_use + pstats(2).in_use, 0);
    expect_errors(1);
}

/* The cleanup worker's pattern: one thread allocates batches, another
 * frees them while the first goes on allocating.  The allocating thread
 * takes the freed slots back rather than grow: 200,000 objects would need
 * over 200 slabs; only a few batches are ever in flight. */
enum { PC_BATCH = 1000, PC_DEPTH = 4 };
static void *pc_queue[PC_DEPTH][PC_BATCH];
static int pc_head, pc_tail, pc_batches;
static pthread_mutex_t pc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc_cond = PTHREAD_COND_INITIALIZER;

static void *consumer(void *arg)
{
    (void)arg;
    static void *batch[PC_BATCH];
    for (int b = 0; b < pc_batches; b++) {
        pthread_mutex_lock(&pc_lock);
        while (pc_head == pc_tail)
            pthread_cond_wait(&pc_cond, &pc_lock);
        memcpy(batch, pc_queue[pc_tail % PC_DEPTH], sizeof batch);
        pc_tail++;
        pthread_cond_broadcast(&pc_cond);
        pthread_mutex_unlock(&pc_lock);
        for (int i = 0; i < PC_BATCH; i++)
            samm_free_object(batch[i]);
    }
    return NULL;
}

TEST(producer_consumer)
{
    pc_batches = scale(200, 50);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, consumer, NULL) == 0);
    static void *batch[PC_BATCH];
    size_t dirty = 0;
    uint64_t most_slabs = 0;
    for (int b = 0; b < pc_batches; b++) {
        for (int i = 0; i < PC_BATCH; i++) {
            unsigned char *p = samm_alloc_object(64);
            REQUIRE(p != NULL);
            if (!all_zero(p, 64)) dirty++;
            memset(p, 0xEE, 64);
            batch[i] = p;
        }
        if (b % 10 == 0) {
            uint64_t s = pstats(1).slabs;
            if (s > most_slabs) most_slabs = s;
        }
        pthread_mutex_lock(&pc_lock);
        while (pc_head - pc_tail == PC_DEPTH)
            pthread_cond_wait(&pc_cond, &pc_lock);
        memcpy(pc_queue[pc_head % PC_DEPTH], batch, sizeof batch);
        pc_head++;
        pthread_cond_broadcast(&pc_cond);
        pthread_mutex_unlock(&pc_lock);
    }
    pthread_join(t, NULL);
    uint64_t s = pstats(1).slabs;
    if (s > most_slabs) most_slabs = s;
    printf("producer/consumer: at most %" PRIu64 " slabs for %d objects\n", most_slabs,
           pc_batches * PC_BATCH);
    CHECK_EQ(dirty, 0);
    CHECK_EQ(pstats(1).in_use, 0);
    CHECK(most_slabs <= 40);
    CHECK_EQ(captured.count, 0);
}

/* A thread ends with blocks live; other threads free them (here a second
 * thread, then this one): no error, nothing counted as leaked, and the
 * memory is back in the statistics at once. */
static void *alloc_1000(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    for (size_t i = 0; i < 1000; i++)
        objs[i] = samm_alloc_object(size);
    return NULL;
}

static void *free_first_half(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 500; i++)
        samm_free_object(objs[i]);
    return NULL;
}

TEST(thread_exit_hands_over)
{
    run_thread(alloc_1000, (void *)(uintptr_t)200);
    CHECK_EQ(pstats(3).in_use, 1000);
    run_thread(free_first_half, NULL);
    CHECK_EQ(captured.count, 0);
    CHECK_EQ(pstats(3).in_use, 500);
    for (size_t i = 500; i < 1000; i++)
        samm_free_object(objs[i]);
    CHECK_EQ(captured.count, 0);
    CHECK_EQ(pstats(3).in_use, 0);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_freed, 1000);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    samm_free_object(objs[5]); /* still known as freed */
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    expect_errors(1);
}

/* A thread ends with half-used slabs; the next thread that needs slabs of
 * that pool takes them over instead of mapping new ones. */
static void *alloc_free_half(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 1000; i++)
        objs[i] = samm_alloc_object(200);
    for (size_t i = 0; i < 1000; i += 2)
        samm_free_object(objs[i]);
    return NULL;
}

static void *objs2[500];
static void *alloc_500(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < 500; i++)
        objs2[i] = samm_alloc_object(256);
    return NULL;
}

TEST(thread_exit_slabs_adopted)
{
    run_thread(alloc_free_half, NULL);
    uint64_t slabs1 = pstats(3).slabs;
    CHECK(slabs1 > 0);
    CHECK_EQ(pstats(3).in_use, 500);
    run_thread(alloc_500, NULL);
    CHECK_EQ(pstats(3).slabs, slabs1); /* taken over, nothing new mapped */
    CHECK_EQ(pstats(3).in_use, 1000);
    static void *all[1000];
    for (size_t i = 0; i < 500; i++) {
        all[i] = objs[2 * i + 1];
        all[500 + i] = objs2[i];
    }
    CHECK_EQ(duplicates(all, 1000), 0);
    for (size_t i = 0; i < 1000; i++)
        samm_free_object(all[i]);
    samm_trim();
    CHECK_EQ(pstats(3).in_use, 0);
    CHECK_EQ(pstats(3).slabs, 0);
    CHECK_EQ(captured.count, 0);
}

/* Threads pass blocks round a ring: each frees what its neighbour made,
 * every size class, checking the contents on the way. */
enum { THREADS = 4, BATCH = 200 };
static int rounds;
static void *ring[THREADS][BATCH];
static pthread_barrier_t barrier;
static atomic_int ring_errors;

static void *ring_worker(void *arg)
{
    int me = (int)(uintptr_t)arg, prev = (me + THREADS - 1) % THREADS;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++) {
            size_t size = (size_t)16 << ((i + r) % 11); /* 16 .. 16384 */
            unsigned char *p = samm_alloc_object(size);
            if (!p || !all_zero(p, size)) atomic_fetch_add(&ring_errors, 1);
            if (p) memset(p, me + 1, size);
            ring[me][i] = p;
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < BATCH; i++) {
            unsigned char *p = ring[prev][i];
            size_t size = (size_t)16 << ((i + r) % 11);
            if (p && !filled_with(p, size, (unsigned char)(prev + 1)))
                atomic_fetch_add(&ring_errors, 1);
            samm_free_object(p);
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

TEST(ring_of_threads)
{
    rounds = scale(50, 10);
    pthread_t t[THREADS];
    pthread_barrier_init(&barrier, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, ring_worker, (void *)(uintptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    CHECK_EQ(atomic_load(&ring_errors), 0);
    CHECK_EQ(captured.count, 0);
    SAMMStats s = stats();
    CHECK_EQ(s.objects_allocated, (uint64_t)THREADS * (uint64_t)rounds * BATCH);
    /* Frees into the slabs of a thread that ended before they arrived are
     * taken in by the next samm_trim (thread_exit_hands_over asks for
     * them to be counted at once). */
    samm_trim();
    s = stats();
    CHECK_EQ(s.objects_freed, s.objects_allocated);
    CHECK_EQ(s.total_bytes_freed, s.total_bytes_allocated);
    uint64_t in_use = 0;
    for (int p = 0; p < SAMM_POOL_COUNT; p++)
        in_use += pstats(p).in_use;
    CHECK_EQ(in_use, 0);
}

CHECK_MAIN(setup)
