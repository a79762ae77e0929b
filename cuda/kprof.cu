/* kprof.cu: the per-kernel breakdown of kprof.h, from CUPTI's activity API loaded with dlopen.
 *
 * Records. CUPTI fills buffers we hand it and returns them on its own worker thread (or on the
 * thread that calls cuptiActivityFlushAll). While counting, kernel, memset and memcpy records
 * are copied out compactly (GPU start/end, CUPTI correlation id, graph node id, interned name)
 * together with the external-correlation records (correlation id -> region); everything else
 * is dropped with the buffer. Records arrive in any order across buffers, so the join happens
 * in the report. The counting interval is "records delivered between start and stop": start
 * flushes CUPTI's buffers and drops what they held, stop synchronises the device and flushes
 * again, so with the device idle at start (the caller drains it) exactly the work submitted
 * in between is counted.
 *
 * Mapping, eager: enter pushes the region as a CUSTOM0 external correlation id, leave pops it.
 * CUPTI then writes an external-correlation record next to the API record of every CUDA call
 * made in between (the runtime and driver API kinds are on for that, as in CUPTI's own
 * external-correlation sample), and the kernel a call launched carries the same correlation id.
 *
 * Mapping, graphs: enter/leave look at the graph being captured on their stream
 * (cudaStreamGetCaptureInfo, then cudaGraphGetNodes, both allowed during a capture and neither
 * enqueues anything) and give the nodes added since the previous look to the region that was
 * innermost in between (none: "outside", reported unattributed). Nodes are keyed by CUPTI's
 * graph node id. Instantiation copies every node into the executable graph and a replayed
 * kernel's record names the copy, so a resource callback (GRAPHNODE_CLONED) records copy ->
 * original and the report follows that chain. A record of a graph node never seen falls back to
 * its correlation id (work launched eagerly inside a region, e.g. a library's own graph), else
 * it is unattributed: never guessed. Work added to a capture after its last leave is never
 * looked at, so it shows as unattributed too.
 *
 * Globals: CUPTI's buffer callbacks take no user pointer, so the live profiler is reached
 * through g_kp (one at a time), guarded with what it shares with CUPTI's thread by g_mu. These
 * two are the file's only globals. Never call CUDA, or a CUPTI function that can deliver
 * buffers, while holding g_mu: a flush runs the completion callback on the calling thread.
 *
 * libcupti is never dlclose'd: CUPTI leaves hooks in the driver and may call back (e.g. at
 * exit) after the profiler is gone. */
#include "kprof.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern "C" {
#include "atomic_file.h"
#include "log.h"
}

#if defined(__has_include)
#if __has_include(<cupti.h>)
#define CG_KPROF_HAVE_CUPTI 1
#endif
#endif

#ifndef CG_KPROF_HAVE_CUPTI

/* ---- built without the CUPTI headers: every profiler is unavailable ----------------------- */

cg_kprof_t *cg_kprof_create(char *err, size_t errlen) {
  if (err && errlen) snprintf(err, errlen, "built without CUPTI headers");
  return NULL;
}
void cg_kprof_destroy(cg_kprof_t *kp) { (void)kp; }
int cg_kprof_region(cg_kprof_t *kp, const char *name, double flops, double bytes) {
  (void)kp, (void)name, (void)flops, (void)bytes;
  return 0;
}
void cg_kprof_enter(cg_kprof_t *kp, int id, cudaStream_t s) { (void)kp, (void)id, (void)s; }
void cg_kprof_leave(cg_kprof_t *kp, cudaStream_t s) { (void)kp, (void)s; }
void cg_kprof_start(cg_kprof_t *kp) { (void)kp; }
void cg_kprof_stop(cg_kprof_t *kp, int steps) { (void)kp, (void)steps; }
int cg_kprof_report(cg_kprof_t *kp, const char *title, double step_ms, double peak_tflops,
                    double peak_gbs, FILE *out, const char *json_path) {
  (void)kp, (void)title, (void)step_ms, (void)peak_tflops, (void)peak_gbs, (void)out;
  (void)json_path;
  return 0;
}
void cg_kprof_reset(cg_kprof_t *kp) { (void)kp; }

#else

#include <cupti.h>

