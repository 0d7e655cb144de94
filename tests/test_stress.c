/* SPDX-License-Identifier: MIT */
/* test_stress.c - a stress test shaped like a compiled BASIC program, on 1
 * to 4 threads in both cleanup modes: recursion, CLASS objects, strings
 * whose buffers a STRING release hook frees, lists owning their atoms,
 * RETAIN of returned objects, reassignment and DELETE.  Every destructor
 * count and the statistics are checked exactly, and the run is repeated
 * after samm_shutdown and samm_init with the same counts.
 *
 * Every FUNCTION call enters a scope, creates CLASS objects (vtable with a
 * destructor in slot 3) and strings (pooled descriptors owning a malloc'd
 * character buffer, released by a STRING cleanup hook), reassigns object
 * and string variables (the old value DELETEd by hand: destructor, then
 * samm_free_object), DELETEs objects explicitly, builds LISTs whose atoms
 * belong to the list (a LIST cleanup hook frees them), and returns its
 * result to the caller with samm_retain_parent.  Two shapes: doubly
 * recursive fib(n) (depth n) and a linear chain to depth 30 that also
 * retains to the grandparent.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"

/* ------------------------------------------------------------------------
 * Errors: none is expected; each is printed and counted.
 * ---------------------------------------------------------------------- */
static void on_error(const SAMMError *e, void *user)
{
    fprintf(stderr, "unexpected samm error: %s (%s) in %s\n", e->message, samm_error_name(e->code),
            e->call);
    count_error(e, user);
}

static void setup(void)
{
    samm_set_error_handler(on_error, NULL);
}

/* ------------------------------------------------------------------------
 * The program's runtime types
 * ---------------------------------------------------------------------- */
#define MAGIC_NUM 0x4e554d31u
#define MAGIC_STR 0x53545231u
#define MAGIC_LIST 0x4c535431u
#define MAGIC_ATOM 0x41544d31u
#define MAGIC_DEAD 0xdeaddeadu

/* CLASS Num: vtable, then fields. */
typedef struct Num {
    const dtor_fn *vtable;
    uint32_t magic;
    int owner;
    long value;
} Num;

/* STRING descriptor (fits the 40-byte slot): owns a malloc'd buffer. */
typedef struct Str {
    char *data;
    size_t len;
    uint32_t magic;
    int owner;
} Str;

/* LIST descriptor (fits 32 bytes) and its atoms (fit 24 bytes). */
typedef struct Atom {
    struct Atom *next;
    long value;
    uint32_t magic;
} Atom;
typedef struct List {
    Atom *head;
    size_t count;
    uint32_t magic;
    int owner;
} List;

_Static_assert(sizeof(Str) <= 40, "string descriptor slot");
_Static_assert(sizeof(List) <= 32, "list descriptor slot");
_Static_assert(sizeof(Atom) <= 24, "list atom slot");

/* Global tallies (all threads). */
static atomic_long nums_made, nums_destroyed, strs_made, strs_destroyed;
static atomic_long lists_made, lists_destroyed, atoms_made, atoms_destroyed;
static atomic_long corrupt; /* wrong magic or owner seen by a destructor/hook */

static void reset_tallies(void)
{
    atomic_store(&nums_made, 0);
    atomic_store(&nums_destroyed, 0);
    atomic_store(&strs_made, 0);
    atomic_store(&strs_destroyed, 0);
    atomic_store(&lists_made, 0);
    atomic_store(&lists_destroyed, 0);
    atomic_store(&atoms_made, 0);
    atomic_store(&atoms_destroyed, 0);
    atomic_store(&corrupt, 0);
}

static void num_dtor(void *p)
{
    Num *n = p;
    if (n->magic != MAGIC_NUM) atomic_fetch_add(&corrupt, 1);
    n->magic = MAGIC_DEAD;
    atomic_fetch_add(&nums_destroyed, 1);
}
DTOR_VTABLE(num_vtable, num_dtor);

/* STRING hook: frees the character buffer, then the descriptor. */
static void str_release(void *p)
{
    Str *s = p;
    if (s->magic != MAGIC_STR || s->data == NULL || strlen(s->data) != s->len)
        atomic_fetch_add(&corrupt, 1);
    free(s->data);
    s->data = NULL;
    s->magic = MAGIC_DEAD;
    atomic_fetch_add(&strs_destroyed, 1);
    samm_free_object(s);
}

