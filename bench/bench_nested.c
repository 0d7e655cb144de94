/* SPDX-License-Identifier: MIT */
/* bench_nested.c - the headline workload: 1,000,000 objects of 16-64 B,
 * each with a vtable destructor, 100 per scope: allocate, track, clean at
 * scope exit.  libsamm (inline and background) against hand-written
 * calloc / destructor / free of the same objects, in the same run.
 */
#include <string.h>

#include "bench.h"
#include "samm.h"

typedef struct Obj {
    void (**vtable)(void *);
    uint64_t payload[7];
} Obj;

static uint64_t destroyed;
static void obj_dtor(void *p)
{
    destroyed += ((Obj *)p)->payload[0] != 0;
}
static void (*obj_vtable[4])(void *) = {NULL, NULL, NULL, obj_dtor};

enum { PER_SCOPE = 100 };
static size_t total = 1000000;
static const size_t sizes[4] = {16, 32, 48, 64};

static void run_by_hand(void *a)
{
    (void)a;
    Obj *live[PER_SCOPE];
    for (size_t done = 0; done < total; done += PER_SCOPE) {
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = calloc(1, sizes[i & 3]);
            if (o == NULL) abort();
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            live[i] = o;
        }
        for (size_t i = PER_SCOPE; i-- > 0;) {
            live[i]->vtable[3](live[i]);
            free(live[i]);
        }
    }
}

static void run_samm(void *a)
{
    (void)a;
    for (size_t done = 0; done < total; done += PER_SCOPE) {
        samm_enter_scope();
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = samm_alloc_object(sizes[i & 3]);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
            samm_track_object(o);
        }
        samm_exit_scope();
    }
    samm_wait();
}

static void run_samm_alloc(void *a)
{
    (void)a;
    for (size_t done = 0; done < total; done += PER_SCOPE) {
        samm_enter_scope();
        for (size_t i = 0; i < PER_SCOPE; i++) {
            Obj *o = samm_alloc(sizes[i & 3], SAMM_ALLOC_OBJECT);
            o->vtable = obj_vtable;
            o->payload[0] = 1;
        }
        samm_exit_scope();
    }
    samm_wait();
}

int main(int argc, char **argv)
{
    int runs = bench_runs(argc, argv);
    if (runs < 5) total = 200000;
    double n = (double)total;
    run_by_hand(NULL);
    double hand = bench_best(run_by_hand, NULL, runs, n);
    printf("nested workload, %zu objects of 16-64 B, %d per scope, best of %d\n", total, PER_SCOPE,
           runs);
    printf("  %-34s %7.2f ns/object\n", "calloc + destructor + free by hand", hand);
    for (int m = 0; m < 2; m++) {
        samm_set_cleanup_mode(m ? SAMM_CLEANUP_BACKGROUND : SAMM_CLEANUP_INLINE);
        const char *name = m ? "background" : "inline";
        destroyed = 0;
        run_samm(NULL);
        double t = bench_best(run_samm, NULL, runs, n);
        double t2 = bench_best(run_samm_alloc, NULL, runs, n);
        printf("  libsamm %-10s alloc+track       %7.2f ns/object   ratio %.2fx (goal <= 0.5x)\n",
               name, t, t / hand);
        printf("  libsamm %-10s samm_alloc        %7.2f ns/object   ratio %.2fx\n", name, t2,
               t2 / hand);
        if (destroyed == 0) {
            fprintf(stderr, "destructors did not run\n");
            return 1;
        }
    }
    samm_shutdown();
    return 0;
}
