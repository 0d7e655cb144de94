/* SPDX-License-Identifier: MIT */
/* hello.c - one scope: objects made inside it die when it exits. */
#include <stdio.h>

#include "samm.h"

typedef struct Greeting {
    void (**vtable)(void *); /* slot 3: the destructor */
    const char *text;
} Greeting;

static void greeting_destroy(void *p)
{
    printf("  destructor: \"%s\" cleaned up\n", ((Greeting *)p)->text);
}

static void (*greeting_vtable[4])(void *) = {NULL, NULL, NULL, greeting_destroy};

int main(void)
{
    printf("entering a scope\n");
    SAMM_SCOPE
    {
        for (int i = 0; i < 3; i++) {
            Greeting *g = samm_alloc(sizeof *g, SAMM_ALLOC_OBJECT); /* allocated and tracked */
            g->vtable = greeting_vtable;
            g->text = i == 0 ? "hello" : i == 1 ? "scope-aware" : "world";
        }
        printf("leaving it (newest object first):\n");
    }
    printf("depth is back to %d\n", samm_scope_depth());
    samm_shutdown();
    return 0;
}