/* LIST hook: the list owns its atoms. */
static void list_release(void *p)
{
    List *l = p;
    if (l->magic != MAGIC_LIST) atomic_fetch_add(&corrupt, 1);
    size_t n = 0;
    for (Atom *a = l->head, *next; a; a = next) {
        next = a->next;
        if (a->magic != MAGIC_ATOM) atomic_fetch_add(&corrupt, 1);
        a->magic = MAGIC_DEAD;
        samm_free_object(a);
        atomic_fetch_add(&atoms_destroyed, 1);
        n++;
    }
    if (n != l->count) atomic_fetch_add(&corrupt, 1);
    l->magic = MAGIC_DEAD;
    atomic_fetch_add(&lists_destroyed, 1);
    samm_free_object(l);
}

/* ------------------------------------------------------------------------
 * One interpreter thread's state
 * ---------------------------------------------------------------------- */
typedef struct {
    int tid;
    int fib_n;
    int chain_depth;
    /* what this thread tracked, and untracked again (by DELETE) */
    long tracked, untracked, str_tracked, str_untracked, list_tracked;
    long obj_tracked, obj_untracked;
    long calls;
    long bad; /* wrong results, depths or liveness */
    Num *from_grand[64];
} Interp;

static Num *new_num(Interp *c, long v)
{
    Num *n = samm_alloc_object(sizeof(Num));
    REQUIRE(n != NULL);
    n->vtable = num_vtable;
    n->magic = MAGIC_NUM;
    n->owner = c->tid;
    n->value = v;
    atomic_fetch_add(&nums_made, 1);
    samm_track_object(n);
    c->tracked++;
    c->obj_tracked++;
    return n;
}

/* DELETE n: what the compiler emits for an explicit DELETE or for the old
 * value of a reassigned object variable. */
static void delete_num(Interp *c, Num *n)
{
    if (n->magic != MAGIC_NUM || n->owner != c->tid) c->bad++;
    n->vtable[SAMM_VTABLE_DESTRUCTOR_SLOT](n);
    samm_free_object(n); /* untracks it, then frees */
    c->untracked++;
    c->obj_untracked++;
}

static Str *new_str(Interp *c, const char *fmt, long a, long b)
{
    Str *s = samm_alloc_string();
    REQUIRE(s != NULL);
    char buf[64];
    int len = snprintf(buf, sizeof buf, fmt, a, b);
    s->data = malloc((size_t)len + 1);
    REQUIRE(s->data != NULL);
    memcpy(s->data, buf, (size_t)len + 1);
    s->len = (size_t)len;
    s->magic = MAGIC_STR;
    s->owner = c->tid;
    atomic_fetch_add(&strs_made, 1);
    samm_track_string(s);
    c->tracked++;
    c->str_tracked++;
    return s;
}

/* s$ = new value: the old descriptor and buffer are released by hand. */
static void delete_str(Interp *c, Str *s)
{
    if (s->magic != MAGIC_STR || s->owner != c->tid) c->bad++;
    samm_untrack(s);
    c->untracked++;
    c->str_untracked++;
    str_release(s);
}

static List *new_list(Interp *c, long n)
{
    List *l = samm_alloc_list();
    REQUIRE(l != NULL);
    l->magic = MAGIC_LIST;
    l->owner = c->tid;
    for (long i = 0; i < n; i++) {
        Atom *a = samm_alloc_list_atom();
        REQUIRE(a != NULL);
        a->magic = MAGIC_ATOM;
        a->value = i;
        a->next = l->head;
        l->head = a;
        l->count++;
        atomic_fetch_add(&atoms_made, 1);
    }
    atomic_fetch_add(&lists_made, 1);
    samm_track_list(l);
    c->tracked++;
    c->list_tracked++;
    return l;
}

static long list_sum(const List *l)
{
    long s = 0;
    for (const Atom *a = l->head; a; a = a->next)
        s += a->value;
    return s;
}

static bool alive(const Num *n, int tid)
{
    return n->magic == MAGIC_NUM && n->owner == tid;
}

