/* SPDX-License-Identifier: MIT */
/* error.c - how errors leave the library: one user-settable handler, a
 * default that prints one "samm: ..." line to the output (stderr unless
 * the program says otherwise), a count; and what a
 * failed assertion of a debug build does.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_error_fn handler;
static void *handler_user;
static atomic_uint_fast64_t error_count;

samm_error_fn samm_set_error_handler(samm_error_fn fn, void *user)
{
    pthread_mutex_lock(&handler_lock);
    samm_error_fn old = handler;
    handler = fn;
    handler_user = user;
    pthread_mutex_unlock(&handler_lock);
    return old;
}

samm_error_fn samm_get_error_handler(void **user)
{
    pthread_mutex_lock(&handler_lock);
    samm_error_fn fn = handler;
    if (user) *user = handler_user;
    pthread_mutex_unlock(&handler_lock);
    return fn;
}

const char *samm_error_name(SAMMErrorCode code)
{
    switch (code) {
    case SAMM_ERR_OUT_OF_MEMORY:
        return "out of memory";
    case SAMM_ERR_BAD_DEPTH:
        return "bad scope depth";
    case SAMM_ERR_EXIT_AT_GLOBAL:
        return "exit at global scope";
    case SAMM_ERR_DOUBLE_FREE:
        return "double free";
    case SAMM_ERR_FOREIGN_POINTER:
        return "foreign pointer";
    case SAMM_ERR_NOT_TRACKED:
        return "not tracked";
    case SAMM_ERR_SCOPE_IMBALANCE:
        return "scope imbalance";
    case SAMM_ERR_LEAK:
        return "leak";
    case SAMM_ERR_BAD_ARGUMENT:
        return "bad argument";
    case SAMM_ERR_INTERIOR_POINTER:
        return "interior pointer";
    case SAMM_ERR_DOUBLE_TRACK:
        return "double track";
    case SAMM_ERR_NOT_OWNER:
        return "not owner";
    case SAMM_ERR_FREED_POINTER:
        return "freed pointer";
    }
    return "unknown error";
}

/* fork(): taken last before fork and released first after it, because
 * errors are reported while other library locks (the worker's, the
 * pools') are held.  A child must never inherit it locked. */
void samm__error_atfork_prepare(void)
{
    pthread_mutex_lock(&handler_lock);
}

void samm__error_atfork_release(void)
{
    pthread_mutex_unlock(&handler_lock);
}

uint64_t samm_error_count(void)
{
    return atomic_load(&error_count);
}

void samm__report(SAMMErrorCode code, const char *call, const void *ptr, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    atomic_fetch_add(&error_count, 1);

    pthread_mutex_lock(&handler_lock);
    samm_error_fn fn = handler;
    void *user = handler_user;
    pthread_mutex_unlock(&handler_lock);

    SAMMError err = {code, call ? call : "?", ptr, msg};
    /* An error the handler itself causes goes to the default printer: the
     * handler is never entered again from inside itself. */
    static _Thread_local bool in_handler;
    if (fn && !in_handler) {
        in_handler = true;
        fn(&err, user);
        in_handler = false;
        return;
    }
    samm_default_error_handler(&err, NULL);
}

void samm_default_error_handler(const SAMMError *err, void *user)
{
    (void)user;
    if (err == NULL) return;
    /* One write per line so lines from several threads do not interleave. */
    char line[400];
    snprintf(line, sizeof line, "samm: %s in %s\n", err->message ? err->message : "?",
             err->call ? err->call : "?");
    samm__out(line);
}

void samm__assert_fail(const char *cond, const char *file, int line, const char *func)
{
    char msg[512];
    snprintf(msg, sizeof msg, "samm: assertion failed: %s (%s:%d, %s)\n", cond, file, line, func);
    fputs(msg, stderr);
    abort();
}
