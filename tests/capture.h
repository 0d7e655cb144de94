/* capture.h - error capture for the pool tests: an error handler that
 * records the last error (code, call, pointer, message) and a count.
 */
#ifndef SAMM_CAPTURE_H
#define SAMM_CAPTURE_H

#include <stdio.h>
#include <string.h>

#include "samm.h"

static struct {
    int count;
    SAMMErrorCode code;
    char call[64];
    const void *ptr;
    char message[256];
} captured;

static void capture_fn(const SAMMError *e, void *user)
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

#endif
