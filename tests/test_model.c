/* SPDX-License-Identifier: MIT */
/* test_model.c - a model-based random tester: long random sequences of
 * enter, exit, alloc, track (twice too), untrack, retain, free (twice
 * too), frees of foreign and interior pointers and hooked types, checked
 * after every call against a reference model of the contracts in samm.h:
 * which destructor runs when (once each, newest first), which error each
 * call reports, and the exact statistics.  Each thread runs a model of its
 * own against the one library.
 *
 * SAMM_MODEL_OPS sets the operations per thread (default: a short run, for
 * make test); SAMM_MODEL_SEED the seed.  make fuzz runs 10^8 operations.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"

#define HOOK_TYPE ((SAMMAllocType)77)
#define MAX_THREADS 4
#define MAX_OBJS 512 /* live model objects per thread  */
#define MAX_FREED 64 /* freed ones kept for double frees */
#define MAX_DEPTH 64

/* ------------------------------------------------------------------------
 * Objects in memory: the destructor and the hook log the id into the log
 * of the thread that made them.
 * ---------------------------------------------------------------------- */
typedef struct {
    const dtor_fn *vtable;
    uint32_t id;
    uint32_t thread;
} Obj;

typedef struct {
    uint32_t *ids;
    atomic_size_t n;
    size_t cap;
} dlog;

static dlog logs[MAX_THREADS];

static void log_id(void *p)
{
    Obj *o = p;
    dlog *l = &logs[o->thread];
    size_t i = atomic_fetch_add(&l->n, 1);
    if (i < l->cap) l->ids[i] = o->id;
}

static void obj_dtor(void *p)
{
    log_id(p);
}
DTOR_VTABLE(obj_vtable, obj_dtor);

static void hook(void *p)
{
    log_id(p);
    samm_free_object(p);
}

/* ------------------------------------------------------------------------
 * The model
 * ---------------------------------------------------------------------- */
enum { K_SMALL, K_MEDIUM, K_HUGE, K_STRING, K_FOREIGN, K_KINDS };
enum { S_LIVE, S_TRACKED, S_FREED };

typedef struct {
    void *p;
    uint32_t id;
    uint8_t kind, state, type; /* type: what it was tracked as */
    int depth;                 /* while tracked */
} mobj;

typedef struct {
    uint64_t allocated, freed, tracked, cleaned, double_frees, foreign_frees, entered, exited,
        retains, strings_tracked, strings_cleaned, by_type[256];
} mstats;

/* Per-thread error capture (the handler runs on the thread that made the
 * bad call; cleanup errors are not provoked by this model). */
static _Thread_local int err_count;
static _Thread_local SAMMErrorCode err_last;

static void model_error(const SAMMError *e, void *user)
{
    (void)user;
    err_count++;
    err_last = e->code;
}

typedef struct {
    int thread;
    uint64_t rng;
    uint32_t next_id;
    mobj objs[MAX_OBJS];
    int nobjs;
    mobj freed[MAX_FREED];
    int nfreed;
    mobj pending[MAX_OBJS]; /* cleaned in background, not waited for yet */
    int npending;
    int depth;
    int scope[MAX_DEPTH][MAX_OBJS]; /* ids in tracking order, per depth */
    int nscope[MAX_DEPTH];
    uint32_t *expect; /* the destructor log the model predicts */
    size_t nexpect, cap;
    mstats st;
    long ops, failures;
    int errors;        /* reported, as predicted                     */
    bool reuse_unsafe; /* other threads may take freed memory: no
                          double frees of stale pointers            */
} model;

static uint64_t rnd(model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static int pick(model *m, int n)
{
    return (int)(rnd(m) % (uint64_t)n);
}

#define MCHECK(m, cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "thread %d op %ld: %s:%d: %s\n", (m)->thread, (m)->ops, __FILE__,      \
                    __LINE__, #cond);                                                              \
            (m)->failures++;                                                                       \
        }                                                                                          \
    } while (0)

/* The call just made reported exactly `code` (0: nothing). */
static void expect_err(model *m, int before, SAMMErrorCode code)
{
    int got = err_count - before;
    if (got != (code != 0) || (code != 0 && err_last != code)) {
        fprintf(stderr, "thread %d op %ld: expected %s, got %d error(s), the last %s\n", m->thread,
                m->ops, code ? samm_error_name(code) : "no error", got,
                got ? samm_error_name(err_last) : "-");
        m->failures++;
    }
}

