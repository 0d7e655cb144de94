/* SPDX-License-Identifier: MIT */
/* report.c - where the memory is, told to a person: samm_report (every
 * thread's open scopes), the leak report (at shutdown, at exit, on
 * request), the allocation sites that group it, and the output every line
 * of libsamm's text goes to.
 *
 * A thread's scope frames are written by that thread alone, without a
 * lock, so no other thread reads them.  samm_report asks each thread for a
 * snapshot instead: the request makes the thread's enter and exit fast
 * paths fail, and its next scope entry or exit answers it.  The reporter
 * waits a bounded time; a thread that passes no scope boundary by then
 * (blocked, or computing) is reported as busy, with its published counts.
 *
 * A leak is a block libsamm handed out that is neither tracked nor freed
 * (its slot word says LIVE).  The leak report reads the slot words of the
 * calling thread's slabs and of those ended threads left behind; blocks of
 * threads still running are theirs, and not called leaks.
 *
 * Allocation sites (SAMM_SITES, samm_set_sites) cost nothing while off:
 * when on, every thread's fast-path tables point at the empty slab, so
 * every allocation takes the slow path, which stores the caller's return
 * address in a side array of the slab (one pointer per slot, made on
 * first use).  Each switch starts a new generation: a slab's array counts
 * only if it was written in the current one, so no site is ever stale.
 */
#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out_file; /* NULL: stderr */
static samm_output_fn out_fn;
static void *out_user;

void samm_set_output(FILE *out)
{
    pthread_mutex_lock(&out_lock);
    out_file = out;
    out_fn = NULL;
    out_user = NULL;
    pthread_mutex_unlock(&out_lock);
}

void samm_set_output_fn(samm_output_fn fn, void *user)
{
    pthread_mutex_lock(&out_lock);
    out_fn = fn;
    out_user = user;
    if (fn) out_file = NULL;
    pthread_mutex_unlock(&out_lock);
}

/* Writes `text` (whole lines) to `to`, or to the output when NULL, in one
 * piece: lines of several threads never interleave. */
static void emit(FILE *to, const char *text)
{
    if (to) {
        fputs(text, to);
        fflush(to);
        return;
    }
    pthread_mutex_lock(&out_lock);
    samm_output_fn fn = out_fn;
    void *user = out_user;
    FILE *f = out_file ? out_file : stderr;
    if (!fn) {
        fputs(text, f);
        fflush(f);
    }
    pthread_mutex_unlock(&out_lock);
    /* Outside the lock: the callback may print with libsamm itself. */
    if (fn) fn(text, user);
}

void samm__out(const char *text)
{
    emit(NULL, text);
}

/* A growing text buffer; on out of memory it keeps what fits and says so. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} textbuf;

static void tb_printf(textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(textbuf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = b->cap - b->len;
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *s = realloc(b->s, cap); /* report memory: not libsamm's own */
        if (s == NULL) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* Writes the buffer out and frees it. */
static void tb_emit(textbuf *b, FILE *to)
{
    if (b->oom) {
        emit(to, "samm: out of memory for the report; it is cut short\n");
        if (b->len && b->s[b->len - 1] != '\n') tb_printf(b, "\n");
    }
    if (b->s) emit(to, b->s);
    free(b->s);
    *b = (textbuf){0};
}

static const char *type_name(unsigned type, char *buf, size_t n)
{
    static const char *const names[] = {"UNKNOWN", "OBJECT",    "STRING", "ARRAY",
                                        "LIST",    "LIST_ATOM", "GENERIC"};
    if (type < sizeof names / sizeof *names) return names[type];
    snprintf(buf, n, "type %u", type);
    return buf;
}

/* "1.5 KiB"-style sizes for people; the JSON form gives bytes. */
static const char *human(uint64_t bytes, char *buf, size_t n)
{
    if (bytes < 10 * 1024)
        snprintf(buf, n, "%" PRIu64 " B", bytes);
    else if (bytes < (uint64_t)10 << 20)
        snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
    else
        snprintf(buf, n, "%.1f MiB", (double)bytes / (1024 * 1024));
    return buf;
}

