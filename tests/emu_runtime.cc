/* emu_runtime.cc: a stand-in for the CUDA runtime calls that the kernel files rebuilt for the
 * emulated device (tests/emu_kernels.h, emu_launch.py), the CUDA backend's host code
 * (backend_cuda.cu, conv.cu: test_step_emu) and the GPU tests run on them make, on host
 * memory: "device" memory is aligned_alloc (poisoned with NaN, as the tests' allocations are;
 * with the guard bytes of testutil_cuda.h there), copies are memcpy, events hold the host time
 * they were recorded at.
 *
 * Streams have three schedules (cg_emu_streams, or CG_EMU_STREAMS=lazy|early in the
 * environment):
 *  - eager (the default): every launch, copy or memset runs when it is issued, so the host's
 *    order is the device's;
 *  - lazy: work waits in its stream's queue until something needs it: a synchronisation of
 *    the stream, the device or an event recorded after it, a stream made to wait for such an
 *    event (cudaStreamWaitEvent) when that stream's work runs, a cudaFree. Work of two streams
 *    with no event between them then runs in the order least like the host's (the work a
 *    forked stream was given runs at the join, after what the first stream did meanwhile), so
 *    a missing join shows as a wrong result;
 *  - early (CG_EMU_STREAMS=early): lazy for the stream given the most work (the backend's
 *    compute stream), every other stream's work at once, after what its waits need: the work
 *    forked to a side stream runs before what the compute stream was given ahead of the fork
 *    unless the fork waits for it, so a missing fork shows.
 * A stream being captured (cudaStreamBeginCapture) keeps its work, and that of the streams
 * forked off it (made to wait for an event recorded in the capture), as the graph's nodes in
 * order with their streams and events; other streams' work runs as usual meanwhile;
 * cudaGraphLaunch issues them again on those streams (the captured one's on the launch's
 * stream) under the schedule in force, and joins the others back into the launch's stream.
 * As CUDA, a capture fails at its end when a forked stream was not joined back (its last item
 * a record the captured stream waits for), or when a call was refused during it (a wait for an
 * event recorded outside it, allocation, freeing, a synchronisation or a synchronous copy):
 * the capture is invalidated. Only external records (cudaEventRecordExternal) record their
 * event at a replay, so such an event must outlive the graph's launches, as on a GPU. Not
 * modelled: blocking streams under the lazy schedule (refused), waits with flags, a graph
 * launched inside a capture.
 *
 * One device, an H100/H200-like "Emulated device" (sm_90, 132 SMs, 227 KB of shared memory a
 * block). Linked instead of libcudart and testutil_cuda.c. */
#include "emu_kernels.h" /* g_faults, emu_enqueue; CUDA headers */

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <vector>

extern "C" {
#include "testutil.h"
#include "testutil_cuda.h"
}

extern "C" {
/* The schedule of every kernel file's emulator (emu_cuda.h): 0 warps in lockstep with cp.async
 * copies landing as late as allowed, 1 warps skewed with copies landing at once. */
void cg_emu_schedule(int skewed) { emu_schedule(skewed != 0); }

cudaError_t cudaGetLastError(void) { return g_faults ? cudaErrorUnknown : cudaSuccess; }
const char *cudaGetErrorName(cudaError_t rc) {
  switch (rc) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureUnjoined: return "cudaErrorStreamCaptureUnjoined";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown (a fault of the emulated device)";
    default: return "another cudaError_t (emulated)";
  }
}
const char *cudaGetErrorString(cudaError_t rc) { return cudaGetErrorName(rc); }
}  // extern "C"

