/* SPDX-License-Identifier: MIT */
/* stats.c - the one counter system and what is made of it: samm_get_stats,
 * samm_get_pool_stats and samm_print_stats.
 *
 * Every counter lives in a thread's context and only that thread writes
 * it; readers sum the contexts in use and what ended threads left.  The
 * hot paths count nothing per object: a scope exit bumps a private count,
 * slabs count what they hand out, and the thread's counters take these in
 * bulk when it publishes (every scope exit that cleans, every slab change,
 * samm_wait, samm_get_stats and thread end).
 */
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

void samm__publish_all(samm_tld *t)
{
    samm__heap_fold(t);
    samm__publish(t);
}

void samm__publish(samm_tld *t)
{
    samm__heap_flush_remote(t);
    STORE(&t->ctr.c[SAMM_C_SCOPES_EXITED], t->exited);
    STORE(&t->ctr.c[SAMM_C_SCOPES_ENTERED],
          t->exited + (uint64_t)t->cur->depth + (uint64_t)t->phantom);
}

static inline void add_max(_Atomic uint64_t *into, _Atomic uint64_t *from)
{
    uint64_t v = LOAD(from);
    if (v > LOAD(into)) STORE(into, v);
}

void samm__counters_add(samm_counters *into, samm_counters *from)
{
    for (int i = 0; i < SAMM_C__COUNT; i++) {
        if (i == SAMM_C_PEAK_DEPTH)
            add_max(&into->c[i], &from->c[i]);
        else
            samm__add(&into->c[i], LOAD(&from->c[i]));
    }
    for (int p = 0; p < SAMM_POOLS; p++) {
        samm__add(&into->allocs[p], LOAD(&from->allocs[p]));
        samm__add(&into->frees[p], LOAD(&from->frees[p]));
        samm__add(&into->slabs_made[p], LOAD(&from->slabs_made[p]));
        samm__add(&into->slabs_gone[p], LOAD(&from->slabs_gone[p]));
        samm__add(&into->returned[p], LOAD(&from->returned[p]));
        add_max(&into->peak[p], &from->peak[p]);
    }
    for (int i = 0; i < 256; i++)
        samm__add(&into->by_type[i], LOAD(&from->by_type[i]));
}

static void sum_one(samm_tld *t, void *arg)
{
    samm__counters_add(arg, &t->ctr);
}

/* Everything counted so far, the calling thread's included exactly. */
static void sum_all(samm_tld *self, samm_counters *out)
{
    memset(out, 0, sizeof *out);
    if (self) {
        samm__heap_collect(self);
        samm__heap_collect_abandoned(self);
        samm__publish_all(self);
    }
    samm__tld_each(sum_one, out);
    samm__tld_sum_retired(out);
}

/* ------------------------------------------------------------------------
 * Public statistics
 * ---------------------------------------------------------------------- */
void samm_record_bytes_freed(uint64_t bytes)
{
    samm_tld *t = samm__tld_get("samm_record_bytes_freed");
    if (t) samm__count(t, SAMM_C_HOST_BYTES_FREED, bytes);
}

void samm_set_timing(int on)
{
    samm__ensure_init();
    atomic_store(&samm__timing_on, on != 0);
}

/* Entries the calling thread's scopes hold: all, and strings. */
static void own_entries(samm_tld *t, uint64_t *all, uint64_t *strings)
{
    *all = *strings = 0;
    for (int d = t->cur->depth; d >= 0; d--) {
        samm_frame *f = samm__frame_at(t, d);
        *all += f->count - f->ntomb;
        for (size_t i = 0; i < f->count; i++)
            *strings += f->types[i] == SAMM_ALLOC_STRING && f->ptrs[i] != SAMM_TOMB;
    }
}

static void stats_fill(SAMMStats *out);