/* ------------------------------------------------------------------------
 * Allocation sites
 * ---------------------------------------------------------------------- */
atomic_int samm__sites_on;
atomic_uint samm__sites_gen;
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;

int samm_set_sites(int on)
{
    samm__ensure_init();
    pthread_mutex_lock(&sites_lock);
    int was = atomic_load(&samm__sites_on);
    if (was != (on != 0)) {
        atomic_fetch_add(&samm__sites_gen, 1);
        atomic_store(&samm__sites_on, on != 0);
    }
    pthread_mutex_unlock(&sites_lock);
    if (was != (on != 0)) {
        /* Each thread points its tables again at its next slow path; the
         * pokes make its next scope entry or exit one. */
        samm__tld_each(samm__poke_slow, NULL);
        samm_tld *t = samm__tld;
        if (t != &samm__tld_empty) {
            samm__heap_redirect(t);
            samm__tld_refresh(t);
        }
    }
    return was;
}

static inline uint32_t slot_number(const samm_slab *s, const void *p)
{
    return (uint32_t)(((uintptr_t)p - ((uintptr_t)s + s->first)) / s->size);
}

/* Site arrays are mapped, not malloc'd: they live as long as their slab,
 * which may be the whole process, and leak checkers need not see them. */
static size_t sites_bytes(const samm_slab *s)
{
    size_t page = samm__os_page_size();
    return ((size_t)s->nslots * sizeof *s->sites + page - 1) & ~(page - 1);
}

void samm__sites_free(samm_slab *s)
{
    if (s->sites == NULL) return;
    samm__os_unmap((void *)s->sites, sites_bytes(s));
    s->sites = NULL;
}

void samm__site_note(samm_tld *t, samm_slab *s, const void *p)
{
    const void *site = t->site;
    t->site = NULL;
    uint32_t gen = atomic_load(&samm__sites_gen);
    if (s->kind == SAMM_SLAB_HUGE) {
        s->site = site;
        s->sites_gen = gen;
        return;
    }
    if (s->sites == NULL || s->sites_gen != gen) {
        if (s->sites == NULL &&
            (s->sites = samm__os_map(sites_bytes(s), samm__os_page_size())) == NULL)
            return; /* no room: this slab's blocks show no site */
        if (s->sites_gen != gen) memset(s->sites, 0, s->nslots * sizeof *s->sites);
        s->sites_gen = gen;
    }
    s->sites[slot_number(s, p)] = site;
}

/* The recorded site of slot p of s, or NULL. */
static const void *site_of(const samm_slab *s, const void *p)
{
    if (!atomic_load(&samm__sites_on) || s->sites_gen != atomic_load(&samm__sites_gen)) return NULL;
    if (s->kind == SAMM_SLAB_HUGE) return s->site;
    return s->sites ? s->sites[slot_number(s, p)] : NULL;
}

/* "make_node+0x1c (demo)", or "demo+0x11f3" when the symbol is not
 * exported (addr2line -e demo 0x11f3 names it). */
static const char *site_name(const void *site, char *buf, size_t n)
{
    if (site == NULL) return "an unrecorded site";
    Dl_info info;
    /* The return address is just past the call: look up the call itself. */
    const char *at = (const char *)site - 1;
    if (dladdr(at, &info) && info.dli_fname) {
        const char *file = strrchr(info.dli_fname, '/');
        file = file ? file + 1 : info.dli_fname;
        if (info.dli_sname && info.dli_saddr)
            snprintf(buf, n, "%s+0x%tx (%s)", info.dli_sname,
                     (const char *)site - (const char *)info.dli_saddr, file);
        else
            snprintf(buf, n, "%s+0x%tx", file, (const char *)site - (const char *)info.dli_fbase);
        return buf;
    }
    snprintf(buf, n, "%p", site);
    return buf;
}

