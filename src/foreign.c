/* SPDX-License-Identifier: MIT */
/* foreign.c - pointers that are not libsamm's.  DESIGN asks that a block
 * libsamm never allocated be released with free(), as the original runtime
 * did; but free() aborts on anything that is not a malloc block.  So a
 * foreign pointer reaches free() only when it can be one: aligned, mapped,
 * not on the stack of any thread that uses libsamm (the worker included),
 * not inside a loaded image, and not in libsamm's memory (the caller has
 * asked the registry).  Otherwise it is reported and left alone.
 *
 * These are facts about the address, not guesses about its history: a
 * pointer into the middle of a malloc block passes them all and is the
 * one case that still reaches free() (see README, "What is detected").
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* malloc's alignment on every ABI libsamm supports is at least this. */
#define MALLOC_ALIGN sizeof(void *)

/* Where the main heap (brk) starts: the [heap] line of /proc/self/maps,
 * or the break itself when there is no heap yet. */
static uintptr_t heap_lo;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;

static void find_heap(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (strstr(line, "[heap]") && sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
            heap_lo = (uintptr_t)lo;
            break;
        }
    }
    if (f) fclose(f);
    if (heap_lo == 0) heap_lo = (uintptr_t)sbrk(0);
}

static bool mapped(uintptr_t a)
{
    /* The main heap needs no system call: between its start and the
     * current break. */
    pthread_once(&heap_once, find_heap);
    if (a >= heap_lo && a < (uintptr_t)sbrk(0)) return true;
    size_t page = samm__os_page_size();
    unsigned char vec;
    void *pg = (void *)(a & ~(uintptr_t)(page - 1));
    return mincore(pg, 1, &vec) == 0;
}

const char *samm__not_malloc(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    if (a % MALLOC_ALIGN != 0) return "misaligned";
    if (a < 4096) return "not a heap address";
    if (samm__is_ours(p)) return "inside libsamm's memory";
    if (!mapped(a)) return "not mapped";
    if (samm__on_some_stack(a)) return "on a thread's stack";
    Dl_info info;
    if (dladdr(p, &info) != 0 && info.dli_fname != NULL) return "in a program or library image";
    return NULL;
}

void samm__foreign_free(samm_tld *t, void *p, const char *call)
{
    const char *why = samm__not_malloc(p);
    if (why) {
        samm__report(SAMM_ERR_FOREIGN_POINTER, call, p,
                     "%p was not allocated by libsamm or malloc (%s); not freed", p, why);
        return;
    }
    samm__count(t, SAMM_C_FOREIGN_FREES, 1);
    free(p);
}
