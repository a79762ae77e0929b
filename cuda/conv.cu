/* conv.cu: cuDNN convolutions for the CUDA backend (see conv.h for the contract).
 *
 * Design:
 *  - Everything is expressed through the three cuDNN operations of one convolution, on a
 *    fixed set of descriptors: the convolution input "a", its output "b" and the filter.
 *      COP_FWD         b = conv(a, w)
 *      COP_BWD_DATA    da = conv^T(db, w)
 *      COP_BWD_FILTER  dw = grad(a, db)
 *    A plain layer has a = x, b = y. The transposed convolution is the same thing read
 *    backwards: a = y (2h x 2w x cout), b = x (h x w x cin), filter K = cin, C = cout; its
 *    forward is COP_BWD_DATA, its dx is COP_FWD, its dW is COP_BWD_FILTER with a = dy, b = x.
 *  - One convolution descriptor per operation, because the math type that goes with the
 *    chosen algorithm lives in the descriptor and the three choices may differ.
 *  - Algorithms are timed once per shape with cudnnFind*Ex on the caller's real buffers (the
 *    pointers' alignment then matches the runs) and the fastest successful one is kept. For
 *    fp32 without TF32 only CUDNN_FMA_MATH results are accepted, so no result silently uses
 *    TF32; with determinism asked for, only CUDNN_DETERMINISTIC ones.
 *  - Then the same operation through the graph API (conv_graph.h): its ranked engine
 *    configurations are timed the same way (one warm-up, median of three runs, on the real
 *    buffers) against the legacy winner, and the fastest is kept; within 2% the smaller
 *    workspace wins. The legacy algorithm stays selected too: an accumulating backward-data
 *    (beta 1) always takes it, as the graph plans are built for beta 0. CG_CONV_API=legacy|graph
 *    restricts the choice to one side (experiments, tests); cg_conv_ctx_set_api does the same.
 *  - The cache key names the device, the cuDNN version, the operation and the full shape, so
 *    one file can serve several machines; a cached choice that cuDNN no longer accepts is
 *    searched again. The file is "key = L algo math" or "key = G candidate algo math" lines,
 *    rewritten atomically (the candidate is the position in the graph's heuristic list, which
 *    is fixed for one cuDNN version, device and shape).
 *  - alpha/beta are float: the compute type is always CUDNN_DATA_FLOAT. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_fp16.h>

extern "C" {
#include "atomic_file.h"
}
#include "conv.h"
#include "conv_graph.h"
#include "fprop.h"
#include "kernels.h"
#include "upconv.h"
#include "wgrad.h"

namespace {

enum { COP_FWD = 0, COP_BWD_DATA = 1, COP_BWD_FILTER = 2, COP_N = 3 };
const char *const kCopName[COP_N] = {"fwd", "bwd_data", "bwd_filter"};
const int kCopAlgos[COP_N] = {CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                              CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                              CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};
enum { kMaxAlgos = 8 }; /* >= every count above */

enum { kMaxCand = 192 };   /* graph candidates per operation (heuristics + the knob sweep) */
enum { kMaxHeur = 48 };    /* of them from the heuristics (modes A and B, the fallback list) */
enum { kSweepTop = 4, kSweepMax = 96 }; /* knob sweep: of the best heuristic engines, at most */

struct entry_t {
  char key[256];
  int graph; /* candidate index in the graph's list, -1: the legacy algorithm, -2: our own
                weight-gradient kernel (wgrad.h), -3: our own 3x3 kernel (fprop.h), -4: our
                own upconv kernels (upconv.h) */
  int algo;  /* legacy algorithm, -1 when none was usable */
  int math;
  int mt;    /* graph -3: the pixels a warp of our 3x3 kernel computes, in 16s (fprop.h; 0: 2) */
};

/* The part of a cudnn*AlgoPerf_t this file uses (the three types have the same fields). */
struct perf_t {
  int algo;
  cudnnStatus_t status;
  float time;
  size_t memory;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};

template <typename P> int copy_perf(const P *p, int n, perf_t *out) {
  for (int i = 0; i < n; i++) {
    out[i].algo = (int)p[i].algo;
    out[i].status = p[i].status;
    out[i].time = p[i].time;
    out[i].memory = p[i].memory;
    out[i].determinism = p[i].determinism;
    out[i].math = p[i].mathType;
  }
  return n;
}

const char *dt_name(cg_dtype_t dt) {
  switch (dt) {
    case CG_DT_F32: return "f32";
    case CG_DT_BF16: return "bf16";
    case CG_DT_F16: return "f16";
  }
  return "?";
}

}  // namespace

struct cg_conv_ctx {
  int api;         /* CG_CONV_API_* */
  double graph_budget_s; /* graph candidates of one operation: no new one after this long */
  int verbose;           /* CG_CONV_VERBOSE=1: one line per searched layer on stderr */
  int find_passes; /* cudnnFind passes per op; only the last one's timings count (CG_CONV_FIND) */
  float sweep_ms;  /* operations slower than this get the knob sweep (CG_CONV_SWEEP_MS; <0 off) */
  cudnnHandle_t h;
  int det;
  char *path;      /* NULL: memory only */
  char dev[128];   /* device identity for the keys */
  entry_t *e;
  int n, cap;
  int dirty;
};

struct cg_conv {
  cg_conv_shape_t shape;
  cudnnDataType_t dtype;
  cudnnMathType_t base_math;
  cudnnTensorDescriptor_t a, b;
  cudnnFilterDescriptor_t wd;
  cudnnConvolutionDescriptor_t cd[COP_N];
  int need[COP_N];
  int selected[COP_N];
  int algo[COP_N];
  cudnnMathType_t math[COP_N];
  size_t ws[COP_N];         /* of what runs for beta 0: the graph plan if chosen, else legacy */
  size_t ws_legacy[COP_N];
  int have_legacy[COP_N];
  cg_cgraph_t *g[COP_N];    /* the chosen graph plan, or NULL */
  float ms[COP_N];          /* measured at selection (-1: from the cache) */
  float ms_legacy[COP_N];   /* the legacy algorithm's time at selection, -1 if not timed */
  cg_cgraph_t *gf;          /* the forward fused with bias (+ ReLU), or NULL */
  size_t ws_fused;
  float ms_fused, ms_split; /* at selection: fused, and convolution + cg_k_bias_act_fwd */
  cg_cgraph_t *gd;          /* the input gradient fused with the ReLU backward of x, or NULL */
  size_t ws_drelu;
  float ms_drelu, ms_unfused; /* at selection: fused, and plain dx + the mask pass it saves */
  int custom;               /* COP_BWD_FILTER runs wgrad.h's kernel */
  cg_wgrad_shape_t wsh;     /* its shape */
  float ms_custom, err_custom; /* at selection: its time, and its error against cuDNN's */
  /* our 3x3 kernel (fprop.h): for COP_FWD / COP_BWD_DATA of a plain layer (fp[cop]), the
   * forward with its bias (+ ReLU) (fp_fused, in place of gf) and the input gradient masked by
   * the ReLU of x (fp_drelu, in place of gd); the shapes as run (accum set at each call) */
  int fp[COP_N], fp_fused, fp_drelu;
  cg_fprop_shape_t fsh[COP_N], fsh_fused, fsh_drelu;
  float ms_fp[COP_N], err_fp[COP_N]; /* at selection: its time, its error against cuDNN's */
  /* our upconv kernels (upconv.h): for cuDNN operation cop of an upconv (up[cop]), and the
   * layer's forward with its bias (+ ReLU) (up_fused); the shapes as run (accum set at each
   * call) */
  int up[COP_N], up_fused;
  cg_upconv_shape_t ush[COP_N], ush_fused;
  float ms_up[COP_N], err_up[COP_N]; /* at selection: time, error against the reference */
};