/* ------------------------------------------------------------------------
 * Huge blocks: one list of them all, for the leak report.
 * ---------------------------------------------------------------------- */
static pthread_mutex_t huge_lock = PTHREAD_MUTEX_INITIALIZER;
static samm_slab *huge_head;

void samm__huge_link(samm_slab *s)
{
    pthread_mutex_lock(&huge_lock);
    s->prev = NULL;
    s->next = huge_head;
    if (huge_head) huge_head->prev = s;
    huge_head = s;
    pthread_mutex_unlock(&huge_lock);
}

void samm__huge_unlink(samm_slab *s)
{
    pthread_mutex_lock(&huge_lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        huge_head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
    pthread_mutex_unlock(&huge_lock);
}

/* ------------------------------------------------------------------------
 * Snapshots of a thread's scopes
 * ---------------------------------------------------------------------- */
enum { SNAP_ASKED, SNAP_DONE, SNAP_BUSY };

typedef struct {
    uint8_t type;
    uint64_t count, bytes;
} snap_row;

typedef struct {
    int depth;
    uint32_t first_row, nrows;
    uint64_t count, bytes;
} snap_frame;

typedef struct samm_snap {
    samm_tld *t;
    int state;
    bool self, oom;
    long tid;
    char name[16];
    bool ended; /* the thread ended before it could answer */
    int depth;
    uint64_t count, bytes, foreign;
    snap_frame *frames;
    snap_row *rows;
    size_t nframes, nrows, cap_frames, cap_rows;
} samm_snap;

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t snap_cv = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;

static bool snap_grow(void **arr, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return true;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need)
        n *= 2;
    void *a = realloc(*arr, n * size);
    if (a == NULL) return false;
    *arr = a;
    *cap = n;
    return true;
}

static uint64_t block_bytes(void *p, bool *foreign)
{
    samm_ptr_info in;
    samm_ptr_kind k = samm__classify(p, &in);
    *foreign = k == SAMM_PTR_FOREIGN;
    if (k != SAMM_PTR_TRACKED && k != SAMM_PTR_LIVE) return 0;
    return in.slab->kind == SAMM_SLAB_HUGE ? in.slab->huge_size : in.slab->size;
}

/* One frame into the snapshot: its entries summed by type. */
static void snap_frame_add(samm_snap *r, const samm_frame *f)
{
    if (f->count == f->ntomb) return;
    uint64_t count[256] = {0}, bytes[256] = {0};
    for (size_t i = 0; i < f->count; i++) {
        void *p = f->ptrs[i];
        if (p == SAMM_TOMB) continue;
        bool foreign;
        uint8_t ty = f->types[i];
        count[ty]++;
        bytes[ty] += block_bytes(p, &foreign);
        r->foreign += foreign;
    }
    if (!snap_grow((void **)&r->frames, &r->cap_frames, r->nframes + 1, sizeof *r->frames)) {
        r->oom = true;
        return;
    }
    snap_frame *sf = &r->frames[r->nframes++];
    *sf = (snap_frame){.depth = f->depth, .first_row = (uint32_t)r->nrows};
    for (int ty = 0; ty < 256; ty++) {
        if (!count[ty]) continue;
        if (!snap_grow((void **)&r->rows, &r->cap_rows, r->nrows + 1, sizeof *r->rows)) {
            r->oom = true;
            return;
        }
        r->rows[r->nrows++] = (snap_row){(uint8_t)ty, count[ty], bytes[ty]};
        sf->nrows++;
        sf->count += count[ty];
        sf->bytes += bytes[ty];
    }
    r->count += sf->count;
    r->bytes += sf->bytes;
}

/* Run by the thread that owns t. */
static void snap_take(samm_tld *t, samm_snap *r)
{
    r->tid = t->tid;
    if (t->cur == NULL) { /* its scopes are gone: the thread is ending */
        r->ended = true;
        return;
    }
    pthread_getname_np(pthread_self(), r->name, sizeof r->name);
    r->depth = t->cur->depth + t->phantom;
    for (samm_frame_seg *s = t->segs; s; s = s->next) {
        for (size_t i = 0; i < s->n; i++) {
            snap_frame_add(r, &s->f[i]);
            if (&s->f[i] == t->cur) return;
        }
    }
}

