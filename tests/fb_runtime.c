/* SPDX-License-Identifier: MIT */
/* fb_runtime.c - the FasterBASIC runtime's part, for test_fasterbasic.c:
 * strings, lists, CLASS objects and string arrays that use SAMM the way
 * the runtime's C files do (fb_runtime.h says what each does).  Compiled
 * against the compatibility library's headers only, as the runtime is:
 * samm_alloc_string and samm_is_enabled here are the compat's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fb_runtime.h"
#include "samm_bridge.h"
#include "samm_pool.h"

fb_counters fb_count;

_Static_assert(sizeof(StringDescriptor) == 40, "StringDescriptor is 40 bytes");
_Static_assert(sizeof(ListAtom) == 24 && sizeof(ListHeader) == 32, "list layouts");

/* ------------------------------------------------------------------------
 * Strings
 * ---------------------------------------------------------------------- */
StringDescriptor *fb_alloc_descriptor(void)
{
    StringDescriptor *d = (StringDescriptor *)samm_alloc_string();
    if (d == NULL) {
        fprintf(stderr, "fb_runtime: out of memory (string descriptor)\n");
        abort();
    }
    atomic_fetch_add(&fb_count.strings_made, 1);
    return d;
}

static void *buffer(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) abort();
    atomic_fetch_add(&fb_count.buffers_live, 1);
    return p;
}

static void buffer_free(void *p)
{
    if (p == NULL) return;
    free(p);
    atomic_fetch_sub(&fb_count.buffers_live, 1);
}

static StringDescriptor *string_from(const char *a, size_t na, const char *b, size_t nb)
{
    StringDescriptor *d = fb_alloc_descriptor();
    size_t n = na + nb;
    if (n) {
        d->data = buffer(n);
        memcpy(d->data, a, na);
        memcpy((char *)d->data + na, b, nb);
    }
    d->length = d->capacity = (int64_t)n;
    return d;
}

StringDescriptor *string_new_ascii(const char *s)
{
    return string_from(s, strlen(s), "", 0);
}

StringDescriptor *string_concat(const StringDescriptor *a, const StringDescriptor *b)
{
    return string_from(a->data, (size_t)a->length, b->data, (size_t)b->length);
}

StringDescriptor *string_retain(StringDescriptor *s)
{
    if (s) s->refcount++;
    return s;
}

/* The last reference: out of SAMM, buffers freed, the descriptor back to
 * its pool, and the bytes reported - all here, as the runtime does. */
void string_release(StringDescriptor *s)
{
    if (s == NULL) return;
    s->refcount--;
    if (s->refcount > 0) return;
    samm_untrack(s);
    buffer_free(s->data);
    buffer_free(s->utf8_cache);
    s->data = NULL;
    s->utf8_cache = NULL;
    samm_slab_pool_free(&g_string_desc_pool, s);
    samm_record_bytes_freed(sizeof(StringDescriptor));
    atomic_fetch_add(&fb_count.host_bytes, (long)sizeof(StringDescriptor));
    atomic_fetch_add(&fb_count.strings_freed, 1);
}

const char *string_to_utf8(StringDescriptor *s)
{
    if (s->utf8_cache == NULL || s->dirty) {
        buffer_free(s->utf8_cache);
        s->utf8_cache = buffer((size_t)s->length + 1);
        if (s->length) memcpy(s->utf8_cache, s->data, (size_t)s->length);
        s->utf8_cache[s->length] = '\0';
        s->dirty = 0;
    }
    return s->utf8_cache;
}

int string_is(const StringDescriptor *s, const char *text)
{
    size_t n = strlen(text);
    return s != NULL && s->refcount > 0 && s->length == (int64_t)n &&
           (n == 0 || memcmp(s->data, text, n) == 0);
}

void string_assign(StringDescriptor **var, StringDescriptor *value)
{
    StringDescriptor *old = *var;
    *var = string_retain(value);
    string_release(old);
}

/* ------------------------------------------------------------------------
 * Lists
 * ---------------------------------------------------------------------- */