namespace {

bool custom_shape(const cg_conv_t *c, cg_wgrad_shape_t *w); /* our dW kernel's shape, below */
bool up_shape(const cg_conv_t *c, int cop, int bias, cg_upconv_shape_t *u); /* upconv.h's */
cudnnStatus_t run_up(const cg_upconv_shape_t *u, int accum, const void *in0, const void *in1,
                     const float *bias, void *out, float *db, void *ws, size_t wsb,
                     cudaStream_t s);
bool fprop_shape(const cg_conv_t *c, int cop, int bias, int relu, int mask,
                 cg_fprop_shape_t *f); /* our 3x3 kernel's, below */
cudnnStatus_t run_fprop(const cg_fprop_shape_t *f, int accum, const void *x, const void *w,
                        const float *bias, const void *m, void *y, cudaStream_t s);

/* The cuDNN operation behind a layer operation (see the design note above). */
int cop_of(const cg_conv_t *c, int layer_op) {
  const bool up = c->shape.kind == CG_CONV_UP;
  switch (layer_op) {
    case CG_CONV_OP_FWD: return up ? COP_BWD_DATA : COP_FWD;
    case CG_CONV_OP_BWD_DATA: return up ? COP_FWD : COP_BWD_DATA;
    case CG_CONV_OP_BWD_FILTER: return COP_BWD_FILTER;
  }
  CG_FATAL("bad layer conv op %d", layer_op);
}

/* Operands in cuDNN terms. FWD: in0 = a, in1 = w, out = b. BWD_DATA: in0 = db, in1 = w,
 * out = da. BWD_FILTER: in0 = a, in1 = db, out = dw. */
cudnnStatus_t run_cop(cudnnHandle_t h, const cg_conv_t *c, int cop, const void *in0,
                      const void *in1, void *out, float beta, void *ws, size_t wsb) {
  const float one = 1.0f;
  switch (cop) {
    case COP_FWD:
      return cudnnConvolutionForward(h, &one, c->a, in0, c->wd, in1, c->cd[COP_FWD],
                                     (cudnnConvolutionFwdAlgo_t)c->algo[COP_FWD], ws, wsb, &beta,
                                     c->b, out);
    case COP_BWD_DATA:
      return cudnnConvolutionBackwardData(h, &one, c->wd, in1, c->b, in0, c->cd[COP_BWD_DATA],
                                          (cudnnConvolutionBwdDataAlgo_t)c->algo[COP_BWD_DATA], ws,
                                          wsb, &beta, c->a, out);
    case COP_BWD_FILTER:
      return cudnnConvolutionBackwardFilter(
          h, &one, c->a, in0, c->b, in1, c->cd[COP_BWD_FILTER],
          (cudnnConvolutionBwdFilterAlgo_t)c->algo[COP_BWD_FILTER], ws, wsb, &beta, c->wd, out);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

/* Times every algorithm of cop on the operands (as run_cop); results sorted fastest first. */
cudnnStatus_t find_cop(cudnnHandle_t h, const cg_conv_t *c, int cop, const void *in0,
                       const void *in1, void *out, void *ws, size_t wsb, perf_t *res, int *nres) {
  int got = 0;
  cudnnStatus_t st = CUDNN_STATUS_BAD_PARAM;
  *nres = 0;
  switch (cop) {
    case COP_FWD: {
      cudnnConvolutionFwdAlgoPerf_t p[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      st = cudnnFindConvolutionForwardAlgorithmEx(h, c->a, in0, c->wd, in1, c->cd[cop], c->b, out,
                                                  CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, p, ws,
                                                  wsb);
      if (st == CUDNN_STATUS_SUCCESS) *nres = copy_perf(p, got, res);
    } break;
    case COP_BWD_DATA: {
      cudnnConvolutionBwdDataAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      st = cudnnFindConvolutionBackwardDataAlgorithmEx(h, c->wd, in1, c->b, in0, c->cd[cop], c->a,
                                                       out, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                                                       &got, p, ws, wsb);
      if (st == CUDNN_STATUS_SUCCESS) *nres = copy_perf(p, got, res);
    } break;
    case COP_BWD_FILTER: {
      cudnnConvolutionBwdFilterAlgoPerf_t p[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      st = cudnnFindConvolutionBackwardFilterAlgorithmEx(
          h, c->a, in0, c->b, in1, c->cd[cop], c->wd, out,
          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, p, ws, wsb);
      if (st == CUDNN_STATUS_SUCCESS) *nres = copy_perf(p, got, res);
    } break;
  }
  return st;
}

/* Workspace of algo for cop with the descriptor's current math type. */
cudnnStatus_t ws_cop(cudnnHandle_t h, const cg_conv_t *c, int cop, int algo, size_t *bytes) {
  *bytes = 0;
  switch (cop) {
    case COP_FWD:
      return cudnnGetConvolutionForwardWorkspaceSize(h, c->a, c->wd, c->cd[cop], c->b,
                                                     (cudnnConvolutionFwdAlgo_t)algo, bytes);
    case COP_BWD_DATA:
      return cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, c->wd, c->b, c->cd[cop], c->a, (cudnnConvolutionBwdDataAlgo_t)algo, bytes);
    case COP_BWD_FILTER:
      return cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, c->a, c->b, c->cd[cop], c->wd, (cudnnConvolutionBwdFilterAlgo_t)algo, bytes);
  }
  return CUDNN_STATUS_BAD_PARAM;
}

/* CG_CONV_WGRAD / CG_CONV_FPROP / CG_CONV_UPCONV = force (tests): our kernel is used wherever
 * it handles the shape and agrees with the reference, however fast cuDNN is, so a step test
 * runs it. */
bool forced(const char *var) {
  const char *v = getenv(var);
  return v && !strcmp(v, "force");
}

/* CG_CONV_WGRAD / CG_CONV_FPROP / CG_CONV_UPCONV = off: our kernel is never a candidate. */
bool switched_off(const char *var) {
  const char *v = getenv(var);
  return v && !strcmp(v, "off");
}

/* cudaError_t to cudnnStatus_t (our kernels' launchers report the former). */
cudnnStatus_t st_of(cudaError_t rc) {
  return rc == cudaSuccess ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_EXECUTION_FAILED;
}

/* The key's tag of our kernels under the switch var: on, off ("off") or forced ("force"). */
const char *tag3(const char *var, const char *on, const char *off, const char *force) {
  return forced(var) ? force : switched_off(var) ? off : on;
}

/* op: kCopName[cop], or "fwd_fused" with the bias alignment (the fusion decision). */
void make_key(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const char *op, char *key, size_t len) {
  const cg_conv_shape_t *s = &c->shape;
  /* what the search could choose from is part of the key: an experiment with a narrower
   * search must not reuse a wider one's choice */
  const bool plain3 = s->kind == CG_CONV_PLAIN && s->k == 3 && s->dt != CG_DT_F32;
  const bool up16 = s->kind == CG_CONV_UP && s->dt != CG_DT_F32;
  /* the version of our kernels that could take the operation, and their switch: our upconv
   * kernels for every operation of a bf16/fp16 upconv; else our dW kernel for the weight
   * gradient, our 3x3 kernel for the other operations and the fusions of a plain bf16/fp16
   * 3x3 layer. A changed kernel is timed and checked anew. */
  char api[48];
  snprintf(api, sizeof api, "%s%s%s",
           ctx->api == CG_CONV_API_LEGACY ? "-legacy" : ctx->api == CG_CONV_API_GRAPH ? "-graph" : "",
           ctx->sweep_ms < 0 ? "-nosweep" : "",
           up16                        ? tag3("CG_CONV_UPCONV", "-up1", "-noup", "-upF")
           : !strcmp(op, "bwd_filter") ? tag3("CG_CONV_WGRAD", "-wg1", "-nowg", "-wgF")
           : plain3                    ? tag3("CG_CONV_FPROP", "-fp2", "-nofp", "-fp2F")
                                       : "");
  char ld[32] = "";
  if (s->ldx || s->ldy) snprintf(ld, sizeof ld, " ldx%d ldy%d", s->ldx, s->ldy);
  snprintf(key, len, "%s cudnn%zu sel3%s %s %s %s tf32=%d det=%d n%d h%d w%d ci%d co%d k%d%s",
           ctx->dev, cudnnGetVersion(), api, op, s->kind == CG_CONV_UP ? "upconv" : "conv",
           dt_name(s->dt), s->tf32, ctx->det, s->n, s->h, s->w, s->cin, s->cout, s->k, ld);
}

entry_t *lookup(cg_conv_ctx_t *ctx, const char *key) {
  for (int i = 0; i < ctx->n; i++)
    if (!strcmp(ctx->e[i].key, key)) return &ctx->e[i];
  return NULL;
}

void put(cg_conv_ctx_t *ctx, const char *key, int graph, int algo, int math, int mt = 0) {
  entry_t *e = lookup(ctx, key);
  if (!e) {
    if (ctx->n == ctx->cap) {
      ctx->cap = ctx->cap ? 2 * ctx->cap : 32;
      entry_t *ne = (entry_t *)realloc(ctx->e, sizeof(entry_t) * (size_t)ctx->cap);
      if (!ne) CG_FATAL("out of memory (algorithm cache)");
      ctx->e = ne;
    }
    e = &ctx->e[ctx->n++];
    snprintf(e->key, sizeof e->key, "%s", key);
  }
  e->graph = graph;
  e->algo = algo;
  e->math = math;
  e->mt = mt;
}

void load_cache(cg_conv_ctx_t *ctx) {
  FILE *f = fopen(ctx->path, "r");
  if (!f) return; /* first run: nothing cached yet */
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    char *eq = strstr(line, " = ");
    if (!eq || (size_t)(eq - line) >= sizeof(((entry_t *)0)->key)) continue;
    int graph = -1, algo, math, mt = 0;
    char kind = 0;
    if (sscanf(eq + 3, " %c", &kind) != 1) continue;
    if (kind == 'L' && sscanf(eq + 3, " L %d %d", &algo, &math) != 2) continue;
    if (kind == 'G' && sscanf(eq + 3, " G %d %d %d", &graph, &algo, &math) != 3) continue;
    if (kind == 'W' || kind == 'F' || kind == 'U') {
      /* F: our 3x3 kernel's pixels a warp third (older caches: none, i.e. 32) */
      const char *fmt = kind == 'W' ? " W %d %d" : kind == 'F' ? " F %d %d %d" : " U %d %d";
      if (sscanf(eq + 3, fmt, &algo, &math, &mt) < 2 || (mt != 0 && mt != 2 && mt != 4)) continue;
      graph = kind == 'W' ? -2 : kind == 'F' ? -3 : -4;
    }
    if ((kind != 'L' && kind != 'G' && kind != 'W' && kind != 'F' && kind != 'U') || graph < -4 ||
        graph >= kMaxCand || (kind == 'G' && graph < 0))
      continue;
    if (algo < -1 || algo >= kMaxAlgos || math < 0 || math > (int)CUDNN_FMA_MATH) continue;
    if (algo < 0 && graph == -1) continue;
    *eq = 0;
    put(ctx, line, graph, algo, math, mt);
  }
  fclose(f);
  ctx->dirty = 0;
}

cudnnDataType_t dnn_type(cg_dtype_t dt) {
  switch (dt) {
    case CG_DT_F32: return CUDNN_DATA_FLOAT;
    case CG_DT_BF16: return CUDNN_DATA_BFLOAT16;
    case CG_DT_F16: return CUDNN_DATA_HALF;
  }
  CG_FATAL("unknown cg_dtype_t %d", (int)dt);
}

/* Whether a search result may be used under the context's rules. */
bool acceptable(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const perf_t *p, size_t wsb) {
  if (p->status != CUDNN_STATUS_SUCCESS) return false;
  if (ctx->det && p->determinism != CUDNN_DETERMINISTIC) return false;
  if (c->shape.dt == CG_DT_F32 && !c->shape.tf32 && p->math != CUDNN_FMA_MATH) return false;
  return p->memory <= wsb;
}

}  // namespace

/* ---- context ----------------------------------------------------------------------------- */

cg_conv_ctx_t *cg_conv_ctx_create(cudnnHandle_t handle, int deterministic, const char *cache_path) {
  CG_ASSERT(handle != NULL);
  cg_conv_ctx_t *ctx = (cg_conv_ctx_t *)cg_calloc(1, sizeof *ctx, "conv context");
  ctx->h = handle;
  ctx->det = deterministic ? 1 : 0;
  /* The first run of an algorithm also pays for loading its kernels (CUDA loads modules
   * lazily) and for runtime-compiled engines, which can mislead a single timing pass: with
   * CG_CONV_FIND=2 the search runs twice and the second pass decides. */
  const char *fp = getenv("CG_CONV_FIND");
  ctx->find_passes = fp && atoi(fp) >= 1 && atoi(fp) <= 4 ? atoi(fp) : 1;
  const char *api = getenv("CG_CONV_API");
  ctx->api = CG_CONV_API_AUTO;
  if (api && !strcmp(api, "legacy")) ctx->api = CG_CONV_API_LEGACY;
  if (api && !strcmp(api, "graph")) ctx->api = CG_CONV_API_GRAPH;
  const char *bs = getenv("CG_CONV_BUDGET_S");
  ctx->graph_budget_s = bs && atof(bs) > 0 ? atof(bs) : 2.0;
  const char *sw = getenv("CG_CONV_SWEEP_MS");
  ctx->sweep_ms = sw ? (float)atof(sw) : 0.04f;
  if (sw && !strcmp(sw, "off")) ctx->sweep_ms = -1.0f;
  const char *vb = getenv("CG_CONV_VERBOSE");
  ctx->verbose = vb && atoi(vb) > 0;
  int dev = 0;
  cudaDeviceProp prop;
  CG_CHECK_CUDA(cudaGetDevice(&dev));
  CG_CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));
  snprintf(ctx->dev, sizeof ctx->dev, "sm%d%d:%.100s", prop.major, prop.minor, prop.name);
  for (char *p = ctx->dev; *p; p++)
    if (*p == ' ' || *p == '=' || *p == '\n') *p = '_';
  if (cache_path && cache_path[0]) {
    ctx->path = strdup(cache_path);
    if (!ctx->path) CG_FATAL("out of memory (algorithm cache path)");
    load_cache(ctx);
  }
  return ctx;
}

void cg_conv_ctx_set_api(cg_conv_ctx_t *ctx, int api) {
  CG_ASSERT(api == CG_CONV_API_AUTO || api == CG_CONV_API_LEGACY || api == CG_CONV_API_GRAPH);
  ctx->api = api;
}

void cg_conv_ctx_destroy(cg_conv_ctx_t *ctx) {
  if (!ctx) return;
  free(ctx->path);
  free(ctx->e);
  free(ctx);
}

int cg_conv_ctx_save(cg_conv_ctx_t *ctx, char *err, size_t errlen) {
  if (!ctx->path || !ctx->dirty) return 0;
  /* Several ranks may save at once: each writes a private temporary and renames it over the
   * cache (atomic_file.h), so a reader sees one complete file or another. */
  char why[1024];
  cg_afile_t *af = cg_afile_open(ctx->path, why, sizeof why);
  if (!af) {
    snprintf(err, errlen, "cannot write the algorithm cache: %s", why);
    return -1;
  }
  FILE *f = cg_afile_stream(af);
  int ok = fprintf(f, "# cogpu-dist cuDNN algorithm cache: <device> <cuDNN> <op> <shape> = "
                      "L <legacy algo> <math type> | G <graph candidate> <legacy algo> <math> | W <legacy "
                      "algo> <math> (our own dW kernel) | F <legacy algo> <math> <16-pixel tiles a "
                      "warp> (our own 3x3 kernel) | U <legacy algo> <math> (our own upconv "
                      "kernels)\n") > 0;
  for (int i = 0; i < ctx->n && ok; i++) {
    const entry_t *e = &ctx->e[i];
    if (e->graph >= 0) ok = fprintf(f, "%s = G %d %d %d\n", e->key, e->graph, e->algo, e->math) > 0;
    else if (e->graph == -2) ok = fprintf(f, "%s = W %d %d\n", e->key, e->algo, e->math) > 0;
    else if (e->graph == -3)
      ok = fprintf(f, "%s = F %d %d %d\n", e->key, e->algo, e->math, e->mt ? e->mt : 2) > 0;
    else if (e->graph == -4) ok = fprintf(f, "%s = U %d %d\n", e->key, e->algo, e->math) > 0;
    else ok = fprintf(f, "%s = L %d %d\n", e->key, e->algo, e->math) > 0;
  }
  if (cg_afile_commit(af, why, sizeof why)) { /* reports the write error that stopped the loop */
    snprintf(err, errlen, "cannot write the algorithm cache: %s", why);
    return -1;
  }
  ctx->dirty = 0;
  return 0;
}