static mobj *find(model *m, uint32_t id)
{
    for (int i = 0; i < m->nobjs; i++)
        if (m->objs[i].id == id) return &m->objs[i];
    return NULL;
}

static void scope_remove(model *m, mobj *o)
{
    int *v = m->scope[o->depth], n = m->nscope[o->depth];
    for (int i = 0; i < n; i++) {
        if (v[i] == (int)o->id) {
            memmove(&v[i], &v[i + 1], (size_t)(n - i - 1) * sizeof *v);
            m->nscope[o->depth]--;
            return;
        }
    }
    MCHECK(m, 0 && "tracked object not in its model scope");
}

static void obj_drop(model *m, mobj *o)
{
    *o = m->objs[--m->nobjs];
}

/* A block of ours is gone: it can be freed again (a double free) until its
 * address is handed out anew. */
static void remember_freed(model *m, mobj *o)
{
    if (o->kind == K_FOREIGN) return;
    if (background() && o->state == S_TRACKED) {
        /* Cleaned by a scope exit: the worker's until samm_wait (freeing
         * it before then is "not owner"). */
        if (m->npending < MAX_OBJS) m->pending[m->npending++] = *o;
        return;
    }
    if (m->nfreed == MAX_FREED)
        memmove(&m->freed[0], &m->freed[1], (MAX_FREED - 1) * sizeof(mobj));
    else
        m->nfreed++;
    m->freed[m->nfreed - 1] = *o;
}

static void pending_done(model *m)
{
    int n = m->npending;
    m->npending = 0;
    for (int i = 0; i < n; i++) {
        m->pending[i].state = S_FREED;
        remember_freed(m, &m->pending[i]);
    }
}

static void forget_freed_at(model *m, void *p)
{
    for (int i = 0; i < m->npending; i++) {
        if (m->pending[i].p == p) {
            m->pending[i] = m->pending[--m->npending];
            i--;
        }
    }
    for (int i = 0; i < m->nfreed; i++) {
        if (m->freed[i].p == p) {
            m->freed[i] = m->freed[--m->nfreed];
            i--;
        }
    }
}

static void expect_log(model *m, uint32_t id)
{
    if (m->nexpect == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 1024;
        m->expect = realloc(m->expect, m->cap * sizeof *m->expect);
        REQUIRE(m->expect != NULL);
    }
    m->expect[m->nexpect++] = id;
}

/* The destructor log so far equals the model's (after a samm_wait in
 * background mode). */
static void compare_log(model *m)
{
    if (background()) {
        samm_wait();
        pending_done(m);
    }
    dlog *l = &logs[m->thread];
    size_t n = atomic_load(&l->n);
    MCHECK(m, n == m->nexpect);
    for (size_t i = 0; i < n && i < m->nexpect; i++) {
        if (l->ids[i] != m->expect[i]) {
            fprintf(stderr, "thread %d op %ld: destructor %zu was id %u, the model says %u\n",
                    m->thread, m->ops, i, l->ids[i], m->expect[i]);
            if (getenv("SAMM_MODEL_VERBOSE")) {
                for (size_t k = i >= 8 ? i - 8 : 0; k < i + 8 && k < n && k < m->nexpect; k++)
                    fprintf(stderr, "  [%zu] log %u model %u\n", k, l->ids[k], m->expect[k]);
            }
            m->failures++;
            break;
        }
    }
}

/* ------------------------------------------------------------------------
 * Operations
 * ---------------------------------------------------------------------- */