namespace {

constexpr size_t kBufBytes = 8u << 20; /* one activity buffer handed to CUPTI */
constexpr int kMaxDepth = 32;          /* nesting of enter/leave that is tracked */
constexpr int kCloneHops = 8;          /* copy -> original links followed */
constexpr int kShown = 10;             /* kernels printed under a region (JSON has all) */
constexpr int kNameW = 60;             /* printed kernel name width */
constexpr int kTailW = 20;             /* characters kept from the end of a shortened name */
constexpr double kPeakTflops = 790.0;  /* H200 dense bf16 */
constexpr double kPeakGbs = 4300.0;    /* H200 HBM3e, achievable */
constexpr uint32_t kMinCupti = CUPTI_API_VERSION >= 130000 ? CUPTI_API_VERSION / 10000 * 10000
                                                           : CUPTI_API_VERSION;

/* ---- small containers (C style, as the rest of the project) ------------------------------ */

void *grow(void *p, size_t n, size_t size, const char *what) {
  void *q = realloc(p, (n ? n : 1) * size);
  if (!q) CG_FATAL("out of memory (%s, %zu bytes)", what, n * size);
  return q;
}

/* u64 -> u64, open addressing; a stored key is key + 1, so 0 marks an empty slot. */
struct map_t {
  uint64_t *k, *v;
  size_t cap, n;
};

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

size_t map_slot(const map_t *m, uint64_t key) {
  size_t i = (size_t)mix(key) & (m->cap - 1);
  while (m->k[i] && m->k[i] != key + 1) i = (i + 1) & (m->cap - 1);
  return i;
}

int map_get(const map_t *m, uint64_t key, uint64_t *val) {
  if (!m->cap) return 0;
  const size_t i = map_slot(m, key);
  if (!m->k[i]) return 0;
  if (val) *val = m->v[i];
  return 1;
}

void map_put(map_t *m, uint64_t key, uint64_t val) {
  if (2 * (m->n + 1) > m->cap) {
    map_t r = {NULL, NULL, m->cap ? 2 * m->cap : 1024, 0};
    r.k = static_cast<uint64_t *>(cg_calloc(r.cap, sizeof(uint64_t), "kprof map"));
    r.v = static_cast<uint64_t *>(cg_calloc(r.cap, sizeof(uint64_t), "kprof map"));
    for (size_t i = 0; i < m->cap; i++)
      if (m->k[i]) {
        const size_t j = map_slot(&r, m->k[i] - 1);
        r.k[j] = m->k[i];
        r.v[j] = m->v[i];
        r.n++;
      }
    free(m->k);
    free(m->v);
    *m = r;
  }
  const size_t i = map_slot(m, key);
  if (!m->k[i]) m->n++;
  m->k[i] = key + 1;
  m->v[i] = val;
}

void map_clear(map_t *m) {
  if (m->cap) memset(m->k, 0, m->cap * sizeof(uint64_t));
  m->n = 0;
}

void map_free(map_t *m) {
  free(m->k);
  free(m->v);
  memset(m, 0, sizeof *m);
}

/* Kernel names, interned: records keep an index. */
struct names_t {
  char **s;
  size_t n, cap;
  map_t by_hash; /* FNV-1a of the name -> index + 1 of the first name with that hash */
};

uint64_t fnv(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

int32_t names_intern(names_t *t, const char *s) {
  uint64_t h = fnv(s), idx;
  /* equal hashes of different names probe on with h + 1: rare, and never merged */
  while (map_get(&t->by_hash, h, &idx)) {
    if (!strcmp(t->s[idx], s)) return (int32_t)idx;
    h++;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 256;
    t->s = static_cast<char **>(grow(t->s, t->cap, sizeof(char *), "kprof names"));
  }
  t->s[t->n] = strdup(s);
  if (!t->s[t->n]) CG_FATAL("out of memory (kprof name)");
  map_put(&t->by_hash, h, t->n);
  return (int32_t)t->n++;
}

/* One counted kernel, memset or memcpy. */
struct rec_t {
  uint64_t start, end, node; /* ns on the GPU clock; CUPTI graph node id (0: not a graph's) */
  uint32_t corr;             /* CUPTI correlation id of the launching API call */
  int32_t name;
};

struct region_t {
  char name[96];
  double flops, bytes; /* per step */
};

/* The CUPTI functions used, resolved with dlsym; decltype keeps their types exact. */
#define CG_KPROF_CUPTI_FNS(X)                                                                  \
  X(cuptiGetVersion)                                                                           \
  X(cuptiGetResultString)                                                                      \
  X(cuptiSubscribe)                                                                            \
  X(cuptiUnsubscribe)                                                                          \
  X(cuptiEnableCallback)                                                                       \
  X(cuptiActivityRegisterCallbacks)                                                            \
  X(cuptiActivityEnable)                                                                       \
  X(cuptiActivityDisable)                                                                      \
  X(cuptiActivityFlushAll)                                                                     \
  X(cuptiActivityGetNextRecord)                                                                \
  X(cuptiActivityGetNumDroppedRecords)                                                         \
  X(cuptiActivityPushExternalCorrelationId)                                                    \
  X(cuptiActivityPopExternalCorrelationId)                                                     \
  X(cuptiGetGraphNodeId)

struct cupti_t {
  void *lib;
  char path[320];
#define CG_KPROF_FIELD(f) decltype(&::f) f;
  CG_KPROF_CUPTI_FNS(CG_KPROF_FIELD)
#undef CG_KPROF_FIELD
};

typedef char *(*demangle_fn)(const char *, char *, size_t *, int *);

/* The activity kinds enabled at create. The API kinds are what external-correlation records
 * hang on; GRAPH_TRACE is never enabled (it turns a graph's kernels into one record). */
const CUpti_ActivityKind kKinds[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, CUPTI_ACTIVITY_KIND_MEMSET,
    CUPTI_ACTIVITY_KIND_MEMCPY,            CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
    CUPTI_ACTIVITY_KIND_RUNTIME,           CUPTI_ACTIVITY_KIND_DRIVER};
constexpr int kNKinds = (int)(sizeof kKinds / sizeof kKinds[0]);

}  // namespace

struct cg_kprof {
  cupti_t fn;
  demangle_fn demangle; /* __cxa_demangle when the process has libstdc++, else NULL */
  CUpti_SubscriberHandle sub;
  int subscribed, callbacks, kinds_on;

  /* host thread only */
  region_t *reg; /* reg[0] is "(unattributed)" */
  int nreg, capreg;
  int stack[kMaxDepth];
  int depth;
  unsigned long long cap_id; /* capture sequence last looked at */
  int cap_live;
  size_t cap_seen_n;           /* node count at the last look */
  map_t seen;                  /* node handles of that capture already given a region */
  cudaGraphNode_t *nodes;      /* cudaGraphGetNodes scratch */
  size_t nodes_cap;
  uint64_t *fresh;             /* (node id, region) pairs of one look, 2 * nodes_cap */
  unsigned long long query_errors, push_errors;