/* ---- shapes ------------------------------------------------------------------------------ */

void cg_conv_destroy(cg_conv_t *c) {
  if (!c) return;
  if (c->a) CG_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->a));
  if (c->b) CG_CHECK_CUDNN(cudnnDestroyTensorDescriptor(c->b));
  if (c->wd) CG_CHECK_CUDNN(cudnnDestroyFilterDescriptor(c->wd));
  for (int i = 0; i < COP_N; i++) {
    if (c->cd[i]) CG_CHECK_CUDNN(cudnnDestroyConvolutionDescriptor(c->cd[i]));
    cg_cgraph_destroy(c->g[i]);
  }
  cg_cgraph_destroy(c->gf);
  cg_cgraph_destroy(c->gd);
  free(c);
}

namespace {

/* An NHWC tensor descriptor with pixel stride ld (0 or c: dense, the packed form cuDNN knows
 * best). */
cudnnStatus_t set_nhwc(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int n, int c, int h, int w,
                       int ld) {
  if (ld <= 0 || ld == c) return cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, dt, n, c, h, w);
  return cudnnSetTensor4dDescriptorEx(d, dt, n, c, h, w, h * w * ld, 1, w * ld, ld);
}

}  // namespace

int cg_conv_create(const cg_conv_shape_t *shape, int ops, cg_conv_t **out, char *err,
                   size_t errlen) {
  *out = NULL;
  const cg_conv_shape_t *s = shape;
  CG_ASSERT(s->n >= 1 && s->h >= 1 && s->w >= 1 && s->cin >= 1 && s->cout >= 1);
  CG_ASSERT(s->kind == CG_CONV_PLAIN ? (s->k >= 1 && s->k % 2 == 1) : s->k == 2);
  CG_ASSERT(ops >= 1 && (ops & ~CG_CONV_OP_ALL) == 0);
  CG_ASSERT(s->dt == CG_DT_F32 || s->dt == CG_DT_BF16 || s->dt == CG_DT_F16);
  CG_ASSERT(s->bias_act >= 0 && s->bias_act <= 2);
  cg_conv_t *c = (cg_conv_t *)cg_calloc(1, sizeof *c, "conv layer");
  for (int k = 0; k < COP_N; k++) /* not timed */
    c->ms_fp[k] = c->err_fp[k] = c->ms_up[k] = c->err_up[k] = -1.0f;
  c->shape = *s;
  c->ms_custom = c->err_custom = c->ms_drelu = c->ms_unfused = c->ms_fused = c->ms_split = -1.0f;
  if (s->dt != CG_DT_F32) c->shape.tf32 = 0; /* meaningless there; keeps cache keys canonical */
  /* dense written as 0, so that cache keys are canonical */
  if (c->shape.ldx == s->cin) c->shape.ldx = 0;
  if (c->shape.ldy == s->cout) c->shape.ldy = 0;
  CG_ASSERT(c->shape.ldx == 0 || c->shape.ldx > s->cin);
  CG_ASSERT(c->shape.ldy == 0 || c->shape.ldy > s->cout);
  c->dtype = dnn_type(s->dt);
  c->base_math = s->dt != CG_DT_F32 ? CUDNN_TENSOR_OP_MATH
                                    : (s->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH);
  const bool up = s->kind == CG_CONV_UP;
  /* cuDNN's 4d descriptors take (N, C, H, W) whatever the memory format. */
  const int ac = up ? s->cout : s->cin, ah = up ? 2 * s->h : s->h, aw = up ? 2 * s->w : s->w;
  const int bc = up ? s->cin : s->cout, bh = s->h, bw = s->w;
  const int pad = up ? 0 : s->k / 2, stride = up ? 2 : 1;
  int on = 0, oc = 0, oh = 0, ow = 0;
  cudnnStatus_t st;
  CG_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->a));
  CG_CHECK_CUDNN(cudnnCreateTensorDescriptor(&c->b));
  CG_CHECK_CUDNN(cudnnCreateFilterDescriptor(&c->wd));
  st = set_nhwc(c->a, c->dtype, s->n, ac, ah, aw, up ? s->ldy : s->ldx);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = set_nhwc(c->b, c->dtype, s->n, bc, bh, bw, up ? s->ldx : s->ldy);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  /* filter (K = channels of b, C = channels of a, R, S) in KRSC order */
  st = cudnnSetFilter4dDescriptor(c->wd, c->dtype, CUDNN_TENSOR_NHWC, bc, ac, s->k, s->k);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  for (int i = 0; i < COP_N; i++) {
    CG_CHECK_CUDNN(cudnnCreateConvolutionDescriptor(&c->cd[i]));
    st = cudnnSetConvolution2dDescriptor(c->cd[i], pad, pad, stride, stride, 1, 1,
                                         CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
    st = cudnnSetConvolutionMathType(c->cd[i], c->base_math);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
    c->math[i] = c->base_math;
  }
  st = cudnnGetConvolution2dForwardOutputDim(c->cd[COP_FWD], c->a, c->wd, &on, &oc, &oh, &ow);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  if (on != s->n || oc != bc || oh != bh || ow != bw) {
    snprintf(err, errlen, "cuDNN sees output %dx%dx%dx%d (NCHW) for a %s layer, expected %dx%dx%dx%d",
             on, oc, oh, ow, up ? "upconv" : "conv", s->n, bc, bh, bw);
    cg_conv_destroy(c);
    return -1;
  }
  if (ops & CG_CONV_OP_FWD) c->need[cop_of(c, CG_CONV_OP_FWD)] = 1;
  if (ops & CG_CONV_OP_BWD_DATA) c->need[cop_of(c, CG_CONV_OP_BWD_DATA)] = 1;
  if (ops & CG_CONV_OP_BWD_FILTER) c->need[cop_of(c, CG_CONV_OP_BWD_FILTER)] = 1;
  *out = c;
  return 0;
fail:
  snprintf(err, errlen, "cuDNN rejects the %s shape n%d %dx%d %d->%d k%d %s: %s",
           up ? "upconv" : "conv", s->n, s->h, s->w, s->cin, s->cout, s->k, dt_name(s->dt),
           cudnnGetErrorString(st));
  cg_conv_destroy(c);
  return -1;
}

size_t cg_conv_search_ws_bytes(cg_conv_ctx_t *ctx, const cg_conv_t *c) {
  size_t most = 0;
  for (int cop = 0; cop < COP_N; cop++) {
    if (!c->need[cop]) continue;
    CG_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd[cop], c->base_math));
    for (int a = 0; a < kCopAlgos[cop]; a++) {
      size_t b = 0;
      if (ws_cop(ctx->h, c, cop, a, &b) == CUDNN_STATUS_SUCCESS && b > most) most = b;
    }
    /* leave the descriptor as the selection (if any) wants it */
    CG_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd[cop], c->math[cop]));
  }
  cg_wgrad_shape_t w;
  if (c->need[COP_BWD_FILTER] && custom_shape(c, &w) && cg_wgrad_work_bytes(&w) > most)
    most = cg_wgrad_work_bytes(&w); /* our dW kernel's partial sums */
  cg_upconv_shape_t u;
  if (c->need[COP_BWD_FILTER] && up_shape(c, COP_BWD_FILTER, 0, &u) &&
      cg_upconv_work_bytes(&u) > most)
    most = cg_upconv_work_bytes(&u); /* our upconv dW kernel's */
  return most;
}