static void op_alloc(model *m)
{
    if (m->nobjs == MAX_OBJS) return;
    int kind = pick(m, K_KINDS);
    static const size_t small[] = {16, 17, 24, 32, 40, 64, 100, 500, 1024};
    void *p;
    switch (kind) {
    case K_SMALL:
        p = samm_alloc_object(small[pick(m, 9)]);
        break;
    case K_MEDIUM:
        p = samm_alloc_object(1025 + (size_t)pick(m, 15000));
        break;
    case K_HUGE:
        p = samm_alloc_object(16385 + (size_t)pick(m, 200000));
        break;
    case K_STRING:
        p = samm_alloc_string();
        break;
    default:
        p = malloc(16 + (size_t)pick(m, 200));
        break;
    }
    REQUIRE(p != NULL);
    forget_freed_at(m, p);
    mobj *o = &m->objs[m->nobjs++];
    *o = (mobj){p, ++m->next_id, (uint8_t)kind, S_LIVE, 0, 0};
    if (kind != K_STRING) {
        Obj *x = p;
        x->vtable = obj_vtable;
        x->id = o->id;
        x->thread = (uint32_t)m->thread;
    }
    if (kind != K_FOREIGN) m->st.allocated++;
}

static uint8_t track_type(model *m, mobj *o)
{
    if (o->kind == K_STRING) return SAMM_ALLOC_STRING;
    if (o->kind == K_FOREIGN) return pick(m, 2) ? SAMM_ALLOC_GENERIC : SAMM_ALLOC_ARRAY;
    int r = pick(m, 8);
    return r == 0 ? (uint8_t)HOOK_TYPE : r == 1 ? SAMM_ALLOC_GENERIC : SAMM_ALLOC_OBJECT;
}

static void op_track(model *m)
{
    if (m->nobjs == 0) return;
    mobj *o = &m->objs[pick(m, m->nobjs)];
    uint8_t type = track_type(m, o);
    int before = err_count;
    samm_track(o->p, (SAMMAllocType)type);
    if (o->state == S_TRACKED) {
        expect_err(m, before, SAMM_ERR_DOUBLE_TRACK);
        return;
    }
    expect_err(m, before, 0);
    o->state = S_TRACKED;
    o->type = type;
    o->depth = m->depth;
    m->scope[m->depth][m->nscope[m->depth]++] = (int)o->id;
    m->st.tracked++;
    if (type == SAMM_ALLOC_STRING) m->st.strings_tracked++;
}

static void op_untrack(model *m)
{
    if (m->nobjs == 0) return;
    mobj *o = &m->objs[pick(m, m->nobjs)];
    int before = err_count;
    samm_untrack(o->p);
    expect_err(m, before, 0);
    if (o->state == S_TRACKED) {
        scope_remove(m, o);
        o->state = S_LIVE;
    }
}

static void op_retain(model *m)
{
    if (m->nobjs == 0) return;
    mobj *o = &m->objs[pick(m, m->nobjs)];
    int levels = pick(m, 4);
    int before = err_count;
    samm_retain(o->p, levels);
    m->st.retains++;
    if (o->state != S_TRACKED) {
        expect_err(m, before, SAMM_ERR_NOT_TRACKED);
        return;
    }
    expect_err(m, before, 0);
    int to = o->depth - levels < 0 ? 0 : o->depth - levels;
    if (to == o->depth) return;
    scope_remove(m, o);
    o->depth = to;
    m->scope[to][m->nscope[to]++] = (int)o->id;
}

static void op_free(model *m)
{
    if (m->nobjs == 0) return;
    mobj *o = &m->objs[pick(m, m->nobjs)];
    int before = err_count;
    samm_free_object(o->p);
    expect_err(m, before, 0);
    if (o->state == S_TRACKED) scope_remove(m, o);
    o->state = S_FREED;
    if (o->kind == K_FOREIGN)
        m->st.foreign_frees++;
    else
        m->st.freed++;
    remember_freed(m, o);
    obj_drop(m, o);
}

static void op_double_free(model *m)
{
    if (m->nfreed == 0 || m->reuse_unsafe) return;
    mobj *o = &m->freed[pick(m, m->nfreed)];
    int before = err_count;
    samm_free_object(o->p);
    /* Its memory may be a slab of another size class by now (or a huge
     * span's): then the pointer lands inside a slot, and says so. */
    bool reused = err_count == before + 1 && err_last == SAMM_ERR_INTERIOR_POINTER;
    expect_err(m, before, reused ? SAMM_ERR_INTERIOR_POINTER : SAMM_ERR_DOUBLE_FREE);
    if (!reused) m->st.double_frees++;
    /* Tracking it is a use after free: reported too. */
    before = err_count;
    samm_track(o->p, SAMM_ALLOC_OBJECT);
    expect_err(m, before, reused ? SAMM_ERR_INTERIOR_POINTER : SAMM_ERR_FREED_POINTER);
}