  /* shared with CUPTI's thread: under g_mu */
  int counting;
  long long steps;
  rec_t *recs;
  size_t nrecs, caprecs;
  map_t corr;        /* correlation id -> region */
  map_t node_region; /* graph node id -> region (0: created outside any region) */
  map_t clone;       /* node id of a copy -> id of the node it was copied from */
  names_t names;
  unsigned long long dropped, bad_records, clone_errors;
};

namespace {

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
cg_kprof_t *g_kp = NULL; /* the live profiler, for CUPTI's buffer callbacks */

const char *cupti_err(const cg_kprof_t *kp, CUptiResult rc) {
  const char *s = NULL;
  if (kp->fn.cuptiGetResultString && kp->fn.cuptiGetResultString(rc, &s) == CUPTI_SUCCESS && s)
    return s;
  return "unknown CUPTI error";
}

/* ---- loading CUPTI --------------------------------------------------------------------- */

/* One candidate: 0 when it opens, has every function and is new enough; else -1 with why. */
int try_cupti(cupti_t *c, const char *path, char *why, size_t whylen) {
  memset(c, 0, sizeof *c);
  snprintf(c->path, sizeof c->path, "%s", path);
  c->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!c->lib) {
    snprintf(why, whylen, "%s", dlerror());
    return -1;
  }
  /* a rejected library stays loaded (never initialised): see the opening comment */
#define CG_KPROF_SYM(f)                                                                        \
  c->f = reinterpret_cast<decltype(&::f)>(dlsym(c->lib, #f));                                 \
  if (!c->f) {                                                                                 \
    snprintf(why, whylen, "%s: no symbol %s", path, #f);                                       \
    return -1;                                                                                 \
  }
  CG_KPROF_CUPTI_FNS(CG_KPROF_SYM)
#undef CG_KPROF_SYM
  uint32_t v = 0;
  if (c->cuptiGetVersion(&v) != CUPTI_SUCCESS || v < kMinCupti) {
    snprintf(why, whylen, "%s: CUPTI API version %u, need >= %u (the record layouts of the "
             "headers this was built with)", path, v, kMinCupti);
    return -1;
  }
  return 0;
}

/* The first usable libcupti: by soname (the loader's paths), then the toolkit's folders. */
int load_cupti(cupti_t *c, char *err, size_t errlen) {
  static const char *const bare[] = {"libcupti.so", "libcupti.so.13", "libcupti.so.12"};
  static const char *const dirs[] = {"/usr/local/cuda/extras/CUPTI/lib64", "/usr/local/cuda/lib64",
                                     "/usr/local/cuda/lib"};
  static const char *const files[] = {"libcupti.so", "libcupti.so.13"};
  char why[400] = "", path[320];
#ifdef CG_CUPTI_LIB /* the library CMake found beside the headers this was built with */
  if (!try_cupti(c, CG_CUPTI_LIB, why, sizeof why)) return 0;
#endif
  for (size_t i = 0; i < sizeof bare / sizeof bare[0]; i++)
    if (!try_cupti(c, bare[i], why, sizeof why)) return 0;
  const char *home = getenv("CUDA_HOME");
  for (int d = home && home[0] ? -1 : 0; d < (int)(sizeof dirs / sizeof dirs[0]); d++)
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
      if (d < 0) snprintf(path, sizeof path, "%s/extras/CUPTI/lib64/%s", home, files[f]);
      else snprintf(path, sizeof path, "%s/%s", dirs[d], files[f]);
      if (!try_cupti(c, path, why, sizeof why)) return 0;
    }
  snprintf(err, errlen, "no usable libcupti (tried libcupti.so[.13|.12], $CUDA_HOME and "
           "/usr/local/cuda; last: %s)", why);
  return -1;
}

/* ---- CUPTI's callbacks --------------------------------------------------------------------- */

void CUPTIAPI buf_request(uint8_t **buf, size_t *size, size_t *max_records) {
  *buf = static_cast<uint8_t *>(aligned_alloc(8, kBufBytes)); /* records need 8-byte alignment */
  *size = *buf ? kBufBytes : 0;                                /* NULL: CUPTI drops records */
  *max_records = 0;
}

void add_rec(cg_kprof_t *kp, uint64_t start, uint64_t end, uint64_t node, uint32_t corr,
             const char *name) {
  if (kp->nrecs == kp->caprecs) {
    kp->caprecs = kp->caprecs ? 2 * kp->caprecs : 4096;
    kp->recs = static_cast<rec_t *>(grow(kp->recs, kp->caprecs, sizeof(rec_t), "kprof records"));
  }
  rec_t *r = &kp->recs[kp->nrecs++];
  r->start = start;
  r->end = end;
  r->node = node;
  r->corr = corr;
  r->name = names_intern(&kp->names, name);
}

const char *memcpy_name(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[memcpy DtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH: return "[memcpy HtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP: return "[memcpy PtoP]";
    default: return "[memcpy other]";
  }
}

/* Under g_mu, while counting: copies what the report needs out of one buffer. */
void take_records(cg_kprof_t *kp, uint8_t *buf, size_t valid) {
  CUpti_Activity *r = NULL;
  CUptiResult rc;
  while ((rc = kp->fn.cuptiActivityGetNextRecord(buf, valid, &r)) == CUPTI_SUCCESS) {
    switch (r->kind) {
      case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL:
      case CUPTI_ACTIVITY_KIND_KERNEL: {
        const CUpti_ActivityKernel10 *k = reinterpret_cast<const CUpti_ActivityKernel10 *>(r);
        add_rec(kp, k->start, k->end, k->graphNodeId, k->correlationId,
                k->name ? k->name : "(no name)");
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = reinterpret_cast<const CUpti_ActivityMemset4 *>(r);
        add_rec(kp, m->start, m->end, m->graphNodeId, m->correlationId, "[memset]");
        break;
      }
      case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = reinterpret_cast<const CUpti_ActivityMemcpy6 *>(r);
        add_rec(kp, m->start, m->end, m->graphNodeId, m->correlationId, memcpy_name(m->copyKind));
        break;
      }
      case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const CUpti_ActivityExternalCorrelation *e =
            reinterpret_cast<const CUpti_ActivityExternalCorrelation *>(r);
        if (e->externalKind == CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0)
          map_put(&kp->corr, e->correlationId, e->externalId);
        break;
      }
      default: /* API records: only the correlation records above needed them */
        break;
    }
  }
  if (rc != CUPTI_ERROR_MAX_LIMIT_REACHED) kp->bad_records++;
}

void CUPTIAPI buf_complete(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size,
                           size_t valid) {
  (void)size;
  pthread_mutex_lock(&g_mu);
  cg_kprof_t *kp = g_kp;
  if (kp && buf) {
    if (kp->counting && valid) take_records(kp, buf, valid);
    size_t dropped = 0;
    if (kp->fn.cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS)
      kp->dropped += dropped;
  }
  pthread_mutex_unlock(&g_mu);
  free(buf);
}

/* Resource callback: an executable graph's node was copied from a captured one. Runs on the
 * thread that instantiates. */
void CUPTIAPI on_resource(void *userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                          const void *data) {
  if (domain != CUPTI_CB_DOMAIN_RESOURCE || cbid != CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED) return;
  cg_kprof_t *kp = static_cast<cg_kprof_t *>(userdata);
  const CUpti_ResourceData *rd = static_cast<const CUpti_ResourceData *>(data);
  const CUpti_GraphData *gd =
      rd ? static_cast<const CUpti_GraphData *>(rd->resourceDescriptor) : NULL;
  uint64_t copy = 0, orig = 0;
  const int ok = gd && gd->node && gd->originalNode &&
                 kp->fn.cuptiGetGraphNodeId(gd->node, &copy) == CUPTI_SUCCESS &&
                 kp->fn.cuptiGetGraphNodeId(gd->originalNode, &orig) == CUPTI_SUCCESS;
  pthread_mutex_lock(&g_mu);
  if (ok && copy != orig) map_put(&kp->clone, copy, orig);
  else if (!ok) kp->clone_errors++;
  pthread_mutex_unlock(&g_mu);
}

/* ---- capture bookkeeping ----------------------------------------------------------------- */

/* Gives the nodes added to the graph being captured on s since the last look to the innermost
 * region (0 when none). Never enqueues work; a failed query is counted, and the runtime's
 * last error is restored to what it was, since the backend checks it after its launches. */
void capture_look(cg_kprof_t *kp, cudaStream_t s) {
  const cudaError_t pending = cudaPeekAtLastError();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  unsigned long long id = 0;
  cudaGraph_t g = NULL;
  cudaError_t rc = cudaStreamGetCaptureInfo(s, &st, &id, &g, NULL, NULL, NULL);
  if (rc == cudaSuccess && (st != cudaStreamCaptureStatusActive || !g)) return;
  size_t n = 0;
  if (rc == cudaSuccess) {
    if (!kp->cap_live || id != kp->cap_id) { /* a new capture: its nodes are all new */
      kp->cap_live = 1;
      kp->cap_id = id;
      kp->cap_seen_n = 0;
      map_clear(&kp->seen);
    }
    rc = cudaGraphGetNodes(g, NULL, &n);
  }
  if (rc == cudaSuccess && n == kp->cap_seen_n) return; /* nodes are never removed in a capture */
  if (rc == cudaSuccess) {
    if (n > kp->nodes_cap) {
      kp->nodes_cap = 2 * n;
      kp->nodes = static_cast<cudaGraphNode_t *>(
          grow(kp->nodes, kp->nodes_cap, sizeof(cudaGraphNode_t), "kprof nodes"));
      kp->fresh = static_cast<uint64_t *>(
          grow(kp->fresh, 2 * kp->nodes_cap, sizeof(uint64_t), "kprof nodes"));
    }
    rc = cudaGraphGetNodes(g, kp->nodes, &n);
  }
  if (rc != cudaSuccess) {
    kp->query_errors++;
    if (pending == cudaSuccess) (void)cudaGetLastError();
    return;
  }
  const int d = kp->depth < kMaxDepth ? kp->depth : kMaxDepth;
  const uint64_t region = d > 0 ? (uint64_t)kp->stack[d - 1] : 0;
  size_t nf = 0;
  for (size_t i = 0; i < n && i < kp->nodes_cap; i++) {
    const uint64_t h = (uint64_t)(uintptr_t)kp->nodes[i];
    if (!h || map_get(&kp->seen, h, NULL)) continue;
    map_put(&kp->seen, h, 1);
    uint64_t nid = 0;
    if (kp->fn.cuptiGetGraphNodeId(kp->nodes[i], &nid) != CUPTI_SUCCESS) {
      kp->query_errors++;
      continue;
    }
    kp->fresh[2 * nf] = nid;
    kp->fresh[2 * nf + 1] = region;
    nf++;
  }
  kp->cap_seen_n = n;
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < nf; i++) map_put(&kp->node_region, kp->fresh[2 * i], kp->fresh[2 * i + 1]);
  pthread_mutex_unlock(&g_mu);
}

