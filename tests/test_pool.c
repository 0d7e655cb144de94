/* test_pool.c - the allocation layer on one thread: size classes,
 * alignment, zeroing, double free and foreign pointers, byte accounting,
 * descriptor sizes, the Bloom filter, leaks, out of memory and trim.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "internal.h"

static SAMMStats stats(void)
{
    SAMMStats s;
    memset(&s, 0, sizeof s);
    samm__pool_fill_stats(&s);
    return s;
}

static SAMMPoolStats pstats(int i)
{
    SAMMPoolStats s;
    REQUIRE(samm_get_pool_stats(i, &s) == 0);
    return s;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i]) return 0;
    return 1;
}

/* Must run first: the thread has no heap and the registry no leaf yet. */
static void test_out_of_memory(void)
{
    capture_on();
    samm__fail_after(0, 1000); /* the heap itself */
    CHECK(samm__obj_alloc(64, "t") == NULL);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    captured.count = 0;
    samm__fail_after(1, 1); /* heap succeeds, the slab mapping fails */
    CHECK(samm__obj_alloc(64, "t") == NULL);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    CHECK(strstr(captured.message, "mapping") != NULL);
    captured.count = 0;
    samm__fail_after(1, 1000); /* (heap kept) mapping succeeds, registry leaf fails */
    CHECK(samm__obj_alloc(64, "t") == NULL);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    CHECK(strstr(captured.message, "registry") != NULL);
    samm__fail_reset();
    void *p = samm__obj_alloc(64, "t");
    CHECK(p != NULL);
    samm__mem_release(p, "t");

    /* The large block itself cannot be allocated. */
    captured.count = 0;
    samm__fail_after(0, 1);
    CHECK(samm__obj_alloc(5000, "t") == NULL);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    /* Large-object set growth fails: the block is not handed out. */
    captured.count = 0;
    samm__fail_after(1, 1000);
    CHECK(samm__obj_alloc(5000, "t") == NULL);
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    samm__fail_reset();
    void *big = samm__obj_alloc(5000, "t");
    REQUIRE(big != NULL);

    /* The Bloom filter cannot be allocated: the block is still freed. */
    SAMMStats before = stats();
    captured.count = 0;
    samm__fail_after(0, 1000);
    samm__mem_release(big, "t");
    samm__fail_reset();
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_OUT_OF_MEMORY);
    CHECK_EQ(stats().objects_freed, before.objects_freed + 1);
    CHECK_EQ(stats().bloom_memory_bytes, 0);
    capture_off();
}

static void test_descriptor_sizes(void)
{
    capture_on();
    CHECK_EQ(pstats(6).slot_size, 40);
    CHECK_EQ(pstats(7).slot_size, 32);
    CHECK_EQ(pstats(8).slot_size, 24);
    SAMMPoolStats ps;
    CHECK_EQ(samm_get_pool_stats(SAMM_POOL_COUNT, &ps), -1);
    CHECK_EQ(samm_get_pool_stats(-1, &ps), -1);
    CHECK_EQ(samm_get_pool_stats(0, NULL), -1);
    CHECK_EQ(samm_set_descriptor_sizes(4, 32, 24), -1);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK_EQ(samm_set_descriptor_sizes(40, 1025, 24), -1);
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(samm_set_descriptor_sizes(44, 32, 20), 0);
    CHECK_EQ(pstats(6).slot_size, 48);
    CHECK_EQ(pstats(8).slot_size, 24);
    char *d = samm__desc_alloc(SAMM_DESC_STRING, "t");
    REQUIRE(d != NULL);
    CHECK((uintptr_t)d % 8 == 0);
    CHECK(all_zero(d, 48));
    memset(d, 0x5A, 48);
    CHECK_EQ(pstats(6).in_use, 1);
    CHECK_EQ(samm_set_descriptor_sizes(40, 32, 24), -1); /* pool used */
    CHECK_EQ(captured.count, 3);
    CHECK_EQ(captured.code, SAMM_ERR_BAD_ARGUMENT);
    CHECK(samm__desc_alloc(3, "t") == NULL);
    CHECK_EQ(captured.count, 4);
    samm__mem_release(d, "t");
    d = samm__desc_alloc(SAMM_DESC_STRING, "t");
    CHECK(all_zero(d, 48));
    void *l = samm__desc_alloc(SAMM_DESC_LIST, "t"), *a = samm__desc_alloc(SAMM_DESC_ATOM, "t");
    CHECK(l && a && l != a && (uintptr_t)a % 8 == 0);
    samm__mem_release(d, "t");
    samm__mem_release(l, "t");
    samm__mem_release(a, "t");
    CHECK_EQ(pstats(6).in_use + pstats(7).in_use + pstats(8).in_use, 0);
    CHECK_EQ(captured.count, 4);
    capture_off();
}