static void op_bad_pointer(model *m)
{
    long on_stack[2];
    int before = err_count;
    mobj *o = m->nobjs ? &m->objs[pick(m, m->nobjs)] : NULL;
    if (o && o->kind != K_FOREIGN && pick(m, 2)) {
        samm_free_object((char *)o->p + 8);
        expect_err(m, before, SAMM_ERR_INTERIOR_POINTER);
    } else {
        samm_free_object(&on_stack[pick(m, 2)]);
        expect_err(m, before, SAMM_ERR_FOREIGN_POINTER);
    }
}

static void op_enter(model *m)
{
    if (m->depth + 1 >= MAX_DEPTH) return;
    samm_enter_scope();
    m->depth++;
    m->nscope[m->depth] = 0;
    m->st.entered++;
    MCHECK(m, samm_scope_depth() == m->depth);
}

/* The scope at depth d is cleaned: newest first; hooked and OBJECT
 * entries log, every entry's memory goes. */
static void model_clean(model *m, int d)
{
    for (int i = m->nscope[d]; i-- > 0;) {
        mobj *o = find(m, (uint32_t)m->scope[d][i]);
        if (o == NULL) {
            MCHECK(m, 0 && "model scope entry without an object");
            continue;
        }
        if (o->type == SAMM_ALLOC_OBJECT || o->type == (uint8_t)HOOK_TYPE) {
            if (o->kind != K_STRING && o->kind != K_FOREIGN) expect_log(m, o->id);
            if (o->type == (uint8_t)HOOK_TYPE && o->kind == K_FOREIGN) expect_log(m, o->id);
        }
        m->st.cleaned++;
        m->st.by_type[o->type]++;
        if (o->type == SAMM_ALLOC_STRING) m->st.strings_cleaned++;
        if (o->kind == K_FOREIGN)
            m->st.foreign_frees++;
        else
            m->st.freed++;
        remember_freed(m, o);
        obj_drop(m, o);
    }
    m->nscope[d] = 0;
}

static void op_exit(model *m)
{
    int before = err_count;
    samm_exit_scope();
    if (m->depth == 0) {
        expect_err(m, before, SAMM_ERR_EXIT_AT_GLOBAL);
        return;
    }
    expect_err(m, before, 0);
    model_clean(m, m->depth);
    m->depth--;
    m->st.exited++;
    MCHECK(m, samm_scope_depth() == m->depth);
    if (!background() || pick(m, 16) == 0) compare_log(m);
}

static void check_stats(model *m, const mstats *want)
{
    SAMMStats s;
    samm_get_stats(&s);
    MCHECK(m, s.objects_allocated == want->allocated);
    MCHECK(m, s.objects_freed == want->freed);
    MCHECK(m, s.objects_tracked == want->tracked);
    MCHECK(m, s.objects_cleaned == want->cleaned);
    MCHECK(m, s.double_free_attempts == want->double_frees);
    MCHECK(m, s.foreign_frees == want->foreign_frees);
    MCHECK(m, s.scopes_entered == want->entered);
    MCHECK(m, s.scopes_exited == want->exited);
    MCHECK(m, s.retain_calls == want->retains);
    MCHECK(m, s.strings_tracked == want->strings_tracked);
    MCHECK(m, s.strings_cleaned == want->strings_cleaned);
    for (int t = 0; t < 256; t++)
        if (s.cleaned_by_type[t] != want->by_type[t])
            MCHECK(m, s.cleaned_by_type[t] == want->by_type[t]);
}

