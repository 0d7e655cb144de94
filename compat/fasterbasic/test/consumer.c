/* SPDX-License-Identifier: MIT */
/* consumer.c - a program built against the installed compatibility library
 * the way a FasterBASIC program is: its C side compiled against
 * samm_bridge.h and samm_pool.h, linked with -lsamm_fasterbasic -lsamm.
 * It defines the runtime's string_release, which the library must find
 * and register (also from the shared library).  Run with
 * SAMM_CLEANUP=background, a worker must clean the scope: the library
 * leaves an explicitly chosen mode alone.  Without it, the runtime's types
 * are pinned: the scope is cleaned on this thread, even in background mode
 * (set here at run time).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samm_bridge.h"
#include "samm_pool.h"

typedef struct {
    void *data;
    int64_t length, capacity;
    int32_t refcount;
    uint8_t encoding, dirty, padding[2];
    char *utf8_cache;
} Str;

/* From samm.h, which a FasterBASIC program does not include (its
 * SAMMCleanupMode is an int; 1 is background). */
void samm_set_cleanup_mode(int mode);

static int released;

void string_release(Str *s);
void string_release(Str *s)
{
    if (--s->refcount > 0) return;
    samm_untrack(s);
    samm_slab_pool_free(&g_string_desc_pool, s);
    samm_record_bytes_freed(sizeof *s);
    released++;
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *mode = getenv("SAMM_CLEANUP");
    int background = mode != NULL && strcmp(mode, "background") == 0;
    samm_init();
    if (!background) samm_set_cleanup_mode(1); /* background, but the types are pinned */
    samm_enter_scope();
    Str *s = samm_alloc_string();
    if (s == NULL || s->refcount != 1 || s->encoding != 0 || s->dirty != 1) return 1;
    samm_exit_scope();
    samm_wait();
    if (released != 1) return 2;
    samm_exit_scope(); /* at depth 0: silent, as in the original */
    struct {
        SAMMStats st;
        unsigned char guard[64];
    } g;
    memset(&g, 0x5A, sizeof g);
    samm_get_stats(&g.st);
    for (size_t i = 0; i < sizeof g.guard; i++)
        if (g.guard[i] != 0x5A) return 3;
    if (g.st.scopes_entered != 1 || g.st.strings_tracked != 1) return 4;
    if (g.st.background_worker_active != background) return 5; /* a worker ran iff not pinned */
    samm_shutdown();
    puts("samm-fasterbasic consumer: ok");
    return 0;
}