void disable_kinds(cg_kprof_t *kp) {
  for (int i = 0; i < kNKinds; i++)
    if (kp->kinds_on & (1 << i)) (void)kp->fn.cuptiActivityDisable(kKinds[i]);
  kp->kinds_on = 0;
}

/* Subscribes for the clone callback, registers the buffers, enables the kinds. */
int attach(cg_kprof_t *kp, char *err, size_t errlen) {
  CUptiResult rc = kp->fn.cuptiSubscribe(&kp->sub, on_resource, kp);
  if (rc != CUPTI_SUCCESS) {
    snprintf(err, errlen, "cuptiSubscribe: %s%s", cupti_err(kp, rc),
             rc == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED
                 ? " (another CUPTI client is attached: Nsight Systems/Compute?)"
                 : "");
    return -1;
  }
  kp->subscribed = 1;
  rc = kp->fn.cuptiEnableCallback(1, kp->sub, CUPTI_CB_DOMAIN_RESOURCE,
                                  CUPTI_CBID_RESOURCE_GRAPHNODE_CLONED);
  if (rc != CUPTI_SUCCESS) {
    snprintf(err, errlen, "cuptiEnableCallback(GRAPHNODE_CLONED): %s", cupti_err(kp, rc));
    return -1;
  }
  rc = kp->fn.cuptiActivityRegisterCallbacks(buf_request, buf_complete);
  if (rc != CUPTI_SUCCESS) {
    snprintf(err, errlen, "cuptiActivityRegisterCallbacks: %s", cupti_err(kp, rc));
    return -1;
  }
  kp->callbacks = 1;
  for (int i = 0; i < kNKinds; i++) {
    rc = kp->fn.cuptiActivityEnable(kKinds[i]);
    if (rc != CUPTI_SUCCESS) {
      snprintf(err, errlen, "cuptiActivityEnable(kind %d): %s", (int)kKinds[i],
               cupti_err(kp, rc));
      return -1;
    }
    kp->kinds_on |= 1 << i;
  }
  return 0;
}

}  // namespace

/* ---- the API ----------------------------------------------------------------------------- */

cg_kprof_t *cg_kprof_create(char *err, size_t errlen) {
  int ndev = 0;
  const cudaError_t drc = cudaGetDeviceCount(&ndev);
  if (drc != cudaSuccess || ndev < 1) {
    (void)cudaGetLastError();
    snprintf(err, errlen, "no usable CUDA device (%s)",
             drc != cudaSuccess ? cudaGetErrorString(drc) : "none found");
    return NULL;
  }
  cupti_t fn;
  if (load_cupti(&fn, err, errlen)) return NULL;
  cg_kprof_t *kp = static_cast<cg_kprof_t *>(cg_calloc(1, sizeof(cg_kprof_t), "kprof"));
  kp->fn = fn;
  kp->demangle = reinterpret_cast<demangle_fn>(dlsym(RTLD_DEFAULT, "__cxa_demangle"));
  if (!kp->demangle) { /* not loaded by a dependency (cuDNN brings it): names stay mangled */
    void *cxx = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    if (cxx) kp->demangle = reinterpret_cast<demangle_fn>(dlsym(cxx, "__cxa_demangle"));
  }
  kp->capreg = 64;
  kp->reg = static_cast<region_t *>(cg_calloc((size_t)kp->capreg, sizeof(region_t), "kprof"));
  snprintf(kp->reg[0].name, sizeof kp->reg[0].name, "(unattributed)");
  kp->nreg = 1;
  pthread_mutex_lock(&g_mu);
  const int busy = g_kp != NULL;
  if (!busy) g_kp = kp;
  pthread_mutex_unlock(&g_mu);
  if (busy) {
    snprintf(err, errlen, "another cg_kprof is live (CUPTI takes one set of buffer callbacks)");
    free(kp->reg);
    free(kp);
    return NULL;
  }
  if (attach(kp, err, errlen)) {
    cg_kprof_destroy(kp);
    return NULL;
  }
  return kp;
}