namespace {

/* times: also what the search measured */
void describe(const cg_conv_t *c, char *buf, size_t len, int times) {
  const cg_conv_shape_t *s = &c->shape;
  int k = snprintf(buf, len, "%s %dx%d n%d %dx%d %d->%d %s%s", s->kind == CG_CONV_UP ? "upconv" : "conv",
                   s->k, s->k, s->n, s->h, s->w, s->cin, s->cout, dt_name(s->dt),
                   s->dt == CG_DT_F32 ? (s->tf32 ? " tf32" : " fma") : "");
  if ((s->ldx || s->ldy) && k > 0 && (size_t)k < len)
    k += snprintf(buf + k, len - (size_t)k, " ldx %d ldy %d", s->ldx, s->ldy);
  for (int cop = 0; cop < COP_N && k > 0 && (size_t)k < len; cop++) {
    if (!c->selected[cop]) continue;
    char gd[64] = "";
    if (c->g[cop]) cg_cgraph_describe(c->g[cop], gd, sizeof gd);
    const bool own = c->fp[cop] || c->up[cop] || (cop == COP_BWD_FILTER && c->custom);
    if (own) /* named below */
      k += snprintf(buf + k, len - (size_t)k, "; %s own kernel ws %zu", kCopName[cop], c->ws[cop]);
    else if (c->g[cop])
      k += snprintf(buf + k, len - (size_t)k, "; %s graph %s ws %zu", kCopName[cop], gd,
                    c->ws[cop]);
    else
      k += snprintf(buf + k, len - (size_t)k, "; %s algo %d math %d ws %zu", kCopName[cop],
                    c->algo[cop], (int)c->math[cop], c->ws[cop]);
    if (!times) continue;
    if (k > 0 && (size_t)k < len && c->ms[cop] >= 0)
      k += snprintf(buf + k, len - (size_t)k, " %.3f ms", c->ms[cop]);
    if (k > 0 && (size_t)k < len && c->g[cop] && c->ms_legacy[cop] >= 0)
      k += snprintf(buf + k, len - (size_t)k, " (legacy algo %d %.3f ms)", c->algo[cop],
                    c->ms_legacy[cop]);
  }
  if (c->gf && k > 0 && (size_t)k < len) {
    char gd[64];
    cg_cgraph_describe(c->gf, gd, sizeof gd);
    k += snprintf(buf + k, len - (size_t)k, "; fwd+bias%s fused %s ws %zu",
                  c->shape.bias_act == 2 ? "+relu" : "", gd, c->ws_fused);
  }
  if (times && k > 0 && (size_t)k < len && c->ms_split >= 0)
    k += snprintf(buf + k, len - (size_t)k, " (fused %.3f ms vs %s %.3f ms)", c->ms_fused,
                  c->shape.bias_copy ? "the upconv alone, its concat's copy adding the bias"
                                     : "conv + bias pass",
                  c->ms_split);
  if (c->gd && k > 0 && (size_t)k < len) {
    char gd[64];
    cg_cgraph_describe(c->gd, gd, sizeof gd);
    k += snprintf(buf + k, len - (size_t)k, "; bwd_data+drelu fused %s ws %zu", gd, c->ws_drelu);
  }
  if (times && k > 0 && (size_t)k < len && c->ms_unfused >= 0)
    k += snprintf(buf + k, len - (size_t)k, " (dx+drelu %.3f ms vs dx + 2/3 mask pass %.3f ms)",
                  c->ms_drelu, c->ms_unfused);
  const struct {
    const int *on;
    const float *ms, *err;
    const char *what;
  } ours[2] = {{c->fp, c->ms_fp, c->err_fp, "our 3x3 kernel"},
               {c->up, c->ms_up, c->err_up, "our upconv kernel"}};
  for (int o = 0; o < 2; o++)
    for (int cop = 0; cop < COP_N && k > 0 && (size_t)k < len; cop++) {
      if (ours[o].on[cop])
        k += snprintf(buf + k, len - (size_t)k, "; %s by %s", kCopName[cop], ours[o].what);
      if (times && k > 0 && (size_t)k < len && ours[o].ms[cop] >= 0)
        k += snprintf(buf + k, len - (size_t)k, " (%s: %s %.3f ms, error %.2g of the "
                      "reference's max)", kCopName[cop], ours[o].what, ours[o].ms[cop],
                      ours[o].err[cop]);
    }
  if (c->fp_fused && k > 0 && (size_t)k < len)
    k += snprintf(buf + k, len - (size_t)k, "; fwd+bias%s by our 3x3 kernel",
                  c->shape.bias_act == 2 ? "+relu" : "");
  if (c->fp_drelu && k > 0 && (size_t)k < len)
    k += snprintf(buf + k, len - (size_t)k, "; bwd_data+drelu by our 3x3 kernel");
  if (c->up_fused && k > 0 && (size_t)k < len)
    k += snprintf(buf + k, len - (size_t)k, "; forward+bias%s by our upconv kernel",
                  c->shape.bias_act == 2 ? "+relu" : "");
  if (c->custom && k > 0 && (size_t)k < len)
    k += snprintf(buf + k, len - (size_t)k, "; dW by our kernel");
  if (times && k > 0 && (size_t)k < len && c->ms_custom >= 0)
    k += snprintf(buf + k, len - (size_t)k, " (ours %.3f ms, error %.2g of cuDNN's max)",
                  c->ms_custom, c->err_custom);
}

/* The graph description of cuDNN operation cop of a layer shape (see conv_graph.h). */
cg_cgraph_shape_t graph_shape(const cg_conv_t *c, int cop) {
  const cg_conv_shape_t *s = &c->shape;
  const bool up = s->kind == CG_CONV_UP;
  cg_cgraph_shape_t g;
  memset(&g, 0, sizeof g);
  g.op = cop == COP_FWD ? CG_CGRAPH_FWD : cop == COP_BWD_DATA ? CG_CGRAPH_BWD_DATA
                                                             : CG_CGRAPH_BWD_FILTER;
  g.dt = c->dtype;
  g.n = s->n;
  g.ca = up ? s->cout : s->cin;
  g.ha = up ? 2 * s->h : s->h;
  g.wa = up ? 2 * s->w : s->w;
  g.cb = up ? s->cin : s->cout;
  g.hb = s->h;
  g.wb = s->w;
  g.k = s->k;
  g.pad = up ? 0 : s->k / 2;
  g.stride = up ? 2 : 1;
  g.lda = up ? s->ldy : s->ldx;
  g.ldb = up ? s->ldx : s->ldy;
  return g;
}

/* fuse, bias_align: the fused forward (cg_cgraph_shape_t), 0 for a plain operation. */
cudnnStatus_t graph_create(const cg_conv_ctx_t *ctx, const cg_conv_t *c, int cop, int fuse,
                           int64_t bias_align, cg_cgraph_t **g, int drelu = 0) {
  cg_cgraph_shape_t gs = graph_shape(c, cop);
  gs.fuse = fuse;
  gs.bias_align = bias_align;
  gs.drelu = drelu;
  const int strict = c->shape.dt == CG_DT_F32 && !c->shape.tf32;
  return cg_cgraph_create(ctx->h, &gs, ctx->det, strict, kMaxHeur, g);
}

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs fn once to warm up, then three times between events; the median in ms, or -1 when a
 * run fails. Synchronises s. */
template <typename F> float time_runs(cudaStream_t s, F fn) {
  cudaEvent_t e[4];
  for (int i = 0; i < 4; i++) CG_CHECK_CUDA(cudaEventCreate(&e[i]));
  cudnnStatus_t st = fn();
  for (int i = 0; i < 3 && st == CUDNN_STATUS_SUCCESS; i++) {
    CG_CHECK_CUDA(cudaEventRecord(e[i], s));
    st = fn();
  }
  if (st == CUDNN_STATUS_SUCCESS) CG_CHECK_CUDA(cudaEventRecord(e[3], s));
  /* a failed engine may leave a sticky-free launch error behind: clear it, never abort */
  cudaError_t rc = cudaStreamSynchronize(s);
  float t[3] = {-1, -1, -1};
  if (st == CUDNN_STATUS_SUCCESS && rc == cudaSuccess)
    for (int i = 0; i < 3; i++) CG_CHECK_CUDA(cudaEventElapsedTime(&t[i], e[i], e[i + 1]));
  if (rc != cudaSuccess) (void)cudaGetLastError();
  for (int i = 0; i < 4; i++) CG_CHECK_CUDA(cudaEventDestroy(e[i]));
  if (st != CUDNN_STATUS_SUCCESS || rc != cudaSuccess) return -1.0f;
  float lo = t[0] < t[1] ? t[0] : t[1], hi = t[0] < t[1] ? t[1] : t[0];
  return t[2] < lo ? lo : (t[2] > hi ? hi : t[2]);
}

/* Times g's candidates with run() (the candidate's plan current), no new one after the
 * context's budget, and sets the winner aside (cg_cgraph_keep): a candidate wins when it is
 * faster than *best by the margin tol, or within it with a smaller workspace. *best and
 * *best_ws start as what to beat (*best < 0: nothing) and end as the winner's. Returns the
 * winner's index, or -1 when no candidate beat the start. */
template <typename F>
int search_range(const cg_conv_ctx_t *ctx, cg_cgraph_t *g, int from, size_t ws_bytes, float tol,
                 cudaStream_t s, F run, float *best, size_t *best_ws) {
  int win = -1;
  /* runtime-compiled engines take long to finalize: bound the search of one operation */
  const double t_end = now_s() + ctx->graph_budget_s;
  for (int i = from; i < cg_cgraph_count(g) && (i == from || now_s() < t_end); i++) {
    size_t gws = 0;
    if (cg_cgraph_plan(g, i, &gws) != CUDNN_STATUS_SUCCESS || gws > ws_bytes) continue;
    const float t = time_runs(s, run);
    if (t < 0) continue;
    if (*best < 0 || t < (1.0f - tol) * *best || (t <= (1.0f + tol) * *best && gws < *best_ws)) {
      *best = t;
      *best_ws = gws;
      win = i;
      cg_cgraph_keep(g);
    }
  }
  return win;
}

/* search_range over the heuristics' candidates, then, for an operation still slower than the
 * context's sweep threshold, over the knob variants of the best engines (cg_cgraph_sweep),
 * with a budget of its own. A variant that wins must first agree (outputs_agree) with what it
 * beat: the heuristics' winner (held meanwhile), or, when none of them won, fallback (the
 * non-graph choice the caller timed); else the heuristics' result stands. out and n: the
 * operation's output. */
template <typename F, typename G>
int search_graph(const cg_conv_ctx_t *ctx, cg_cgraph_t *g, size_t ws_bytes, float tol,
                 cudaStream_t s, F run, float *best, size_t *best_ws, cg_dtype_t dt, void *out,
                 size_t n, G fallback) {
  const int win = search_range(ctx, g, 0, ws_bytes, tol, s, run, best, best_ws);
  if (ctx->sweep_ms < 0 || ctx->det || *best < ctx->sweep_ms) return win;
  const int from = cg_cgraph_count(g);
  const int added = cg_cgraph_sweep(g, kSweepTop, kSweepMax);
  if (ctx->verbose) fprintf(stderr, "conv search: knob sweep: %d variants\n", added);
  if (added <= 0) return win;
  const float best_h = *best;
  const size_t ws_h = *best_ws;
  if (win >= 0) cg_cgraph_hold(g);
  const int w2 = search_range(ctx, g, from, ws_bytes, tol, s, run, best, best_ws);
  float err = -1.0f;
  bool ok = false;
  if (w2 >= 0)
    ok = outputs_agree(
        dt, out, n, s,
        [&] {
          if (win < 0) return fallback();
          return cg_cgraph_use_held(g) == CUDNN_STATUS_SUCCESS ? run() : CUDNN_STATUS_BAD_PARAM;
        },
        [&] {
          size_t w = 0;
          return cg_cgraph_use_kept(g, &w) == CUDNN_STATUS_SUCCESS ? run() : CUDNN_STATUS_BAD_PARAM;
        },
        2e-2f, &err);
  if (ctx->verbose && w2 >= 0)
    fprintf(stderr, "conv search: knob variant %d was faster (%.4f ms vs %.4f); %s (error %.3g)\n",
            w2, *best, best_h, ok ? "it agrees: taken" : "it does NOT agree: not taken", err);
  if (ok) {
    if (win >= 0) cg_cgraph_release_held(g, 0);
    return w2;
  }
  *best = best_h; /* no variant, or a wrong one: the heuristics' result */
  *best_ws = ws_h;
  if (win >= 0) cg_cgraph_release_held(g, 1);
  else cg_cgraph_drop_kept(g);
  return win;
}

/* Legacy choice of cop by cudnnFind*Ex (see the design note). 0 with c->algo/math/ws_legacy
 * set, or -1 with a message (no usable algorithm; not fatal when the graph API has one). */
int select_legacy(cg_conv_ctx_t *ctx, cg_conv_t *c, int cop, const void *in0, const void *in1,
                  void *o, void *d_ws, size_t ws_bytes, cudaStream_t s, char *err, size_t errlen) {
  const bool up = c->shape.kind == CG_CONV_UP;
  CG_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd[cop], c->base_math));
  perf_t res[kMaxAlgos];
  int nres = 0;
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  for (int pass = 0; pass < ctx->find_passes && st == CUDNN_STATUS_SUCCESS; pass++)
    st = find_cop(ctx->h, c, cop, in0, in1, o, d_ws, ws_bytes, res, &nres);
  CG_CHECK_CUDA(cudaStreamSynchronize(s));
  if (st != CUDNN_STATUS_SUCCESS) {
    snprintf(err, errlen, "cudnnFind (%s) failed for %s: %s", kCopName[cop],
             up ? "an upconv" : "a conv", cudnnGetErrorString(st));
    return -1;
  }
  int pick = -1;
  for (int i = 0; i < nres && pick < 0; i++)
    if (acceptable(ctx, c, &res[i], ws_bytes)) pick = i;
  if (pick < 0) {
    char desc[256];
    cg_conv_describe(c, desc, sizeof desc);
    int k = snprintf(err, errlen, "no usable cuDNN algorithm for %s (%s%s); tried:", desc,
                     kCopName[cop], ctx->det ? ", deterministic" : "");
    for (int i = 0; i < nres && k > 0 && (size_t)k < errlen; i++)
      k += snprintf(err + k, errlen - (size_t)k, " algo %d: %s/math %d/det %d/%zu B;",
                    res[i].algo, cudnnGetErrorString(res[i].status), (int)res[i].math,
                    (int)res[i].determinism, res[i].memory);
    return -1;
  }
  size_t b = 0;
  CG_CHECK_CUDNN(cudnnSetConvolutionMathType(c->cd[cop], res[pick].math));
  cudnnStatus_t wst = ws_cop(ctx->h, c, cop, res[pick].algo, &b);
  if (wst != CUDNN_STATUS_SUCCESS) {
    snprintf(err, errlen, "cuDNN %s algo %d: workspace query failed: %s", kCopName[cop],
             res[pick].algo, cudnnGetErrorString(wst));
    return -1;
  }
  c->algo[cop] = res[pick].algo;
  c->math[cop] = res[pick].math;
  c->ws_legacy[cop] = b;
  c->have_legacy[cop] = 1;
  return 0;
}

