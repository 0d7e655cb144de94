/* SPDX-License-Identifier: MIT */
/* test_fasterbasic.c - the FasterBASIC compatibility library
 * (compat/fasterbasic) with a stand-in for the runtime's C side
 * (fb_runtime.c, compiled against the compat headers as the runtime is).
 * This file plays the compiled BASIC program: it enters and exits scopes
 * around SUBs, FUNCTIONs, METHODs and destructors, RETAINs what a FUNCTION
 * returns, and calls libsamm's own functions for that, as the generated
 * assembly does.
 */
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fb_runtime.h"
#include "fixtures.h"
#include "samm.h"
#include "samm_fasterbasic.h"
#include "samm_pool.h"

/* ------------------------------------------------------------------------
 * Fixtures
 * ---------------------------------------------------------------------- */
enum { POOL_STRINGS = 6, POOL_LISTS = 7, POOL_ATOMS = 8 };

static uint64_t pool_in_use(int index)
{
    SAMMPoolStats ps;
    REQUIRE(samm_get_pool_stats(index, &ps) == 0);
    return ps.in_use;
}

/* Scope exit as the program sees it, then whatever cleanup the worker
 * does finished (so the counters can be read). */
static void exit_scope_and_wait(void)
{
    samm_exit_scope();
    samm_wait();
}

static long strings_freed(void)
{
    return atomic_load(&fb_count.strings_freed);
}

/* Every descriptor the runtime made was freed, with its buffers, and
 * libsamm's string pool agrees (its counts are exact after samm_wait, also
 * for what destructors allocated on a worker). */
static int all_strings_freed(void)
{
    samm_wait();
    return atomic_load(&fb_count.strings_made) == strings_freed() &&
           atomic_load(&fb_count.buffers_live) == 0 && pool_in_use(POOL_STRINGS) == 0;
}

/* A CLASS: vtable layout [0] class id, [1] parent, [2] name, [3] destructor. */
typedef struct {
    int64_t class_id;
    const void *parent;
    const char *name;
    fb_method destructor;
} fb_vtable;

typedef struct {
    const fb_vtable *vtable;
    int64_t class_id;
    StringDescriptor *name; /* a field holding a reference */
    int64_t id;
    int64_t dtor_runs;
} Thing;

static atomic_int destroyed;
static atomic_long destroyed_ids;

/* DESTRUCTOR: a scope of its own (as generated), a temporary string, and
 * the string field released. */
static void thing_destructor(void *me)
{
    samm_enter_scope();
    Thing *t = me;
    StringDescriptor *bye = string_new_ascii("bye ");
    StringDescriptor *msg = t->name ? string_concat(bye, t->name) : bye;
    CHECK(msg->length >= 4);
    string_release(t->name);
    t->name = NULL;
    t->dtor_runs++;
    atomic_fetch_add(&destroyed, 1);
    atomic_fetch_add(&destroyed_ids, (long)t->id);
    samm_exit_scope();
}

static const fb_vtable thing_vtable = {7, NULL, "Thing", thing_destructor};
static const fb_vtable plain_vtable = {8, NULL, "Plain", NULL};

static Thing *new_thing(int64_t id, const char *name)
{
    Thing *t = class_object_new(sizeof(Thing), &thing_vtable, 7);
    REQUIRE(t != NULL);
    t->id = id;
    if (name) t->name = string_retain(string_new_ascii(name));
    return t;
}

static int destroyed_count(void)
{
    samm_wait();
    return atomic_load(&destroyed);
}

/* Runs fn with stderr going to a buffer (returned, malloc'd). */
static char *stderr_of(void (*fn)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    REQUIRE(tmp != NULL);
    int saved = dup(2);
    REQUIRE(saved >= 0);
    REQUIRE(dup2(fileno(tmp), 2) >= 0);
    fn();
    fflush(stderr);
    REQUIRE(dup2(saved, 2) >= 0);
    close(saved);
    long n = ftell(tmp);
    if (n < 0) n = 0;
    char *buf = calloc(1, (size_t)n + 1);
    REQUIRE(buf != NULL);
    rewind(tmp);
    size_t got = fread(buf, 1, (size_t)n, tmp);
    buf[got] = '\0';
    fclose(tmp);
    return buf;
}

/* ------------------------------------------------------------------------
 * Strings
 * ---------------------------------------------------------------------- */
