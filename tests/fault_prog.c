/* SPDX-License-Identifier: MIT */
/* fault_prog.c - a program for the fault-injection sweep (fault_sweep.c):
 * BASIC-shaped work (objects, strings with a release hook, lists and
 * atoms, medium and huge blocks, recursion returning objects, retain,
 * DELETE) in units of one scope, on one thread or two.  Run with
 * SAMM_FAIL_AT=k, one of libsamm's allocations fails; the program checks
 * that every object it was given was cleaned exactly once (a failure
 * either gives no object or leaves it tracked somewhere: a scope that got
 * no frame hands its objects to the one around it), that every NULL it
 * got was reported, and that libsamm reported nothing but out-of-memory.
 * Exit status 0 when all of that holds.
 *
 *   fault_prog objects|threads   (cleanup mode from SAMM_CLEANUP)
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samm.h"

#define UNITS 40
#define PER_UNIT 24
#define MAX_IDS (2 * UNITS * PER_UNIT * 8)

typedef void (*dtor_fn)(void *);

typedef struct {
    const dtor_fn *vtable;
    int id;
} Obj;

static atomic_int runs[MAX_IDS]; /* cleanups per id */
static atomic_int next_id;
static atomic_int oom, other_errors;
static atomic_int failed; /* checks that failed */

static void dtor(void *p)
{
    int id = ((Obj *)p)->id;
    if (id > 0 && id < MAX_IDS) atomic_fetch_add(&runs[id], 1);
}
static const dtor_fn vtable[4] = {NULL, NULL, NULL, dtor};

/* STRING and a host type: the hook owns the memory. */
#define HOSTED ((SAMMAllocType)99)
static void hook(void *p)
{
    dtor(p);
    samm_free_object(p);
}

static void on_error(const SAMMError *e, void *user)
{
    (void)user;
    if (e->code == SAMM_ERR_OUT_OF_MEMORY)
        atomic_fetch_add(&oom, 1);
    else if (e->code != SAMM_ERR_LEAK && e->code != SAMM_ERR_SCOPE_IMBALANCE) {
        atomic_fetch_add(&other_errors, 1);
        fprintf(stderr, "fault_prog: unexpected error: %s in %s\n", e->message, e->call);
    }
}

/* Per unit: ids made, and whether a failure was reported meanwhile. */
typedef struct {
    int ids[PER_UNIT * 8];
    int n;
} unit;

static void expect(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fault_prog: %s\n", what);
        atomic_fetch_add(&failed, 1);
    }
}

/* An object tracked as `type`: NULL means a failure (which must have
 * been reported). */
static Obj *make(unit *u, size_t size, SAMMAllocType type, int two_calls)
{
    int before = atomic_load(&oom);
    Obj *o;
    if (two_calls) {
        o = samm_alloc_object(size);
        if (o) {
            o->vtable = vtable;
            o->id = atomic_fetch_add(&next_id, 1) + 1;
            samm_track(o, type);
            if (atomic_load(&oom) != before) {
                /* Tracking failed (reported): the block is ours again. */
                samm_free_object(o);
                return NULL;
            }
        }
    } else {
        o = samm_alloc(size, type);
        if (o) {
            o->vtable = vtable;
            o->id = atomic_fetch_add(&next_id, 1) + 1;
        }
    }
    if (o == NULL) {
        expect(atomic_load(&oom) > before, "a NULL result was not reported");
        return NULL;
    }
    if (u->n < (int)(sizeof u->ids / sizeof *u->ids)) u->ids[u->n++] = o->id;
    return o;
}

/* RETAIN: r goes to the scope around this one; if that failed (reported)
 * it stays here and must not be used after this scope. */
static Obj *retained(Obj *r)
{
    if (r == NULL) return NULL;
    int before = atomic_load(&oom);
    samm_retain_parent(r);
    return atomic_load(&oom) == before ? r : NULL;
}

/* A function that returns one of the objects it makes. */
static Obj *recurse(unit *u, int depth)
{
    samm_enter_scope();
    make(u, 40, SAMM_ALLOC_OBJECT, 1);
    Obj *r = depth > 0 ? recurse(u, depth - 1) : make(u, 64, SAMM_ALLOC_OBJECT, 0);
    r = retained(r);
    samm_exit_scope();
    return r;
}