/* Host conversions of 16-bit values (the check of our dW kernel). */
float bf16_to_f(uint16_t v) {
  const uint32_t u = (uint32_t)v << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

float f16_to_f(uint16_t v) {
  __half_raw r;
  r.x = v;
  return __half2float(__half(r));
}

/* The shape of our dW kernel for the layer, when it handles it (a plain 3x3 convolution in
 * bf16/fp16, CG_CONV_WGRAD not "off"). */
bool custom_shape(const cg_conv_t *c, cg_wgrad_shape_t *w) {
  const cg_conv_shape_t *s = &c->shape;
  if (switched_off("CG_CONV_WGRAD")) return false;
  if (s->kind != CG_CONV_PLAIN || s->dt == CG_DT_F32) return false;
  memset(w, 0, sizeof *w);
  w->dt = s->dt;
  w->n = s->n;
  w->h = s->h;
  w->w = s->w;
  w->cin = s->cin;
  w->cout = s->cout;
  w->k = s->k;
  w->ldx = s->ldx ? s->ldx : s->cin;
  w->lddy = s->ldy ? s->ldy : s->cout;
  return cg_wgrad_supported(w) != 0;
}

/* The shape of our 3x3 kernel for cop (COP_FWD: the forward, COP_BWD_DATA: the input
 * gradient) of a plain layer with the epilogue given (bias and relu forward only, mask = the
 * ReLU of x, input gradient only), when it handles it (bf16/fp16, CG_CONV_FPROP not "off"). */
bool fprop_shape(const cg_conv_t *c, int cop, int bias, int relu, int mask, cg_fprop_shape_t *f) {
  const cg_conv_shape_t *s = &c->shape;
  if (switched_off("CG_CONV_FPROP")) return false;
  if (s->kind != CG_CONV_PLAIN || s->dt == CG_DT_F32 || s->k != 3) return false;
  if (cop != COP_FWD && cop != COP_BWD_DATA) return false;
  const int ldx = s->ldx ? s->ldx : s->cin, ldy = s->ldy ? s->ldy : s->cout;
  const bool dg = cop == COP_BWD_DATA;
  memset(f, 0, sizeof *f);
  f->dt = s->dt;
  f->n = s->n;
  f->h = s->h;
  f->w = s->w;
  f->dgrad = dg;
  f->cin = dg ? s->cout : s->cin;
  f->cout = dg ? s->cin : s->cout;
  f->ldx = dg ? ldy : ldx;
  f->ldy = dg ? ldx : ldy;
  f->ldm = mask ? ldx : 0;
  f->bias = bias;
  f->relu = relu;
  f->mask = mask;
  return cg_fprop_supported(f) != 0;
}

cudnnStatus_t run_fprop(const cg_fprop_shape_t *f, int accum, const void *x, const void *w,
                        const float *bias, const void *m, void *y, cudaStream_t s) {
  cg_fprop_shape_t g = *f;
  g.accum = accum != 0;
  return st_of(cg_fprop_run(&g, x, w, bias, m, y, s));
}

/* fprop_shape, with the pixels a warp that cache entry e (our 3x3 kernel's) recorded. */
bool fprop_cached(const cg_conv_t *c, int cop, int bias, int relu, int mask, const entry_t *e,
                  cg_fprop_shape_t *f) {
  if (!fprop_shape(c, cop, bias, relu, mask, f)) return false;
  f->mt = e->mt;
  if (!cg_fprop_supported(f)) f->mt = 0; /* as 32 pixels a warp, which the shape has */
  return true;
}

/* The shape of our upconv kernel for cuDNN operation cop of an upconv (COP_BWD_DATA: the
 * layer's forward, with its bias (+ ReLU) when bias; COP_FWD: its input gradient;
 * COP_BWD_FILTER: its weight gradient), when it handles it (bf16/fp16, CG_CONV_UPCONV not
 * "off"). */
bool up_shape(const cg_conv_t *c, int cop, int bias, cg_upconv_shape_t *u) {
  const cg_conv_shape_t *s = &c->shape;
  if (switched_off("CG_CONV_UPCONV")) return false;
  if (s->kind != CG_CONV_UP || s->dt == CG_DT_F32) return false;
  memset(u, 0, sizeof *u);
  u->dt = s->dt;
  u->op = cop == COP_BWD_DATA ? CG_UPCONV_FWD : cop == COP_FWD ? CG_UPCONV_DGRAD : CG_UPCONV_WGRAD;
  u->n = s->n;
  u->h = s->h;
  u->w = s->w;
  u->cin = s->cin;
  u->cout = s->cout;
  u->bias = bias != 0;
  u->relu = bias && s->bias_act == 2;
  u->ldx = s->ldx ? s->ldx : s->cin;
  u->ldy = s->ldy ? s->ldy : s->cout;
  return cg_upconv_supported(u) != 0;
}

/* Our upconv kernel on cuDNN's operands (run_cop): in0 = layer x (forward), dy (input
 * gradient, weight gradient); in1 = w, w, x. */
cudnnStatus_t run_up(const cg_upconv_shape_t *u, int accum, const void *in0, const void *in1,
                     const float *bias, void *out, float *db, void *ws, size_t wsb,
                     cudaStream_t s) {
  cg_upconv_shape_t g = *u;
  g.accum = accum != 0 && g.op == CG_UPCONV_DGRAD;
  const bool w = g.op == CG_UPCONV_WGRAD;
  return st_of(cg_upconv_run(&g, w ? in1 : in0, w ? in0 : in1, bias, out, db, ws, wsb, s));
}

/* Runs ref, then cand, each writing the n elements (type dt) at out, and compares them on the
 * host: they agree when max |cand - ref| <= tol x max |ref|, neither has a NaN, and max |ref| > 0
 * (an all-zero reference proves nothing; the backend fills its buffers with random values
 * before the search for this). *err: that maximum relative to max |ref| (inf: NaN, -1: not run).
 * Used before adopting a candidate cuDNN's heuristics never proposed (a knob-sweep variant) or
 * our own kernel: they must compute the same function, whatever their speed. */
template <typename R, typename C>
bool outputs_agree(cg_dtype_t dt, void *out, size_t n, cudaStream_t s, R ref, C cand, float tol,
                   float *err) {
  *err = -1.0f;
  const size_t es = cg_dtype_size(dt);
  unsigned char *a = (unsigned char *)malloc(n * es), *b = (unsigned char *)malloc(n * es);
  bool ok = a && b && ref() == CUDNN_STATUS_SUCCESS &&
            cudaMemcpyAsync(a, out, n * es, cudaMemcpyDeviceToHost, s) == cudaSuccess &&
            cand() == CUDNN_STATUS_SUCCESS &&
            cudaMemcpyAsync(b, out, n * es, cudaMemcpyDeviceToHost, s) == cudaSuccess &&
            cudaStreamSynchronize(s) == cudaSuccess;
  if (ok) {
    double worst = 0, scale = 0;
    bool nan = false;
    for (size_t i = 0; i < n; i++) {
      float r, v;
      if (dt == CG_DT_F32) {
        memcpy(&r, a + 4 * i, 4);
        memcpy(&v, b + 4 * i, 4);
      } else {
        uint16_t ra, vb;
        memcpy(&ra, a + 2 * i, 2);
        memcpy(&vb, b + 2 * i, 2);
        r = dt == CG_DT_BF16 ? bf16_to_f(ra) : f16_to_f(ra);
        v = dt == CG_DT_BF16 ? bf16_to_f(vb) : f16_to_f(vb);
      }
      if (v != v || r != r) nan = true;
      const double d = fabs((double)v - (double)r);
      if (d > worst) worst = d;
      if (fabs((double)r) > scale) scale = fabs((double)r);
    }
    *err = nan ? INFINITY : (float)(scale > 0 ? worst / scale : INFINITY);
    ok = !nan && scale > 0 && worst <= tol * scale;
  }
  (void)cudaGetLastError(); /* a failed launch of the candidate must not stick */
  free(a);
  free(b);
  return ok;
}

/* Elements from the first to the last of cuDNN tensor t of cop's output (strides included). */
size_t out_elems(const cg_conv_t *c, int cop) {
  const cg_conv_shape_t *s = &c->shape;
  const bool up = s->kind == CG_CONV_UP;
  if (cop == COP_BWD_FILTER) return (size_t)s->cout * s->k * s->k * s->cin;
  const bool is_a = cop == COP_BWD_DATA; /* the output is a for backward-data, b for forward */
  const int ca = up ? s->cout : s->cin, cb = up ? s->cin : s->cout;
  const int lda = (up ? s->ldy : s->ldx) ? (up ? s->ldy : s->ldx) : ca;
  const int ldb = (up ? s->ldx : s->ldy) ? (up ? s->ldx : s->ldy) : cb;
  const size_t px = (size_t)s->n * (is_a && up ? 4 : 1) * s->h * s->w;
  return (px - 1) * (size_t)(is_a ? lda : ldb) + (size_t)(is_a ? ca : cb);
}

/* Our kernel (ours) as a candidate of cop beside cuDNN's choice (run_best, which took best ms;
 * best < 0: cuDNN has nothing for the shape, e.g. a strided concat half it refuses). Its output
 * must first agree with that of cuDNN's choice on the same operands (1e-2 of the largest
 * element), or, where cuDNN has nothing, with the naive kernel's (naive), so that a kernel wrong
 * on this device or shape is never used; then it is timed (*ms; *err: the disagreement) and
 * wins when 2% faster, when cuDNN has nothing, or when the variable var is "force" (tests).
 * what names it in the log (CG_CONV_VERBOSE). */
template <typename B, typename N, typename O>
bool ours_wins(const cg_conv_ctx_t *ctx, const cg_conv_t *c, int cop, void *out, cudaStream_t s,
               B run_best, N naive, O ours, const char *what, const char *var, float best,
               float *ms, float *err) {
  *ms = *err = -1.0f;
  const size_t n = out_elems(c, cop);
  const bool agree = best >= 0 ? outputs_agree(c->shape.dt, out, n, s, run_best, ours, 1e-2f, err)
                               : outputs_agree(c->shape.dt, out, n, s, naive, ours, 1e-2f, err);
  if (!agree) {
    if (ctx->verbose) {
      char desc[256];
      cg_conv_describe(c, desc, sizeof desc);
      fprintf(stderr, "conv search: %s does not agree with %s on %s %s (error %.3g of the "
              "largest element); not used\n", what, best >= 0 ? "cuDNN" : "the naive kernel",
              desc, kCopName[cop], *err);
    }
    return false;
  }
  *ms = time_runs(s, ours);
  if (*ms < 0 || !(best < 0 || forced(var) || *ms < 0.98f * best)) return false;
  if (best < 0 && ctx->verbose)
    fprintf(stderr, "conv search: cuDNN has nothing for %s; %s takes it\n", kCopName[cop], what);
  return true;
}

/* Our dW kernel as a candidate of COP_BWD_FILTER (ours_wins; the naive kernel of wgrad.h).
 * Returns 1 when it won (c->custom's shape, *best and *best_ws set). */
template <typename F>
int select_custom(const cg_conv_ctx_t *ctx, cg_conv_t *c, const void *x, const void *dy, void *out,
                  void *d_ws, size_t ws_bytes, cudaStream_t s, F run_best, float *best,
                  size_t *best_ws) {
  c->ms_custom = c->err_custom = -1.0f;
  if (!custom_shape(c, &c->wsh)) return 0;
  const size_t need = cg_wgrad_work_bytes(&c->wsh);
  if (need > ws_bytes) return 0;
  auto ours = [&] { return st_of(cg_wgrad_run(&c->wsh, x, dy, out, NULL, d_ws, s)); };
  auto naive = [&] { return st_of(cg_wgrad_reference(&c->wsh, x, dy, out, s)); };
  if (!ours_wins(ctx, c, COP_BWD_FILTER, out, s, run_best, naive, ours, "our dW kernel",
                 "CG_CONV_WGRAD", *best, &c->ms_custom, &c->err_custom))
    return 0;
  *best = c->ms_custom;
  *best_ws = need;
  return 1;
}

/* The faster of our 3x3 kernel's two warp sizes for *f (fprop.h: 32 or 64 pixels a warp,
 * where the shape allows 64), run() running it as *f says on the operands whose output is out
 * (n elements). The two must give the same values (the same sums in the same order), then
 * each is timed; 64 is kept when 2% faster. Leaves f->mt 2 or 4. */
template <typename R>
void pick_mt(const cg_conv_ctx_t *ctx, cg_fprop_shape_t *f, void *out, size_t n, cudaStream_t s,
             R run) {
  f->mt = 4;
  const bool has4 = cg_fprop_supported(f) != 0;
  f->mt = 2;
  if (!has4) return;
  float err = -1.0f;
  const bool same = outputs_agree(
      f->dt, out, n, s, [&] { f->mt = 2; return run(); }, [&] { f->mt = 4; return run(); }, 0.0f,
      &err);
  f->mt = 2;
  const float t2 = same ? time_runs(s, run) : -1.0f;
  f->mt = 4;
  const float t4 = same ? time_runs(s, run) : -1.0f;
  f->mt = t2 >= 0 && t4 >= 0 && t4 < 0.98f * t2 ? 4 : 2;
  if (ctx->verbose) {
    char desc[160];
    cg_fprop_describe(f, desc, sizeof desc);
    if (same)
      fprintf(stderr, "conv search: our 3x3 kernel, 64 pixels a warp %.4f ms, 32 %.4f ms: %s\n",
              t4, t2, desc);
    else
      fprintf(stderr, "conv search: our 3x3 kernel differs between 32 and 64 pixels a warp, or "
              "failed, or gave zeros only (error %.3g); 32 kept\n", err);
  }
}

/* Our 3x3 kernel as a candidate of cop, the forward or input gradient of a plain layer
 * (ours_wins; the naive kernel of fprop.h; the warp size by pick_mt). Returns 1 when it won
 * (c->fsh[cop], *best, *best_ws set). */
template <typename F>
int select_fprop(const cg_conv_ctx_t *ctx, cg_conv_t *c, int cop, const void *in0, const void *in1,
                 void *out, cudaStream_t s, F run_best, float *best, size_t *best_ws) {
  c->ms_fp[cop] = c->err_fp[cop] = -1.0f;
  cg_fprop_shape_t f;
  if (!fprop_shape(c, cop, 0, 0, 0, &f)) return 0;
  auto ours = [&] { return run_fprop(&f, 0, in0, in1, NULL, NULL, out, s); };
  pick_mt(ctx, &f, out, out_elems(c, cop), s, ours);
  auto naive = [&] { return st_of(cg_fprop_reference(&f, in0, in1, NULL, NULL, out, s)); };
  if (!ours_wins(ctx, c, cop, out, s, run_best, naive, ours, "our 3x3 kernel", "CG_CONV_FPROP",
                 *best, &c->ms_fp[cop], &c->err_fp[cop]))
    return 0;
  *best = c->ms_fp[cop];
  *best_ws = 0;
  c->fsh[cop] = f;
  return 1;
}

/* Our upconv kernel as a candidate of cop of an upconv (ours_wins; the naive kernels of
 * upconv.h). Returns 1 when it won (c->ush[cop], *best, *best_ws set). */
template <typename F>
int select_up(const cg_conv_ctx_t *ctx, cg_conv_t *c, int cop, const void *in0, const void *in1,
              void *out, void *d_ws, size_t ws_bytes, cudaStream_t s, F run_best, float *best,
              size_t *best_ws) {
  c->ms_up[cop] = c->err_up[cop] = -1.0f;
  cg_upconv_shape_t u;
  if (!up_shape(c, cop, 0, &u)) return 0;
  const size_t need = cg_upconv_work_bytes(&u);
  if (need > ws_bytes) return 0;
  const bool w = u.op == CG_UPCONV_WGRAD; /* cuDNN's operands: dy, then x */
  auto ours = [&] { return run_up(&u, 0, in0, in1, NULL, out, NULL, d_ws, ws_bytes, s); };
  auto naive = [&] {
    return st_of(cg_upconv_reference(&u, w ? in1 : in0, w ? in0 : in1, NULL, out, NULL, s));
  };
  if (!ours_wins(ctx, c, cop, out, s, run_best, naive, ours, "our upconv kernel",
                 "CG_CONV_UPCONV", *best, &c->ms_up[cop], &c->err_up[cop]))
    return 0;
  *best = c->ms_up[cop];
  *best_ws = need;
  c->ush[cop] = u;
  return 1;
}

/* Our 3x3 or upconv kernel (ours) as the candidate of a fusion decision on cop: checked against
 * the separate passes (ref) on out within tol, then timed (*t, -1 when it does not agree: logged,
 * what names it). True when *t beats the better of rival_a and rival_b (< 0: none) by 2%. */
template <typename R, typename O>
bool fusion_by_ours(const cg_conv_ctx_t *ctx, const cg_conv_t *c, int cop, void *out,
                    cudaStream_t s, R ref, O ours, float tol, const char *what, float rival_a,
                    float rival_b, float *t) {
  float e = -1.0f;
  *t = -1.0f;
  if (outputs_agree(c->shape.dt, out, out_elems(c, cop), s, ref, ours, tol, &e))
    *t = time_runs(s, ours);
  else if (ctx->verbose)
    fprintf(stderr, "conv search: our %s does not agree with the separate passes (error %.3g); "
            "not used\n", what, e);
  float rival = rival_a;
  if (rival_b >= 0 && (rival < 0 || rival_b < rival)) rival = rival_b;
  const char *var = c->shape.kind == CG_CONV_UP ? "CG_CONV_UPCONV" : "CG_CONV_FPROP";
  return *t >= 0 && (rival < 0 || forced(var) || *t < 0.98f * rival);
}

/* A cache entry applied to cop: 0, or -1 when cuDNN no longer accepts it. */
int apply_cached(cg_conv_ctx_t *ctx, cg_conv_t *c, int cop, const entry_t *e) {
  size_t b = 0;
  c->fp[cop] = c->up[cop] = 0; /* whatever ran cop before: the entry says */
  if (cop == COP_BWD_FILTER) c->custom = 0;
  if (e->algo >= 0) {
    if (cudnnSetConvolutionMathType(c->cd[cop], (cudnnMathType_t)e->math) != CUDNN_STATUS_SUCCESS ||
        ws_cop(ctx->h, c, cop, e->algo, &b) != CUDNN_STATUS_SUCCESS)
      return -1;
    c->algo[cop] = e->algo;
    c->math[cop] = (cudnnMathType_t)e->math;
    c->ws_legacy[cop] = b;
    c->have_legacy[cop] = 1;
  }
  c->ws[cop] = b;
  if (e->graph == -2) { /* our dW kernel: still handled, as on the run that chose it */
    if (cop != COP_BWD_FILTER || !custom_shape(c, &c->wsh)) return -1;
    c->custom = 1;
    c->ws[cop] = cg_wgrad_work_bytes(&c->wsh);
  }
  if (e->graph == -3) { /* our 3x3 kernel: likewise */
    if (!fprop_cached(c, cop, 0, 0, 0, e, &c->fsh[cop])) return -1;
    c->fp[cop] = 1;
    c->ws[cop] = 0;
  }
  if (e->graph == -4) { /* our upconv kernel: likewise */
    if (!up_shape(c, cop, 0, &c->ush[cop])) return -1;
    c->up[cop] = 1;
    c->ws[cop] = cg_upconv_work_bytes(&c->ush[cop]);
  }
  if (e->graph >= 0) {
    cg_cgraph_t *g = NULL;
    if (graph_create(ctx, c, cop, 0, 0, &g) != CUDNN_STATUS_SUCCESS) return -1;
    if (e->graph >= cg_cgraph_count(g)) (void)cg_cgraph_sweep(g, kSweepTop, kSweepMax);
    if (e->graph >= cg_cgraph_count(g) || cg_cgraph_plan(g, e->graph, &b) != CUDNN_STATUS_SUCCESS) {
      cg_cgraph_destroy(g);
      return -1;
    }
    c->g[cop] = g;
    c->ws[cop] = b;
  }
  c->ms[cop] = c->ms_legacy[cop] = -1.0f;
  c->selected[cop] = 1;
  return 0;
}

/* A layer's forward as separate passes, the rival of its fusions: the convolution as selected
 * (cg_conv_fwd), then cg_k_bias_act_fwd over y (maybe a half of a concat buffer). Callable. */
struct split_fwd {
  const cg_conv_ctx_t *ctx;
  const cg_conv_t *c;
  const cg_conv_bufs_t *bufs;
  void *d_ws;
  size_t ws_bytes;
  cudaStream_t s;
  cudnnStatus_t conv() const {
    return cg_conv_fwd(ctx, c, bufs->x, bufs->w, bufs->y, d_ws, ws_bytes, s);
  }
  cudnnStatus_t pass() const {
    const cg_conv_shape_t *sh = &c->shape;
    const int64_t npix = (int64_t)sh->n * sh->h * sh->w * (sh->kind == CG_CONV_UP ? 4 : 1);
    const int ldy = sh->ldy ? sh->ldy : sh->cout;
    cg_k_bias_act_fwd_ld(sh->dt, bufs->y, ldy, npix, sh->cout, bufs->bias, sh->bias_act == 2, s);
    return CUDNN_STATUS_SUCCESS;
  }
  cudnnStatus_t operator()() const {
    const cudnnStatus_t st = conv();
    return st == CUDNN_STATUS_SUCCESS ? pass() : st;
  }
  /* The two parts' times (ms; -1: failed), the convolution's from its selection if measured. */
  void time(float *t_conv, float *t_pass) const {
    const int cop = cop_of(c, CG_CONV_OP_FWD);
    *t_conv = c->ms[cop] >= 0 ? c->ms[cop] : time_runs(s, [&] { return conv(); });
    *t_pass = time_runs(s, [&] { return pass(); });
  }
};

/* The fusion decision of a plain layer's forward with its bias (+ ReLU): from the cache, or by
 * timing the fused graph's candidates against the chosen convolution plus cg_k_bias_act_fwd.
 * Returns 1 when it searched. Never fails: without a fused plan the layer stays split. */
int select_fused(cg_conv_ctx_t *ctx, cg_conv_t *c, const cg_conv_bufs_t *bufs, void *d_ws,
                 size_t ws_bytes, cudaStream_t s) {
  const cg_conv_shape_t *sh = &c->shape;
  c->ms_fused = c->ms_split = -1.0f;
  if (sh->kind != CG_CONV_PLAIN || !sh->bias_act || !c->need[COP_FWD] || !bufs->bias ||
      ctx->api == CG_CONV_API_LEGACY || c->gf || c->fp_fused)
    return 0;
  int64_t align = 16;
  while (align > 4 && (uintptr_t)bufs->bias % (uintptr_t)align) align /= 2;
  char op[32], key[sizeof(((entry_t *)0)->key)];
  snprintf(op, sizeof op, "fwd_fused%d_ba%d", sh->bias_act, (int)align);
  make_key(ctx, c, op, key, sizeof key);
  const entry_t *e = lookup(ctx, key);
  cg_cgraph_t *g = NULL;
  if (e && e->graph == -3 && fprop_cached(c, COP_FWD, 1, sh->bias_act == 2, 0, e, &c->fsh_fused)) {
    c->fp_fused = 1; /* our kernel, as on the run that chose it */
    return 0;
  }
  if (e && e->graph != -3) {
    if (e->graph < 0) return 0; /* measured before: split is faster */
    size_t b = 0;
    const bool made = graph_create(ctx, c, COP_FWD, sh->bias_act, align, &g) == CUDNN_STATUS_SUCCESS;
    if (made && e->graph >= cg_cgraph_count(g)) (void)cg_cgraph_sweep(g, kSweepTop, kSweepMax);
    if (made && e->graph < cg_cgraph_count(g) &&
        cg_cgraph_plan(g, e->graph, &b) == CUDNN_STATUS_SUCCESS && b <= ws_bytes) {
      c->gf = g;
      c->ws_fused = b;
      return 0;
    }
    cg_cgraph_destroy(g); /* no longer accepted: search again */
    g = NULL;
  }
  const void *x = bufs->x, *w = bufs->w;
  void *y = bufs->y;
  CG_ASSERT(x != NULL && w != NULL && y != NULL);
  const split_fwd split{ctx, c, bufs, d_ws, ws_bytes, s};
  float t_conv, t_pass;
  split.time(&t_conv, &t_pass);
  int best_i = -1;
  float best = -1.0f;
  size_t best_ws = 0;
  if (graph_create(ctx, c, COP_FWD, sh->bias_act, align, &g) == CUDNN_STATUS_SUCCESS)
    best_i = search_graph(
        ctx, g, ws_bytes, 0.0f, s, [&] { return cg_cgraph_exec(g, x, w, y, bufs->bias, d_ws); },
        &best, &best_ws, sh->dt, y, out_elems(c, COP_FWD), split);
  const bool split_ok = t_conv >= 0 && t_pass >= 0;
  /* our kernel with the bias (+ ReLU) in its epilogue */
  cg_fprop_shape_t ff;
  float t_ours = -1.0f;
  auto ours = [&] { return run_fprop(&ff, 0, x, w, bufs->bias, NULL, y, s); };
  const bool ours_ok = ctx->api == CG_CONV_API_AUTO && split_ok &&
                       fprop_shape(c, COP_FWD, 1, sh->bias_act == 2, 0, &ff);
  if (ours_ok) pick_mt(ctx, &ff, y, out_elems(c, COP_FWD), s, ours);
  if (ours_ok && fusion_by_ours(ctx, c, COP_FWD, y, s, split, ours, 1e-2f, "fused forward",
                                t_conv + t_pass, best_i >= 0 ? best : -1.0f, &t_ours)) {
    cg_cgraph_destroy(g);
    c->fp_fused = 1;
    c->fsh_fused = ff;
    c->ms_fused = t_ours;
    c->ms_split = t_conv + t_pass;
    put(ctx, key, -3, 0, 0, ff.mt);
    ctx->dirty = 1;
    return 1;
  }
  bool fuse = best_i >= 0 && (ctx->api == CG_CONV_API_GRAPH || !split_ok ||
                              best < 0.98f * (t_conv + t_pass));
  cudnnStatus_t kst = CUDNN_STATUS_SUCCESS;
  if (fuse) kst = cg_cgraph_use_kept(g, &best_ws);
  if (kst != CUDNN_STATUS_SUCCESS) {
    fuse = false;
    if (ctx->verbose)
      fprintf(stderr, "conv search: the fused plan could not be restored: %s\n",
              cudnnGetErrorString(kst));
  }
  if (fuse) {
    c->gf = g;
    c->ws_fused = best_ws;
  } else {
    cg_cgraph_destroy(g);
  }
  c->ms_fused = best;
  c->ms_split = split_ok ? t_conv + t_pass : -1.0f;
  put(ctx, key, fuse ? best_i : -1, 0, 0);
  ctx->dirty = 1;
  return 1;
}

}  // namespace