/* ---- streams, events and graphs ---- */
namespace {

struct emu_stream_t;
struct emu_event_t {
  double ms = -1.0;               /* host time the last record ran, -1 before */
  emu_stream_t *st = nullptr;     /* the last record's stream and position (lazy) */
  uint64_t seq = 0;
  uint64_t capture = 0;           /* the capture its last record went into (its id), or 0 */
};
/* An item of a stream or a captured graph: work, an event record, or a wait for the record
 * of an event that was current when the wait was issued (st, seq). */
struct emu_item_t {
  enum { WORK, RECORD, WAIT } kind;
  std::function<void()> fn;
  emu_event_t *ev = nullptr;
  emu_stream_t *st = nullptr;
  uint64_t seq = 0;
  cudaStream_t stream = nullptr; /* captured items: where it was issued */
  bool external = false;         /* a record: cudaEventRecordExternal */
};
struct emu_stream_t {
  std::deque<emu_item_t> q; /* issued, not yet run (lazy) */
  uint64_t issued = 0, ran = 0;
};
struct emu_graph_t {
  uint64_t id = 0;                     /* of the capture that made it: 1, 2, ... */
  cudaStream_t origin = nullptr;       /* the captured stream */
  std::vector<cudaStream_t> streams;   /* it and those forked off it (captured too) */
  std::vector<emu_item_t> items;
  std::map<emu_event_t *, emu_event_t> own; /* the graph's copies of its ordering events */
  bool invalid = false;                /* a call CUDA refuses was made during the capture */
};

bool g_lazy, g_early, g_lazy_read; /* g_early: lazy but for the busiest stream only */
uint64_t g_captures; /* captures begun */
std::map<cudaStream_t, emu_stream_t> g_streams; /* NULL (the legacy stream) included */
emu_graph_t *g_capture;                          /* the graph being captured, or NULL */

bool lazy() {
  if (!g_lazy_read) {
    const char *v = getenv("CG_EMU_STREAMS");
    g_early = v && !strcmp(v, "early");
    g_lazy = g_early || (v && !strcmp(v, "lazy"));
    g_lazy_read = true;
  }
  return g_lazy;
}
double now_ms(void) {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}
void flush(emu_stream_t *st, uint64_t upto);
/* Runs an item (its stream's turn has come). */
void run_item(emu_item_t &it) {
  switch (it.kind) {
    case emu_item_t::WORK: it.fn(); break;
    case emu_item_t::RECORD: it.ev->ms = now_ms(); break;
    case emu_item_t::WAIT:
      if (it.st) flush(it.st, it.seq);
      break;
  }
}
/* Runs st's queue until upto items of it have run. */
void flush(emu_stream_t *st, uint64_t upto) {
  while (st->ran < upto && !st->q.empty()) {
    emu_item_t it = std::move(st->q.front());
    st->q.pop_front();
    st->ran++;
    run_item(it);
  }
}
void drain(cudaStream_t s) { flush(&g_streams[s], g_streams[s].issued); }
void flush_all() {
  for (bool more = true; more;) {
    more = false;
    for (auto &kv : g_streams)
      if (!kv.second.q.empty()) {
        drain(kv.first);
        more = true;
      }
  }
}
bool any_capture() { return g_capture != nullptr; }
/* A refusal during a capture invalidates it, as CUDA's do: EndCapture then gives no graph. */
cudaError_t refuse(cudaError_t rc) {
  if (g_capture) g_capture->invalid = true;
  return rc;
}
/* Issues it on stream s (not captured): queued (lazy) or run now; a record or wait is
 * bound here to the stream's position. */
void issue(cudaStream_t s, emu_item_t it) {
  emu_stream_t *st = &g_streams[s];
  if (it.kind == emu_item_t::WAIT) { /* the event's current record */
    it.st = it.ev->st;
    it.seq = it.ev->seq;
  }
  st->issued++;
  if (it.kind == emu_item_t::RECORD) {
    it.ev->st = st;
    it.ev->seq = st->issued;
    it.ev->capture = 0;
  }
  if (lazy()) {
    st->q.push_back(std::move(it));
    if (g_early) { /* every stream but the one given the most work runs at once */
      const emu_stream_t *busiest = st;
      for (const auto &kv : g_streams)
        if (kv.second.issued > busiest->issued) busiest = &kv.second;
      if (st != busiest) flush(st, st->issued);
    }
  } else {
    st->ran++;
    run_item(it);
  }
}
bool captured(cudaStream_t s) {
  return g_capture &&
         std::find(g_capture->streams.begin(), g_capture->streams.end(), s) !=
             g_capture->streams.end();
}
/* Issues it on s, or keeps it in the graph being captured when s is captured: the captured
 * stream, or one made to wait for an event recorded in the capture (a fork), from then on.
 * Returns an error where CUDA refuses: a captured stream waiting for an event recorded outside
 * the capture (cudaErrorStreamCaptureIsolation). */
cudaError_t put(cudaStream_t s, emu_item_t it) {
  const uint64_t cap = g_capture ? g_capture->id : 0;
  if (cap && !captured(s) && it.kind == emu_item_t::WAIT && it.ev->capture == cap)
    g_capture->streams.push_back(s);
  if (captured(s)) {
    if (it.kind == emu_item_t::WAIT && it.ev->capture != cap)
      return refuse(cudaErrorStreamCaptureIsolation);
    if (it.kind == emu_item_t::RECORD) it.ev->capture = cap;
    it.stream = s;
    g_capture->items.push_back(std::move(it));
  } else {
    issue(s, std::move(it));
  }
  return cudaSuccess;
}

}  // namespace

