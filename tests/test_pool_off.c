/* test_pool_off.c - SAMM_POOL=off: every allocation goes through calloc
 * and the exact live set (for debugging with any tool); double frees are
 * still caught and the byte counts still balance.
 */
#include <stdlib.h>
#include <string.h>

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

static void test_pool_off(void)
{
    capture_on();
    enum { N = 100 };
    void *p[N + 3];
    for (size_t i = 0; i < N; i++) {
        p[i] = samm__obj_alloc(i * 11, "t");
        REQUIRE(p[i] != NULL);
        CHECK((uintptr_t)p[i] % 16 == 0);
        memset(p[i], 1, i * 11);
    }
    for (int k = 0; k < 3; k++)
        CHECK((p[N + k] = samm__desc_alloc(k, "t")) != NULL);
    SAMMStats a = stats();
    CHECK_EQ(a.objects_allocated, N + 3);
    for (int i = 0; i < SAMM_POOL_COUNT; i++) {
        SAMMPoolStats ps;
        REQUIRE(samm_get_pool_stats(i, &ps) == 0);
        CHECK_EQ(ps.allocations, 0);
        CHECK_EQ(ps.slabs, 0);
    }
    for (size_t i = 0; i < N + 3; i++)
        samm__mem_release(p[i], "t");
    SAMMStats b = stats();
    CHECK_EQ(b.objects_freed, N + 3);
    CHECK_EQ(b.total_bytes_freed, b.total_bytes_allocated);
    CHECK_EQ(captured.count, 0);
    samm__mem_release(p[7], "samm_free_object");
    CHECK_EQ(captured.count, 1);
    CHECK_EQ(captured.code, SAMM_ERR_DOUBLE_FREE);
    CHECK(is_double_free_message(p[7]));
    CHECK_EQ(stats().double_free_attempts, 1);
    capture_off();
}

int main(void)
{
    setenv("SAMM_POOL", "off", 1); /* read once, at the first pool call */
    RUN(test_pool_off);
    return check_exit();
}