void cg_kprof_destroy(cg_kprof_t *kp) {
  if (!kp) return;
  disable_kinds(kp);
  if (kp->callbacks) (void)kp->fn.cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  pthread_mutex_lock(&g_mu);
  if (g_kp == kp) g_kp = NULL; /* later buffers are only freed */
  pthread_mutex_unlock(&g_mu);
  if (kp->subscribed) (void)kp->fn.cuptiUnsubscribe(kp->sub);
  map_free(&kp->seen);
  map_free(&kp->corr);
  map_free(&kp->node_region);
  map_free(&kp->clone);
  for (size_t i = 0; i < kp->names.n; i++) free(kp->names.s[i]);
  free(kp->names.s);
  map_free(&kp->names.by_hash);
  free(kp->recs);
  free(kp->nodes);
  free(kp->fresh);
  free(kp->reg);
  free(kp);
}

int cg_kprof_region(cg_kprof_t *kp, const char *name, double flops, double bytes) {
  if (!kp || !name) return 0;
  for (int i = 1; i < kp->nreg; i++)
    if (!strncmp(kp->reg[i].name, name, sizeof kp->reg[i].name - 1)) {
      kp->reg[i].flops = flops; /* a later backend's figures replace an earlier one's */
      kp->reg[i].bytes = bytes;
      return i;
    }
  if (kp->nreg == kp->capreg) {
    kp->capreg *= 2;
    kp->reg = static_cast<region_t *>(grow(kp->reg, (size_t)kp->capreg, sizeof(region_t),
                                           "kprof regions"));
  }
  region_t *r = &kp->reg[kp->nreg];
  snprintf(r->name, sizeof r->name, "%s", name);
  r->flops = flops;
  r->bytes = bytes;
  return kp->nreg++;
}

void cg_kprof_enter(cg_kprof_t *kp, int id, cudaStream_t s) {
  if (!kp) return;
  capture_look(kp, s); /* what came before belongs to the enclosing region */
  if (kp->depth < kMaxDepth) kp->stack[kp->depth] = id;
  kp->depth++;
  if (kp->fn.cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                    (uint64_t)id) != CUPTI_SUCCESS)
    kp->push_errors++;
}

void cg_kprof_leave(cg_kprof_t *kp, cudaStream_t s) {
  if (!kp) return;
  capture_look(kp, s);
  if (kp->depth > 0) kp->depth--;
  uint64_t last = 0;
  if (kp->fn.cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0,
                                                   &last) != CUPTI_SUCCESS)
    kp->push_errors++;
}

void cg_kprof_start(cg_kprof_t *kp) {
  if (!kp) return;
  (void)kp->fn.cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED); /* dropped: not counting */
  pthread_mutex_lock(&g_mu);
  kp->counting = 1;
  pthread_mutex_unlock(&g_mu);
}

void cg_kprof_stop(cg_kprof_t *kp, int steps) {
  if (!kp) return;
  /* the caller drained the device; synchronising again costs nothing and makes sure every
   * record of the interval is complete before the flush */
  const cudaError_t pending = cudaPeekAtLastError();
  if (cudaDeviceSynchronize() != cudaSuccess && pending == cudaSuccess) (void)cudaGetLastError();
  (void)kp->fn.cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  pthread_mutex_lock(&g_mu);
  kp->counting = 0;
  kp->steps += steps > 0 ? steps : 0;
  pthread_mutex_unlock(&g_mu);
}

void cg_kprof_reset(cg_kprof_t *kp) {
  if (!kp) return;
  /* the node and clone maps stay: the graphs they describe are still replayed */
  pthread_mutex_lock(&g_mu);
  kp->nrecs = 0;
  kp->steps = 0;
  map_clear(&kp->corr);
  kp->dropped = kp->bad_records = 0;
  pthread_mutex_unlock(&g_mu);
  kp->query_errors = kp->push_errors = 0;
}

/* ---- the report -------------------------------------------------------------------------- */