/* FUNCTION Fib(n AS INTEGER) AS Num */
static Num *fib(Interp *c, int n, int depth)
{
    samm_enter_scope();
    c->calls++;
    if (samm_scope_depth() != depth) c->bad++;
    Num *r = new_num(c, 0);
    Str *name = new_str(c, "fib(%ld) at %ld", n, depth);
    if (strncmp(name->data, "fib(", 4) != 0) c->bad++;
    /* tmp = NEW Num(n): reassigned twice, the old one DELETEd each time */
    Num *tmp = new_num(c, n);
    delete_num(c, tmp);
    tmp = new_num(c, n + 1);
    if (tmp->value != n + 1) c->bad++;
    /* name$ = name$ + "!" */
    Str *name2 = new_str(c, "%ld%ld!", n, depth);
    delete_str(c, name);
    name = name2;
    /* an explicit DELETE of something nobody else sees */
    if (n % 3 == 0) delete_num(c, new_num(c, -1));
    if (n % 4 == 0) {
        List *l = new_list(c, n + 1);
        if (list_sum(l) != (long)n * (n + 1) / 2) c->bad++;
    }
    if (n < 2) {
        r->value = n;
    } else {
        Num *a = fib(c, n - 1, depth + 1);
        Num *b = fib(c, n - 2, depth + 1);
        if (!alive(a, c->tid) || !alive(b, c->tid)) c->bad++;
        r->value = a->value + b->value;
        delete_num(c, a); /* DELETE a; b is left to the scope */
    }
    if (samm_scope_depth() != depth) c->bad++;
    samm_retain_parent(r);
    samm_exit_scope();
    return r;
}

/* FUNCTION Chain(d): linear recursion; each level also sends one object to
 * its grandparent with samm_retain(x, 2). */
static Num *chain(Interp *c, int d, int base)
{
    samm_enter_scope();
    if (samm_scope_depth() != base + d) c->bad++;
    Num *node = new_num(c, 0);
    new_str(c, "chain %ld/%ld", d, c->chain_depth);
    if (d >= 2) {
        Num *g = new_num(c, 1000 + d);
        samm_retain(g, 2);
        c->from_grand[d - 2] = g;
    }
    if (d % 5 == 0) new_list(c, 3);
    if (d < c->chain_depth) {
        Num *child = chain(c, d + 1, base);
        if (!alive(child, c->tid) || child->value != c->chain_depth - d - 1) c->bad++;
        node->value = child->value + 1;
    } else {
        node->value = 0;
    }
    Num *g = c->from_grand[d];
    if (d + 2 <= c->chain_depth) {
        if (g == NULL || !alive(g, c->tid) || g->value != 1000 + d + 2) c->bad++;
    }
    c->from_grand[d] = NULL;
    samm_retain_parent(node);
    samm_exit_scope();
    return node;
}

static long fib_ref(int n)
{
    long a = 0, b = 1;
    for (int i = 0; i < n; i++) {
        long t = a + b;
        a = b;
        b = t;
    }
    return a;
}

/* The main program: a wrapper scope around both shapes. */
static void *program(void *arg)
{
    Interp *c = arg;
    int base = samm_scope_depth();
    samm_enter_scope();
    Num *f = fib(c, c->fib_n, base + 2);
    if (!alive(f, c->tid) || f->value != fib_ref(c->fib_n)) c->bad++;
    Num *ch = chain(c, 0, base + 2);
    if (!alive(ch, c->tid) || ch->value != c->chain_depth) c->bad++;
    samm_exit_scope();
    if (samm_scope_depth() != base) c->bad++;
    return NULL;
}

/* ------------------------------------------------------------------------
 * Driving it
 * ---------------------------------------------------------------------- */
typedef struct {
    long nums, strs, lists, atoms; /* made (== destroyed) */
    uint64_t cleaned, tracked, strings_cleaned, strings_tracked;
    uint64_t by_obj, by_str, by_list;
    uint64_t allocated, freed, bytes_allocated, bytes_freed;
} RunCounts;

/* The chain is 30 deep below the wrapper (depth 1) and fib's first scope
 * (depth 2); fib(n) reaches depth n + 1, less. */
#define CHAIN_DEPTH 30
#define PEAK_DEPTH (2 + CHAIN_DEPTH)