static int class_of(size_t n)
{
    int c = 0;
    while (((size_t)32 << c) < n)
        c++;
    return c;
}

static void test_every_size(void)
{
    enum { N = 4096 };
    static char *p[N + 1];
    uint64_t allocs_before[6];
    for (int c = 0; c < 6; c++)
        allocs_before[c] = pstats(c).allocations;
    for (int round = 0; round < 2; round++) {
        size_t bad_align = 0, not_zero = 0, clobbered = 0;
        for (size_t n = 1; n <= N; n++) {
            p[n] = samm__obj_alloc(n, "t");
            REQUIRE(p[n] != NULL);
            if ((uintptr_t)p[n] % 16) bad_align++;
            if (!all_zero(p[n], n)) not_zero++;
            memset(p[n], (int)(n & 0xFF) | 1, n); /* dirty it for the next round */
        }
        for (size_t n = 1; n <= N; n++)
            for (size_t i = 0; i < n; i++)
                if ((unsigned char)p[n][i] != ((n & 0xFF) | 1)) {
                    clobbered++;
                    break;
                }
        CHECK_EQ(bad_align, 0);
        CHECK_EQ(not_zero, 0);
        CHECK_EQ(clobbered, 0);
        for (size_t n = 1; n <= N; n++)
            samm__mem_release(p[n], "t");
    }
    for (int c = 0; c < 6; c++) {
        size_t lo = c ? ((size_t)16 << c) + 1 : 1, hi = (size_t)32 << c;
        CHECK_EQ(pstats(c).allocations - allocs_before[c], 2 * (hi - lo + 1));
    }
    CHECK_EQ(class_of(0), 0);
    void *z = samm__obj_alloc(0, "t");
    CHECK(z != NULL && pstats(0).in_use == 1);
    samm__mem_release(z, "t");
}

static void test_interleaved(void)
{
    enum { N = 3000 };
    static unsigned char *p[N];
    static size_t sz[N];
    static size_t order[N];
    uint32_t seed = 12345;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        sz[i] = (size_t)(seed >> 8) % 1100 + 1;
        p[i] = samm__obj_alloc(sz[i], "t");
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
        for (size_t b = 0; b < sz[i]; b++)
            if (p[i][b] != (unsigned char)(i % 251) + 1) {
                bad++;
                break;
            }
        samm__mem_release(p[i], "t");
    }
    CHECK_EQ(bad, 0);
    for (int c = 0; c < 6; c++)
        CHECK_EQ(pstats(c).in_use, 0);
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

static void test_double_free_pooled(void)
{
    capture_on();
    uint64_t df = stats().double_free_attempts;
    void *p = samm__obj_alloc(48, "t");
    void *q = samm__obj_alloc(48, "t");
    samm__mem_release(p, "t");
    CHECK_EQ(captured.count, 0);
    samm__mem_release(p, "samm_free_object");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(strcmp(captured.call, "samm_free_object") == 0);
    CHECK(captured.ptr == p);
    CHECK(is_double_free_message(p));
    CHECK_EQ(stats().double_free_attempts, df + 1);

    /* The free list is intact: 1000 live objects, all distinct, q kept. */
    enum { N = 1000 };
    static void *v[N + 1];
    for (int i = 0; i < N; i++)
        v[i] = samm__obj_alloc(48, "t");
    v[N] = q;
    qsort(v, N + 1, sizeof *v, cmp_ptr);
    size_t dup = 0;
    for (int i = 0; i < N; i++)
        if (v[i] == v[i + 1]) dup++;
    CHECK_EQ(dup, 0);
    for (int i = 0; i <= N; i++)
        samm__mem_release(v[i], "t");
    CHECK_EQ(captured.count, 1);

    /* Descriptors too. */
    void *d = samm__desc_alloc(SAMM_DESC_LIST, "t");
    samm__mem_release(d, "t");
    samm__mem_release(d, "t");
    CHECK_EQ(captured.count, 2);
    CHECK(is_double_free_message(d));
    capture_off();
}

