/* SPDX-License-Identifier: MIT */
/* custom_hook.c - a release hook for a host type: a file handle that is
 * closed when the scope that opened it exits.
 */
#include <stdio.h>
#include <stdlib.h>

#include "samm.h"

#define TYPE_FILE ((SAMMAllocType)7) /* 7..255 are the host's */

typedef struct {
    FILE *fp;
    const char *name;
} FileHandle;

/* The hook owns the memory from now on: it closes, then frees. */
static void close_file(void *p)
{
    FileHandle *h = p;
    printf("closing %s\n", h->name);
    fclose(h->fp);
    samm_free_object(h);
}

int main(void)
{
    samm_register_cleanup(TYPE_FILE, close_file);
    samm_enter_scope();
    FileHandle *h = samm_alloc(sizeof *h, TYPE_FILE);
    h->fp = tmpfile();
    h->name = "a temporary file";
    fprintf(h->fp, "written inside the scope\n");
    printf("leaving the scope\n");
    samm_exit_scope();
    samm_shutdown();
    return 0;
}