void samm__snap_answer(samm_tld *t)
{
    samm_snap *r = atomic_exchange(&t->snap_req, NULL);
    if (r == NULL) return;
    snap_take(t, r);
    pthread_mutex_lock(&snap_lock);
    r->state = SNAP_DONE;
    pthread_cond_broadcast(&snap_cv);
    pthread_mutex_unlock(&snap_lock);
}

typedef struct {
    samm_tld *self;
    samm_snap *snaps;
    size_t n, cap;
    bool oom;
} snap_set;

/* Under the registry lock: a request to every other program thread. */
static void ask(samm_tld *t, void *arg)
{
    snap_set *set = arg;
    if (t == set->self || t->is_worker) return;
    if (set->n == set->cap) {
        set->oom = true;
        return;
    }
    samm_snap *r = &set->snaps[set->n++];
    r->t = t;
    r->tid = t->tid;
    r->state = SNAP_ASKED;
    atomic_store(&r->t->snap_req, r);
    samm__poke_slow(t, NULL);
}

static void count_threads(samm_tld *t, void *arg)
{
    (void)t;
    ++*(size_t *)arg;
}

static unsigned wait_ms(void)
{
    const char *v = getenv("SAMM_REPORT_WAIT_MS");
    long ms = v && *v ? strtol(v, NULL, 10) : 100;
    return ms < 0 ? 0 : ms > 60000 ? 60000 : (unsigned)ms;
}

/* Snapshots of every thread (the caller's first), or NULL. */
static samm_snap *snap_all(samm_tld *self, size_t *n_out, bool *oom)
{
    size_t n = 0;
    samm__tld_each(count_threads, &n);
    snap_set set = {.self = self, .cap = n + 1};
    set.snaps = calloc(set.cap, sizeof *set.snaps);
    if (set.snaps == NULL) return NULL;
    samm_snap *mine = &set.snaps[set.n++];
    mine->self = true;
    mine->t = self;
    samm__tld_each(ask, &set);
    *oom = set.oom;
    if (self) snap_take(self, mine);
    mine->state = SNAP_DONE;

    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    unsigned ms = wait_ms();
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&snap_lock);
    for (size_t i = 1; i < set.n; i++) {
        samm_snap *r = &set.snaps[i];
        while (r->state == SNAP_ASKED) {
            if (pthread_cond_timedwait(&snap_cv, &snap_lock, &until) == 0) continue;
            /* Time is up: withdraw the request, unless the thread took it
             * already - then it is filling it in, and will be done soon. */
            samm_snap *expect = r;
            if (atomic_compare_exchange_strong(&r->t->snap_req, &expect, NULL)) {
                r->state = SNAP_BUSY;
            } else {
                while (r->state == SNAP_ASKED)
                    pthread_cond_wait(&snap_cv, &snap_lock);
            }
        }
    }
    pthread_mutex_unlock(&snap_lock);
    *n_out = set.n;
    return set.snaps;
}

static void snaps_free(samm_snap *snaps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(snaps[i].frames);
        free(snaps[i].rows);
    }
    free(snaps);
}

/* ------------------------------------------------------------------------
 * samm_report: the text tree and the JSON form
 * ---------------------------------------------------------------------- */
static void empty_range(textbuf *b, int from, int to)
{
    if (from == to)
        tb_printf(b, "    depth %d: empty\n", from);
    else if (from < to)
        tb_printf(b, "    depths %d..%d: empty\n", from, to);
}