static void test_double_free_large(void)
{
    capture_on();
    uint64_t df = stats().double_free_attempts;
    void *p = samm__obj_alloc(5000, "t");
    REQUIRE(p != NULL);
    samm__mem_release(p, "t");
    CHECK_EQ(samm_is_probably_freed(p), 1);
    samm__mem_release(p, "samm_free_object");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(captured.ptr == p);
    CHECK(is_double_free_message(p));
    CHECK_EQ(stats().double_free_attempts, df + 1);
    capture_off();
}

static void test_bad_pointers(void)
{
    capture_on();
    char *p = samm__obj_alloc(64, "t");
    samm__mem_release(p + 16, "samm_free_object");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    CHECK(captured.ptr == p + 16);
    /* The slab header is not a slot either. */
    samm__mem_release((void *)((uintptr_t)p & ~(uintptr_t)0xFFFF), "t");
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
    CHECK_EQ(pstats(1).in_use, 1); /* p was not freed */
    samm__mem_release(p, "t");
    CHECK_EQ(captured.count, 2);
    samm__mem_release(NULL, "t");
    CHECK_EQ(captured.count, 2);

    /* A block made while SAMM was off is free()d and counted.  (Only when
     * the Bloom filter does not know its address: a foreign block at an
     * address where a large object was freed is taken for a double free.) */
    uint64_t foreign = stats().foreign_frees;
    void *m = malloc(100);
    REQUIRE(samm_is_probably_freed(m) == 0);
    samm__mem_release(m, "t");
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(stats().foreign_frees, foreign + 1);

    /* What cannot be a malloc block is reported, not passed to free()
     * (which would abort the program): the stack, static data, a pointer
     * inside a block. */
    static long in_static[4];
    long on_stack[4] = {0};
    char *inside = malloc(64);
    REQUIRE(inside != NULL);
    void *bad[] = {on_stack, in_static, inside + 8};
    static const char *const why[] = {"stack", "static", "misaligned"};
    for (int i = 0; i < 3; i++) {
        captured.count = 0;
        samm__mem_release(bad[i], "samm_free_object");
        CHECK_EQ(captured.count, 1);
        CHECK_EQ(captured.code, SAMM_ERR_FOREIGN_POINTER);
        CHECK(captured.ptr == bad[i]);
        CHECK(strstr(captured.message, why[i]) != NULL);
    }
    CHECK_EQ(stats().foreign_frees, foreign + 1);
    CHECK_EQ(on_stack[0] + in_static[0], 0);
    free(inside);
    capture_off();
}

static void test_byte_accounting(void)
{
    static const size_t sizes[] = {1, 31, 32, 33, 100, 500, 1000, 1024, 1025, 3000, 70000};
    enum { NS = sizeof sizes / sizeof *sizes };
    static const size_t charged[NS] = {32, 32, 32, 64, 128, 512, 1024, 1024, 1040, 3008, 70000};
    void *p[NS + 3];
    SAMMStats a = stats();
    uint64_t expect = 0;
    for (int i = 0; i < NS; i++) {
        p[i] = samm__obj_alloc(sizes[i], "t");
        expect += charged[i];
    }
    for (int k = 0; k < 3; k++) {
        p[NS + k] = samm__desc_alloc(k, "t");
        expect += pstats(6 + k).slot_size;
    }
    SAMMStats b = stats();
    CHECK_EQ(b.objects_allocated - a.objects_allocated, NS + 3);
    CHECK_EQ(b.total_bytes_allocated - a.total_bytes_allocated, expect);
    CHECK_EQ(b.objects_freed, a.objects_freed);
    for (int i = 0; i < NS + 3; i++)
        samm__mem_release(p[i], "t");
    SAMMStats c = stats();
    CHECK_EQ(c.objects_freed - b.objects_freed, NS + 3);
    CHECK_EQ(c.total_bytes_freed - b.total_bytes_freed, expect);
    CHECK_EQ(c.total_bytes_allocated - c.total_bytes_freed,
             a.total_bytes_allocated - a.total_bytes_freed);
}