TEST_BOTH(string_contract)
{
    uint64_t base = pool_in_use(POOL_STRINGS);
    SAMMStats s0, s1;
    samm_get_stats(&s0);
    samm_enter_scope();
    samm_enter_scope();
    StringDescriptor *d = fb_alloc_descriptor();
    CHECK_EQ(d->refcount, 1);
    CHECK_EQ(d->encoding, 0);
    CHECK_EQ(d->dirty, 1);
    CHECK(d->data == NULL && d->utf8_cache == NULL);
    CHECK_EQ(d->length, 0);
    CHECK_EQ(d->capacity, 0);
    CHECK_EQ((uintptr_t)d % 8, 0);
    CHECK_EQ(pool_in_use(POOL_STRINGS), base + 1);
    samm_get_stats(&s1);
    CHECK_EQ(s1.strings_tracked - s0.strings_tracked, 1);
    /* Tracked in the current scope: the inner exit releases it. */
    exit_scope_and_wait();
    CHECK_EQ(strings_freed(), 1);
    CHECK_EQ(pool_in_use(POOL_STRINGS), base);
    exit_scope_and_wait();

    /* SAMM off: still a descriptor, not tracked. */
    samm_set_enabled(0);
    CHECK_EQ(fb_samm_enabled(), 0);
    StringDescriptor *off = fb_alloc_descriptor();
    CHECK_EQ(off->refcount, 1);
    CHECK_EQ(off->dirty, 1);
    samm_set_enabled(1);
    CHECK_EQ(fb_samm_enabled(), 1);
    samm_enter_scope();
    exit_scope_and_wait();
    CHECK_EQ(strings_freed(), 1);
    string_release(off);
    CHECK_EQ(strings_freed(), 2);
    CHECK_EQ(pool_in_use(POOL_STRINGS), base);
}

/* FUNCTION Greet$(who$): temporaries die with the function, the result is
 * RETAINed to the caller. */
static StringDescriptor *greet(const char *who)
{
    samm_enter_scope();
    StringDescriptor *a = string_new_ascii("Hello, ");
    StringDescriptor *b = string_new_ascii(who);
    StringDescriptor *r = string_concat(a, b);
    samm_retain_parent(r);
    samm_exit_scope();
    return r;
}

TEST_BOTH(string_variables)
{
    StringDescriptor *var = NULL; /* a global variable */
    samm_enter_scope();
    StringDescriptor *g = greet("World");
    samm_wait();
    CHECK_EQ(strings_freed(), 2);
    CHECK(string_is(g, "Hello, World"));
    CHECK_EQ(g->refcount, 1);
    string_assign(&var, g);
    CHECK_EQ(var->refcount, 2);
    CHECK(strcmp(string_to_utf8(var), "Hello, World") == 0);
    exit_scope_and_wait();
    /* The scope's reference is gone, the variable's is not. */
    CHECK_EQ(strings_freed(), 2);
    CHECK(string_is(var, "Hello, World"));
    CHECK_EQ(var->refcount, 1);
    samm_enter_scope();
    string_assign(&var, string_new_ascii("second"));
    CHECK_EQ(strings_freed(), 3);
    exit_scope_and_wait();
    CHECK(string_is(var, "second"));
    string_assign(&var, NULL);
    CHECK_EQ(strings_freed(), 4);
    CHECK(all_strings_freed());
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);
}

/* ------------------------------------------------------------------------
 * Lists
 * ---------------------------------------------------------------------- */
