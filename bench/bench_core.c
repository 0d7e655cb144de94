/* SPDX-License-Identifier: MIT */
/* bench_core.c - two of issue 8's wall-clock targets, each against its
 * baseline in the same run (inline cleanup, set explicitly): an empty
 * scope against one malloc(32)+free pair (<= 0.25x), and samm_free_object
 * of tracked objects against free() by hand of the same objects in the
 * same random order, at 100 and at 100,000 objects per scope (<= 1.5x).
 */
#include "bench.h"
#include "samm.h"

/* ------------------------------------------------------------------------
 * Empty scope: samm_enter_scope + samm_exit_scope vs malloc(32) + free
 * ---------------------------------------------------------------------- */
static double malloc_free_pairs(void *a, size_t reps)
{
    (void)a;
    double t0 = bench_now_ns();
    for (size_t i = 0; i < reps; i++) {
        void *p = malloc(32);
        BENCH_KEEP(p); /* or the compiler drops the pair */
        free(p);
    }
    return bench_now_ns() - t0;
}

static double empty_scopes(void *a, size_t reps)
{
    (void)a;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    double t0 = bench_now_ns();
    for (size_t i = 0; i < reps; i++) {
        samm_enter_scope();
        samm_exit_scope();
    }
    return bench_now_ns() - t0;
}

/* ------------------------------------------------------------------------
 * Explicit frees in random order.  Each repetition makes n objects of
 * 16-64 B (libsamm: allocated and tracked in a fresh scope), puts them in
 * the one random order both sides share, and times only the frees.
 * ---------------------------------------------------------------------- */
typedef struct {
    size_t n;
    size_t *perm; /* the random order: the j-th free is of objs[perm[j]] */
    void **objs;  /* in allocation order */
    void **order; /* the same objects in the order they are freed */
} free_case;

static const size_t sizes[4] = {16, 32, 48, 64};

static void put_in_order(free_case *c)
{
    for (size_t j = 0; j < c->n; j++)
        c->order[j] = c->objs[c->perm[j]];
}

static double free_by_hand(void *a, size_t reps)
{
    free_case *c = a;
    double t = 0;
    for (size_t r = 0; r < reps; r++) {
        for (size_t i = 0; i < c->n; i++)
            if ((c->objs[i] = calloc(1, sizes[i & 3])) == NULL) abort();
        put_in_order(c);
        double t0 = bench_now_ns();
        for (size_t j = 0; j < c->n; j++)
            free(c->order[j]);
        t += bench_section_ns(t0);
    }
    return t;
}

static double free_tracked(void *a, size_t reps)
{
    free_case *c = a;
    double t = 0;
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    for (size_t r = 0; r < reps; r++) {
        samm_enter_scope();
        for (size_t i = 0; i < c->n; i++) {
            if ((c->objs[i] = samm_alloc_object(sizes[i & 3])) == NULL) abort();
            samm_track_object(c->objs[i]);
        }
        put_in_order(c);
        double t0 = bench_now_ns();
        for (size_t j = 0; j < c->n; j++)
            samm_free_object(c->order[j]);
        t += bench_section_ns(t0);
        samm_exit_scope();
    }
    return t;
}

static void free_case_init(free_case *c, size_t n)
{
    c->n = n;
    c->perm = malloc(n * sizeof *c->perm);
    c->objs = malloc(n * sizeof *c->objs);
    c->order = malloc(n * sizeof *c->order);
    if (c->perm == NULL || c->objs == NULL || c->order == NULL) abort();
    for (size_t i = 0; i < n; i++)
        c->perm[i] = i;
    uint64_t x = 88172645463325252ull; /* xorshift64: the same order every run */
    for (size_t i = n - 1; i > 0; i--) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t j = (size_t)(x % (i + 1));
        size_t t = c->perm[i];
        c->perm[i] = c->perm[j];
        c->perm[j] = t;
    }
}

static void free_case_fini(free_case *c)
{
    free(c->perm);
    free(c->objs);
    free(c->order);
}

int main(int argc, char **argv)
{
    bench_opts o;
    bench_parse(&o, "bench_core", argc, argv);
    bench_header(&o, "empty scope and samm_free_object (issue 8), inline cleanup");
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);

    const bench_side scope[] = {{malloc_free_pairs, NULL}, {empty_scopes, NULL}};
    const bench_row scope_row = {"empty scope enter+exit vs malloc(32)+free", 1, 0, 0.25};
    bench_compare(&o, scope, 2, 1, &scope_row, 1);

    static const size_t per_scope[] = {100, 100000};
    static const char *names[] = {
        "free_object tracked random order 100/scope vs free()",
        "free_object tracked random order 100000/scope vs free()",
    };
    for (size_t k = 0; k < 2; k++) {
        free_case c;
        free_case_init(&c, per_scope[k]);
        const bench_side sides[] = {{free_by_hand, &c}, {free_tracked, &c}};
        const bench_row row = {names[k], 1, 0, 1.5};
        bench_compare(&o, sides, 2, (double)c.n, &row, 1);
        free_case_fini(&c);
    }
    samm_shutdown();
    bench_done(&o);
    return 0;
}