namespace {

enum { HOW_NODE, HOW_CORR, HOW_OUTSIDE, HOW_UNKNOWN_NODE, HOW_NONE, HOW_N };

/* Under g_mu: the region of one record, and how it was found. */
int resolve(const cg_kprof_t *kp, const rec_t *r, int *how) {
  if (r->node) {
    uint64_t id = r->node, reg;
    for (int hop = 0; hop <= kCloneHops; hop++) {
      if (map_get(&kp->node_region, id, &reg)) {
        *how = reg ? HOW_NODE : HOW_OUTSIDE;
        return (int)reg;
      }
      if (!map_get(&kp->clone, id, &id)) break;
    }
  }
  uint64_t reg;
  if (map_get(&kp->corr, r->corr, &reg)) {
    *how = HOW_CORR;
    return (int)reg;
  }
  *how = r->node ? HOW_UNKNOWN_NODE : HOW_NONE;
  return 0;
}

struct item_t {
  int region;
  int32_t name;
  double ns;
};

struct group_t {
  int region;
  int32_t name;
  long long calls;
  double ns;
};

struct rsum_t {
  long long calls;
  double ns;
  size_t g0, ng; /* its groups in agg_t.groups */
};

struct span_t {
  uint64_t a, b;
};

/* Everything the printed table and the JSON show, computed once. */
struct agg_t {
  int nreg;
  rsum_t *reg;
  int *order; /* regions 1..nreg-1, slowest first */
  group_t *groups;
  size_t ngroups;
  char **raw, **disp; /* copies of the interned names, and their printable short forms */
  size_t nnames;
  double steps, total_ns, busy_ns;
  long long nrec, how[HOW_N], incomplete;
  unsigned long long dropped, bad_records, clone_errors;
};

int cmp_item(const void *pa, const void *pb) {
  const item_t *a = static_cast<const item_t *>(pa), *b = static_cast<const item_t *>(pb);
  if (a->region != b->region) return a->region < b->region ? -1 : 1;
  return (a->name > b->name) - (a->name < b->name);
}

int cmp_group(const void *pa, const void *pb) {
  const group_t *a = static_cast<const group_t *>(pa), *b = static_cast<const group_t *>(pb);
  if (a->region != b->region) return a->region < b->region ? -1 : 1;
  return (a->ns < b->ns) - (a->ns > b->ns);
}

int cmp_span(const void *pa, const void *pb) {
  const span_t *a = static_cast<const span_t *>(pa), *b = static_cast<const span_t *>(pb);
  return (a->a > b->a) - (a->a < b->a);
}

/* A printable kernel name of at most kNameW characters: demangled, without its return type and
 * parameter list, the middle elided when still too long (the ends tell cuDNN's apart). */
void short_name(demangle_fn dm, const char *raw, char *out, size_t outlen) {
  char *dem = NULL;
  if (dm && raw[0] == '_' && raw[1] == 'Z') {
    int st = -1;
    dem = dm(raw, NULL, NULL, &st);
    if (st != 0) {
      free(dem);
      dem = NULL;
    }
  }
  const char *s = dem ? dem : raw;
  if (!strncmp(s, "void ", 5)) s += 5;
  size_t len = strlen(s);
  if (len && s[len - 1] == ')') { /* drop the trailing balanced "(...)" */
    int depth = 0;
    for (size_t i = len; i-- > 0;) {
      if (s[i] == ')') depth++;
      else if (s[i] == '(' && --depth == 0) {
        if (i > 0) len = i;
        break;
      }
    }
  }
  if (len <= (size_t)kNameW) {
    snprintf(out, outlen, "%.*s", (int)len, s);
  } else {
    const int head = kNameW - 3 - kTailW;
    snprintf(out, outlen, "%.*s...%s", head, s, s + len - kTailW);
  }
  free(dem);
}

/* Copies the counted records out under the lock and resolves them; then groups. */
void collect(cg_kprof_t *kp, agg_t *ag) {
  memset(ag, 0, sizeof *ag);
  ag->nreg = kp->nreg;
  pthread_mutex_lock(&g_mu);
  const size_t n = kp->nrecs;
  item_t *items = static_cast<item_t *>(cg_calloc(n ? n : 1, sizeof(item_t), "kprof report"));
  span_t *spans = static_cast<span_t *>(cg_calloc(n ? n : 1, sizeof(span_t), "kprof report"));
  size_t ni = 0;
  for (size_t i = 0; i < n; i++) {
    const rec_t *r = &kp->recs[i];
    if (!r->start || r->end < r->start) { /* no timestamps: incomplete, not counted */
      ag->incomplete++;
      continue;
    }
    int how;
    int reg = resolve(kp, r, &how);
    if (reg < 0 || reg >= kp->nreg) reg = 0; /* an id the backend never registered */
    ag->how[how]++;
    items[ni].region = reg;
    items[ni].name = r->name;
    items[ni].ns = (double)(r->end - r->start);
    spans[ni].a = r->start;
    spans[ni].b = r->end;
    ni++;
  }
  ag->nnames = kp->names.n;
  ag->raw = static_cast<char **>(cg_calloc(ag->nnames ? ag->nnames : 1, sizeof(char *), "kprof"));
  for (size_t i = 0; i < ag->nnames; i++) {
    ag->raw[i] = strdup(kp->names.s[i]);
    if (!ag->raw[i]) CG_FATAL("out of memory (kprof report)");
  }
  ag->steps = kp->steps > 0 ? (double)kp->steps : 1.0;
  ag->dropped = kp->dropped;
  ag->bad_records = kp->bad_records;
  ag->clone_errors = kp->clone_errors;
  pthread_mutex_unlock(&g_mu);

  ag->disp = static_cast<char **>(cg_calloc(ag->nnames ? ag->nnames : 1, sizeof(char *), "kprof"));
  for (size_t i = 0; i < ag->nnames; i++) {
    ag->disp[i] = static_cast<char *>(cg_malloc(kNameW + 1, "kprof report"));
    short_name(kp->demangle, ag->raw[i], ag->disp[i], kNameW + 1);
  }
  /* the GPU's busy time: the union of all intervals */
  qsort(spans, ni, sizeof(span_t), cmp_span);
  uint64_t ca = 0, cb = 0;
  for (size_t i = 0; i < ni; i++) {
    if (i == 0 || spans[i].a > cb) {
      if (i) ag->busy_ns += (double)(cb - ca);
      ca = spans[i].a;
      cb = spans[i].b;
    } else if (spans[i].b > cb) {
      cb = spans[i].b;
    }
  }
  if (ni) ag->busy_ns += (double)(cb - ca);
  free(spans);
  /* groups: (region, name), then each region's groups slowest first */
  qsort(items, ni, sizeof(item_t), cmp_item);
  ag->groups = static_cast<group_t *>(cg_calloc(ni ? ni : 1, sizeof(group_t), "kprof report"));
  ag->reg = static_cast<rsum_t *>(cg_calloc((size_t)ag->nreg, sizeof(rsum_t), "kprof report"));
  for (size_t i = 0; i < ni; i++) {
    group_t *g = ag->ngroups ? &ag->groups[ag->ngroups - 1] : NULL;
    if (!g || g->region != items[i].region || g->name != items[i].name) {
      g = &ag->groups[ag->ngroups++];
      g->region = items[i].region;
      g->name = items[i].name;
    }
    g->calls++;
    g->ns += items[i].ns;
    ag->reg[items[i].region].calls++;
    ag->reg[items[i].region].ns += items[i].ns;
    ag->total_ns += items[i].ns;
  }
  ag->nrec = (long long)ni;
  free(items);
  qsort(ag->groups, ag->ngroups, sizeof(group_t), cmp_group);
  for (size_t i = ag->ngroups; i-- > 0;) {
    rsum_t *rs = &ag->reg[ag->groups[i].region];
    rs->g0 = i;
    rs->ng++;
  }
  ag->order = static_cast<int *>(cg_calloc((size_t)ag->nreg, sizeof(int), "kprof report"));
  for (int i = 1; i < ag->nreg; i++) { /* insertion sort: a few dozen regions */
    int j = i - 1;
    while (j > 0 && ag->reg[ag->order[j - 1]].ns < ag->reg[i].ns) {
      ag->order[j] = ag->order[j - 1];
      j--;
    }
    ag->order[j] = i;
  }
}

void agg_free(agg_t *ag) {
  for (size_t i = 0; i < ag->nnames; i++) {
    free(ag->raw[i]);
    free(ag->disp[i]);
  }
  free(ag->raw);
  free(ag->disp);
  free(ag->reg);
  free(ag->order);
  free(ag->groups);
}

/* The floor of a region in µs: the larger of its compute and its memory time at the peaks. */
double floor_us(const region_t *r, double tflops, double gbs) {
  const double c = r->flops / (tflops * 1e12), m = r->bytes / (gbs * 1e9);
  return 1e6 * (c > m ? c : m);
}

/* Under a region's row of the second table: its kernels, slowest first, numbers under the
 * region's columns and the name last. */
void print_kernels(const agg_t *ag, int reg, FILE *out) {
  const rsum_t *rs = &ag->reg[reg];
  double rest = 0;
  for (size_t k = 0; k < rs->ng; k++) {
    const group_t *g = &ag->groups[rs->g0 + k];
    if (k < (size_t)kShown)
      fprintf(out, "  %26s %8.1f %10.2f   %s\n", "", (double)g->calls / ag->steps,
              g->ns / ag->steps * 1e-3, ag->disp[g->name]);
    else
      rest += g->ns;
  }
  if (rs->ng > (size_t)kShown)
    fprintf(out, "  %26s %8s %10.2f   (%zu more kernels: see the JSON)\n", "", "",
            rest / ag->steps * 1e-3, rs->ng - (size_t)kShown);
}

/* The totals and how the records were mapped (after the region table). */
void print_totals(const cg_kprof_t *kp, const agg_t *ag, double step_ms, FILE *out) {
  const double us = 1e-3 / ag->steps, tot = ag->total_ns > 0 ? ag->total_ns : 1;
  fprintf(out, "# total per step: %.2f us of kernels and copies (%.1f of them; the sum of their "
          "durations), GPU busy %.2f us (the union of their intervals)", ag->total_ns * us,
          (double)ag->nrec / ag->steps, ag->busy_ns * us);
  if (step_ms > 0) {
    const double idle = 1e3 * step_ms - ag->busy_ns * us;
    fprintf(out, ", step %.2f us measured: %.2f us (%.1f%%) of it with no kernel or copy running",
            1e3 * step_ms, idle, 100.0 * idle / (1e3 * step_ms));
  }
  fprintf(out, "\n# mapping per step: %.1f records by graph node, %.1f by external correlation; "
          "unattributed %.1f created outside any region, %.1f of graph nodes never seen, %.1f "
          "launched outside any region; %.2f us unattributed (%.2f%%)\n",
          (double)ag->how[HOW_NODE] / ag->steps, (double)ag->how[HOW_CORR] / ag->steps,
          (double)ag->how[HOW_OUTSIDE] / ag->steps, (double)ag->how[HOW_UNKNOWN_NODE] / ag->steps,
          (double)ag->how[HOW_NONE] / ag->steps, ag->reg[0].ns * us, 100.0 * ag->reg[0].ns / tot);
  if (ag->dropped || ag->bad_records || ag->incomplete || ag->clone_errors || kp->query_errors ||
      kp->push_errors)
    fprintf(out, "# CUPTI trouble: %llu records dropped, %llu buffers unreadable, %lld records "
            "without timestamps, %llu clone ids unknown, %llu capture queries failed, %llu "
            "correlation pushes/pops failed\n", ag->dropped, ag->bad_records, ag->incomplete,
            ag->clone_errors, kp->query_errors, kp->push_errors);
}

/* Two tables: the regions, slowest first, with the totals right below them (one screen), then
 * each region again with its kernels. */
void print_table(const cg_kprof_t *kp, const agg_t *ag, const char *title, double step_ms,
                 double tflops, double gbs, FILE *out) {
  const double us = 1e-3 / ag->steps, tot = ag->total_ns > 0 ? ag->total_ns : 1;
  fprintf(out, "# kernels, %s: %.0f steps counted; CUPTI activity records (the GPU's own start "
          "and end of every kernel, memset and memcpy, graph replays included); per step; "
          "floors at %.0f TFLOP/s and %.0f GB/s\n", title, ag->steps, tflops, gbs);
  fprintf(out, "# %-26s %8s %10s %7s %9s %8s %8s %8s\n", "region", "kernels", "GPU us",
          "share", "floor us", "x floor", "TFLOP/s", "GB/s");
  for (int k = 0; k < ag->nreg - 1; k++) {
    const int i = ag->order[k];
    const region_t *r = &kp->reg[i];
    const rsum_t *rs = &ag->reg[i];
    const double t = rs->ns * us, fl = floor_us(r, tflops, gbs);
    char fs[16] = "-", xs[16] = "-", ts[16] = "-", bs[16] = "-";
    if (fl > 0) snprintf(fs, sizeof fs, "%.2f", fl);
    if (fl > 0 && t > 0) snprintf(xs, sizeof xs, "%.2f", t / fl);
    if (r->flops > 0 && t > 0) snprintf(ts, sizeof ts, "%.1f", r->flops / (t * 1e-6) / 1e12);
    if (r->bytes > 0 && t > 0) snprintf(bs, sizeof bs, "%.0f", r->bytes / (t * 1e-6) / 1e9);
    fprintf(out, "  %-26s %8.1f %10.2f %6.1f%% %9s %8s %8s %8s\n", r->name,
            (double)rs->calls / ag->steps, t, 100.0 * rs->ns / tot, fs, xs, ts, bs);
  }
  fprintf(out, "  %-26s %8.1f %10.2f %6.1f%%\n", kp->reg[0].name,
          (double)ag->reg[0].calls / ag->steps, ag->reg[0].ns * us, 100.0 * ag->reg[0].ns / tot);
  print_totals(kp, ag, step_ms, out);
  fprintf(out, "# kernels of each region, %s, per step (names demangled and shortened; the "
          "JSON has every kernel with its full symbol)\n", title);
  fprintf(out, "# %-26s %8s %10s   %s\n", "region / kernel", "calls", "GPU us", "kernel");
  for (int k = 0; k < ag->nreg; k++) {
    const int i = k < ag->nreg - 1 ? ag->order[k] : 0; /* "(unattributed)" last */
    if (!ag->reg[i].calls) continue;
    fprintf(out, "  %-26s %8.1f %10.2f\n", kp->reg[i].name, (double)ag->reg[i].calls / ag->steps,
            ag->reg[i].ns * us);
    print_kernels(ag, i, out);
  }
  fflush(out);
}

void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    const unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
}

