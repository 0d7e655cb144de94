/* SPDX-License-Identifier: MIT */
/* check.h - the test suite's assertion header and runner.
 *
 * A test file defines its cases with TEST(name) or TEST_BOTH(name) (run
 * once per cleanup mode) and ends with CHECK_MAIN(setup).  The program runs
 * exactly one case per process, named on the command line, so cases never
 * depend on each other's order or leftovers; `--list` prints the names.
 * CMake registers every case as a CTest test of its own (tests/
 * CMakeLists.txt reads the TEST lines of the source).
 *
 * CHECK(cond) and CHECK_EQ(a, b) record a failure with file and line and
 * let the case go on; REQUIRE stops it.  A case passes when no check
 * failed and libsamm reported no error it did not expect (expect_errors).
 */
#ifndef SAMM_CHECK_H
#define SAMM_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samm.h"

static int check_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        intmax_t check_a_ = (intmax_t)(a), check_b_ = (intmax_t)(b);                               \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %jd != %jd\n", __FILE__, __LINE__,    \
                    #a, #b, check_a_, check_b_);                                                   \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Stops the case at once (for conditions later code depends on). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------------
 * Cases
 * ---------------------------------------------------------------------- */
typedef struct {
    const char *name;
    void (*fn)(void);
    int both; /* run as name.inline and name.background */
} check_case;

#define CHECK_MAX_CASES 256
static check_case check_cases[CHECK_MAX_CASES];
static int check_ncases;

static inline void check_register(const char *name, void (*fn)(void), int both)
{
    if (check_ncases < CHECK_MAX_CASES) check_cases[check_ncases++] = (check_case){name, fn, both};
}

#define CHECK_DEFINE_(name, both)                                                                  \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void check_reg_##name(void)                                \
    {                                                                                              \
        check_register(#name, test_##name, both);                                                  \
    }                                                                                              \
    static void test_##name(void)

#define TEST(name) CHECK_DEFINE_(name, 0)
#define TEST_BOTH(name) CHECK_DEFINE_(name, 1)

/* The cleanup mode a TEST_BOTH case runs in (SAMMCleanupMode). */
static int check_mode;

/* Errors the running case expects libsamm to report; any other fails it.
 * The count is read at the end of the case (after samm_shutdown). */
static uint64_t check_expected_errors;
static inline void expect_errors(uint64_t n)
{
    check_expected_errors += n;
}

static int check_list(void)
{
    for (int i = 0; i < check_ncases; i++) {
        if (check_cases[i].both)
            printf("%s.inline\n%s.background\n", check_cases[i].name, check_cases[i].name);
        else
            printf("%s\n", check_cases[i].name);
    }
    return 0;
}

/* Runs the case `arg` names: setup (may be NULL), the case, samm_shutdown,
 * then the verdict. */
static int check_run(const char *arg, void (*setup)(void))
{
    char name[128];
    snprintf(name, sizeof name, "%s", arg);
    char *dot = strrchr(name, '.');
    int mode = -1;
    if (dot && strcmp(dot, ".inline") == 0) mode = SAMM_CLEANUP_INLINE;
    if (dot && strcmp(dot, ".background") == 0) mode = SAMM_CLEANUP_BACKGROUND;
    if (mode >= 0) *dot = '\0';
    for (int i = 0; i < check_ncases; i++) {
        const check_case *c = &check_cases[i];
        if (strcmp(c->name, name) != 0 || (c->both != 0) != (mode >= 0)) continue;
        check_mode = mode < 0 ? SAMM_CLEANUP_INLINE : mode;
        samm_init();
        samm_set_cleanup_mode((SAMMCleanupMode)check_mode);
        if (setup) setup();
        c->fn();
        samm_shutdown();
        uint64_t errs = samm_error_count();
        if (errs != check_expected_errors) {
            fprintf(stderr,
                    "%s: libsamm reported %" PRIu64 " error(s), the case expected %" PRIu64 "\n",
                    arg, errs, check_expected_errors);
            check_failures++;
        }
        printf("%s %s\n", check_failures ? "FAIL" : "ok  ", arg);
        return check_failures ? 1 : 0;
    }
    fprintf(stderr, "no test case %s (--list shows them)\n", arg);
    return 2;
}

/* The test program's main: `prog --list`, or `prog CASE`. */
#define CHECK_MAIN(setup)                                                                          \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        if (argc == 2 && strcmp(argv[1], "--list") == 0) return check_list();                      \
        if (argc != 2) {                                                                           \
            fprintf(stderr, "usage: %s --list | CASE\n", argv[0]);                                 \
            return 2;                                                                              \
        }                                                                                          \
        return check_run(argv[1], setup);                                                          \
    }

#endif