static void run_unit(unit *u, int k)
{
    samm_enter_scope();
    for (int i = 0; i < 6; i++)
        make(u, 16 + (size_t)(i * 37 % 200), SAMM_ALLOC_OBJECT, i & 1);
    make(u, 3000 + (size_t)k * 10, SAMM_ALLOC_OBJECT, 1);   /* medium */
    make(u, 40000 + (size_t)k * 100, SAMM_ALLOC_OBJECT, 0); /* huge */
    make(u, 48, HOSTED, 1);
    make(u, 24, HOSTED, 0);
    /* A string descriptor, and a list header with two atoms. */
    Obj *s = samm_alloc_string();
    if (s) {
        s->vtable = vtable;
        s->id = atomic_fetch_add(&next_id, 1) + 1;
        int before = atomic_load(&oom);
        samm_track_string(s);
        if (atomic_load(&oom) != before)
            samm_free_object(s);
        else if (u->n < (int)(sizeof u->ids / sizeof *u->ids))
            u->ids[u->n++] = s->id;
    }
    void *l = samm_alloc(32, SAMM_ALLOC_LIST);
    void *a1 = samm_alloc(24, SAMM_ALLOC_LIST_ATOM);
    void *a2 = samm_alloc(24, SAMM_ALLOC_LIST_ATOM);
    (void)l;
    (void)a1;
    (void)a2;
    /* DELETE: destructor by hand, then free. */
    Obj *d = make(u, 100, SAMM_ALLOC_OBJECT, 0);
    if (d) {
        dtor(d);
        samm_free_object(d);
    }
    /* Untracked by the program, freed by it. */
    Obj *x = make(u, 200, SAMM_ALLOC_OBJECT, 1);
    if (x) {
        samm_untrack(x);
        dtor(x);
        samm_free_object(x);
    }
    retained(recurse(u, 3)); /* into the scope around the unit */
    samm_exit_scope();
}

static unit units[2][UNITS];

static void run_units(int thread)
{
    samm_enter_scope(); /* the units' parent: what they return dies here */
    for (int k = 0; k < UNITS; k++)
        run_unit(&units[thread][k], k);
    samm_exit_scope();
}

/* After shutdown: each object the program was given, cleaned once. */
static void check_units(int threads)
{
    for (int t = 0; t < threads; t++) {
        for (int k = 0; k < UNITS; k++) {
            const unit *u = &units[t][k];
            for (int i = 0; i < u->n; i++) {
                int n = atomic_load(&runs[u->ids[i]]);
                if (n != 1)
                    fprintf(stderr,
                            "fault_prog: thread %d unit %d object %d (id %d): cleaned %d "
                            "times\n",
                            t, k, i, u->ids[i], n);
                expect(n <= 1, "an object was cleaned twice");
                expect(n >= 1, "an object was never cleaned");
            }
        }
    }
}

static void *thread_main(void *arg)
{
    run_units((int)(intptr_t)arg);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[1], "objects") != 0 && strcmp(argv[1], "threads") != 0)) {
        fprintf(stderr, "usage: fault_prog objects|threads\n");
        return 2;
    }
    samm_set_error_handler(on_error, NULL);
    samm_register_cleanup(HOSTED, hook);
    samm_register_cleanup(SAMM_ALLOC_STRING, hook); /* as a runtime's string_release */
    if (strcmp(argv[1], "threads") == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, thread_main, (void *)(intptr_t)1) != 0) return 1;
        run_units(0);
        pthread_join(t, NULL);
    } else {
        run_units(0);
    }
    samm_shutdown();
    check_units(strcmp(argv[1], "threads") == 0 ? 2 : 1);
    expect(atomic_load(&other_errors) == 0, "libsamm reported an error other than out of memory");
    printf("fault_prog: %d objects, %d failures reported, %d checks failed\n",
           atomic_load(&next_id), atomic_load(&oom), atomic_load(&failed));
    return atomic_load(&failed) ? 1 : 0;
}
