/* SPDX-License-Identifier: MIT */
/* threads.c - every thread has its own scope stack: four threads nest
 * scopes at the same depths without seeing each other's objects.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "samm.h"

typedef struct Item {
    void (**vtable)(void *);
    int owner;
} Item;

static atomic_int cleaned[4];

static void item_destroy(void *p)
{
    atomic_fetch_add(&cleaned[((Item *)p)->owner], 1);
}

static void (*item_vtable[4])(void *) = {NULL, NULL, NULL, item_destroy};

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int round = 0; round < 1000; round++) {
        samm_enter_scope();
        for (int i = 0; i < 10; i++) {
            Item *it = samm_alloc(sizeof *it, SAMM_ALLOC_OBJECT);
            it->vtable = item_vtable;
            it->owner = id;
        }
        samm_exit_scope();
    }
    return NULL;
}

int main(void)
{
    pthread_t t[4];
    for (intptr_t i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, (void *)i);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    samm_wait();
    for (int i = 0; i < 4; i++)
        printf("thread %d: %d objects cleaned by its own scopes\n", i, atomic_load(&cleaned[i]));
    samm_shutdown();
    return 0;
}
