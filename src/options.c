/* SPDX-License-Identifier: MIT */
/* options.c - the SAMM_* environment variables, read in one place at
 * samm_init (README, "Environment", lists them), tracing and the clock for
 * timing statistics.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

samm_options samm__opt;
atomic_int samm__trace_on;
atomic_int samm__timing_on;

bool samm__env_flag(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return false;
    static const char *const off[] = {"0", "off", "no", "false"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
        if (strcasecmp(v, off[i]) == 0) return false;
    return true;
}

/* A whole number in lo..hi, or `dflt` (reported when set but not one). */
static long long env_number(const char *name, long long lo, long long hi, long long dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return dflt;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end == '\0' && n >= lo && n <= hi) return n;
    samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_init", NULL,
                 "%s=%s not understood (%lld..%lld); using %lld", name, v, lo, hi, dflt);
    return dflt;
}

/* SAMM_FAIL_AT=k: the k-th allocation libsamm makes in this process fails
 * (the fault-injection sweep, tests/fault_sweep.c).  Armed once; at exit a
 * line says whether it happened. */
static long long fail_at;

static void fault_report(void)
{
    char line[160];
    if (samm__fail_count() > 0)
        snprintf(line, sizeof line, "samm: fault injection: allocation %lld failed\n", fail_at);
    else
        snprintf(line, sizeof line,
                 "samm: fault injection: allocation %lld never made (%llu made)\n", fail_at,
                 (unsigned long long)samm__alloc_count());
    samm__out(line);
}

static void arm_fault_injection(void)
{
    static bool armed;
    if (armed) return;
    armed = true;
    fail_at = env_number("SAMM_FAIL_AT", 0, (long long)1 << 40, 0);
    if (fail_at <= 0) return;
    samm__fail_after((long)(fail_at - 1 - (long long)samm__alloc_count()), 1);
    atexit(fault_report);
}

void samm__options_read(void)
{
    samm_options *o = &samm__opt;
    o->cleanup_mode = SAMM_CLEANUP_AUTO;
    const char *mode = getenv("SAMM_CLEANUP");
    if (mode && *mode) {
        if (strcasecmp(mode, "background") == 0)
            o->cleanup_mode = SAMM_CLEANUP_BACKGROUND;
        else if (strcasecmp(mode, "inline") == 0)
            o->cleanup_mode = SAMM_CLEANUP_INLINE;
        else if (strcasecmp(mode, "auto") != 0)
            samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_init", NULL,
                         "SAMM_CLEANUP=%s not understood (auto, inline or background); using auto",
                         mode);
    }
    o->workers = (int)env_number("SAMM_WORKERS", 0, 64, 0);
    o->trace = samm__env_flag("SAMM_TRACE");
    o->stats_at_exit = samm__env_flag("SAMM_STATS");
    o->leaks_at_exit = samm__env_flag("SAMM_LEAKS");
    o->sites = samm__env_flag("SAMM_SITES");
    o->queue_batches = (size_t)env_number("SAMM_QUEUE_BATCHES", 1, 1 << 24, 1024);
    arm_fault_injection();
    if (o->stats_at_exit || o->trace) atomic_store(&samm__timing_on, 1);
}

void samm_set_trace(int on)
{
    samm__ensure_init();
    int was = atomic_exchange(&samm__trace_on, on != 0);
    if (on) atomic_store(&samm__timing_on, 1);
    /* Every enter and exit is traced: the fast paths, which write nothing,
     * must fail on every thread until tracing is off again (each thread's
     * next slow path then restores its own limits). */
    if (on && !was) samm__tld_each(samm__poke_slow, NULL);
}

void samm__trace_line(const char *fmt, ...)
{
    char msg[200], line[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "samm[trace %lx]: %s\n", (unsigned long)pthread_self(), msg);
    samm__out(line);
}

uint64_t samm__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *samm_version(void)
{
    return SAMM_VERSION_STRING;
}

int samm_version_number(void)
{
    return SAMM_VERSION_NUMBER;
}