static void report_text(textbuf *b, const samm_snap *snaps, size_t n, bool oom)
{
    uint64_t count = 0, bytes = 0;
    size_t scopes = 0;
    for (size_t i = 0; i < n; i++) {
        count += snaps[i].count;
        bytes += snaps[i].bytes;
        scopes += snaps[i].state == SNAP_DONE && snaps[i].depth > 0 ? (size_t)snaps[i].depth : 0;
    }
    char h[32], tn[16];
    tb_printf(b,
              "samm: report (pid %ld): %zu thread%s, %zu open scope%s, %" PRIu64
              " tracked object%s, %s\n",
              (long)getpid(), n, n == 1 ? "" : "s", scopes, scopes == 1 ? "" : "s", count,
              count == 1 ? "" : "s", human(bytes, h, sizeof h));
    for (size_t i = 0; i < n; i++) {
        const samm_snap *r = &snaps[i];
        tb_printf(b, "  thread %ld%s%s%s%s", r->tid, r->name[0] ? " \"" : "", r->name,
                  r->name[0] ? "\"" : "", r->self ? " (this thread)" : "");
        if (r->state == SNAP_BUSY) {
            tb_printf(b, ": busy - passed no scope entry or exit within %u ms\n", wait_ms());
            continue;
        }
        if (r->ended) {
            tb_printf(b, ": ended while the report was made\n");
            continue;
        }
        tb_printf(b, ": depth %d, %" PRIu64 " object%s, %s\n", r->depth, r->count,
                  r->count == 1 ? "" : "s", human(r->bytes, h, sizeof h));
        int shown = -1;
        for (size_t k = 0; k < r->nframes; k++) {
            const snap_frame *f = &r->frames[k];
            empty_range(b, shown + 1, f->depth - 1);
            tb_printf(b, "    depth %d%s: %" PRIu64 " object%s, %s\n", f->depth,
                      f->depth == 0 ? " (global)" : "", f->count, f->count == 1 ? "" : "s",
                      human(f->bytes, h, sizeof h));
            for (uint32_t j = 0; j < f->nrows; j++) {
                const snap_row *row = &r->rows[f->first_row + j];
                tb_printf(b, "      %-12s %8" PRIu64 "  %s\n", type_name(row->type, tn, sizeof tn),
                          row->count, human(row->bytes, h, sizeof h));
            }
            shown = f->depth;
        }
        empty_range(b, shown + 1, r->depth);
        if (r->foreign)
            tb_printf(
                b, "    (%" PRIu64 " of the objects are the host's; their bytes are not known)\n",
                r->foreign);
        if (r->oom) tb_printf(b, "    (out of memory: this thread's list is cut short)\n");
    }
    size_t queued = samm__worker_backlog();
    int mode = samm_get_cleanup_mode();
    tb_printf(b, "  cleanup: %s, %zu batch%s queued",
              mode == SAMM_CLEANUP_BACKGROUND ? "background"
              : mode == SAMM_CLEANUP_AUTO     ? "auto"
                                              : "inline",
              queued, queued == 1 ? "" : "es");
    if (samm__worker_active())
        tb_printf(b, ", %d worker%s\n", samm_get_workers(), samm_get_workers() == 1 ? "" : "s");
    else
        tb_printf(b, ", no worker running\n");
    if (oom) tb_printf(b, "  (out of memory: some threads are missing)\n");
}

static void json_string(textbuf *b, const char *s)
{
    tb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            tb_printf(b, "\\%c", c);
        else if (c < 0x20)
            tb_printf(b, "\\u%04x", c);
        else
            tb_printf(b, "%c", c);
    }
    tb_printf(b, "\"");
}