namespace {

/* The fusion decision of an upconv's forward with its bias (+ ReLU) (shape.bias_act): our
 * upconv kernel with them in its epilogue, against the chosen forward plus cg_k_bias_act_fwd
 * (cuDNN offers no fused transposed convolution); checked against that split first. From the
 * cache, or timed. Returns 1 when it searched. Never fails: without it the layer stays split. */
int select_up_fused(cg_conv_ctx_t *ctx, cg_conv_t *c, const cg_conv_bufs_t *bufs, void *d_ws,
                    size_t ws_bytes, cudaStream_t s) {
  const cg_conv_shape_t *sh = &c->shape;
  cg_upconv_shape_t u;
  if (sh->kind != CG_CONV_UP || !sh->bias_act || !c->need[COP_BWD_DATA] || !bufs->bias ||
      ctx->api != CG_CONV_API_AUTO || c->up_fused || !up_shape(c, COP_BWD_DATA, 1, &u))
    return 0;
  char op[32], key[sizeof(((entry_t *)0)->key)];
  snprintf(op, sizeof op, "fwd_fused%d_up%s", sh->bias_act, sh->bias_copy ? "_cb" : "");
  make_key(ctx, c, op, key, sizeof key);
  const entry_t *e = lookup(ctx, key);
  if (e) { /* measured before */
    c->up_fused = e->graph == -4;
    if (c->up_fused) c->ush_fused = u;
    return 0;
  }
  const void *x = bufs->x, *w = bufs->w;
  void *y = bufs->y;
  CG_ASSERT(x != NULL && w != NULL && y != NULL);
  const split_fwd split{ctx, c, bufs, d_ws, ws_bytes, s};
  float t_conv, t_pass;
  split.time(&t_conv, &t_pass);
  /* What fusing saves: the bias pass, unless the concat's copy would add the bias for nothing
   * (shape.bias_copy); then the fused kernel must beat the convolution alone. */
  const float rival = sh->bias_copy ? t_conv : t_conv + t_pass;
  float t_ours = -1.0f;
  const bool fuse =
      t_conv >= 0 && t_pass >= 0 &&
      fusion_by_ours(
          ctx, c, COP_BWD_DATA, y, s, split,
          [&] { return run_up(&u, 0, x, w, bufs->bias, y, NULL, d_ws, ws_bytes, s); }, 1e-2f,
          "upconv forward with its bias", rival, -1.0f, &t_ours);
  c->up_fused = fuse;
  if (fuse) c->ush_fused = u;
  c->ms_fused = t_ours;
  c->ms_split = t_conv >= 0 && t_pass >= 0 ? rival : -1.0f;
  put(ctx, key, fuse ? -4 : -1, 0, 0);
  ctx->dirty = 1;
  return 1;
}

/* The fusion decision of a plain layer's input gradient with the ReLU backward of its input
 * (shape.drelu): from the cache, or by timing the fused graph's candidates against the plain
 * input gradient plus the part of a separate mask pass the fusion saves (the pass reads dx and
 * x and writes dx; what stays without it is one read of dx: about two thirds of it). Returns
 * 1 when it searched. Never fails: without a fused plan the mask stays a separate pass. */
int select_drelu(cg_conv_ctx_t *ctx, cg_conv_t *c, const cg_conv_bufs_t *bufs, void *d_ws,
                 size_t ws_bytes, cudaStream_t s) {
  const cg_conv_shape_t *sh = &c->shape;
  c->ms_drelu = c->ms_unfused = -1.0f;
  if (sh->kind != CG_CONV_PLAIN || !sh->drelu || !c->need[COP_BWD_DATA] ||
      ctx->api == CG_CONV_API_LEGACY || c->gd || c->fp_drelu)
    return 0;
  char key[sizeof(((entry_t *)0)->key)];
  make_key(ctx, c, "bwd_data_drelu", key, sizeof key);
  const entry_t *e = lookup(ctx, key);
  cg_cgraph_t *g = NULL;
  if (e && e->graph == -3 && fprop_cached(c, COP_BWD_DATA, 0, 0, 1, e, &c->fsh_drelu)) {
    c->fp_drelu = 1; /* our kernel, as on the run that chose it */
    return 0;
  }
  if (e && e->graph != -3) {
    if (e->graph < 0) return 0; /* measured before: the separate pass is faster */
    size_t b = 0;
    const bool made = graph_create(ctx, c, COP_BWD_DATA, 0, 0, &g, 1) == CUDNN_STATUS_SUCCESS;
    if (made && e->graph >= cg_cgraph_count(g)) (void)cg_cgraph_sweep(g, kSweepTop, kSweepMax);
    if (made && e->graph < cg_cgraph_count(g) &&
        cg_cgraph_plan(g, e->graph, &b) == CUDNN_STATUS_SUCCESS && b <= ws_bytes) {
      c->gd = g;
      c->ws_drelu = b;
      return 0;
    }
    cg_cgraph_destroy(g); /* no longer accepted: search again */
    g = NULL;
  }
  const void *dy = bufs->dy, *w = bufs->w, *x = bufs->x;
  void *dx = bufs->dx;
  CG_ASSERT(dy != NULL && w != NULL && x != NULL && dx != NULL);
  float t_dx = c->ms[COP_BWD_DATA];
  if (t_dx < 0)
    t_dx = time_runs(s, [&] { return cg_conv_bwd_data(ctx, c, dy, w, dx, 0, d_ws, ws_bytes, s); });
  const int64_t npix = (int64_t)sh->n * sh->h * sh->w;
  const int ld = sh->ldx ? sh->ldx : sh->cin;
  auto mask = [&] {
    cg_k_bias_act_bwd_ld(sh->dt, dx, ld, x, ld, npix, sh->cin, 1, NULL, NULL, s);
    return CUDNN_STATUS_SUCCESS;
  };
  const float t_mask = time_runs(s, mask);
  auto unfused_run = [&] {
    const cudnnStatus_t st = cg_conv_bwd_data(ctx, c, dy, w, dx, 0, d_ws, ws_bytes, s);
    return st == CUDNN_STATUS_SUCCESS ? mask() : st;
  };
  int best_i = -1;
  float best = -1.0f;
  size_t best_ws = 0;
  if (graph_create(ctx, c, COP_BWD_DATA, 0, 0, &g, 1) == CUDNN_STATUS_SUCCESS)
    best_i = search_graph(
        ctx, g, ws_bytes, 0.0f, s, [&] { return cg_cgraph_exec(g, dy, w, dx, x, d_ws); }, &best,
        &best_ws, sh->dt, dx, out_elems(c, COP_BWD_DATA), unfused_run);
  const bool base_ok = t_dx >= 0 && t_mask >= 0;
  const float unfused = base_ok ? t_dx + 0.66f * t_mask : -1.0f;
  /* our kernel with the mask in its epilogue */
  cg_fprop_shape_t fd;
  float t_ours = -1.0f;
  auto ours = [&] { return run_fprop(&fd, 0, dy, w, NULL, x, dx, s); };
  const bool ours_ok = ctx->api == CG_CONV_API_AUTO && base_ok &&
                       fprop_shape(c, COP_BWD_DATA, 0, 0, 1, &fd);
  if (ours_ok) pick_mt(ctx, &fd, dx, out_elems(c, COP_BWD_DATA), s, ours);
  if (ours_ok && fusion_by_ours(ctx, c, COP_BWD_DATA, dx, s, unfused_run, ours, 2e-2f,
                                "dx + ReLU backward", unfused, best_i >= 0 ? best : -1.0f,
                                &t_ours)) {
    cg_cgraph_destroy(g);
    c->fp_drelu = 1;
    c->fsh_drelu = fd;
    c->ms_drelu = t_ours;
    c->ms_unfused = unfused;
    put(ctx, key, -3, 0, 0, fd.mt);
    ctx->dirty = 1;
    return 1;
  }
  bool fuse = best_i >= 0 && (ctx->api == CG_CONV_API_GRAPH || !base_ok || best < 0.98f * unfused);
  if (fuse && cg_cgraph_use_kept(g, &best_ws) != CUDNN_STATUS_SUCCESS) fuse = false;
  /* the fused kernel must mask exactly as the separate pass does (x > 0 passes, x == 0 not) */
  float err = -1.0f;
  if (fuse && !outputs_agree(sh->dt, dx, out_elems(c, COP_BWD_DATA), s, unfused_run,
                            [&] { return cg_cgraph_exec(g, dy, w, dx, x, d_ws); }, 2e-2f, &err)) {
    fuse = false;
    if (ctx->verbose)
      fprintf(stderr, "conv search: dx + ReLU backward fused does not agree with dx and the mask "
              "pass (error %.3g); not used\n", err);
  }
  if (fuse) {
    c->gd = g;
    c->ws_drelu = best_ws;
  } else {
    cg_cgraph_destroy(g);
  }
  c->ms_drelu = best;
  c->ms_unfused = unfused;
  put(ctx, key, fuse ? best_i : -1, 0, 0);
  ctx->dirty = 1;
  return 1;
}

}  // namespace

