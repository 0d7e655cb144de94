/* SPDX-License-Identifier: MIT */
/* demo.c - libsamm doing the job it exists for: this program is written
 * the way a BASIC compiler's generated code uses SAMM.  CLASS objects with
 * vtables and destructors, refcounted strings, lists of atoms, recursive
 * functions that return objects to their callers, reassignment and
 * explicit DELETE.  It ends with what it did, the statistics and the leak
 * count, which must be 0.  Out of memory stops it the way a BASIC runtime
 * would: a message, everything cleaned, exit status 3.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "samm.h"

/* ------------------------------------------------------------------------
 * Runtime support the compiler would emit once per program
 * ---------------------------------------------------------------------- */
typedef struct { /* 40-byte string descriptor */
    int64_t refcount;
    int64_t length;
    char *data;
    int64_t capacity;
    int64_t hash;
} BasicString;

typedef struct Atom { /* 24-byte list atom */
    struct Atom *next;
    void *value;
    int64_t tag;
} Atom;

typedef struct { /* 32-byte list header */
    Atom *head;
    Atom *tail;
    int64_t count;
    int64_t flags;
} BasicList;

static long strings_made, strings_freed, atoms_made, atoms_freed;
static long objects_made, objects_destroyed, calls_made, deletes;

/* "Out of memory": libsamm reports it to the error handler (a call that
 * returns nothing, such as a track, cannot say so otherwise); the runtime
 * checks after each call that may fail, and stops cleanly. */
static int out_of_memory;

static void on_error(const SAMMError *e, void *user)
{
    (void)user;
    fprintf(stderr, "samm: %s in %s\n", e->message, e->call);
    if (e->code == SAMM_ERR_OUT_OF_MEMORY) out_of_memory = 1;
}

static void oom_stop(void)
{
    fprintf(stderr, "demo: out of memory\n");
    samm_shutdown(); /* every scope still open is cleaned */
    exit(3);
}

static void *checked(void *p)
{
    if (p == NULL || out_of_memory) oom_stop();
    return p;
}

static void check_oom(void)
{
    if (out_of_memory) oom_stop();
}

/* STRING release: drop one reference; the last one frees the text. */
static void string_release(void *p)
{
    BasicString *s = p;
    if (--s->refcount > 0) return;
    free(s->data);
    strings_freed++;
    samm_free_object(s);
}

/* A new string of `len` characters, tracked in the current scope. */
static BasicString *str_alloc(int64_t len)
{
    BasicString *s = checked(samm_alloc_string());
    s->data = malloc((size_t)len + 1);
    if (s->data == NULL) {
        samm_free_object(s);
        oom_stop();
    }
    s->length = len;
    s->capacity = len + 1;
    s->refcount = 1;
    samm_track_string(s);
    if (out_of_memory) { /* not tracked: it is ours to free */
        free(s->data);
        samm_free_object(s);
        oom_stop();
    }
    strings_made++;
    return s;
}

static BasicString *str_new(const char *text)
{
    BasicString *s = str_alloc((int64_t)strlen(text));
    memcpy(s->data, text, (size_t)s->capacity);
    return s;
}

static BasicString *str_concat(const BasicString *a, const BasicString *b)
{
    BasicString *s = str_alloc(a->length + b->length);
    memcpy(s->data, a->data, (size_t)a->length);
    memcpy(s->data + a->length, b->data, (size_t)b->length + 1);
    return s;
}

/* LIST release: the atoms belong to the list. */
static void list_release(void *p)
{
    BasicList *l = p;
    for (Atom *a = l->head, *next; a; a = next) {
        next = a->next;
        samm_free_object(a);
        atoms_freed++;
    }
    samm_free_object(l);
}

static void list_push(BasicList *l, void *value)
{
    Atom *a = checked(samm_alloc_list_atom());
    a->value = value;
    if (l->tail)
        l->tail->next = a;
    else
        l->head = a;
    l->tail = a;
    l->count++;
    atoms_made++;
}

/* ------------------------------------------------------------------------
 * CLASS Shape: a vtable whose slot 3 is the destructor
 *   CLASS Shape
 *     name AS STRING, area AS DOUBLE, left AS Shape, right AS Shape
 *     DESTRUCTOR: releases its name and destroys the shapes it owns
 * ---------------------------------------------------------------------- */
typedef struct Shape {
    void (**vtable)(void *);
    BasicString *name;
    double area;
    struct Shape *left, *right;
} Shape;

static void shape_destructor(void *p)
{
    Shape *s = p;
    if (s->name) string_release(s->name);
    /* Fields own the objects stored in them. */
    Shape *children[2] = {s->left, s->right};
    for (int i = 0; i < 2; i++) {
        if (children[i] == NULL) continue;
        shape_destructor(children[i]);
        samm_free_object(children[i]);
    }
    objects_destroyed++;
}

static void (*shape_vtable[4])(void *) = {NULL, NULL, NULL, shape_destructor};

static Shape *shape_new(BasicString *name, double area)
{
    Shape *s = checked(samm_alloc_object(sizeof *s));
    s->vtable = shape_vtable;
    s->area = area;
    samm_track_object(s);
    check_oom();
    s->name = name;
    name->refcount++; /* the field holds a reference */
    objects_made++;
    return s;
}

