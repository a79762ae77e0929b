/* trace.c: the timeline writer (see trace.h). Events are kept in memory for the window and
 * written once at the end, so tracing costs a mutex and a few stores per event. */
#include "trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "json.h" /* cg_json_put_str: the host name */
#include "log.h"

typedef struct {
  int track;
  char name[32];
  double t0, t1;
  int64_t step;
} event_t;

struct cg_trace {
  char path[1100];
  int rank;
  char host[64];
  int64_t first, last;
  _Atomic int64_t step;
  double t_base;
  pthread_mutex_t mu;
  event_t *ev;
  size_t n, cap;
  int dropped;
};

#define MAX_EVENTS (1u << 22)

cg_trace_t *cg_trace_create(const char *prefix, int rank, const char *host, int64_t first,
                            int64_t last) {
  if (!prefix || !prefix[0]) return NULL;
  cg_trace_t *t = cg_calloc(1, sizeof *t, "trace");
  snprintf(t->path, sizeof t->path, "%s.rank%d.json", prefix, rank);
  t->rank = rank;
  snprintf(t->host, sizeof t->host, "%s", host ? host : "?");
  t->first = first;
  t->last = last;
  atomic_store(&t->step, -1);
  t->t_base = cg_now();
  pthread_mutex_init(&t->mu, NULL);
  return t;
}

int cg_trace_on(const cg_trace_t *t, int64_t step) {
  return t && step >= t->first && (t->last < 0 || step <= t->last);
}

void cg_trace_set_step(cg_trace_t *t, int64_t step) {
  if (t) atomic_store(&t->step, step);
}

void cg_trace_event(cg_trace_t *t, int track, const char *name, double t0, double t1) {
  if (t) cg_trace_event_step(t, track, name, t0, t1, atomic_load(&t->step));
}

void cg_trace_event_step(cg_trace_t *t, int track, const char *name, double t0, double t1,
                         int64_t step) {
  if (!t) return;
  if (!cg_trace_on(t, step) || !(t1 >= t0)) return;
  pthread_mutex_lock(&t->mu);
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 4096;
    event_t *ne = cap <= MAX_EVENTS ? realloc(t->ev, cap * sizeof *ne) : NULL;
    if (!ne) {
      t->dropped++;
      pthread_mutex_unlock(&t->mu);
      return;
    }
    t->ev = ne;
    t->cap = cap;
  }
  event_t *e = &t->ev[t->n++];
  e->track = track;
  snprintf(e->name, sizeof e->name, "%s", name);
  e->t0 = t0;
  e->t1 = t1;
  e->step = step;
  pthread_mutex_unlock(&t->mu);
}

static const char *track_name(int track, char *buf, size_t len) {
  switch (track) {
    case CG_TRACK_DRIVER: return "driving thread";
    case CG_TRACK_H2D: return "stream h2d";
    case CG_TRACK_COMPUTE: return "stream compute";
    case CG_TRACK_COMM: return "stream comm";
    case CG_TRACK_D2H: return "stream d2h";
    default: snprintf(buf, len, "helper %d", track - CG_TRACK_HELPER0); return buf;
  }
}

int cg_trace_close(cg_trace_t *t) {
  if (!t) return 0;
  char err[1400];
  cg_afile_t *af = cg_afile_open(t->path, err, sizeof err);
  int rc = -1;
  if (af) {
    FILE *f = cg_afile_stream(af);
    int64_t last = t->last, seen = t->first; /* a run stopped early covers fewer steps */
    for (size_t i = 0; i < t->n; i++) seen = t->ev[i].step > seen ? t->ev[i].step : seen;
    if (t->n && seen < last) last = seen;
    fprintf(f, "{\"displayTimeUnit\": \"ms\", \"otherData\": {\"rank\": %d, \"host\": ", t->rank);
    cg_json_put_str(f, t->host); /* Linux allows '"' in a host name */
    fprintf(f, ", \"first_step\": %lld, \"last_step\": %lld, \"dropped\": %d},\n \"traceEvents\": [\n",
            (long long)t->first, (long long)last, t->dropped);
    char pname[320];
    snprintf(pname, sizeof pname, "rank %d (%.256s)", t->rank, t->host);
    fprintf(f, "  {\"name\": \"process_name\", \"ph\": \"M\", \"pid\": %d, \"args\": {\"name\": ",
            t->rank);
    cg_json_put_str(f, pname);
    fprintf(f, "}}");
    /* a name for every track used */
    int used[CG_TRACK_HELPER0 + 256];
    memset(used, 0, sizeof used);
    for (size_t i = 0; i < t->n; i++)
      if (t->ev[i].track >= 0 && t->ev[i].track < (int)(sizeof used / sizeof used[0]))
        used[t->ev[i].track] = 1;
    for (int k = 0; k < (int)(sizeof used / sizeof used[0]); k++) {
      if (!used[k]) continue;
      char buf[32];
      fprintf(f, ",\n  {\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                 "\"args\": {\"name\": \"%s\"}}", t->rank, k, track_name(k, buf, sizeof buf));
      fprintf(f, ",\n  {\"name\": \"thread_sort_index\", \"ph\": \"M\", \"pid\": %d, \"tid\": %d, "
                 "\"args\": {\"sort_index\": %d}}", t->rank, k, k);
    }
    for (size_t i = 0; i < t->n; i++) {
      const event_t *e = &t->ev[i];
      fprintf(f, ",\n  {\"name\": \"%s\", \"ph\": \"X\", \"pid\": %d, \"tid\": %d, \"ts\": %.3f, "
                 "\"dur\": %.3f, \"args\": {\"step\": %lld}}",
              e->name, t->rank, e->track, 1e6 * (e->t0 - t->t_base), 1e6 * (e->t1 - e->t0),
              (long long)e->step);
    }
    fprintf(f, "\n]}\n");
    rc = cg_afile_commit(af, err, sizeof err);
  }
  if (rc) cg_log_warn("--trace-out: %s", err);
  pthread_mutex_destroy(&t->mu);
  free(t->ev);
  free(t);
  return rc;
}