TEST_BOTH(lists_own_atoms)
{
    samm_enter_scope(); /* SUB */
    ListHeader *l = list_create();
    char text[32];
    for (int i = 0; i < 10; i++) {
        snprintf(text, sizeof text, "item %d", i);
        list_append_string(l, string_new_ascii(text));
        list_append_int(l, i);
    }
    CHECK_EQ(l->length, 20);
    int i = 0;
    for (ListAtom *a = l->head; a; a = a->next, i++) {
        if (i % 2 == 0) {
            snprintf(text, sizeof text, "item %d", i / 2);
            CHECK(a->type == ATOM_STRING && string_is(a->value.ptr_value, text));
        } else {
            CHECK(a->type == ATOM_INT && a->value.int_value == i / 2);
        }
    }
    CHECK_EQ(pool_in_use(POOL_ATOMS), 20);
    CHECK_EQ(pool_in_use(POOL_LISTS), 1);
    exit_scope_and_wait();
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 20);
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 1);
    CHECK_EQ(strings_freed(), 10);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 0);
    CHECK_EQ(pool_in_use(POOL_LISTS), 0);
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);

    /* ERASE: the program untracks the list, the runtime frees it. */
    samm_enter_scope();
    l = list_create();
    for (int k = 0; k < 5; k++)
        list_append_string(l, string_new_ascii("erased"));
    samm_untrack(l);
    list_free(l);
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 25);
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 2);
    CHECK_EQ(strings_freed(), 10); /* still the scope's */
    exit_scope_and_wait();
    CHECK_EQ(strings_freed(), 15);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 0);
    CHECK_EQ(pool_in_use(POOL_LISTS), 0);
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);
    CHECK(all_strings_freed());
}

/* An atom's value: the number n, or the string s when s is not NULL. */
typedef struct {
    int64_t n;
    const char *s;
} atom_value;

static int list_holds(const ListHeader *l, const atom_value *want, int64_t count)
{
    if (l->length != count) return 0;
    const ListAtom *a = l->head;
    for (int64_t i = 0; i < count; i++, a = a->next) {
        if (a == NULL) return 0;
        if (want[i].s ? a->type != ATOM_STRING || !string_is(a->value.ptr_value, want[i].s)
                      : a->type != ATOM_INT || a->value.int_value != want[i].n)
            return 0;
    }
    return a == NULL && l->tail != NULL && l->tail->next == NULL;
}

/* SUB Add(l AS LIST, n): APPENDs to the caller's list. */
static void add_sub(ListHeader *l, int64_t n)
{
    samm_enter_scope();
    list_append_int(l, n);
    list_append_string(l, string_new_ascii("sub"));
    samm_exit_scope();
}

/* A list made and filled in a scope and RETAINed to the caller's. */
static ListHeader *make_list(void)
{
    samm_enter_scope();
    ListHeader *l = list_create();
    list_append_int(l, 7);
    list_append_string(l, string_new_ascii("made"));
    samm_retain_parent(l);
    samm_exit_scope();
    return l;
}

/* The runtime tracks an atom in the scope that appends it; the compat
 * gives it to its list instead, so no scope's exit frees an atom a list
 * still links (with the runtime's tracking, inline cleanup frees them at
 * the SUB's exit and the next SUB's atoms reuse them). */
TEST_BOTH(list_atoms_belong_to_list)
{
    samm_enter_scope();
    ListHeader *l = list_create();
    list_append_int(l, 1);
    for (int k = 1; k <= 3; k++)
        add_sub(l, 10 * k);
    ListHeader *m = make_list();
    samm_wait();
    static const atom_value want_l[] = {{1, NULL},  {10, NULL}, {0, "sub"}, {20, NULL},
                                        {0, "sub"}, {30, NULL}, {0, "sub"}};
    static const atom_value want_m[] = {{7, NULL}, {0, "made"}};
    CHECK(list_holds(l, want_l, 7));
    CHECK(list_holds(m, want_m, 2));
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 0);
    CHECK_EQ(strings_freed(), 0);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 9);

    /* The lists' scope ends: each frees its atoms and their strings. */
    exit_scope_and_wait();
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 2);
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 9);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 0);
    CHECK_EQ(pool_in_use(POOL_LISTS), 0);
    CHECK(all_strings_freed());
}

/* DIM a AS LIST, b AS LIST: a.APPEND(b), with b made before or after a.
 * Each list is tracked in the scope and freed once, by its own entry,
 * whichever is cleaned first; ERASE a frees b with it. */
static void nested_pair(int outer_first, ListHeader **outer, ListHeader **inner)
{
    *outer = outer_first ? list_create() : NULL;
    *inner = list_create();
    if (*outer == NULL) *outer = list_create();
    list_append_int(*inner, 5);
    list_append_string(*inner, string_new_ascii("inner"));
    list_append_list(*outer, *inner);
}