static void report_json(textbuf *b, const samm_snap *snaps, size_t n)
{
    char tn[16];
    tb_printf(b, "{\"pid\":%ld,\"threads\":[", (long)getpid());
    for (size_t i = 0; i < n; i++) {
        const samm_snap *r = &snaps[i];
        tb_printf(b, "%s{\"tid\":%ld,\"name\":", i ? "," : "", r->tid);
        json_string(b, r->name);
        tb_printf(b, ",\"self\":%s,\"state\":\"%s\"", r->self ? "true" : "false",
                  r->state == SNAP_BUSY ? "busy"
                  : r->ended            ? "ended"
                                        : "ok");
        if (r->state == SNAP_BUSY || r->ended) {
            tb_printf(b, "}");
            continue;
        }
        tb_printf(b,
                  ",\"depth\":%d,\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64
                  ",\"complete\":%s,\"scopes\":[",
                  r->depth, r->count, r->bytes, r->oom ? "false" : "true");
        for (size_t k = 0; k < r->nframes; k++) {
            const snap_frame *f = &r->frames[k];
            tb_printf(b,
                      "%s{\"depth\":%d,\"objects\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"types\":[",
                      k ? "," : "", f->depth, f->count, f->bytes);
            for (uint32_t j = 0; j < f->nrows; j++) {
                const snap_row *row = &r->rows[f->first_row + j];
                tb_printf(b, "%s{\"type\":", j ? "," : "");
                json_string(b, type_name(row->type, tn, sizeof tn));
                tb_printf(b, ",\"code\":%u,\"count\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", row->type,
                          row->count, row->bytes);
            }
            tb_printf(b, "]}");
        }
        tb_printf(b, "]}");
    }
    tb_printf(b, "],\"queued_batches\":%zu,\"workers\":%d}\n", samm__worker_backlog(),
              samm_get_workers());
}

static void report(FILE *out, bool json)
{
    samm_tld *t = samm__tld_get("samm_report");
    /* Another thread's report may be waiting for this thread's snapshot:
     * answer it while waiting for the turn. */
    while (pthread_mutex_trylock(&report_lock) != 0) {
        if (t && LOAD(&t->snap_req)) samm__snap_answer(t);
        struct timespec pause = {0, 200000};
        nanosleep(&pause, NULL);
    }
    size_t n = 0;
    bool oom = false;
    samm_snap *snaps = snap_all(t, &n, &oom);
    textbuf b = {0};
    if (snaps == NULL)
        tb_printf(&b, json ? "{\"error\":\"out of memory\"}\n" : "samm: report: out of memory\n");
    else if (json)
        report_json(&b, snaps, n);
    else
        report_text(&b, snaps, n, oom);
    if (snaps) snaps_free(snaps, n);
    pthread_mutex_unlock(&report_lock);
    tb_emit(&b, out);
}

void samm_report(FILE *out)
{
    report(out, false);
}

void samm_report_json(FILE *out)
{
    report(out, true);
}

/* ------------------------------------------------------------------------
 * Leaks
 * ---------------------------------------------------------------------- */
typedef struct {
    const void *site;
    uint64_t size; /* slot size, or a huge block's size */
    uint64_t n;
} leak_group;

typedef struct {
    leak_group *g;
    size_t n, cap;
    uint64_t blocks, bytes;
    uint64_t by_pool[SAMM_POOLS + 1]; /* [SAMM_POOLS]: huge */
    uint64_t bytes_by_pool[SAMM_POOLS + 1];
    bool oom;
} leak_acc;

static void leak_add(leak_acc *a, int pool, const void *site, uint64_t size)
{
    a->blocks++;
    a->bytes += size;
    a->by_pool[pool]++;
    a->bytes_by_pool[pool] += size;
    for (size_t i = a->n; i-- > 0;) {
        if (a->g[i].site == site && a->g[i].size == size) {
            a->g[i].n++;
            return;
        }
    }
    if (!snap_grow((void **)&a->g, &a->cap, a->n + 1, sizeof *a->g)) {
        a->oom = true;
        return;
    }
    a->g[a->n++] = (leak_group){site, size, 1};
}

static void leak_scan_slab(samm_slab *s, void *arg)
{
    leak_acc *a = arg;
    if (s->kind != SAMM_SLAB_POOL) return;
    char *base = (char *)s + s->first;
    for (uint32_t i = 0; i < s->bump; i++) {
        void *p = base + (size_t)i * s->size;
        if (LOAD(samm__meta_of(s, p)) == SAMM_META_LIVE)
            leak_add(a, s->pool, site_of(s, p), s->size);
    }
}