void emu_enqueue(cudaStream_t s, std::function<void()> fn) {
  (void)put(s, emu_item_t{emu_item_t::WORK, std::move(fn)});
}
bool emu_captured(cudaStream_t s) { return captured(s); }

extern "C" {
void cg_emu_streams(int schedule) { /* 0 eager, 1 lazy, 2 early */
  flush_all();
  g_lazy = schedule != 0;
  g_early = schedule == 2;
  g_lazy_read = true;
}

cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t s) {
  emu_enqueue(s, [d, v, n] { memset(d, v, n); });
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *d, const void *src, size_t n, cudaMemcpyKind,
                            cudaStream_t s) {
  emu_enqueue(s, [d, src, n] { memcpy(d, src, n); });
  return cudaSuccess;
}
/* The "synchronous" copies and memsets, on the legacy stream, whose work no stream of the
 * backend (all non-blocking) waits for, as on a GPU. A copy to the host returns when done; one
 * from the host when the source has been read (the device's copy of it may still be queued);
 * device to device and memsets are queued like any work. */
cudaError_t cudaMemcpy(void *d, const void *src, size_t n, cudaMemcpyKind kind) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported);
  if (kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyHostToHost) {
    emu_enqueue(nullptr, [d, src, n] { memcpy(d, src, n); });
    drain(nullptr);
  } else if (kind == cudaMemcpyHostToDevice) {
    auto copy = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char *>(src), static_cast<const unsigned char *>(src) + n);
    emu_enqueue(nullptr, [d, copy, n] { memcpy(d, copy->data(), n); });
  } else if (kind == cudaMemcpyDeviceToDevice) {
    emu_enqueue(nullptr, [d, src, n] { memcpy(d, src, n); });
  } else {
    return cudaErrorInvalidMemcpyDirection; /* cudaMemcpyDefault: not used, not emulated */
  }
  return cudaGetLastError();
}
cudaError_t cudaMemset(void *d, int v, size_t n) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported);
  emu_enqueue(nullptr, [d, v, n] { memset(d, v, n); });
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported);
  /* a blocking stream orders itself with the legacy one, which the lazy schedule does not
   * model: refused there (the backend's streams are all non-blocking) */
  if (lazy() && !(flags & cudaStreamNonBlocking)) {
    fprintf(stderr, "emulated device: a blocking stream under CG_EMU_STREAMS=lazy\n");
    return cudaErrorNotSupported;
  }
  /* distinct, never NULL, never reused (events may name a destroyed stream's queue) */
  *s = reinterpret_cast<cudaStream_t>(new int(0));
  g_streams[*s];
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) { /* its work still runs, as CUDA's does */
  drain(s);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (captured(s)) return refuse(cudaErrorStreamCaptureUnsupported);
  drain(s);
  return cudaGetLastError();
}
cudaError_t cudaDeviceSynchronize(void) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported);
  flush_all();
  return cudaGetLastError();
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int) {
  emu_item_t it{emu_item_t::WAIT};
  it.ev = reinterpret_cast<emu_event_t *>(e);
  return put(s, std::move(it));
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
  *st = !captured(s)            ? cudaStreamCaptureStatusNone
        : g_capture->invalid    ? cudaStreamCaptureStatusInvalidated
                                : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = reinterpret_cast<cudaEvent_t>(new emu_event_t);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { /* released once its record has run, as CUDA's */
  emu_event_t *ev = reinterpret_cast<emu_event_t *>(e);
  if (ev->capture) return cudaErrorStreamCaptureUnsupported; /* graphs name it */
  flush_all(); /* any of its records may still be queued (lazy) */
  delete ev;
  return cudaSuccess;
}
/* In a capture a record orders the streams of the graph (it forks and joins them); only the
 * external kind (cudaEventRecordExternal) is a node that records the event at each replay. */
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s, unsigned int flags) {
  emu_item_t it{emu_item_t::RECORD};
  it.ev = reinterpret_cast<emu_event_t *>(e);
  it.external = (flags & cudaEventRecordExternal) != 0;
  return put(s, std::move(it));
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  return cudaEventRecordWithFlags(e, s, 0);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  emu_event_t *ev = reinterpret_cast<emu_event_t *>(e);
  if (ev->st) flush(ev->st, ev->seq);
  return cudaGetLastError();
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
  const emu_event_t *ea = reinterpret_cast<emu_event_t *>(a);
  const emu_event_t *eb = reinterpret_cast<emu_event_t *>(b);
  if (ea->ms < 0 || eb->ms < 0) return cudaErrorInvalidResourceHandle;
  if ((ea->st && ea->st->ran < ea->seq) || (eb->st && eb->st->ran < eb->seq))
    return cudaErrorNotReady; /* recorded, not yet reached */
  *ms = (float)(eb->ms - ea->ms);
  return cudaSuccess;
}
cudaError_t cudaPeekAtLastError(void) { return cudaGetLastError(); }