double fin(double x) { return isfinite(x) ? x : 0.0; }

void json_kernels(FILE *f, const agg_t *ag, int reg) {
  const rsum_t *rs = &ag->reg[reg];
  fputc('[', f);
  for (size_t k = 0; k < rs->ng; k++) {
    const group_t *g = &ag->groups[rs->g0 + k];
    fprintf(f, "%s{\"name\": ", k ? ", " : "");
    json_str(f, ag->disp[g->name]);
    fprintf(f, ", \"symbol\": ");
    json_str(f, ag->raw[g->name]);
    fprintf(f, ", \"calls_per_step\": %.4f, \"us_per_step\": %.4f}",
            (double)g->calls / ag->steps, g->ns / ag->steps * 1e-3);
  }
  fputc(']', f);
}

void json_write(FILE *f, const cg_kprof_t *kp, const agg_t *ag, const char *title,
                double step_ms, double tflops, double gbs) {
  const double us = 1e-3 / ag->steps;
  fprintf(f, "{\"title\": ");
  json_str(f, title);
  fprintf(f, ", \"steps\": %.0f, \"step_ms\": %.6f, \"kernel_ms_per_step\": %.6f, "
          "\"busy_ms_per_step\": %.6f, \"peak_tflops\": %.3f, \"peak_gbs\": %.3f, \"regions\": [",
          ag->steps, fin(step_ms), fin(ag->total_ns * us * 1e-3), fin(ag->busy_ns * us * 1e-3),
          tflops, gbs);
  for (int k = 0; k < ag->nreg - 1; k++) {
    const int i = ag->order[k];
    const region_t *r = &kp->reg[i];
    fprintf(f, "%s{\"name\": ", k ? ", " : "");
    json_str(f, r->name);
    fprintf(f, ", \"flops\": %.6g, \"bytes\": %.6g, \"kernels_per_step\": %.4f, "
            "\"us_per_step\": %.4f, \"floor_us\": %.4f, \"kernels\": ", fin(r->flops),
            fin(r->bytes), (double)ag->reg[i].calls / ag->steps, ag->reg[i].ns * us,
            fin(floor_us(r, tflops, gbs)));
    json_kernels(f, ag, i);
    fputc('}', f);
  }
  fprintf(f, "], \"unattributed_us_per_step\": %.4f, \"unattributed_kernels\": ",
          ag->reg[0].ns * us);
  json_kernels(f, ag, 0);
  fprintf(f, ", \"records_per_step\": %.4f, \"by_graph_node_per_step\": %.4f, "
          "\"by_correlation_per_step\": %.4f, \"dropped_records\": %llu}\n",
          (double)ag->nrec / ag->steps, (double)ag->how[HOW_NODE] / ag->steps,
          (double)ag->how[HOW_CORR] / ag->steps, ag->dropped);
}