typedef struct {
    samm_tld *owner;
    uint32_t gen;
    const void *site;
    uint64_t size;
} huge_leak;

static bool tld_gone(samm_tld *o, uint32_t gen, samm_tld *self);

static void leak_scan_huge(leak_acc *a, samm_tld *self)
{
    huge_leak *h = NULL;
    size_t n = 0, cap = 0;
    pthread_mutex_lock(&huge_lock);
    for (samm_slab *s = huge_head; s; s = s->next) {
        void *p = (char *)s + s->first;
        if (LOAD(samm__meta_of(s, p)) != SAMM_META_LIVE) continue;
        if (!snap_grow((void **)&h, &cap, n + 1, sizeof *h)) {
            a->oom = true;
            break;
        }
        h[n++] = (huge_leak){LOAD(&s->owner), s->owner_gen, site_of(s, p), s->huge_size};
    }
    pthread_mutex_unlock(&huge_lock);
    for (size_t i = 0; i < n; i++)
        if (h[i].owner == self || tld_gone(h[i].owner, h[i].gen, self))
            leak_add(a, SAMM_POOLS, h[i].site, h[i].size);
    free(h);
}

typedef struct {
    samm_tld *o;
    uint32_t gen;
    bool alive;
} alive_q;

static void alive_each(samm_tld *t, void *arg)
{
    alive_q *q = arg;
    if (t == q->o && t->gen == q->gen) q->alive = true;
}

static bool tld_gone(samm_tld *o, uint32_t gen, samm_tld *self)
{
    if (o == NULL) return true;
    alive_q q = {o, gen, false};
    samm__tld_each(alive_each, &q);
    return !q.alive && o != self;
}

static void leak_scan(samm_tld *t, leak_acc *a)
{
    samm__heap_each(t, leak_scan_slab, a);
    leak_scan_huge(a, t);
}

static int by_bytes(const void *x, const void *y)
{
    const leak_group *a = x, *b = y;
    uint64_t ba = a->n * a->size, bb = b->n * b->size;
    return ba < bb ? 1 : ba > bb ? -1 : (a->site > b->site) - (a->site < b->site);
}

static void other_threads(samm_tld *t, void *arg)
{
    size_t *n = arg;
    if (!t->is_worker && t != samm__tld) ++*n;
}

/* The leak report's text, `when` saying where it is made. */
static uint64_t leak_text(textbuf *b, samm_tld *t, const char *when)
{
    leak_acc a = {0};
    leak_scan(t, &a);
    char h[32], sn[256];
    if (a.blocks == 0) {
        tb_printf(b,
                  "samm: leak report (%s): no leaks - every block of this thread and of ended "
                  "threads is tracked or freed\n",
                  when);
    } else {
        tb_printf(b,
                  "samm: leak report (%s): %" PRIu64
                  " block%s (%s) allocated and never tracked or freed\n",
                  when, a.blocks, a.blocks == 1 ? "" : "s", human(a.bytes, h, sizeof h));
        qsort(a.g, a.n, sizeof *a.g, by_bytes);
        bool unrecorded = false;
        for (size_t i = 0; i < a.n; i++) {
            const leak_group *g = &a.g[i];
            tb_printf(b, "  %6" PRIu64 " block%s of %" PRIu64 " B (%s) at %s\n", g->n,
                      g->n == 1 ? " " : "s", g->size, human(g->n * g->size, h, sizeof h),
                      site_name(g->site, sn, sizeof sn));
            unrecorded |= g->site == NULL;
        }
        if (unrecorded)
            tb_printf(b, "  (SAMM_SITES=1 records where each block is allocated; link the program "
                         "with -rdynamic for the names of its own functions)\n");
        if (a.oom) tb_printf(b, "  (out of memory: some groups are missing)\n");
    }
    if (t && t->cur->depth + t->phantom > 0)
        tb_printf(b,
                  "  this thread has %d scope%s open: what they hold is not a leak (samm_report "
                  "lists it)\n",
                  t->cur->depth + t->phantom, t->cur->depth + t->phantom == 1 ? "" : "s");
    size_t others = 0;
    samm__tld_each(other_threads, &others);
    if (others)
        tb_printf(b, "  %zu other thread%s still running: %s blocks are not examined\n", others,
                  others == 1 ? " is" : "s are", others == 1 ? "its" : "their");
    free(a.g);
    return a.blocks;
}