/* ---- the device ---- */
cudaError_t cudaGetDeviceCount(int *n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int *d) {
  *d = 0;
  return cudaSuccess;
}
enum : size_t { kEmuMem = (size_t)141 << 30 };
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "Emulated device (tests/emu_cuda.h)");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = kEmuSms;
  p->totalGlobalMem = kEmuMem;
  p->sharedMemPerBlock = 49152;
  p->sharedMemPerBlockOptin = kEmuSmemBlock;
  p->sharedMemPerMultiprocessor = kEmuSmemSm;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsPerMultiProcessor = 2048;
  p->warpSize = 32;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = kEmuSms; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)kEmuSmemBlock; return cudaSuccess;
    default: return cudaErrorInvalidValue; /* one the emulation does not know: say so */
  }
}

/* ---- memory: "device" memory is host memory, counted for cudaMemGetInfo ---- */
static size_t g_emu_used;
cudaError_t cudaMalloc(void **p, size_t n) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported); /* unsafe in a capture */
  const size_t size = (n + 255) / 256 * 256 + 256;
  unsigned char *q = static_cast<unsigned char *>(aligned_alloc(256, size));
  if (!q) return cudaErrorMemoryAllocation;
  memset(q, 0xFF, size); /* junk, as fresh device memory is: NaN */
  memcpy(q, &size, sizeof size); /* the size in a header of 256 bytes, for cudaFree */
  g_emu_used += size;
  *p = q + 256;
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  if (any_capture()) return refuse(cudaErrorStreamCaptureUnsupported); /* unsafe in a capture */
  if (!p) return cudaSuccess;
  flush_all(); /* cudaFree waits for the device, as CUDA's does */
  unsigned char *q = static_cast<unsigned char *>(p) - 256;
  size_t size;
  memcpy(&size, q, sizeof size);
  g_emu_used -= size;
  free(q);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
  *total_b = kEmuMem;
  *free_b = kEmuMem - g_emu_used;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned int) {
  *p = malloc(n ? n : 1);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFreeHost(void *p) {
  free(p);
  return cudaSuccess;
}
/* Graphs: one stream captured at a time (with the streams forked off it). */
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (g_capture) return cudaErrorIllegalState;
  g_capture = new emu_graph_t;
  g_capture->id = ++g_captures;
  g_capture->origin = s;
  g_capture->streams.push_back(s);
  return cudaSuccess;
}
/* Every stream forked off the captured one must have been joined back: its last item a
 * record that the captured stream waited for afterwards (else cudaErrorStreamCaptureUnjoined,
 * and no graph, as CUDA does). */
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
  if (!g_capture || s != g_capture->origin) return cudaErrorIllegalState;
  emu_graph_t *cg = g_capture;
  g_capture = nullptr;
  for (const emu_item_t &it : cg->items) /* its events are free again */
    if (it.kind == emu_item_t::RECORD) it.ev->capture = 0;
  cudaError_t rc = cg->invalid ? cudaErrorStreamCaptureInvalidated : cudaSuccess;
  for (const cudaStream_t o : cg->streams) {
    if (o == cg->origin || rc != cudaSuccess) continue;
    size_t last = 0;
    for (size_t i = 0; i < cg->items.size(); i++)
      if (cg->items[i].stream == o) last = i;
    const emu_item_t &rec = cg->items[last];
    bool joined = false;
    for (size_t i = last + 1; i < cg->items.size() && rec.kind == emu_item_t::RECORD; i++)
      joined = joined || (cg->items[i].stream == cg->origin &&
                          cg->items[i].kind == emu_item_t::WAIT && cg->items[i].ev == rec.ev);
    if (!joined) rc = cudaErrorStreamCaptureUnjoined;
  }
  if (rc != cudaSuccess) {
    delete cg;
    cg = nullptr;
  }
  *g = reinterpret_cast<cudaGraph_t>(cg);
  return rc;
}
cudaError_t cudaStreamGetCaptureInfo(cudaStream_t s, cudaStreamCaptureStatus *st,
                                     unsigned long long *id, cudaGraph_t *g,
                                     const cudaGraphNode_t **deps, const cudaGraphEdgeData **edges,
                                     size_t *ndeps) {
  *st = !captured(s)            ? cudaStreamCaptureStatusNone
        : g_capture->invalid    ? cudaStreamCaptureStatusInvalidated
                                : cudaStreamCaptureStatusActive;
  if (id) *id = g_capture ? g_capture->id : 0;
  if (g) *g = reinterpret_cast<cudaGraph_t>(g_capture);
  if (deps) *deps = nullptr;
  if (edges) *edges = nullptr;
  if (ndeps) *ndeps = 0;
  return cudaSuccess;
}
/* A graph's nodes are its work items in order; a node handle is its position + 1. */
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n) {
  const emu_graph_t *v = reinterpret_cast<const emu_graph_t *>(g);
  size_t k = 0;
  for (const emu_item_t &it : v->items) {
    if (it.kind != emu_item_t::WORK) continue;
    if (nodes && k < *n) nodes[k] = reinterpret_cast<cudaGraphNode_t>(k + 1);
    k++;
  }
  *n = k;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *ge, cudaGraph_t g, unsigned long long) {
  *ge = reinterpret_cast<cudaGraphExec_t>(new emu_graph_t(*reinterpret_cast<emu_graph_t *>(g)));
  return cudaSuccess;
}
/* The nodes issued again on their streams, the captured one's on s: the graph's own copy of
 * each event its plain records and waits order the streams by (the events themselves are not
 * recorded), the event itself for an external record; then every other stream they used
 * joined into s (the launch is done when all its nodes are). */