int cg_conv_select(cg_conv_ctx_t *ctx, cg_conv_t *c, const cg_conv_bufs_t *bufs, void *d_ws,
                   size_t ws_bytes, cudaStream_t s, char *err, size_t errlen) {
  const bool up = c->shape.kind == CG_CONV_UP;
  int searched = 0;
  CG_CHECK_CUDNN(cudnnSetStream(ctx->h, s));
  for (int cop = 0; cop < COP_N; cop++) {
    if (!c->need[cop]) continue;
    char key[sizeof(((entry_t *)0)->key)];
    make_key(ctx, c, kCopName[cop], key, sizeof key);
    const entry_t *e = lookup(ctx, key);
    if (e && apply_cached(ctx, c, cop, e) == 0) continue;
    /* Operands in cuDNN terms (see run_cop) from the layer's buffers. */
    const void *in0 = NULL, *in1 = NULL;
    void *o = NULL;
    if (cop == COP_BWD_FILTER) {
      in0 = up ? bufs->dy : bufs->x;
      in1 = up ? bufs->x : bufs->dy;
      o = bufs->dw;
    } else if ((cop == COP_FWD) != up) { /* the layer's forward */
      in0 = bufs->x;
      in1 = bufs->w;
      o = bufs->y;
    } else { /* the layer's input gradient */
      in0 = bufs->dy;
      in1 = bufs->w;
      o = bufs->dx;
    }
    CG_ASSERT(in0 != NULL && in1 != NULL && o != NULL);
    CG_ASSERT(ws_bytes == 0 || d_ws != NULL);
    char lerr[1024] = "";
    float best = -1.0f;
    size_t best_ws = 0;
    if (select_legacy(ctx, c, cop, in0, in1, o, d_ws, ws_bytes, s, lerr, sizeof lerr) == 0 &&
        ctx->api != CG_CONV_API_GRAPH) {
      best = time_runs(s, [&] {
        return run_cop(ctx->h, c, cop, in0, in1, o, 0.0f, d_ws, ws_bytes);
      });
      best_ws = c->ws_legacy[cop];
    }
    c->ms_legacy[cop] = best;
    int best_g = -1;
    cg_cgraph_t *g = NULL;
    if (ctx->api != CG_CONV_API_LEGACY &&
        graph_create(ctx, c, cop, 0, 0, &g) == CUDNN_STATUS_SUCCESS) {
      /* faster than the legacy winner by 2%, or as fast within 2% with a smaller workspace */
      best_g = search_graph(
          ctx, g, ws_bytes, 0.02f, s, [&] { return cg_cgraph_exec(g, in0, in1, o, NULL, d_ws); },
          &best, &best_ws, c->shape.dt, o, out_elems(c, cop), [&] {
            return c->have_legacy[cop] ? run_cop(ctx->h, c, cop, in0, in1, o, 0.0f, d_ws, ws_bytes)
                                       : CUDNN_STATUS_NOT_SUPPORTED;
          });
      if (best_g >= 0 && cg_cgraph_use_kept(g, &best_ws) != CUDNN_STATUS_SUCCESS) best_g = -1;
      if (best_g < 0) {
        cg_cgraph_destroy(g);
        g = NULL;
      }
    }
    if (cop == COP_BWD_FILTER) c->custom = 0;
    /* (our dW kernel is timed without the bias sum it may also do in the step, fold_db in
     * backend_cuda.cu: that costs it a few mma and saves a whole pass, so the choice stands) */
    /* (deterministic too: its sums run in a fixed order) */
    if (cop == COP_BWD_FILTER && ctx->api == CG_CONV_API_AUTO) {
      /* cuDNN's winner (the graph plan if one won, else the legacy algorithm) as the reference */
      auto run_best = [&] {
        return g ? cg_cgraph_exec(g, in0, in1, o, NULL, d_ws)
                 : run_cop(ctx->h, c, cop, in0, in1, o, 0.0f, d_ws, ws_bytes);
      };
      if (select_custom(ctx, c, in0, in1, o, d_ws, ws_bytes, s, run_best, &best, &best_ws)) {
        c->custom = 1;
        best_g = -2;
        cg_cgraph_destroy(g);
        g = NULL;
      }
    }
    if (cop != COP_BWD_FILTER) c->fp[cop] = 0;
    if (cop != COP_BWD_FILTER && ctx->api == CG_CONV_API_AUTO) {
      auto run_best = [&] {
        return g ? cg_cgraph_exec(g, in0, in1, o, NULL, d_ws)
                 : run_cop(ctx->h, c, cop, in0, in1, o, 0.0f, d_ws, ws_bytes);
      };
      if (select_fprop(ctx, c, cop, in0, in1, o, s, run_best, &best, &best_ws)) {
        c->fp[cop] = 1;
        best_g = -3;
        cg_cgraph_destroy(g);
        g = NULL;
      }
    }
    if (up) c->up[cop] = 0;
    if (up && ctx->api == CG_CONV_API_AUTO) {
      auto run_best = [&] {
        return g ? cg_cgraph_exec(g, in0, in1, o, NULL, d_ws)
                 : run_cop(ctx->h, c, cop, in0, in1, o, 0.0f, d_ws, ws_bytes);
      };
      if (select_up(ctx, c, cop, in0, in1, o, d_ws, ws_bytes, s, run_best, &best, &best_ws)) {
        c->up[cop] = 1;
        best_g = -4;
        cg_cgraph_destroy(g);
        g = NULL;
      }
    }
    if (best < 0) {
      const char *what = up ? "an upconv" : "a conv";
      if (ctx->api == CG_CONV_API_GRAPH)
        snprintf(err, errlen, "no graph-API engine ran for %s (%s)", what, kCopName[cop]);
      else if (!c->have_legacy[cop])
        snprintf(err, errlen, "%s%s", lerr,
                 ctx->api == CG_CONV_API_LEGACY ? "" : "; and no graph-API engine ran either");
      else
        snprintf(err, errlen, "cuDNN %s algo %d failed to run for %s", kCopName[cop],
                 c->algo[cop], what);
      return -1;
    }
    c->g[cop] = g;
    c->ws[cop] = best_ws;
    c->ms[cop] = best;
    c->selected[cop] = 1;
    put(ctx, key, best_g, c->have_legacy[cop] ? c->algo[cop] : -1, (int)c->math[cop],
        best_g == -3 ? c->fsh[cop].mt : 0);
    if (c->custom && !c->have_legacy[cop]) { /* a W line needs no legacy algorithm */ }
    ctx->dirty = 1;
    searched = 1;
  }
  if (select_fused(ctx, c, bufs, d_ws, ws_bytes, s)) searched = 1;
  if (select_up_fused(ctx, c, bufs, d_ws, ws_bytes, s)) searched = 1;
  if (select_drelu(ctx, c, bufs, d_ws, ws_bytes, s)) searched = 1;
  if (searched && ctx->verbose) {
    char desc[768];
    describe(c, desc, sizeof desc, 1);
    fprintf(stderr, "conv search: %s\n", desc);
  }
  return 0;
}

