/* SPDX-License-Identifier: MIT */
/* test_memcheck.c - Valgrind memcheck sees libsamm's free slots as
 * inaccessible and live ones as usable (the check build's hooks).  It runs
 * only under Valgrind (registered as valgrind:test_memcheck.*), and fails
 * anywhere else: a check that passes without the tool proves nothing.
 */
#include <string.h>

#include "check.h"
#include "fixtures.h"

#ifndef HAVE_MEMCHECK
#error "test_memcheck needs valgrind/memcheck.h (apt-get install valgrind)"
#endif

/* 3: not addressable, 1: addressable (VALGRIND_GET_VBITS, which reports
 * nothing itself). */
static int vbits(const void *p, size_t n)
{
    static unsigned char bits[1 << 17];
    REQUIRE(n <= sizeof bits);
    return VALGRIND_GET_VBITS(p, bits, n);
}

static void setup(void)
{
    REQUIRE(ON_VALGRIND());
}

TEST(freed_slot_inaccessible)
{
    char *p = samm_alloc_object(48);
    CHECK_EQ(vbits(p, 48), 1);
    samm_free_object(p);
    CHECK_EQ(vbits(p, 48), 3);
    CHECK_EQ(vbits(p, 1), 3);
}

TEST_BOTH(cleaned_slot_inaccessible)
{
    samm_enter_scope();
    char *p = samm_alloc(40, SAMM_ALLOC_GENERIC);
    char *s = samm_alloc_string();
    samm_track_string(s);
    samm_exit_scope();
    samm_wait();
    CHECK_EQ(vbits(p, 40), 3);
    CHECK_EQ(vbits(s, 40), 3);
}

TEST(huge_block_inaccessible)
{
    char *h = samm_alloc_object(200000);
    memset(h, 1, 200000);
    CHECK_EQ(vbits(h, 200000 > (1 << 17) ? (1 << 17) : 200000), 1);
    samm_free_object(h);
    CHECK_EQ(vbits(h, 64), 3);
}

/* A block handed out again is defined zero, and usable. */
TEST(reused_slot_accessible)
{
    char *p = samm_alloc_object(64);
    memset(p, 0xff, 64);
    samm_free_object(p);
    char *q = samm_alloc_object(64);
    CHECK(q == p);
    CHECK_EQ(vbits(q, 64), 1);
    for (int i = 0; i < 64; i++)
        CHECK_EQ(q[i], 0);
    samm_free_object(q);
}

CHECK_MAIN(setup)