size_t samm_report_leaks(FILE *out)
{
    samm_tld *t = samm__tld_get("samm_report_leaks");
    textbuf b = {0};
    uint64_t n = leak_text(&b, t, "on request");
    tb_emit(&b, out);
    return (size_t)n;
}

static const char *pool_name(int p)
{
    if (p < SAMM_SMALL_CLASSES || p >= SAMM_MEDIUM_FIRST) return "object";
    return p == SAMM_DESC_STRING ? "string" : p == SAMM_DESC_LIST ? "list" : "list-atom";
}

/* samm_shutdown: one error per pool with leaks (the counts a handler
 * sees), and the whole report when SAMM_LEAKS asks for it. */
void samm__leak_report(const char *call)
{
    samm_tld *t = samm__tld;
    if (t == &samm__tld_empty) t = NULL;
    leak_acc a = {0};
    leak_scan(t, &a);
    for (int p = 0; p < SAMM_POOLS; p++)
        if (a.by_pool[p])
            samm__report(SAMM_ERR_LEAK, call, NULL,
                         "leak: %" PRIu64 " objects (%" PRIu64
                         " bytes) still in use in the %" PRIu64 "-byte %s pool",
                         a.by_pool[p], a.bytes_by_pool[p], a.bytes_by_pool[p] / a.by_pool[p],
                         pool_name(p));
    if (a.by_pool[SAMM_POOLS])
        samm__report(SAMM_ERR_LEAK, call, NULL,
                     "leak: %" PRIu64 " large objects (%" PRIu64 " bytes) still in use",
                     a.by_pool[SAMM_POOLS], a.bytes_by_pool[SAMM_POOLS]);
    free(a.g);
    if (samm__opt.leaks_at_exit) {
        textbuf b = {0};
        leak_text(&b, t, "at samm_shutdown");
        tb_emit(&b, NULL);
    }
}

/* ------------------------------------------------------------------------
 * At exit: the statistics (SAMM_STATS) and the leak report (SAMM_LEAKS)
 * of a program that never called samm_shutdown.
 * ---------------------------------------------------------------------- */
void samm__at_exit(void)
{
    if (!samm__initialized()) return; /* samm_shutdown has reported */
    if (!samm__opt.leaks_at_exit && !samm__opt.stats_at_exit) return;
    samm_tld *t = samm__tld;
    if (t != &samm__tld_empty && !t->is_worker) samm_wait();
    if (samm__opt.stats_at_exit) samm_print_stats();
    if (samm__opt.leaks_at_exit) {
        textbuf b = {0};
        leak_text(&b, t != &samm__tld_empty ? t : NULL, "at exit");
        tb_emit(&b, NULL);
    }
}

/* ------------------------------------------------------------------------
 * Threads and fork
 * ---------------------------------------------------------------------- */
void samm__report_atfork_prepare(void)
{
    pthread_mutex_lock(&report_lock);
}

void samm__report_atfork_release(void)
{
    pthread_mutex_unlock(&report_lock);
}

void samm__report_leaves_prepare(void)
{
    pthread_mutex_lock(&sites_lock);
    pthread_mutex_lock(&huge_lock);
    pthread_mutex_lock(&snap_lock);
    pthread_mutex_lock(&out_lock);
}

void samm__report_leaves_release(void)
{
    pthread_mutex_unlock(&out_lock);
    pthread_mutex_unlock(&snap_lock);
    pthread_mutex_unlock(&huge_lock);
    pthread_mutex_unlock(&sites_lock);
}