static ListAtom *atom_alloc(void)
{
    ListAtom *a;
    if (samm_is_enabled())
        a = (ListAtom *)samm_alloc_list_atom();
    else
        a = (ListAtom *)samm_slab_pool_alloc(&g_list_atom_pool);
    if (a == NULL) abort();
    a->type = ATOM_SENTINEL;
    if (samm_is_enabled()) samm_track(a, SAMM_ALLOC_LIST_ATOM);
    return a;
}

static void atom_release_payload(ListAtom *a)
{
    switch (a->type) {
    case ATOM_STRING:
        string_release((StringDescriptor *)a->value.ptr_value);
        a->value.ptr_value = NULL;
        break;
    case ATOM_LIST:
        list_free((ListHeader *)a->value.ptr_value);
        a->value.ptr_value = NULL;
        break;
    case ATOM_OBJECT:
        a->value.ptr_value = NULL; /* objects have their own tracking */
        break;
    default:
        break;
    }
}

static void atom_free(ListAtom *a)
{
    atom_release_payload(a);
    if (samm_is_enabled()) samm_untrack(a);
    samm_record_bytes_freed(sizeof(ListAtom));
    atomic_fetch_add(&fb_count.host_bytes, (long)sizeof(ListAtom));
    samm_slab_pool_free(&g_list_atom_pool, a);
    atomic_fetch_add(&fb_count.atoms_freed, 1);
}

ListHeader *list_create(void)
{
    ListHeader *h;
    if (samm_is_enabled())
        h = (ListHeader *)samm_alloc_list();
    else
        h = (ListHeader *)samm_slab_pool_alloc(&g_list_header_pool);
    if (h == NULL) abort();
    h->type = ATOM_SENTINEL;
    h->flags = 0;
    h->length = 0;
    h->head = h->tail = NULL;
    if (samm_is_enabled()) samm_track_list(h);
    return h;
}

static void link_atom(ListHeader *list, ListAtom *a)
{
    if (list->tail)
        list->tail->next = a;
    else
        list->head = a;
    list->tail = a;
    list->length++;
}

void list_append_int(ListHeader *list, int64_t v)
{
    ListAtom *a = atom_alloc();
    a->type = ATOM_INT;
    a->value.int_value = v;
    link_atom(list, a);
}

void list_append_string(ListHeader *list, StringDescriptor *s)
{
    ListAtom *a = atom_alloc();
    a->type = ATOM_STRING;
    a->value.ptr_value = string_retain(s);
    link_atom(list, a);
}

/* As the runtime's: the nested list is stored, not retained; freeing the
 * atom frees it (list_free). */
void list_append_list(ListHeader *list, ListHeader *nested)
{
    ListAtom *a = atom_alloc();
    a->type = ATOM_LIST;
    a->value.ptr_value = nested;
    link_atom(list, a);
}

void list_free(ListHeader *list)
{
    if (list == NULL) return;
    if (samm_is_enabled()) samm_untrack(list);
    for (ListAtom *a = list->head, *next; a != NULL; a = next) {
        next = a->next;
        atom_free(a);
    }
    list->head = list->tail = NULL;
    list->length = 0;
    samm_record_bytes_freed(sizeof(ListHeader));
    atomic_fetch_add(&fb_count.host_bytes, (long)sizeof(ListHeader));
    samm_slab_pool_free(&g_list_header_pool, list);
    atomic_fetch_add(&fb_count.lists_freed, 1);
}

/* The header alone goes back: the runtime expects SAMM to track the atoms
 * apart (the compat library's LIST release frees them before this). */
void list_free_from_samm(void *header)
{
    if (header == NULL) return;
    ListHeader *list = header;
    list->head = list->tail = NULL;
    list->length = 0;
    samm_slab_pool_free(&g_list_header_pool, list);
    atomic_fetch_add(&fb_count.lists_freed, 1);
}

void list_atom_free_from_samm(void *atom_ptr)
{
    if (atom_ptr == NULL) return;
    atom_release_payload(atom_ptr);
    samm_slab_pool_free(&g_list_atom_pool, atom_ptr);
    atomic_fetch_add(&fb_count.atoms_freed, 1);
}

