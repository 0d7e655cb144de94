/* stats.c - per-thread counters and their totals, the SAMM_* environment
 * options, tracing, and samm_get_stats / samm_print_stats.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* ------------------------------------------------------------------------
 * Counter blocks: a list of live ones and the totals of exited threads.
 * ---------------------------------------------------------------------- */
static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_counters *live;
/* What ended threads counted; list_lock guards it, so plain integers. */
static uint64_t retired[SAMM_C__COUNT], retired_by_type[256];
static samm_counters shared_fallback; /* used only when a block cannot be allocated */

samm_counters *samm__counters_attach(void)
{
    samm_counters *k = samm__calloc(1, sizeof *k);
    if (k == NULL) {
        samm__report(SAMM_ERR_OUT_OF_MEMORY, "samm_init", NULL,
                     "out of memory for a thread's counters; statistics may be approximate");
        return &shared_fallback;
    }
    pthread_mutex_lock(&list_lock);
    k->next = live;
    if (live) live->prev = k;
    live = k;
    pthread_mutex_unlock(&list_lock);
    return k;
}

static void add_block(uint64_t out[SAMM_C__COUNT], uint64_t by_type[256], samm_counters *k)
{
    for (int i = 0; i < SAMM_C__COUNT; i++) {
        uint64_t v = atomic_load_explicit(&k->c[i], memory_order_relaxed);
        if (i == SAMM_C_PEAK_DEPTH)
            out[i] = v > out[i] ? v : out[i];
        else
            out[i] += v;
    }
    for (int t = 0; t < 256; t++)
        by_type[t] += atomic_load_explicit(&k->by_type[t], memory_order_relaxed);
}

void samm__counters_detach(samm_counters *k)
{
    if (k == NULL || k == &shared_fallback) return;
    pthread_mutex_lock(&list_lock);
    add_block(retired, retired_by_type, k);
    if (k->prev)
        k->prev->next = k->next;
    else
        live = k->next;
    if (k->next) k->next->prev = k->prev;
    pthread_mutex_unlock(&list_lock);
    samm__free(k);
}

void samm__counters_sum(uint64_t out[SAMM_C__COUNT], uint64_t by_type[256])
{
    pthread_mutex_lock(&list_lock);
    memcpy(out, retired, sizeof retired);
    memcpy(by_type, retired_by_type, sizeof retired_by_type);
    add_block(out, by_type, &shared_fallback);
    for (samm_counters *k = live; k; k = k->next)
        add_block(out, by_type, k);
    pthread_mutex_unlock(&list_lock);
}

void samm__counters_atfork_prepare(void)
{
    pthread_mutex_lock(&list_lock);
}

void samm__counters_atfork_parent(void)
{
    pthread_mutex_unlock(&list_lock);
}

/* In the child only the forking thread exists; the other threads' blocks
 * stay listed (their counts happened) but are never written again. */
void samm__counters_atfork_child(void)
{
    pthread_mutex_unlock(&list_lock);
}

/* ------------------------------------------------------------------------
 * Options and tracing
 * ---------------------------------------------------------------------- */
atomic_int samm__trace_on;

bool samm__env_flag(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') return false;
    static const char *const off[] = {"0", "off", "no", "false"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
        if (strcasecmp(v, off[i]) == 0) return false;
    return true;
}

void samm__options_read(samm_options *o)
{
    o->cleanup_mode = SAMM_CLEANUP_INLINE;
    const char *mode = getenv("SAMM_CLEANUP");
    if (mode && *mode) {
        if (strcasecmp(mode, "background") == 0)
            o->cleanup_mode = SAMM_CLEANUP_BACKGROUND;
        else if (strcasecmp(mode, "inline") != 0)
            samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_init", NULL,
                         "SAMM_CLEANUP=%s not understood (inline or background); using inline",
                         mode);
    }
    o->trace = samm__env_flag("SAMM_TRACE");
    o->stats_at_shutdown = samm__env_flag("SAMM_STATS");
    o->queue_batches = 1024;
    const char *q = getenv("SAMM_QUEUE_BATCHES");
    if (q && *q) {
        char *end;
        unsigned long long n = strtoull(q, &end, 10);
        if (*end == '\0' && n >= 1 && n <= (1u << 24))
            o->queue_batches = (size_t)n;
        else
            samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_init", NULL,
                         "SAMM_QUEUE_BATCHES=%s not understood (1..16777216); using 1024", q);
    }
}

void samm_set_trace(int on)
{
    atomic_store(&samm__trace_on, on != 0);
}