/* Writes the JSON through atomic_file.h: a temporary beside path, renamed over it; its mode
 * follows the umask like every other output. */
int json_save(const cg_kprof_t *kp, const agg_t *ag, const char *title, double step_ms,
              double tflops, double gbs, const char *path) {
  char err[1024];
  cg_afile_t *af = cg_afile_open(path, err, sizeof err);
  if (af) json_write(cg_afile_stream(af), kp, ag, title, step_ms, tflops, gbs);
  if (!af || cg_afile_commit(af, err, sizeof err)) {
    cg_log_warn("kprof: %s", err);
    return -1;
  }
  return 0;
}

}  // namespace

int cg_kprof_report(cg_kprof_t *kp, const char *title, double step_ms, double peak_tflops,
                    double peak_gbs, FILE *out, const char *json_path) {
  if (!kp) return 0;
  const double tf = peak_tflops > 0 ? peak_tflops : kPeakTflops;
  const double gb = peak_gbs > 0 ? peak_gbs : kPeakGbs;
  if (!title) title = "training step";
  agg_t ag;
  collect(kp, &ag);
  if (out) print_table(kp, &ag, title, step_ms, tf, gb, out);
  const int rc = json_path ? json_save(kp, &ag, title, step_ms, tf, gb, json_path) : 0;
  agg_free(&ag);
  return rc;
}

#endif /* CG_KPROF_HAVE_CUPTI */

/* ---- the per-layer table ----------------------------------------------------------------- */

void cg_kprof_print_layers(const cg_kprof_layers_t *t, FILE *out) {
  if (t->steps <= 0) return;
  const cg_kprof_layer_t *L = t->layers;
  const double n = (double)t->steps;
  double total = 0;
  for (int k = 0; k < t->nparts; k++) total += t->parts[k].ms;
  for (int i = 0; i < t->nlayers; i++) total += L[i].fwd_ms + L[i].bwd_ms;
  fprintf(out,
          "# per-layer GPU time, %s, batch %d, mean of %lld eager steps (events around each op; "
          "graphs off; each step enqueued whole behind a %.0f ms hold, so no launch gaps count "
          "and the img/s of this run mean nothing): %.3f ms per step\n",
          t->precision, t->batch, t->steps, t->hold_ms, total / n);
  fprintf(out, "# %-12s %-8s %10s %10s %10s %7s %12s %12s\n", "layer", "op", "fwd ms", "bwd ms",
          "total ms", "share", "GFLOP", "TFLOP/s");
  int *order = static_cast<int *>(cg_malloc(sizeof(int) * (size_t)t->nlayers, "layer order"));
  for (int i = 0; i < t->nlayers; i++) order[i] = i;
  for (int i = 0; i < t->nlayers; i++) /* insertion sort by total time, descending */
    for (int j = i; j > 0; j--) {
      double a = L[order[j]].fwd_ms + L[order[j]].bwd_ms;
      double c = L[order[j - 1]].fwd_ms + L[order[j - 1]].bwd_ms;
      if (a <= c) break;
      int tmp = order[j];
      order[j] = order[j - 1];
      order[j - 1] = tmp;
    }
  for (int k = 0; k < t->nlayers; k++) {
    const cg_kprof_layer_t *l = &L[order[k]];
    const double f = l->fwd_ms / n, bw = l->bwd_ms / n, gf = l->gflop;
    fprintf(out, "  %-12s %-8s %10.3f %10.3f %10.3f %6.1f%% %12.2f %12.1f\n", l->name, l->op, f,
            bw, f + bw, 100.0 * (f + bw) * n / total, gf, (f + bw) > 0 ? gf / (f + bw) : 0.0);
  }
  free(order);
  for (int k = 0; k < t->nparts; k++)
    fprintf(out, "  %-21s %10s %10s %10.3f %6.1f%%\n", t->parts[k].name, "", "",
            t->parts[k].ms / n, 100.0 * t->parts[k].ms / total);
  fflush(out);
}