/* DELETE obj: destructor, then free (free untracks it). */
static void shape_delete(Shape *s)
{
    shape_destructor(s);
    samm_free_object(s);
    deletes++;
}

/* ------------------------------------------------------------------------
 * The BASIC program, as generated code
 *
 *   FUNCTION Build(depth) AS Shape       ' returns a tree to its caller
 *   SUB Work(round)                      ' temporaries die at END SUB
 * ---------------------------------------------------------------------- */
/* The first round shows, at the bottom of its recursion, what every open
 * scope holds (samm_report). */
static bool show_report = true;

static Shape *build(int depth)
{
    samm_enter_scope();
    calls_made++;
    BasicString *name = str_new(depth % 2 ? "circle" : "square");
    Shape *node = shape_new(name, depth * 1.5);
    if (depth == 0 && show_report) {
        show_report = false;
        printf("\nthe open scopes at the bottom of the first round's recursion:\n");
        fflush(stdout);
        samm_report(stdout);
    }
    if (depth > 0) {
        /* node.left = Build(depth - 1): storing an object in a field hands
         * it to the field's owner, so it leaves the scope's care and the
         * owner's destructor will destroy it. */
        node->left = build(depth - 1);
        samm_untrack(node->left);
        node->right = build(depth - 1);
        samm_untrack(node->right);
    }
    samm_retain_parent(node); /* RETURN node */
    check_oom();
    samm_exit_scope();
    return node;
}

/* The tree's root lives in the scope that called build(); it owns the rest. */
static double sum_area(const Shape *s)
{
    return s ? s->area + sum_area(s->left) + sum_area(s->right) : 0.0;
}

static double work(int round)
{
    samm_enter_scope();
    calls_made++;
    Shape *tree = build(6);
    double total = sum_area(tree);

    /* temp$ = "round " + label$ : reassigned a few times */
    BasicString *label = str_new("shape-");
    for (int i = 0; i < 4; i++)
        label = str_concat(label, str_new(i % 2 ? "a" : "b"));

    /* DIM items AS LIST: shapes and strings pushed into a list */
    BasicList *items = checked(samm_alloc_list());
    samm_track_list(items);
    check_oom();
    for (int i = 0; i < 20; i++) {
        Shape *s = shape_new(label, i);
        list_push(items, s);
        if (i % 5 == 4) shape_delete(s); /* DELETE s */
    }
    /* reassignment: the old object is deleted explicitly */
    Shape *current = shape_new(label, 1.0);
    for (int i = 0; i < 3; i++) {
        Shape *next = shape_new(label, (double)(round + i));
        shape_delete(current);
        current = next;
    }
    samm_exit_scope(); /* tree, label, temporaries, list: all cleaned here */
    return total;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 60000;
    if (rounds <= 0) rounds = 1;
    samm_init();
    /* This runtime's reference counts are plain integers, as FasterBASIC's
     * are: its destructors must run on the program's thread. */
    samm_set_cleanup_mode(SAMM_CLEANUP_INLINE);
    samm_set_error_handler(on_error, NULL);
    samm_register_cleanup(SAMM_ALLOC_STRING, string_release);
    samm_register_cleanup(SAMM_ALLOC_LIST, list_release);

    printf("libsamm demo: %d rounds of a BASIC-style program (cleanup inline)\n", rounds);
    /* A progress line once the run has taken a second, on a terminal only,
     * redrawn at most five times a second. */
    bool tty = isatty(STDERR_FILENO), progress = false;
    double t0 = now_s(), shown = t0, checksum = 0.0;
    for (int r = 0; r < rounds; r++) {
        checksum += work(r);
        if (tty && (r & 63) == 0) {
            double t = now_s();
            if (t - t0 > 1.0 && t - shown > 0.2) {
                progress = true;
                shown = t;
                fprintf(stderr, "\r  running... %3d%%", (int)(100.0 * r / rounds));
            }
        }
    }
    samm_wait();
    double secs = now_s() - t0;
    if (progress) fprintf(stderr, "\r  running... 100%%\n");

    printf("\nwhat it did in %.2f s:\n", secs);
    printf("  %ld function calls, each with its own scope\n", calls_made);
    printf("  %ld CLASS objects created, %ld destroyed (%ld by DELETE)\n", objects_made,
           objects_destroyed, deletes);
    printf("  %ld strings created, %ld freed\n", strings_made, strings_freed);
    printf("  %ld list atoms created, %ld freed\n", atoms_made, atoms_freed);
    printf("  checksum %.1f\n\n", checksum);

    fflush(stdout);
    samm_shutdown();
    samm_print_stats();
    SAMMStats st;
    samm_get_stats(&st);
    long leaked = (long)(st.objects_allocated - st.objects_freed);
    long lost = (objects_made - objects_destroyed) + (strings_made - strings_freed) +
                (atoms_made - atoms_freed);
    fflush(stderr);
    printf("\nleaks: %ld objects still allocated, %ld program objects never destroyed\n", leaked,
           lost);
    return leaked == 0 && lost == 0 ? 0 : 1;
}