/* Runs `ops` random operations, then unwinds and frees what is left. */
static void run_model(model *m, long ops, bool stats_each)
{
    samm_set_error_handler(model_error, NULL);
    for (m->ops = 0; m->ops < ops && m->failures < 20; m->ops++) {
        int r = pick(m, 100);
        if (r < 12)
            op_enter(m);
        else if (r < 24)
            op_exit(m);
        else if (r < 48)
            op_alloc(m);
        else if (r < 66)
            op_track(m);
        else if (r < 72)
            op_untrack(m);
        else if (r < 80)
            op_retain(m);
        else if (r < 93)
            op_free(m);
        else if (r < 97)
            op_double_free(m);
        else
            op_bad_pointer(m);
        if (stats_each && m->ops % 997 == 0) check_stats(m, &m->st);
    }
    while (m->depth > 0)
        op_exit(m);
    /* The global scope and the untracked rest, by hand. */
    while (m->nobjs > 0) {
        mobj *o = &m->objs[0];
        samm_free_object(o->p);
        if (o->state == S_TRACKED) scope_remove(m, o);
        if (o->kind == K_FOREIGN)
            m->st.foreign_frees++;
        else
            m->st.freed++;
        obj_drop(m, o);
    }
    compare_log(m);
    MCHECK(m, m->nscope[0] == 0);
    m->errors = err_count;
}

static long ops_per_thread(long dflt)
{
    const char *v = getenv("SAMM_MODEL_OPS");
    long n = v ? atol(v) : 0;
    return n > 0 ? n : dflt;
}

static uint64_t seed(int thread)
{
    const char *v = getenv("SAMM_MODEL_SEED");
    uint64_t s = v ? strtoull(v, NULL, 0) : 0x9E3779B97F4A7C15ull;
    return s * (uint64_t)(2 * thread + 1) | 1;
}

static void model_init(model *m, int thread)
{
    memset(m, 0, sizeof *m);
    m->thread = thread;
    m->rng = seed(thread);
    logs[thread].cap = 1u << 22;
    logs[thread].ids = calloc(logs[thread].cap, sizeof(uint32_t));
    REQUIRE(logs[thread].ids != NULL);
    atomic_store(&logs[thread].n, 0);
}

static void model_done(model *m)
{
    CHECK_EQ(m->failures, 0);
    free(m->expect);
    free(logs[m->thread].ids);
}

static void setup(void)
{
    samm_register_cleanup(HOOK_TYPE, hook);
}

/* One thread, statistics compared every thousand operations. */
TEST_BOTH(one_thread)
{
    static model m;
    model_init(&m, 0);
    run_model(&m, ops_per_thread(scale(300000, 20000)), true);
    samm_set_error_handler(NULL, NULL);
    check_stats(&m, &m.st);
    printf("one_thread: %ld operations, seed %llu\n", m.ops, (unsigned long long)seed(0));
    expect_errors((uint64_t)m.errors);
    model_done(&m);
}

static void *thread_main(void *arg)
{
    model *m = arg;
    run_model(m, ops_per_thread(scale(100000, 5000)), false);
    return NULL;
}

/* Four threads, each with its own model, against one library; the sum of
 * the models is what the statistics must say once they have ended. */
TEST_BOTH(four_threads)
{
    static model ms[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < MAX_THREADS; i++) {
        model_init(&ms[i], i);
        /* A slab another thread emptied may be handed to this one, so a
         * stale pointer may be someone's live object. */
        ms[i].reuse_unsafe = true;
        REQUIRE(pthread_create(&th[i], NULL, thread_main, &ms[i]) == 0);
    }
    for (int i = 0; i < MAX_THREADS; i++)
        pthread_join(th[i], NULL);
    mstats sum;
    memset(&sum, 0, sizeof sum);
    long ops = 0;
    for (int i = 0; i < MAX_THREADS; i++) {
        const mstats *s = &ms[i].st;
        sum.allocated += s->allocated;
        sum.freed += s->freed;
        sum.tracked += s->tracked;
        sum.cleaned += s->cleaned;
        sum.double_frees += s->double_frees;
        sum.foreign_frees += s->foreign_frees;
        sum.entered += s->entered;
        sum.exited += s->exited;
        sum.retains += s->retains;
        sum.strings_tracked += s->strings_tracked;
        sum.strings_cleaned += s->strings_cleaned;
        for (int t = 0; t < 256; t++)
            sum.by_type[t] += s->by_type[t];
        ops += ms[i].ops;
        expect_errors((uint64_t)ms[i].errors);
    }
    check_stats(&ms[0], &sum);
    printf("four_threads: %ld operations\n", ops);
    for (int i = 0; i < MAX_THREADS; i++)
        model_done(&ms[i]);
}

CHECK_MAIN(setup)
