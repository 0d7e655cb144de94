/* SPDX-License-Identifier: MIT */
/* fb_runtime.h - a stand-in for the FasterBASIC runtime's C side, written
 * from the documented facts of its ABI (layouts, names, what each call
 * does), for test_fasterbasic.c.
 *
 * The stand-in (fb_runtime.c) is compiled the way the real runtime is
 * compiled against the compatibility library: with its samm_bridge.h and
 * samm_pool.h and nothing of libsamm's samm.h.  The test program (the
 * compiled BASIC program's part: scopes, RETAIN, DELETE) includes samm.h.
 * This header, shared by both, includes neither.
 */
#ifndef FB_RUNTIME_H
#define FB_RUNTIME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------------
 * Strings: 40-byte descriptors with a reference count.  A new one has
 * refcount 1, owned by the scope that tracks it; a variable holds one
 * more (assignment is new = string_retain(value); string_release(old)).
 * ---------------------------------------------------------------------- */
typedef struct {
    void *data;       /* 1 byte a character (ASCII), malloc'd */
    int64_t length;   /* characters */
    int64_t capacity; /* characters */
    int32_t refcount;
    uint8_t encoding; /* 0 ASCII */
    uint8_t dirty;    /* utf8_cache stale */
    uint8_t padding[2];
    char *utf8_cache; /* malloc'd */
} StringDescriptor;

StringDescriptor *fb_alloc_descriptor(void); /* the runtime's alloc_descriptor() */
StringDescriptor *string_new_ascii(const char *s);
StringDescriptor *string_concat(const StringDescriptor *a, const StringDescriptor *b);
StringDescriptor *string_retain(StringDescriptor *s);
void string_release(StringDescriptor *s); /* the cleanup hook of STRING */
const char *string_to_utf8(StringDescriptor *s);
int string_is(const StringDescriptor *s, const char *text);
void string_assign(StringDescriptor **var, StringDescriptor *value);

/* ------------------------------------------------------------------------
 * Lists: a 32-byte header and 24-byte atoms; the runtime asks for each
 * to be tracked in the scope that made it (the compat library gives the
 * atoms to their list instead); an atom owns its payload (a string is
 * retained).
 * ---------------------------------------------------------------------- */
enum { ATOM_SENTINEL = 0, ATOM_INT, ATOM_FLOAT, ATOM_STRING, ATOM_LIST, ATOM_OBJECT };

typedef struct ListAtom {
    int32_t type;
    int32_t pad;
    union {
        int64_t int_value;
        double float_value;
        void *ptr_value;
    } value;
    struct ListAtom *next;
} ListAtom;

typedef struct {
    int32_t type;
    int32_t flags;
    int64_t length;
    ListAtom *head;
    ListAtom *tail;
} ListHeader;

ListHeader *list_create(void);
void list_append_int(ListHeader *list, int64_t v);
void list_append_string(ListHeader *list, StringDescriptor *s);
void list_append_list(ListHeader *list, ListHeader *nested); /* the atom owns it */
void list_free(ListHeader *list);                            /* ERASE, and the non-SAMM path */
void list_free_from_samm(void *header);                      /* the cleanup hook of LIST */
void list_atom_free_from_samm(void *atom_ptr);               /* the cleanup hook of LIST_ATOM */

/* ------------------------------------------------------------------------
 * CLASS objects: [0] vtable, [8] class id, fields from 16.  The vtable:
 * [0] class id, [1] parent vtable, [2] class name, [3] destructor.
 * ---------------------------------------------------------------------- */
typedef void (*fb_method)(void *me);

void *class_object_new(int64_t size, const void *vtable, int64_t class_id);
void class_object_delete(void **ref); /* DELETE: destructor, free, NULL */

/* ------------------------------------------------------------------------
 * Arrays of strings (DIM / REDIM [PRESERVE] / ERASE): malloc'd, never
 * tracked; elements hold references.
 * ---------------------------------------------------------------------- */
typedef struct {
    StringDescriptor **data;
    int64_t count;
} FBStringArray;

FBStringArray *array_new_strings(int64_t count);
void array_set_string(FBStringArray *a, int64_t i, StringDescriptor *s);
void array_redim_strings(FBStringArray *a, int64_t count, int preserve);
void array_erase_strings(FBStringArray *a);
void array_free_strings(FBStringArray *a); /* the test's own: the array itself */

/* ------------------------------------------------------------------------
 * What the runtime sees through the compatibility headers
 * ---------------------------------------------------------------------- */
int fb_samm_enabled(void); /* samm_is_enabled() as the runtime calls it */

/* The original 136-byte statistics: the fields the tests look at. */
typedef struct {
    uint64_t scopes_entered, scopes_exited, objects_allocated, objects_freed, objects_cleaned;
    uint64_t retain_calls, total_bytes_allocated, total_bytes_freed;
    uint64_t strings_tracked, strings_cleaned;
    int current_scope_depth;
} fb_stats;

/* sizeof the runtime's SAMMStats. */
size_t fb_stats_size(void);
/* samm_get_stats into a SAMMStats followed by a guard; returns 1 if the
 * guard is intact. */
int fb_get_stats_guarded(fb_stats *out);

/* ------------------------------------------------------------------------
 * What the stand-in counts
 * ---------------------------------------------------------------------- */
typedef struct {
    atomic_long strings_made;    /* descriptors alloc_descriptor gave */
    atomic_long strings_freed;   /* descriptors string_release freed */
    atomic_long buffers_live;    /* data and utf8 buffers malloc'd, not freed */
    atomic_long host_bytes;      /* reported with samm_record_bytes_freed */
    atomic_long lists_freed;     /* headers, either path */
    atomic_long atoms_freed;     /* atoms, either path */
    atomic_long objects_callocd; /* CLASS objects made while SAMM was off */
} fb_counters;

extern fb_counters fb_count;

#endif