size_t cg_conv_op_ws_bytes(const cg_conv_t *c, int ops) {
  size_t most = 0;
  for (int op = CG_CONV_OP_FWD; op <= CG_CONV_OP_BWD_FILTER; op <<= 1) {
    if (!(ops & op)) continue;
    const int cop = cop_of(c, op);
    if (c->selected[cop] && c->ws[cop] > most) most = c->ws[cop];
    if (op == CG_CONV_OP_FWD && c->gf && c->ws_fused > most) most = c->ws_fused;
    if (op == CG_CONV_OP_BWD_DATA && c->gd && c->ws_drelu > most) most = c->ws_drelu;
  }
  return most;
}

size_t cg_conv_ws_bytes(const cg_conv_t *c) { return cg_conv_op_ws_bytes(c, CG_CONV_OP_ALL); }

void cg_conv_describe(const cg_conv_t *c, char *buf, size_t len) { describe(c, buf, len, 0); }

/* ---- launchers --------------------------------------------------------------------------- */

namespace {

cudnnStatus_t launch(const cg_conv_ctx_t *ctx, const cg_conv_t *c, int cop, const void *in0,
                     const void *in1, void *out, float beta, void *d_ws, size_t ws_bytes,
                     cudaStream_t s) {
  CG_ASSERT(c->selected[cop]);
  CG_ASSERT(in0 != NULL && in1 != NULL && out != NULL);
  CG_ASSERT(ws_bytes >= c->ws[cop] && (c->ws[cop] == 0 || d_ws != NULL));
  cudnnStatus_t st = cudnnSetStream(ctx->h, s);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (c->fp[cop]) return run_fprop(&c->fsh[cop], beta != 0.0f, in0, in1, NULL, NULL, out, s);
  if (c->up[cop]) {
    CG_ASSERT(beta == 0.0f || cop == COP_FWD); /* only the input gradient accumulates */
    return run_up(&c->ush[cop], beta != 0.0f, in0, in1, NULL, out, NULL, d_ws, ws_bytes, s);
  }
  if (c->g[cop] && beta == 0.0f) return cg_cgraph_exec(c->g[cop], in0, in1, out, NULL, d_ws);
  if (c->custom && cop == COP_BWD_FILTER)
    return st_of(cg_wgrad_run(&c->wsh, in0, in1, out, NULL, d_ws, s));
  /* an accumulating call, or no graph plan: the legacy algorithm, if its workspace fits */
  if (!c->have_legacy[cop] || c->ws_legacy[cop] > ws_bytes) return CUDNN_STATUS_NOT_SUPPORTED;
  return run_cop(ctx->h, c, cop, in0, in1, out, beta, d_ws, ws_bytes);
}

}  // namespace

cudnnStatus_t cg_conv_fwd(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                          const void *d_w, void *d_y, void *d_ws, size_t ws_bytes,
                          cudaStream_t s) {
  return launch(ctx, c, cop_of(c, CG_CONV_OP_FWD), d_x, d_w, d_y, 0.0f, d_ws, ws_bytes, s);
}

int cg_conv_fused(const cg_conv_t *c) { return c->gf != NULL || c->fp_fused || c->up_fused; }

cudnnStatus_t cg_conv_fwd_bias_act(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                   const void *d_w, const float *d_bias, void *d_y, void *d_ws,
                                   size_t ws_bytes, cudaStream_t s) {
  if (c->fp_fused) return run_fprop(&c->fsh_fused, 0, d_x, d_w, d_bias, NULL, d_y, s);
  if (c->up_fused)
    return run_up(&c->ush_fused, 0, d_x, d_w, d_bias, d_y, NULL, d_ws, ws_bytes, s);
  CG_ASSERT(c->gf != NULL && d_x != NULL && d_w != NULL && d_bias != NULL && d_y != NULL);
  CG_ASSERT(ws_bytes >= c->ws_fused && (c->ws_fused == 0 || d_ws != NULL));
  cudnnStatus_t st = cudnnSetStream(ctx->h, s);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return cg_cgraph_exec(c->gf, d_x, d_w, d_y, d_bias, d_ws);
}

cudnnStatus_t cg_conv_bwd_data(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_dy,
                               const void *d_w, void *d_dx, int accum, void *d_ws,
                               size_t ws_bytes, cudaStream_t s) {
  return launch(ctx, c, cop_of(c, CG_CONV_OP_BWD_DATA), d_dy, d_w, d_dx, accum ? 1.0f : 0.0f,
                d_ws, ws_bytes, s);
}

cudnnStatus_t cg_conv_bwd_filter(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                 const void *d_dy, void *d_dw, void *d_ws, size_t ws_bytes,
                                 cudaStream_t s) {
  const bool up = c->shape.kind == CG_CONV_UP;
  /* cuDNN's "a" operand is the x-side of the plain convolution, the y-side of the upconv */
  return launch(ctx, c, COP_BWD_FILTER, up ? d_dy : d_x, up ? d_x : d_dy, d_dw, 0.0f, d_ws,
                ws_bytes, s);
}

int cg_conv_dw_has_db(const cg_conv_t *c) {
  return (c->custom || c->up[COP_BWD_FILTER]) && c->selected[COP_BWD_FILTER];
}

cudnnStatus_t cg_conv_bwd_filter_db(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_x,
                                    const void *d_dy, void *d_dw, float *d_db, void *d_ws,
                                    size_t ws_bytes, cudaStream_t s) {
  (void)ctx;
  if (!cg_conv_dw_has_db(c)) return CUDNN_STATUS_NOT_SUPPORTED;
  CG_ASSERT(d_x != NULL && d_dy != NULL && d_dw != NULL && d_db != NULL);
  CG_ASSERT(ws_bytes >= c->ws[COP_BWD_FILTER] && d_ws != NULL);
  if (c->up[COP_BWD_FILTER]) /* cuDNN's operands: dy, then x */
    return run_up(&c->ush[COP_BWD_FILTER], 0, d_dy, d_x, NULL, d_dw, d_db, d_ws, ws_bytes, s);
  return st_of(cg_wgrad_run(&c->wsh, d_x, d_dy, d_dw, d_db, d_ws, s));
}

int cg_conv_drelu_fused(const cg_conv_t *c) { return c->gd != NULL || c->fp_drelu; }

cudnnStatus_t cg_conv_bwd_data_drelu(const cg_conv_ctx_t *ctx, const cg_conv_t *c, const void *d_dy,
                                     const void *d_w, const void *d_x, void *d_dx, void *d_ws,
                                     size_t ws_bytes, cudaStream_t s) {
  if (c->fp_drelu) return run_fprop(&c->fsh_drelu, 0, d_dy, d_w, NULL, d_x, d_dx, s);
  CG_ASSERT(c->gd != NULL && d_dy != NULL && d_w != NULL && d_x != NULL && d_dx != NULL);
  CG_ASSERT(ws_bytes >= c->ws_drelu && (c->ws_drelu == 0 || d_ws != NULL));
  cudnnStatus_t st = cudnnSetStream(ctx->h, s);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  return cg_cgraph_exec(c->gd, d_dy, d_w, d_dx, d_x, d_ws);
}