size_t samm_get_stats_sized(SAMMStats *out, size_t size)
{
    if (out == NULL) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_get_stats", NULL, "NULL stats pointer");
        return 0;
    }
    SAMMStats all;
    stats_fill(&all);
    size_t n = size < sizeof all ? size : sizeof all;
    memcpy(out, &all, n);
    return n;
}

_Static_assert(offsetof(SAMMStats, objects_tracked) == SAMM_STATS_V1_SIZE,
               "the original runtime's fields come first, in 136 bytes");

/* The symbol programs built against the original header call: its struct
 * is 136 bytes, and nothing past it is written. */
void(samm_get_stats)(SAMMStats *out)
{
    samm_get_stats_sized(out, SAMM_STATS_V1_SIZE);
}

static void stats_fill(SAMMStats *out)
{
    samm_tld *t = samm__tld_get("samm_get_stats");
    /* Batches queued before the call are cleaned first, so that what is
     * tracked and what is cleaned add up. */
    if (t && !t->is_worker) samm_wait();
    samm_counters c;
    sum_all(t, &c);
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 256; i++)
        out->cleaned_by_type[i] = LOAD(&c.by_type[i]);
    out->scopes_entered = LOAD(&c.c[SAMM_C_SCOPES_ENTERED]);
    out->scopes_exited = LOAD(&c.c[SAMM_C_SCOPES_EXITED]);
    out->objects_cleaned = LOAD(&c.c[SAMM_C_CLEANED]);
    out->cleanup_batches = LOAD(&c.c[SAMM_C_BATCHES]);
    out->retain_calls = LOAD(&c.c[SAMM_C_RETAINS]);
    uint64_t live = 0, live_strings = 0;
    if (t) own_entries(t, &live, &live_strings);
    out->objects_tracked = out->objects_cleaned + LOAD(&c.c[SAMM_C_REMOVED]) + live;
    out->strings_cleaned = out->cleaned_by_type[SAMM_ALLOC_STRING];
    out->strings_tracked = out->strings_cleaned + LOAD(&c.c[SAMM_C_STRINGS_REMOVED]) + live_strings;
    out->inline_fallbacks = LOAD(&c.c[SAMM_C_INLINE_FALLBACKS]);
    out->double_free_attempts = LOAD(&c.c[SAMM_C_DOUBLE_FREES]);
    out->foreign_frees = LOAD(&c.c[SAMM_C_FOREIGN_FREES]);
    out->total_cleanup_time_ms = (double)LOAD(&c.c[SAMM_C_CLEANUP_NS]) / 1e6;
    out->peak_scope_depth = (int)LOAD(&c.c[SAMM_C_PEAK_DEPTH]);
    out->current_scope_depth = t ? t->cur->depth + t->phantom : 0;
    out->background_worker_active = samm__worker_active();
    out->queue_high_water = samm__worker_high_water();
    out->host_bytes_freed = LOAD(&c.c[SAMM_C_HOST_BYTES_FREED]);
    for (int p = 0; p < SAMM_POOLS; p++) {
        uint64_t size = samm__pool_slot_size(p);
        out->objects_allocated += LOAD(&c.allocs[p]);
        out->objects_freed += LOAD(&c.frees[p]);
        out->total_bytes_allocated += LOAD(&c.allocs[p]) * size;
        out->total_bytes_freed += LOAD(&c.frees[p]) * size;
        out->bytes_returned_to_os += LOAD(&c.returned[p]);
    }
    out->objects_allocated += LOAD(&c.c[SAMM_C_HUGE_ALLOCS]);
    out->objects_freed += LOAD(&c.c[SAMM_C_HUGE_FREES]);
    out->total_bytes_allocated += LOAD(&c.c[SAMM_C_HUGE_BYTES_ALLOCATED]);
    out->total_bytes_freed += LOAD(&c.c[SAMM_C_HUGE_BYTES_FREED]);
    out->bloom_false_positives = samm__bloom_fp_estimate();
    out->bloom_memory_bytes = samm__bloom_memory();
    out->bloom_false_positive_rate = samm__bloom_fp_rate();
}