static void run_program(int threads, int fib_n, bool mixed, RunCounts *out)
{
    reset_tallies();
    int e0 = errors_total();
    samm_register_cleanup(SAMM_ALLOC_STRING, str_release);
    samm_register_cleanup(SAMM_ALLOC_LIST, list_release);
    SAMMStats s0, s1;
    samm_get_stats(&s0);

    Interp ctx[4];
    pthread_t th[4];
    REQUIRE(threads >= 1 && threads <= 4);
    for (int i = 0; i < threads; i++)
        ctx[i] = (Interp){
            .tid = i + 1, .fib_n = fib_n - (mixed ? i % 2 : 0), .chain_depth = CHAIN_DEPTH};
    if (threads == 1) {
        program(&ctx[0]);
    } else {
        for (int i = 0; i < threads; i++)
            REQUIRE(pthread_create(&th[i], NULL, program, &ctx[i]) == 0);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
    }
    samm_wait();
    samm_get_stats(&s1);
    samm_register_cleanup(SAMM_ALLOC_STRING, NULL);
    samm_register_cleanup(SAMM_ALLOC_LIST, NULL);

    long tracked = 0, untracked = 0, str_tracked = 0, str_untracked = 0, list_tracked = 0;
    long obj_tracked = 0, obj_untracked = 0;
    for (int i = 0; i < threads; i++) {
        CHECK_EQ(ctx[i].bad, 0);
        CHECK(ctx[i].calls > 0);
        tracked += ctx[i].tracked;
        untracked += ctx[i].untracked;
        str_tracked += ctx[i].str_tracked;
        str_untracked += ctx[i].str_untracked;
        list_tracked += ctx[i].list_tracked;
        obj_tracked += ctx[i].obj_tracked;
        obj_untracked += ctx[i].obj_untracked;
    }
    /* Everything made was destroyed exactly once. */
    CHECK_EQ(atomic_load(&corrupt), 0);
    CHECK(atomic_load(&nums_made) > 0);
    CHECK_EQ(atomic_load(&nums_destroyed), atomic_load(&nums_made));
    CHECK_EQ(atomic_load(&strs_destroyed), atomic_load(&strs_made));
    CHECK_EQ(atomic_load(&lists_destroyed), atomic_load(&lists_made));
    CHECK_EQ(atomic_load(&atoms_destroyed), atomic_load(&atoms_made));
    /* The statistics agree with what the program tracked and untracked. */
    CHECK_EQ(s1.objects_tracked - s0.objects_tracked, (uint64_t)tracked);
    CHECK_EQ(s1.objects_cleaned - s0.objects_cleaned, (uint64_t)(tracked - untracked));
    CHECK_EQ(s1.strings_tracked - s0.strings_tracked, (uint64_t)str_tracked);
    CHECK_EQ(s1.strings_cleaned - s0.strings_cleaned, (uint64_t)(str_tracked - str_untracked));
    CHECK_EQ(s1.cleaned_by_type[SAMM_ALLOC_OBJECT] - s0.cleaned_by_type[SAMM_ALLOC_OBJECT],
             (uint64_t)(obj_tracked - obj_untracked));
    CHECK_EQ(s1.cleaned_by_type[SAMM_ALLOC_STRING] - s0.cleaned_by_type[SAMM_ALLOC_STRING],
             (uint64_t)(str_tracked - str_untracked));
    CHECK_EQ(s1.cleaned_by_type[SAMM_ALLOC_LIST] - s0.cleaned_by_type[SAMM_ALLOC_LIST],
             (uint64_t)list_tracked);
    CHECK_EQ(s1.cleaned_by_type[SAMM_ALLOC_LIST_ATOM] - s0.cleaned_by_type[SAMM_ALLOC_LIST_ATOM],
             0);
    /* Every descriptor and object went back through samm_free_object or
     * cleanup: memory released == memory handed out, in objects and bytes. */
    uint64_t made = (uint64_t)(atomic_load(&nums_made) + atomic_load(&strs_made) +
                               atomic_load(&lists_made) + atomic_load(&atoms_made));
    uint64_t bytes =
        (uint64_t)atomic_load(&nums_made) * 32 + (uint64_t)atomic_load(&strs_made) * 40 +
        (uint64_t)atomic_load(&lists_made) * 32 + (uint64_t)atomic_load(&atoms_made) * 24;
    CHECK_EQ(s1.objects_allocated - s0.objects_allocated, made);
    CHECK_EQ(s1.objects_freed - s0.objects_freed, made);
    CHECK_EQ(s1.total_bytes_allocated - s0.total_bytes_allocated, bytes);
    CHECK_EQ(s1.total_bytes_freed - s0.total_bytes_freed, bytes);
    CHECK_EQ(s1.double_free_attempts, 0);
    CHECK_EQ(s1.foreign_frees, 0);
    CHECK_EQ(s1.peak_scope_depth, PEAK_DEPTH);
    CHECK_EQ(samm_scope_depth(), 0);
    CHECK_EQ(errors_total(), e0);

    out->nums = atomic_load(&nums_made);
    out->strs = atomic_load(&strs_made);
    out->lists = atomic_load(&lists_made);
    out->atoms = atomic_load(&atoms_made);
    out->cleaned = s1.objects_cleaned - s0.objects_cleaned;
    out->tracked = s1.objects_tracked - s0.objects_tracked;
    out->strings_cleaned = s1.strings_cleaned - s0.strings_cleaned;
    out->strings_tracked = s1.strings_tracked - s0.strings_tracked;
    out->by_obj = s1.cleaned_by_type[SAMM_ALLOC_OBJECT] - s0.cleaned_by_type[SAMM_ALLOC_OBJECT];
    out->by_str = s1.cleaned_by_type[SAMM_ALLOC_STRING] - s0.cleaned_by_type[SAMM_ALLOC_STRING];
    out->by_list = s1.cleaned_by_type[SAMM_ALLOC_LIST] - s0.cleaned_by_type[SAMM_ALLOC_LIST];
    out->allocated = s1.objects_allocated - s0.objects_allocated;
    out->freed = s1.objects_freed - s0.objects_freed;
    out->bytes_allocated = s1.total_bytes_allocated - s0.total_bytes_allocated;
    out->bytes_freed = s1.total_bytes_freed - s0.total_bytes_freed;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* fib(n) makes about 1.6^n calls: n sets the size of the run. */
static int fib_n_for(int threads)
{
    if (ON_VALGRIND()) return threads > 1 ? 14 : 16;
    if (SANITIZED) return threads > 1 ? 16 : 18;
    return threads > 1 ? 19 : 21;
}

static void expect_same(const RunCounts *a, const RunCounts *b)
{
    CHECK_EQ(a->nums, b->nums);
    CHECK_EQ(a->strs, b->strs);
    CHECK_EQ(a->lists, b->lists);
    CHECK_EQ(a->atoms, b->atoms);
    CHECK_EQ(a->cleaned, b->cleaned);
    CHECK_EQ(a->tracked, b->tracked);
    CHECK_EQ(a->strings_cleaned, b->strings_cleaned);
    CHECK_EQ(a->strings_tracked, b->strings_tracked);
    CHECK_EQ(a->by_obj, b->by_obj);
    CHECK_EQ(a->by_str, b->by_str);
    CHECK_EQ(a->by_list, b->by_list);
    CHECK_EQ(a->allocated, b->allocated);
    CHECK_EQ(a->freed, b->freed);
    CHECK_EQ(a->bytes_allocated, b->bytes_allocated);
    CHECK_EQ(a->bytes_freed, b->bytes_freed);
}

/* After samm_shutdown everything allocated was freed, in objects and in
 * bytes, and nothing is left in any pool. */
static void check_after_shutdown(void)
{
    SAMMStats st;
    samm_get_stats(&st); /* initialises again */
    CHECK(st.objects_allocated > 0);
    CHECK_EQ(st.objects_freed, st.objects_allocated);
    CHECK_EQ(st.total_bytes_freed, st.total_bytes_allocated);
    for (int p = 0; p < SAMM_POOL_COUNT; p++) {
        SAMMPoolStats ps;
        REQUIRE(samm_get_pool_stats(p, &ps) == 0);
        CHECK_EQ(ps.in_use, 0);
    }
    CHECK_EQ(errors_total(), 0);
}

/* Runs, shuts down, initialises again, runs again: the same counts. */
static void run_twice(int threads, bool mixed)
{
    RunCounts r1, r2;
    int fib_n = fib_n_for(threads);
    run_program(threads, fib_n, mixed, &r1);
    samm_shutdown();
    check_after_shutdown();
    samm_init();
    samm_set_cleanup_mode(test_mode()); /* init reads SAMM_CLEANUP again */
    CHECK_EQ(samm_scope_depth(), 0);
    run_program(threads, fib_n, mixed, &r2);
    expect_same(&r1, &r2);
    CHECK(r1.nums > 0 && r1.strs > 0 && r1.lists > 0 && r1.atoms > 0);
    samm_shutdown();
    check_after_shutdown();
}

TEST_BOTH(program_one_thread)
{
    run_twice(1, false);
}

TEST_BOTH(program_two_threads_mixed_sizes)
{
    /* Two threads with different workloads at once; counts still exact. */
    run_twice(2, true);
}

TEST_BOTH(program_three_threads)
{
    run_twice(3, false);
}

TEST_BOTH(program_four_threads)
{
    run_twice(4, false);
}

CHECK_MAIN(setup)
