/* check.h - the test suite's tiny assertion header.
 *
 * CHECK(cond) and CHECK_EQ(a, b) record a failure with file and line and
 * let the test go on; RUN(fn) runs one test function and prints its
 * verdict; check_exit() returns the process status CTest reads.
 */
#ifndef SAMM_CHECK_H
#define SAMM_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures;
static int check_fn_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            check_failures++;                                                                      \
            check_fn_failures++;                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        intmax_t check_a_ = (intmax_t)(a), check_b_ = (intmax_t)(b);                               \
        if (check_a_ != check_b_) {                                                                \
            fprintf(stderr, "%s:%d: CHECK_EQ(%s, %s) failed: %jd != %jd\n", __FILE__, __LINE__,    \
                    #a, #b, check_a_, check_b_);                                                   \
            check_failures++;                                                                      \
            check_fn_failures++;                                                                   \
        }                                                                                          \
    } while (0)

/* Stops the test at once (for conditions later code depends on). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        check_fn_failures = 0;                                                                     \
        fn();                                                                                      \
        printf("%s %s\n", check_fn_failures ? "FAIL" : "ok  ", #fn);                               \
        fflush(stdout);                                                                            \
    } while (0)

static inline int check_exit(void)
{
    if (check_failures) fprintf(stderr, "%d check(s) failed\n", check_failures);
    return check_failures ? 1 : 0;
}

#endif