TEST_BOTH(nested_lists)
{
    ListHeader *a, *b;
    for (int outer_first = 0; outer_first < 2; outer_first++) {
        samm_enter_scope();
        nested_pair(outer_first, &a, &b);
        CHECK_EQ(a->length, 1);
        CHECK(a->head->type == ATOM_LIST && a->head->value.ptr_value == b);
        exit_scope_and_wait();
        CHECK_EQ(atomic_load(&fb_count.lists_freed), 2 * (outer_first + 1));
        CHECK_EQ(atomic_load(&fb_count.atoms_freed), 3 * (outer_first + 1));
    }
    samm_enter_scope();
    nested_pair(1, &a, &b);
    list_free(a); /* ERASE a */
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 6);
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 9);
    exit_scope_and_wait();
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 6);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 0);
    CHECK_EQ(pool_in_use(POOL_LISTS), 0);
    CHECK(all_strings_freed());
}

/* ------------------------------------------------------------------------
 * CLASS objects
 * ---------------------------------------------------------------------- */
TEST_BOTH(class_objects)
{
    samm_enter_scope();
    for (int i = 1; i <= 5; i++)
        new_thing(i, "thing");
    Thing *d = new_thing(100, "deleted");
    class_object_delete((void **)&d); /* DELETE: destructor now, once */
    CHECK(d == NULL);
    CHECK_EQ(destroyed_count(), 1);
    CHECK_EQ(atomic_load(&destroyed_ids), 100);
    /* Above the original's 1024-byte pools, and one without a destructor. */
    Thing *big = class_object_new(4000, &thing_vtable, 7);
    big->id = 1000;
    void **plain = class_object_new(64, &plain_vtable, 8);
    CHECK_EQ(((int64_t *)plain)[1], 8);
    CHECK((uintptr_t)big % 16 == 0 && (uintptr_t)plain % 16 == 0);
    exit_scope_and_wait();
    CHECK_EQ(destroyed_count(), 7);
    CHECK_EQ(atomic_load(&destroyed_ids), 100 + 15 + 1000);
    CHECK(all_strings_freed());
}

/* FUNCTION Make(levels) AS Thing: each level makes a temporary and
 * RETAINs what it returns. */
static Thing *pass_up(int levels, int64_t id)
{
    samm_enter_scope();
    Thing *o = levels == 0 ? new_thing(id, "kept") : pass_up(levels - 1, id);
    new_thing(1, NULL); /* temporary */
    samm_retain_parent(o);
    samm_exit_scope();
    return o;
}

TEST_BOTH(retain_returned_object)
{
    samm_enter_scope();
    Thing *o = pass_up(3, 42);
    CHECK_EQ(destroyed_count(), 4); /* the temporaries */
    CHECK_EQ(o->dtor_runs, 0);
    CHECK(string_is(o->name, "kept"));
    exit_scope_and_wait();
    CHECK_EQ(destroyed_count(), 5);
    CHECK_EQ(atomic_load(&destroyed_ids), 4 + 42);

    /* RETURN of an object made in an outer scope: it moves one scope out
     * from where it is, here to the global scope. */
    samm_enter_scope();
    Thing *outer = new_thing(7, NULL);
    samm_enter_scope();
    samm_retain_parent(outer);
    exit_scope_and_wait();
    exit_scope_and_wait();
    CHECK_EQ(destroyed_count(), 5);
    CHECK_EQ(outer->dtor_runs, 0);

    /* RETURN of NOTHING, and of an object made while SAMM was off: the
     * original ignored both silently; libsamm reports the second (counted,
     * not printed: the compat handler drops it). */
    samm_enter_scope();
    samm_retain_parent(NULL);
    samm_set_enabled(0);
    Thing *untracked = new_thing(9, NULL);
    samm_set_enabled(1);
    samm_retain_parent(untracked);
    expect_errors(1);
    exit_scope_and_wait();
    class_object_delete((void **)&untracked); /* calloc'd: libsamm passes it to free() */
    CHECK_EQ(destroyed_count(), 6);

    samm_shutdown(); /* cleans the global scope */
    CHECK_EQ(atomic_load(&destroyed), 7);
    CHECK(all_strings_freed());
}

/* ------------------------------------------------------------------------
 * REDIM
 * ---------------------------------------------------------------------- */