void samm__trace_line(const char *fmt, ...)
{
    char msg[200], line[240];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "samm[trace %lx]: %s\n", (unsigned long)pthread_self(), msg);
    fputs(line, stderr);
}

/* ------------------------------------------------------------------------
 * Public statistics
 * ---------------------------------------------------------------------- */
void samm_record_bytes_freed(uint64_t bytes)
{
    samm__count(samm__thread_counters(), SAMM_C_BYTES_FREED_RECORDED, bytes);
}

void samm_get_stats(SAMMStats *out)
{
    if (out == NULL) {
        samm__report(SAMM_ERR_BAD_ARGUMENT, "samm_get_stats", NULL, "NULL stats pointer");
        return;
    }
    uint64_t c[SAMM_C__COUNT];
    memset(out, 0, sizeof *out);
    samm__counters_sum(c, out->cleaned_by_type);
    out->scopes_entered = c[SAMM_C_SCOPES_ENTERED];
    out->scopes_exited = c[SAMM_C_SCOPES_EXITED];
    out->objects_cleaned = c[SAMM_C_CLEANED];
    out->cleanup_batches = c[SAMM_C_BATCHES];
    out->retain_calls = c[SAMM_C_RETAINS];
    out->strings_tracked = c[SAMM_C_STRINGS_TRACKED];
    out->strings_cleaned = out->cleaned_by_type[SAMM_ALLOC_STRING];
    out->objects_tracked = c[SAMM_C_TRACKED];
    out->inline_fallbacks = c[SAMM_C_INLINE_FALLBACKS];
    out->total_cleanup_time_ms = (double)c[SAMM_C_CLEANUP_NS] / 1e6;
    out->peak_scope_depth = (int)c[SAMM_C_PEAK_DEPTH];
    out->current_scope_depth = samm_scope_depth();
    out->background_worker_active = samm__worker_active();
    out->queue_high_water = samm__worker_high_water();
    samm__pool_fill_stats(out);
    out->total_bytes_freed += c[SAMM_C_BYTES_FREED_RECORDED];
}

void samm_print_stats(void)
{
    SAMMStats s;
    samm_get_stats(&s);
    char buf[2048];
    int n = snprintf(
        buf, sizeof buf,
        "samm: statistics\n"
        "  scopes entered / exited   %" PRIu64 " / %" PRIu64 "\n"
        "  scope depth now / peak    %d / %d\n"
        "  objects allocated / freed %" PRIu64 " / %" PRIu64 "\n"
        "  objects tracked / cleaned %" PRIu64 " / %" PRIu64 "\n"
        "  strings tracked / cleaned %" PRIu64 " / %" PRIu64 "\n"
        "  bytes allocated / freed   %" PRIu64 " / %" PRIu64 "\n"
        "  bytes returned to the OS  %" PRIu64 "\n"
        "  retain calls              %" PRIu64 "\n"
        "  cleanup batches           %" PRIu64 " (%.3f ms cleaning)\n"
        "  queue high water          %" PRIu64 " batches, %" PRIu64 " inline fallbacks\n"
        "  worker                    %s, cleanup mode %s\n"
        "  double frees / foreign    %" PRIu64 " / %" PRIu64 "\n"
        "  bloom filter              %zu bytes, est. false-positive rate %.2g\n",
        s.scopes_entered, s.scopes_exited, s.current_scope_depth, s.peak_scope_depth,
        s.objects_allocated, s.objects_freed, s.objects_tracked, s.objects_cleaned,
        s.strings_tracked, s.strings_cleaned, s.total_bytes_allocated, s.total_bytes_freed,
        s.bytes_returned_to_os, s.retain_calls, s.cleanup_batches, s.total_cleanup_time_ms,
        s.queue_high_water, s.inline_fallbacks, s.background_worker_active ? "running" : "stopped",
        samm_get_cleanup_mode() == SAMM_CLEANUP_BACKGROUND ? "background" : "inline",
        s.double_free_attempts, s.foreign_frees, s.bloom_memory_bytes, s.bloom_false_positive_rate);
    for (int i = 0; i < SAMM_POOL_COUNT && n > 0 && (size_t)n < sizeof buf; i++) {
        SAMMPoolStats p;
        if (samm_get_pool_stats(i, &p) != 0 || p.allocations == 0) continue;
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "  pool %4zu B: %" PRIu64 " slabs, %" PRIu64 " in use (peak %" PRIu64
                      "), %" PRIu64 " allocs, %" PRIu64 " frees\n",
                      p.slot_size, p.slabs, p.in_use, p.peak_in_use, p.allocations, p.frees);
    }
    fputs(buf, stderr);
}
