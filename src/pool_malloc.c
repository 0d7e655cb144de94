/* pool_malloc.c - interim allocation layer: every object and descriptor
 * comes from calloc and goes back with free().  It implements the pool
 * interface of internal.h without pools, double-free detection or Bloom
 * filter, so the core can be built and tested before the pools land.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static atomic_uint_fast64_t allocated, freed;
static const size_t desc_size[3] = {40, 32, 24};

void *samm__obj_alloc(size_t size, const char *call)
{
    size_t n = size < 32 ? 32 : (size + 15) & ~(size_t)15;
    void *p = NULL;
    if (posix_memalign(&p, 16, n) != 0) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory for %zu bytes", size);
        return NULL;
    }
    memset(p, 0, n);
    atomic_fetch_add(&allocated, 1);
    return p;
}

void *samm__desc_alloc(int kind, const char *call)
{
    void *p = calloc(1, desc_size[kind]);
    if (p == NULL)
        samm__report(SAMM_ERR_OUT_OF_MEMORY, call, NULL, "out of memory");
    else
        atomic_fetch_add(&allocated, 1);
    return p;
}

void samm__mem_release(void *ptr, const char *call)
{
    (void)call;
    if (ptr == NULL) return;
    atomic_fetch_add(&freed, 1);
    free(ptr);
}

void samm__pool_flush(void) {}
void samm__pool_thread_exit(void) {}
void samm__pool_atfork_prepare(void) {}
void samm__pool_atfork_parent(void) {}
void samm__pool_atfork_child(void) {}
void samm__pool_trim(void) {}
void samm__pool_report_leaks(const char *call)
{
    (void)call;
}

void samm__pool_fill_stats(SAMMStats *out)
{
    out->objects_allocated += atomic_load(&allocated);
    out->objects_freed += atomic_load(&freed);
}

void samm_trim(void) {}

int samm_is_probably_freed(void *ptr)
{
    (void)ptr;
    return 0;
}

int samm_get_pool_stats(int index, SAMMPoolStats *out)
{
    (void)index;
    (void)out;
    return -1;
}

int samm_set_descriptor_sizes(size_t string_size, size_t list_size, size_t atom_size)
{
    (void)string_size;
    (void)list_size;
    (void)atom_size;
    return -1;
}