TEST_BOTH(redim_strings)
{
    FBStringArray *a = array_new_strings(5); /* DIM a$(4) */
    char text[32];
    samm_enter_scope(); /* SUB Fill: each element is the scope's and the array's */
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "element %d", i);
        array_set_string(a, i, string_new_ascii(text));
        CHECK_EQ(a->data[i]->refcount, 2);
    }
    exit_scope_and_wait();
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "element %d", i);
        CHECK(string_is(a->data[i], text));
        CHECK_EQ(a->data[i]->refcount, 1);
    }
    array_redim_strings(a, 8, 1); /* REDIM PRESERVE a$(7) */
    CHECK_EQ(strings_freed(), 0);
    for (int i = 0; i < 5; i++) {
        snprintf(text, sizeof text, "element %d", i);
        CHECK(string_is(a->data[i], text));
    }
    CHECK(a->data[5] == NULL && a->data[7] == NULL);
    array_redim_strings(a, 3, 1); /* REDIM PRESERVE a$(2) */
    CHECK_EQ(strings_freed(), 2);
    CHECK(string_is(a->data[2], "element 2"));
    array_redim_strings(a, 4, 0); /* REDIM a$(3) */
    CHECK_EQ(strings_freed(), 5);
    CHECK(a->data[0] == NULL);
    samm_enter_scope();
    for (int i = 0; i < 4; i++)
        array_set_string(a, i, string_new_ascii("again"));
    exit_scope_and_wait();
    array_erase_strings(a); /* ERASE a$ */
    CHECK_EQ(strings_freed(), 9);

    /* REDIM PRESERVE in the scope that made the string: the runtime takes
     * the element out of SAMM and releases one reference, so the scope's
     * reference is left behind - the string must survive the scope (no
     * early free), and the test releases what the runtime leaves. */
    samm_enter_scope();
    StringDescriptor *s = string_new_ascii("kept");
    array_set_string(a, 0, s);
    array_redim_strings(a, 2, 1);
    CHECK_EQ(s->refcount, 2);
    exit_scope_and_wait();
    CHECK(string_is(a->data[0], "kept"));
    CHECK_EQ(s->refcount, 2);
    array_erase_strings(a);
    string_release(s);
    CHECK_EQ(strings_freed(), 10);
    array_free_strings(a);
    CHECK(all_strings_freed());
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);
}

/* ------------------------------------------------------------------------
 * Statistics: the original 136-byte struct, and bytes that add up
 * ---------------------------------------------------------------------- */
TEST(stats_136_bytes)
{
    CHECK_EQ(fb_stats_size(), 136);
    CHECK_EQ(SAMM_STATS_V1_SIZE, 136);
    samm_enter_scope();
    StringDescriptor *g = greet("stats");
    ListHeader *l = list_create();
    list_append_string(l, g);
    list_append_int(l, 1);
    new_thing(1, "x");
    fb_stats in_scope;
    CHECK(fb_get_stats_guarded(&in_scope));
    CHECK_EQ(in_scope.current_scope_depth, 1);
    samm_exit_scope();
    samm_enter_scope();
    ListHeader *erased = list_create();
    list_append_int(erased, 2);
    samm_untrack(erased);
    list_free(erased); /* the runtime reports these bytes itself */
    samm_exit_scope();

    fb_stats fs;
    SAMMStats full;
    CHECK(fb_get_stats_guarded(&fs));
    samm_get_stats(&full);
    CHECK_EQ(fs.scopes_entered, full.scopes_entered);
    CHECK_EQ(fs.scopes_exited, full.scopes_exited);
    CHECK_EQ(fs.scopes_entered, 4); /* the SUBs, greet, the destructor */
    CHECK_EQ(fs.objects_allocated, full.objects_allocated);
    CHECK_EQ(fs.objects_freed, full.objects_freed);
    CHECK_EQ(fs.objects_cleaned, full.objects_cleaned);
    CHECK_EQ(fs.retain_calls, 1);
    CHECK_EQ(fs.strings_tracked, full.strings_tracked);
    CHECK_EQ(fs.strings_tracked, 6); /* greet's 3, the name, the destructor's 2 */
    CHECK_EQ(fs.total_bytes_allocated, full.total_bytes_allocated);
    CHECK_EQ(fs.current_scope_depth, 0);
    /* Everything is freed: libsamm's own bytes balance, and what the
     * runtime reported is counted apart. */
    CHECK(full.total_bytes_allocated > 0);
    CHECK_EQ(full.total_bytes_freed, full.total_bytes_allocated);
    CHECK_EQ(fs.total_bytes_freed, full.total_bytes_freed);
    CHECK_EQ(full.host_bytes_freed, (uint64_t)atomic_load(&fb_count.host_bytes));
    CHECK_EQ(full.host_bytes_freed, 6 * 40 + 32 + 24);
}