int samm_get_pool_stats(int index, SAMMPoolStats *out)
{
    if (index < 0 || index >= SAMM_POOLS || out == NULL) return -1;
    samm_tld *t = samm__tld_get("samm_get_pool_stats");
    samm_counters c;
    sum_all(t, &c);
    memset(out, 0, sizeof *out);
    out->slot_size = samm__pool_slot_size(index);
    out->slabs = LOAD(&c.slabs_made[index]) - LOAD(&c.slabs_gone[index]);
    /* No slab before a pool's first use (when descriptor sizes freeze). */
    out->capacity = out->slabs ? out->slabs * samm__layout(index)->nslots : 0;
    out->allocations = LOAD(&c.allocs[index]);
    out->frees = LOAD(&c.frees[index]);
    out->in_use = out->allocations - out->frees;
    uint64_t peak = LOAD(&c.peak[index]);
    out->peak_in_use = peak > out->in_use ? peak : out->in_use;
    out->bytes_returned_to_os = LOAD(&c.returned[index]);
    return 0;
}

void samm_print_stats(void)
{
    SAMMStats s;
    samm_get_stats(&s);
    char buf[4096];
    int n = snprintf(
        buf, sizeof buf,
        "samm: statistics\n"
        "  scopes entered / exited   %" PRIu64 " / %" PRIu64 "\n"
        "  scope depth now / peak    %d / %d\n"
        "  objects allocated / freed %" PRIu64 " / %" PRIu64 "\n"
        "  objects tracked / cleaned %" PRIu64 " / %" PRIu64 "\n"
        "  strings tracked / cleaned %" PRIu64 " / %" PRIu64 "\n"
        "  bytes allocated / freed   %" PRIu64 " / %" PRIu64 "\n"
        "  bytes freed by the host   %" PRIu64 "\n"
        "  bytes returned to the OS  %" PRIu64 "\n"
        "  retain calls              %" PRIu64 "\n"
        "  cleanup batches           %" PRIu64 " (%.3f ms cleaning%s)\n"
        "  queue high water          %" PRIu64 " batches, %" PRIu64 " inline fallbacks\n"
        "  worker                    %s, cleanup mode %s\n"
        "  double frees / foreign    %" PRIu64 " / %" PRIu64 "\n"
        "  bloom filter              %zu bytes, est. false-positive rate %.2g\n",
        s.scopes_entered, s.scopes_exited, s.current_scope_depth, s.peak_scope_depth,
        s.objects_allocated, s.objects_freed, s.objects_tracked, s.objects_cleaned,
        s.strings_tracked, s.strings_cleaned, s.total_bytes_allocated, s.total_bytes_freed,
        s.host_bytes_freed, s.bytes_returned_to_os, s.retain_calls, s.cleanup_batches,
        s.total_cleanup_time_ms, atomic_load(&samm__timing_on) ? "" : "; timing off",
        s.queue_high_water, s.inline_fallbacks, s.background_worker_active ? "running" : "stopped",
        samm_get_cleanup_mode() == SAMM_CLEANUP_BACKGROUND ? "background"
        : samm_get_cleanup_mode() == SAMM_CLEANUP_AUTO     ? "auto"
                                                           : "inline",
        s.double_free_attempts, s.foreign_frees, s.bloom_memory_bytes, s.bloom_false_positive_rate);
    for (int i = 0; i < SAMM_POOL_COUNT && n > 0 && (size_t)n < sizeof buf; i++) {
        SAMMPoolStats p;
        if (samm_get_pool_stats(i, &p) != 0 || p.allocations == 0) continue;
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "  pool %5zu B: %" PRIu64 " slabs, %" PRIu64 " in use (peak %" PRIu64
                      "), %" PRIu64 " allocs, %" PRIu64 " frees\n",
                      p.slot_size, p.slabs, p.in_use, p.peak_in_use, p.allocations, p.frees);
    }
    samm__out(buf);
}