cudaError_t cudaGraphLaunch(cudaGraphExec_t ge, cudaStream_t s) {
  if (any_capture()) return cudaErrorStreamCaptureUnsupported;
  emu_graph_t *g = reinterpret_cast<emu_graph_t *>(ge);
  std::vector<cudaStream_t> others;
  for (const emu_item_t &it0 : g->items) {
    const cudaStream_t on = it0.stream == g->origin ? s : it0.stream;
    if (on != s && std::find(others.begin(), others.end(), on) == others.end())
      others.push_back(on);
    if (it0.kind == emu_item_t::RECORD && it0.external) issue(on, it0); /* the node */
    emu_item_t it = it0;
    if (it.kind != emu_item_t::WORK) it.ev = &g->own[it0.ev]; /* the ordering */
    issue(on, it);
  }
  for (cudaStream_t o : others) { /* one event serves: a wait binds to its record at issue */
    static emu_event_t join;
    emu_item_t rec{emu_item_t::RECORD};
    rec.ev = &join;
    issue(o, rec);
    emu_item_t wait{emu_item_t::WAIT};
    wait.ev = &join;
    issue(s, wait);
  }
  return g_faults ? cudaErrorUnknown : cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t ge) {
  flush_all(); /* its replayed items may still be queued (lazy): they name its events */
  delete reinterpret_cast<emu_graph_t *>(ge);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
  delete reinterpret_cast<emu_graph_t *>(g);
  return cudaSuccess;
}

int cg_test_need_gpu(void) { return 0; }
int cg_test_gpu_begin(const char *name, cudaStream_t *s, uint64_t *seed) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  *s = NULL;
  *seed = cg_test_seed();
  printf("%s on the emulated device (tests/emu_cuda.h), seed %llu\n", name,
         (unsigned long long)*seed);
  return 0;
}
void *cg_test_dnew(size_t bytes, cudaStream_t) {
  const size_t n = (bytes + CG_TEST_GUARD + 255) / 256 * 256;
  void *p = aligned_alloc(256, n);
  if (!p) abort();
  memset(p, 0xFF, n); /* as on the device: NaN everywhere, the guard included */
  return p;
}
/* The tests' helpers synchronise their stream (testutil_cuda.c): here the whole device. */
void cg_test_dfree(void *d, cudaStream_t) {
  flush_all();
  free(d);
}
void cg_test_dsync(cudaStream_t) { flush_all(); }
void cg_test_dpoison(void *d, size_t bytes, cudaStream_t) {
  flush_all();
  memset(d, 0xFF, bytes);
}
void cg_test_hput(void *d, const void *h, size_t bytes, cudaStream_t) {
  flush_all();
  memcpy(d, h, bytes);
}
void cg_test_hget(void *h, const void *d, size_t bytes, cudaStream_t) {
  flush_all();
  memcpy(h, d, bytes);
}
void cg_test_guard_check(const char *name, const void *d, size_t bytes, cudaStream_t) {
  flush_all();
  const unsigned char *g = static_cast<const unsigned char *>(d) + bytes;
  size_t bad = 0;
  for (int i = 0; i < CG_TEST_GUARD; i++) bad += g[i] != 0xFF;
  CG_TEST_CHECK(bad == 0, "%s: %zu guard bytes after the buffer were written", name, bad);
}

}