/* ------------------------------------------------------------------------
 * Errors the original did not report
 * ---------------------------------------------------------------------- */
static void quiet_misuse(void)
{
    samm_exit_scope(); /* at depth 0 */
    void *p = samm_alloc_object(32);
    samm_retain_parent(p); /* in no scope */
    samm_retain(p, 0);
    samm_retain(p, -1);
    samm_free_object(p);
}

static void *double_freed;
static void loud_misuse(void)
{
    double_freed = samm_alloc_object(32);
    samm_free_object(double_freed);
    samm_free_object(double_freed);
}

TEST(silent_errors)
{
    CHECK(samm_fb_is_silent_error(SAMM_ERR_EXIT_AT_GLOBAL, "samm_exit_scope"));
    CHECK(samm_fb_is_silent_error(SAMM_ERR_NOT_TRACKED, "samm_retain"));
    CHECK(samm_fb_is_silent_error(SAMM_ERR_BAD_ARGUMENT, "samm_retain"));
    CHECK(!samm_fb_is_silent_error(SAMM_ERR_BAD_ARGUMENT, "samm_set_cleanup_mode"));
    CHECK(!samm_fb_is_silent_error(SAMM_ERR_NOT_TRACKED, "samm_exit_scope"));
    CHECK(!samm_fb_is_silent_error(SAMM_ERR_DOUBLE_FREE, "samm_free_object"));
    CHECK(!samm_fb_is_silent_error(SAMM_ERR_EXIT_AT_GLOBAL, NULL));

    char *quiet = stderr_of(quiet_misuse);
    CHECK_EQ(samm_error_count(), 4);
    CHECK_EQ(strlen(quiet), 0);
    if (*quiet) fprintf(stderr, "printed: %s", quiet);
    free(quiet);
    CHECK_EQ(samm_scope_depth(), 0);

    char *loud = stderr_of(loud_misuse);
    char want[96];
    snprintf(want, sizeof want, "samm: double free of %p in samm_free_object\n", double_freed);
    CHECK(strcmp(loud, want) == 0);
    if (strcmp(loud, want) != 0) fprintf(stderr, "printed: %s", loud);
    free(loud);
    expect_errors(5);
}

/* A handler of the program's own replaces the compat's; samm_fb_install
 * puts the compat's back, which then hands what it does not drop on, with
 * the program's user pointer. */
static int seen_by_program;
static void *user_seen;
static void program_handler(const SAMMError *e, void *user)
{
    (void)e;
    seen_by_program++;
    user_seen = user;
}

TEST(program_handler_chain)
{
    static int cookie;
    void *user = &cookie;
    CHECK(samm_get_error_handler(&user) == samm_fb_error_handler);
    CHECK(user == NULL);
    samm_error_fn prev = samm_set_error_handler(program_handler, &cookie);
    CHECK(prev == samm_fb_error_handler);
    samm_exit_scope(); /* reaches the program's handler */
    CHECK_EQ(seen_by_program, 1);
    samm_fb_install();
    CHECK(samm_get_error_handler(NULL) == samm_fb_error_handler);
    samm_exit_scope(); /* dropped */
    CHECK_EQ(seen_by_program, 1);
    void *p = samm_alloc_object(16);
    samm_free_object(p);
    user_seen = NULL;
    samm_free_object(p); /* passed on */
    CHECK_EQ(seen_by_program, 2);
    CHECK(user_seen == &cookie);
    samm_fb_install(); /* ours already: the chain stays */
    user_seen = NULL;
    samm_free_object(p);
    CHECK_EQ(seen_by_program, 3);
    CHECK(user_seen == &cookie);
    expect_errors(4);
}

/* ------------------------------------------------------------------------
 * The pool interface
 * ---------------------------------------------------------------------- */
static SammSlabPool own_pool;

static void print_own_pool(void)
{
    samm_slab_pool_print_stats(&own_pool);
}

static void check_own_pool(void)
{
    samm_slab_pool_check_leaks(&own_pool);
}

static void destroy_own_pool(void)
{
    samm_slab_pool_destroy(&own_pool);
}