/* ------------------------------------------------------------------------
 * CLASS objects
 * ---------------------------------------------------------------------- */
void *class_object_new(int64_t size, const void *vtable, int64_t class_id)
{
    if (size < 16) abort();
    void **obj;
    if (samm_is_enabled()) {
        obj = samm_alloc_object((size_t)size);
    } else {
        obj = calloc(1, (size_t)size);
        atomic_fetch_add(&fb_count.objects_callocd, 1);
    }
    if (obj == NULL) abort();
    obj[0] = (void *)vtable;
    ((int64_t *)obj)[1] = class_id;
    if (samm_is_enabled()) samm_track_object(obj);
    return obj;
}

void class_object_delete(void **ref)
{
    void **obj = *ref;
    if (obj == NULL) return;
    const fb_method *vtable = obj[0];
    if (vtable != NULL && vtable[3] != NULL) vtable[3](obj);
    if (samm_is_enabled())
        samm_free_object(obj);
    else
        free(obj);
    *ref = NULL;
}

/* ------------------------------------------------------------------------
 * String arrays
 * ---------------------------------------------------------------------- */
FBStringArray *array_new_strings(int64_t count)
{
    FBStringArray *a = malloc(sizeof *a);
    if (a == NULL) abort();
    a->data = calloc((size_t)(count ? count : 1), sizeof *a->data);
    if (a->data == NULL) abort();
    a->count = count;
    return a;
}

void array_set_string(FBStringArray *a, int64_t i, StringDescriptor *s)
{
    string_assign(&a->data[i], s);
}

/* Each old element is taken out of SAMM, then released; with PRESERVE the
 * elements that fit are retained into the new data first. */
void array_redim_strings(FBStringArray *a, int64_t count, int preserve)
{
    StringDescriptor **old = a->data;
    int64_t old_count = a->count;
    StringDescriptor **data = calloc((size_t)(count ? count : 1), sizeof *data);
    if (data == NULL) abort();
    if (preserve)
        for (int64_t i = 0; i < count && i < old_count; i++)
            data[i] = string_retain(old[i]);
    for (int64_t i = 0; i < old_count; i++) {
        if (old[i] == NULL) continue;
        samm_untrack(old[i]);
        string_release(old[i]);
    }
    free(old);
    a->data = data;
    a->count = count;
}

void array_erase_strings(FBStringArray *a)
{
    for (int64_t i = 0; i < a->count; i++) {
        if (a->data[i] == NULL) continue;
        samm_untrack(a->data[i]);
        string_release(a->data[i]);
        a->data[i] = NULL;
    }
}

void array_free_strings(FBStringArray *a)
{
    free(a->data);
    free(a);
}

/* ------------------------------------------------------------------------
 * The compatibility headers' view
 * ---------------------------------------------------------------------- */
int fb_samm_enabled(void)
{
    return samm_is_enabled();
}

size_t fb_stats_size(void)
{
    return sizeof(SAMMStats);
}

int fb_get_stats_guarded(fb_stats *out)
{
    struct {
        SAMMStats stats;
        unsigned char guard[256];
    } g;
    memset(&g, 0xA5, sizeof g);
    samm_get_stats(&g.stats);
    int intact = 1;
    for (size_t i = 0; i < sizeof g.guard; i++)
        if (g.guard[i] != 0xA5) intact = 0;
    *out = (fb_stats){
        .scopes_entered = g.stats.scopes_entered,
        .scopes_exited = g.stats.scopes_exited,
        .objects_allocated = g.stats.objects_allocated,
        .objects_freed = g.stats.objects_freed,
        .objects_cleaned = g.stats.objects_cleaned,
        .retain_calls = g.stats.retain_calls,
        .total_bytes_allocated = g.stats.total_bytes_allocated,
        .total_bytes_freed = g.stats.total_bytes_freed,
        .strings_tracked = g.stats.strings_tracked,
        .strings_cleaned = g.stats.strings_cleaned,
        .current_scope_depth = g.stats.current_scope_depth,
    };
    return intact;
}