static void test_bloom(void)
{
    enum { N = 200 };
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = samm__obj_alloc(2000 + (size_t)i, "t");
    for (int i = 0; i < N; i++)
        samm__mem_release(p[i], "t");
    int freed_yes = 0;
    for (int i = 0; i < N; i++)
        freed_yes += samm_is_probably_freed(p[i]);
    CHECK_EQ(freed_yes, N);
    /* Addresses that were never freed (malloc may hand a freed address out
     * again, so these come from a static array). */
    static char never[1000 * 16];
    int never_yes = 0;
    for (int i = 0; i < 1000; i++)
        never_yes += samm_is_probably_freed(&never[i * 16]);
    CHECK(never_yes <= 2);
    CHECK_EQ(samm_is_probably_freed(NULL), 0);
    SAMMStats s = stats();
    CHECK_EQ(s.bloom_memory_bytes, 65536);
    CHECK(s.bloom_false_positive_rate > 0 && s.bloom_false_positive_rate < 1e-6);
    CHECK(s.bloom_false_positives <= (uint64_t)never_yes + 1);
}

static void test_leak_report(void)
{
    capture_on();
    samm__pool_report_leaks("samm_shutdown");
    CHECK_EQ(captured.count, 0);
    void *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = samm__obj_alloc(20, "t");
    void *big = samm__obj_alloc(2000, "t");
    samm__pool_report_leaks("samm_shutdown");
    CHECK_EQ(captured.count, 2);
    CHECK_EQ(captured.code, SAMM_ERR_LEAK);
    CHECK(strstr(captured.message, "1 large objects (2000 bytes)") != NULL);
    capture_on();
    samm__mem_release(big, "t");
    samm__pool_report_leaks("samm_shutdown");
    CHECK_EQ(captured.count, 1);
    CHECK(strcmp(captured.message,
                 "leak: 3 objects (96 bytes) still in use in the 32-byte object pool") == 0);
    CHECK(strcmp(captured.call, "samm_shutdown") == 0);
    for (int i = 0; i < 3; i++)
        samm__mem_release(p[i], "t");
    capture_off();
}

/* Under Valgrind, a released slot is unaddressable to memcheck (so a use
 * after free is reported) and a live one is addressable and defined. */
static void test_memcheck_marks(void)
{
#ifdef HAVE_MEMCHECK
    if (!RUNNING_ON_VALGRIND) return;
    unsigned char vbits[64];
    char *p = samm__obj_alloc(64, "t");
    CHECK_EQ(VALGRIND_GET_VBITS(p, vbits, 64), 1);
    CHECK(all_zero(vbits, 64)); /* all bits defined */
    samm__mem_release(p, "t");
    CHECK_EQ(VALGRIND_GET_VBITS(p, vbits, 64), 3);
    void *d = samm__desc_alloc(SAMM_DESC_ATOM, "t");
    samm__mem_release(d, "t");
    CHECK_EQ(VALGRIND_GET_VBITS(d, vbits, 8), 3);
#endif
}

/* A loop that fills and empties 10 slabs keeps them (no madvise, no page
 * faults) until trim.  Slabs become purgeable 100 ms after they empty, so
 * the check is skipped if the machine stalled us that long. */