static int zeroed(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

TEST(slab_pool_api)
{
    CHECK_EQ(sizeof(SammSlabPool), 128);
    CHECK_EQ(alignof(SammSlabPool), 16);
    CHECK(!samm_slab_pool_validate(&own_pool));
    samm_slab_pool_init(&own_pool, 48, 64, "Test48");
    CHECK(samm_slab_pool_validate(&own_pool));
    void *p[100];
    for (int i = 0; i < 100; i++) {
        p[i] = samm_slab_pool_alloc(&own_pool);
        REQUIRE(p[i] != NULL);
        CHECK(zeroed(p[i], 48));
        CHECK_EQ((uintptr_t)p[i] % 16, 0);
        memset(p[i], 0xEE, 48);
    }
    for (int i = 0; i < 40; i++)
        samm_slab_pool_free(&own_pool, p[i]);
    size_t in_use, capacity, peak, slabs, allocs, frees;
    samm_slab_pool_stats(&own_pool, &in_use, &capacity, &peak, &slabs, &allocs, &frees);
    CHECK_EQ(in_use, 60);
    CHECK_EQ(peak, 100);
    CHECK_EQ(slabs, 2);
    CHECK_EQ(capacity, 128);
    CHECK_EQ(allocs, 100);
    CHECK_EQ(frees, 40);
    CHECK(samm_slab_pool_usage_percent(&own_pool) > 46.8 &&
          samm_slab_pool_usage_percent(&own_pool) < 46.9);
    samm_slab_pool_stats(&own_pool, NULL, NULL, NULL, NULL, NULL, NULL);

    char *out = stderr_of(print_own_pool);
    CHECK(strstr(out, "Test48") != NULL && strstr(out, "60 in use (peak 100)") != NULL);
    free(out);
    out = stderr_of(check_own_pool);
    CHECK(strstr(out, "Test48 has 60 slot(s) still in use") != NULL);
    free(out);
    for (int i = 40; i < 100; i++)
        samm_slab_pool_free(&own_pool, p[i]);
    samm_slab_pool_free(&own_pool, NULL);
    out = stderr_of(check_own_pool);
    CHECK_EQ(strlen(out), 0);
    free(out);
    out = stderr_of(destroy_own_pool);
    CHECK_EQ(strlen(out), 0);
    free(out);
    CHECK(!samm_slab_pool_validate(&own_pool));

    /* The global pools: libsamm's descriptor and object pools, untracked
     * slots, no init needed. */
    struct {
        SammSlabPool *pool;
        int index;
        size_t size;
    } globals[] = {{&g_string_desc_pool, POOL_STRINGS, 40},
                   {&g_list_header_pool, POOL_LISTS, 32},
                   {&g_list_atom_pool, POOL_ATOMS, 24}};
    for (int i = 0; i < 3; i++) {
        CHECK(samm_slab_pool_validate(globals[i].pool));
        samm_enter_scope();
        void *d = samm_slab_pool_alloc(globals[i].pool);
        REQUIRE(d != NULL);
        CHECK(zeroed(d, globals[i].size));
        samm_slab_pool_stats(globals[i].pool, &in_use, NULL, NULL, NULL, &allocs, &frees);
        CHECK_EQ(in_use, 1);
        CHECK_EQ(in_use, pool_in_use(globals[i].index));
        exit_scope_and_wait(); /* not tracked: still there */
        CHECK_EQ(pool_in_use(globals[i].index), 1);
        samm_slab_pool_free(globals[i].pool, d);
        CHECK_EQ(pool_in_use(globals[i].index), 0);
    }
    for (int c = 0; c < SAMM_OBJECT_SIZE_CLASSES; c++) {
        size_t size = (size_t)32 << c;
        void *o = samm_slab_pool_alloc(&g_object_pools[c]);
        REQUIRE(o != NULL);
        CHECK(zeroed(o, size));
        CHECK_EQ((uintptr_t)o % 16, 0);
        CHECK_EQ(pool_in_use(c), 1);
        samm_slab_pool_free(&g_object_pools[c], o);
        CHECK_EQ(pool_in_use(c), 0);
    }
}

/* OPTION SAMM OFF never calls samm_init; the original's pools crashed
 * when used then.  Here they work before init and after shutdown. */
TEST(pools_without_init)
{
    samm_shutdown();
    void *h = samm_slab_pool_alloc(&g_list_header_pool);
    REQUIRE(h != NULL);
    samm_slab_pool_free(&g_list_header_pool, h);
    StringDescriptor *s = string_new_ascii("after shutdown");
    string_release(s);
    CHECK_EQ(strings_freed(), 1);
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);
}

