/* SPDX-License-Identifier: MIT */
/* fixtures.h - what the test programs share besides assertions (check.h):
 * where they run (valgrind, TSan, scale), time, the cleanup mode of a
 * TEST_BOTH case, error capture (last error, and atomic tallies by code)
 * and destructor vtables.  Per-test objects and counters stay in their
 * files.
 */
#ifndef SAMM_FIXTURES_H
#define SAMM_FIXTURES_H

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "samm.h"

/* Statics a test program may not use. */
#define FIXTURE_UNUSED __attribute__((unused))

/* ------------------------------------------------------------------------
 * Environment: valgrind (memcheck's client requests where installed), TSan.
 * ---------------------------------------------------------------------- */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h> /* includes valgrind.h: RUNNING_ON_VALGRIND */
#define HAVE_MEMCHECK 1
#elif __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#define ON_VALGRIND() (RUNNING_ON_VALGRIND != 0)

/* SAMM_TEST_TSAN: 1 in a ThreadSanitizer build (GCC or Clang), else 0. */
#if defined(__SANITIZE_THREAD__)
#define SAMM_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SAMM_TEST_TSAN 1
#endif
#endif
#ifndef SAMM_TEST_TSAN
#define SAMM_TEST_TSAN 0
#endif

/* Scale: full counts natively, smaller where every access is watched
 * (valgrind, ThreadSanitizer). */
static inline int scale(int native, int watched)
{
    return ON_VALGRIND() || SAMM_TEST_TSAN ? watched : native;
}

/* ------------------------------------------------------------------------
 * Time
 * ---------------------------------------------------------------------- */
static inline void sleep_ms(int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------------
 * Cleanup mode of the running case (check.h sets it before the case).
 * ---------------------------------------------------------------------- */
static inline SAMMCleanupMode test_mode(void)
{
    return (SAMMCleanupMode)check_mode;
}

static inline int background(void)
{
    return check_mode == SAMM_CLEANUP_BACKGROUND;
}

/* ------------------------------------------------------------------------
 * Error capture on one thread: capture_on() installs a handler that
 * records the last error (code, call, pointer, message) and a count.
 * ---------------------------------------------------------------------- */
static struct {
    int count;
    SAMMErrorCode code;
    char call[64];
    const void *ptr;
    char message[256];
} captured FIXTURE_UNUSED;

static inline void capture_fn(const SAMMError *e, void *user)
{
    (void)user;
    captured.count++;
    captured.code = e->code;
    snprintf(captured.call, sizeof captured.call, "%s", e->call);
    captured.ptr = e->ptr;
    snprintf(captured.message, sizeof captured.message, "%s", e->message);
}

static inline void capture_on(void)
{
    memset(&captured, 0, sizeof captured);
    samm_set_error_handler(capture_fn, NULL);
}

static inline void capture_off(void)
{
    samm_set_error_handler(NULL, NULL);
}

/* The message the library must give for a double free of `p`. */
static inline int is_double_free_message(const void *p)
{
    char want[64];
    snprintf(want, sizeof want, "double free of %p", p);
    return strcmp(captured.message, want) == 0;
}

/* ------------------------------------------------------------------------
 * Error tallies from any thread: count_error is an error handler (or the
 * tail of one) that counts each error by its code.
 * ---------------------------------------------------------------------- */
#define ERR_CODES 32
static atomic_int err_by_code[ERR_CODES] FIXTURE_UNUSED;

static inline void count_error(const SAMMError *e, void *user)
{
    (void)user;
    int c = (int)e->code;
    atomic_fetch_add(&err_by_code[c > 0 && c < ERR_CODES ? c : 0], 1);
}

static inline int errors(int code)
{
    return atomic_load(&err_by_code[code]);
}

static inline int errors_total(void)
{
    int n = 0;
    for (int i = 0; i < ERR_CODES; i++)
        n += atomic_load(&err_by_code[i]);
    return n;
}

/* ------------------------------------------------------------------------
 * Objects: the first word points at a vtable whose slot
 * SAMM_VTABLE_DESTRUCTOR_SLOT is the destructor.
 * ---------------------------------------------------------------------- */
typedef void (*dtor_fn)(void *);

/* Defines `static const dtor_fn name[]` with `fn` as its destructor. */
#define DTOR_VTABLE(name, fn)                                                                      \
    static const dtor_fn name[SAMM_VTABLE_DESTRUCTOR_SLOT + 1] = {[SAMM_VTABLE_DESTRUCTOR_SLOT] =  \
                                                                      (fn)}

#endif