static void test_hysteresis(void)
{
    enum { N = 600 }; /* 1024-byte slots: 10 slabs */
    void *v[N];
    /* Empty slabs left by earlier tests may be older than 100 ms and are
     * rightly purged when more slabs empty: start without any. */
    samm_trim();
    uint64_t returned = pstats(5).bytes_returned_to_os;
    double t0 = now_ms();
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            v[i] = samm__obj_alloc(1000, "t");
        for (int i = 0; i < N; i++)
            samm__mem_release(v[i], "t");
    }
    if (now_ms() - t0 < 50) {
        CHECK_EQ(pstats(5).bytes_returned_to_os, returned);
        CHECK(pstats(5).slabs >= 10);
    }
    samm_trim();
    CHECK_EQ(pstats(5).slabs, 0);
    CHECK(pstats(5).bytes_returned_to_os > returned);
}

static long rss_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(f);
    return rss;
}

/* Resident pages in the given slabs, from mincore: exact under any tool. */
static size_t resident_in_slabs(const uintptr_t *slabs, size_t n)
{
    size_t pages = 0, ps = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char vec[65536 / 4096];
    for (size_t i = 0; i < n; i++) {
        if (mincore((void *)slabs[i], 65536, vec) != 0) continue;
        for (size_t j = 0; j < 65536 / ps; j++)
            pages += vec[j] & 1;
    }
    return pages;
}

static void test_trim(void)
{
    size_t n = RUNNING_ON_VALGRIND ? 100000 : 1000000;
    void **v = malloc(n * sizeof *v);
    uintptr_t *slabs = malloc(n / 64 * sizeof *slabs);
    REQUIRE(v != NULL && slabs != NULL);
    memset(v, 0xFF, n * sizeof *v); /* resident before the baseline */
    memset(slabs, 0xFF, n / 64 * sizeof *slabs);
    samm_trim();
    long base = rss_pages();
    uint64_t returned = stats().bytes_returned_to_os;
    size_t nslabs = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = samm__obj_alloc(64, "t");
        ((char *)v[i])[0] = 1;
        uintptr_t s = (uintptr_t)v[i] & ~(uintptr_t)0xFFFF;
        if (!nslabs || slabs[nslabs - 1] != s) slabs[nslabs++] = s;
    }
    long spike = rss_pages();
    size_t slab_pages_spike = resident_in_slabs(slabs, nslabs);
    SAMMPoolStats ps = pstats(1);
    CHECK(ps.capacity >= n && ps.in_use == n && ps.peak_in_use >= n);
    for (size_t i = 0; i < n; i++)
        samm__mem_release(v[i], "t");
    samm_trim();
    long after = rss_pages();
    size_t slab_pages_after = resident_in_slabs(slabs, nslabs);
    printf("trim: rss base %ld, spike %ld, after trim %ld pages; slab pages %zu -> %zu\n", base,
           spike, after, slab_pages_spike, slab_pages_after);
    CHECK_EQ(pstats(1).slabs, 0);
    CHECK(stats().bytes_returned_to_os - returned >= (uint64_t)n * 64 * 9 / 10);
    /* Only each slab's header page stays. */
    CHECK(slab_pages_after * 10 <= slab_pages_spike);
    /* Process RSS, except where the tool's own shadow memory of the slabs
     * stays resident (Valgrind, ThreadSanitizer). */
    if (!RUNNING_ON_VALGRIND && !SAMM_TEST_TSAN) CHECK((after - base) * 5 <= spike - base);
    free(v);
    free(slabs);

    /* Trimmed slabs are reused, and a stale pointer into one is still
     * recognised as a double free. */
    capture_on();
    void *p = samm__obj_alloc(64, "t");
    samm__mem_release(p, "t");
    samm_trim();
    samm__mem_release(p, "t");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    capture_off();
}

int main(void)
{
    RUN(test_out_of_memory);
    RUN(test_bad_pointers); /* before any large object is freed */
    RUN(test_descriptor_sizes);
    RUN(test_every_size);
    RUN(test_interleaved);
    RUN(test_double_free_pooled);
    RUN(test_double_free_large);
    RUN(test_byte_accounting);
    RUN(test_bloom);
    RUN(test_leak_report);
    RUN(test_memcheck_marks);
    RUN(test_hysteresis);
    RUN(test_trim);
    return check_exit();
}