/* Tracking off (samm_set_enabled(0)): the runtime's own paths - calloc'd
 * objects, untracked lists and strings, freed by hand. */
TEST(samm_off)
{
    samm_set_enabled(0);
    CHECK_EQ(fb_samm_enabled(), 0);
    samm_enter_scope();
    void *t = class_object_new(48, &plain_vtable, 8);
    CHECK_EQ(atomic_load(&fb_count.objects_callocd), 1);
    ListHeader *l = list_create();
    StringDescriptor *s = string_new_ascii("atom");
    list_append_string(l, s);
    list_append_int(l, 5);
    CHECK_EQ(s->refcount, 2);
    samm_exit_scope();
    CHECK_EQ(strings_freed(), 0);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 2);
    class_object_delete(&t); /* free() */
    CHECK(t == NULL);
    list_free(l);
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 2);
    CHECK_EQ(s->refcount, 1);
    string_release(s); /* nothing else releases it with SAMM off */
    CHECK_EQ(strings_freed(), 1);
    samm_set_enabled(1);
    CHECK_EQ(pool_in_use(POOL_STRINGS), 0);
    CHECK_EQ(pool_in_use(POOL_LISTS), 0);
    CHECK_EQ(pool_in_use(POOL_ATOMS), 0);
    CHECK(all_strings_freed());
}

/* ------------------------------------------------------------------------
 * Depth, shutdown
 * ---------------------------------------------------------------------- */
/* FUNCTION Nest$(n): recursion far past the original's 256 scopes. */
static int nest_levels;
static StringDescriptor *nest(int n)
{
    samm_enter_scope();
    new_thing(0, NULL);
    StringDescriptor *r;
    if (n == 0) {
        r = string_new_ascii("bottom");
        CHECK_EQ(samm_scope_depth(), nest_levels + 2);
    } else {
        StringDescriptor *inner = nest(n - 1);
        r = string_concat(inner, string_new_ascii("."));
    }
    samm_retain_parent(r);
    samm_exit_scope();
    return r;
}

TEST_BOTH(deep_recursion)
{
    int levels = nest_levels = scale(1500, 600);
    samm_enter_scope();
    StringDescriptor *r = nest(levels);
    samm_wait();
    CHECK_EQ(r->length, 6 + levels);
    CHECK_EQ(destroyed_count(), levels + 1);
    exit_scope_and_wait();
    CHECK(all_strings_freed());
}

/* What main's global scope holds is cleaned at samm_shutdown (END); a
 * string a global variable still holds is reported as a leak, as the
 * original warned about its pool. */
TEST_BOTH(shutdown_cleans_globals)
{
    StringDescriptor *var = NULL;
    for (int i = 0; i < 3; i++)
        new_thing(i + 1, "global");
    ListHeader *l = list_create();
    list_append_string(l, string_new_ascii("in a list"));
    string_assign(&var, string_new_ascii("held"));
    samm_shutdown();
    CHECK_EQ(atomic_load(&destroyed), 3);
    CHECK_EQ(atomic_load(&fb_count.lists_freed), 1);
    CHECK_EQ(atomic_load(&fb_count.atoms_freed), 1);
    /* 3 names, the destructors' 2 each, the list's string */
    CHECK_EQ(strings_freed(), 10);
    CHECK(string_is(var, "held"));
    expect_errors(1); /* leak: 1 object in the 40-byte pool */
    string_assign(&var, NULL);
    CHECK_EQ(strings_freed(), 11);
    CHECK(all_strings_freed());
}

/* END inside a SUB: the original cleaned the open scopes silently;
 * libsamm cleans them too, and reports the imbalance. */
TEST(end_inside_sub)
{
    samm_enter_scope();
    samm_enter_scope();
    new_thing(1, "inner");
    samm_shutdown();
    CHECK_EQ(atomic_load(&destroyed), 1);
    CHECK_EQ(strings_freed(), 3); /* the name, the destructor's 2 */
    expect_errors(1);
}

CHECK_MAIN(NULL)
