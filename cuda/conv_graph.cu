/* conv_graph.cu: one convolution operation through cuDNN's graph API (see conv_graph.h).
 *
 * Descriptors are kept for the life of the object: cuDNN documents no rule that a finalized
 * plan outlives the graph it came from, so nothing is destroyed early. Unique ids of the three
 * tensors are fixed (a = 1, w = 2, b = 3). The handle attributes of the operation graph and the
 * plan are deprecated in cuDNN 9.x in favour of device-property descriptors but still required
 * for a plan that executes; they are set through their numeric values to keep builds free of
 * deprecation warnings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_graph.h"

namespace {

enum { kUidA = 1, kUidW = 2, kUidB = 3, kUidBias = 4, kUidConv = 5, kUidSum = 6 };
enum { kPacks = 8 };  /* cached variant packs per operation */
enum { kMaxCfg = 64 };
enum { kMaxRtc = 3 }; /* runtime-compiled candidates per operation: each costs a compilation */
const cudnnBackendAttributeName_t kOpGraphHandle = (cudnnBackendAttributeName_t)800;
const cudnnBackendAttributeName_t kPlanHandle = (cudnnBackendAttributeName_t)400;

/* Per operation: the descriptor type and its attributes a, w, b, conv, alpha, beta. */
const cudnnBackendDescriptorType_t kOpType[3] = {
    CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR,
    CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR,
    CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR};
const cudnnBackendAttributeName_t kOpAttr[3][6] = {
    {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA},
    {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA,
     CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA}};

typedef cudnnBackendDescriptor_t desc_t;

struct pack_t {
  const void *in0, *in1, *bias;
  void *out, *ws;
  desc_t d;
};

#define TRY(call)                                   \
  do {                                              \
    cudnnStatus_t cg_try_st_ = (call);              \
    if (cg_try_st_ != CUDNN_STATUS_SUCCESS) return cg_try_st_; \
  } while (0)

cudnnStatus_t set1(desc_t d, cudnnBackendAttributeName_t a, cudnnBackendAttributeType_t t,
                   const void *v) {
  return cudnnBackendSetAttribute(d, a, t, 1, v);
}

/* A dense NHWC tensor of logical dims (n, c, h, w); virtual ones live only inside a fused
 * kernel. */
cudnnStatus_t make_tensor(desc_t *out, int64_t uid, cudnnDataType_t dt, int64_t n, int64_t c,
                          int64_t h, int64_t w, int64_t align = 16, bool is_virtual = false) {
  const int64_t dims[4] = {n, c, h, w};
  const int64_t strides[4] = {h * w * c, 1, w * c, c};
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_TENSOR_DESCRIPTOR, out));
  TRY(set1(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &dt));
  TRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims));
  TRY(cudnnBackendSetAttribute(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides));
  TRY(set1(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid));
  TRY(set1(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &align));
  if (is_virtual) {
    const bool v = true;
    TRY(set1(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &v));
  }
  return cudnnBackendFinalize(*out);
}

/* A pointwise node y = mode(x[, b]) computed in fp32. *pw receives the pointwise descriptor
 * (owned by the caller as well). */
cudnnStatus_t make_pointwise(desc_t *op, desc_t *pw, cudnnPointwiseMode_t mode, desc_t x, desc_t b,
                             desc_t y) {
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, pw));
  TRY(set1(*pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode));
  TRY(set1(*pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &prec));
  TRY(cudnnBackendFinalize(*pw));
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op));
  TRY(set1(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw));
  TRY(set1(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &x));
  if (b) TRY(set1(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &b));
  TRY(set1(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, &y));
  return cudnnBackendFinalize(*op);
}

bool has_note(desc_t cfg, cudnnBackendNumericalNote_t want) {
  desc_t eng = NULL;
  bool found = false;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS)
    return true; /* cannot tell: treat as forbidden */
  int64_t got = 0, nn = 0;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                               &got, &eng) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &nn, notes) != CUDNN_STATUS_SUCCESS)
    found = true;
  for (int64_t i = 0; i < nn && !found; i++) found = notes[i] == want;
  cudnnBackendDestroyDescriptor(eng);
  return found;
}

/* Whether the engine compiles its kernel when the plan is finalized (NVRTC: seconds). */
bool runtime_compiled(desc_t cfg) {
  desc_t eng = NULL;
  bool found = false;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS)
    return false;
  int64_t got = 0, nn = 0;
  cudnnBackendBehaviorNote_t notes[CUDNN_BEHAVIOR_NOTE_TYPE_COUNT];
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                               &got, &eng) == CUDNN_STATUS_SUCCESS &&
      cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_BEHAVIOR_NOTE, CUDNN_TYPE_BEHAVIOR_NOTE,
                               CUDNN_BEHAVIOR_NOTE_TYPE_COUNT, &nn, notes) == CUDNN_STATUS_SUCCESS)
    for (int64_t i = 0; i < nn && !found; i++) found = notes[i] == CUDNN_BEHAVIOR_NOTE_RUNTIME_COMPILATION;
  cudnnBackendDestroyDescriptor(eng);
  return found;
}

int64_t engine_index(desc_t cfg) {
  desc_t eng = NULL;
  int64_t idx = -1, got = 0;
  if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS)
    return -1;
  if (cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                               &got, &eng) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &got,
                               &idx) != CUDNN_STATUS_SUCCESS)
    idx = -1;
  cudnnBackendDestroyDescriptor(eng);
  return idx;
}

}  // namespace

struct cg_cgraph {
  cudnnHandle_t h;
  cg_cgraph_shape_t s;
  desc_t ta, tw, tb, conv, op, graph;
  /* the fused forward: bias, the virtual conv output and sum, the pointwise nodes */
  desc_t tbias, tconv, tsum, pw_add, op_add, pw_relu, op_relu;
  desc_t cfg[kMaxCfg];
  int ncfg;
  int nrtc; /* runtime-compiled candidates kept (at most kMaxRtc) */
  desc_t plan;
  int cur; /* candidate behind plan, -1 none */
  /* a plan set aside by cg_cgraph_keep (may be plan itself): finalized once, never again, as a
   * second finalize of a runtime-compiled configuration is not guaranteed to succeed */
  desc_t kept;
  int kept_cur;
  size_t kept_ws, cur_ws;
  pack_t pack[kPacks];
  int next_pack;
};

namespace {

void drop_packs(cg_cgraph_t *g) {
  for (int i = 0; i < kPacks; i++) {
    if (g->pack[i].d) cudnnBackendDestroyDescriptor(g->pack[i].d);
    memset(&g->pack[i], 0, sizeof g->pack[i]);
  }
  g->next_pack = 0;
}

/* Appends the configurations of one heuristic mode that pass the rules. */
cudnnStatus_t add_mode(cg_cgraph_t *g, cudnnBackendHeurMode_t mode, int det, int strict,
                       int max_cand) {
  desc_t heur = NULL;
  desc_t cfgs[kMaxCfg];
  int64_t count = 0, got = 0;
  int made = 0;
  cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  st = set1(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->graph);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(heur);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
  if (st == CUDNN_STATUS_SUCCESS && count > 0) {
    if (count > kMaxCfg) count = kMaxCfg;
    for (; made < count; made++) {
      st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[made]);
      if (st != CUDNN_STATUS_SUCCESS) break;
    }
    if (st == CUDNN_STATUS_SUCCESS)
      st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                    CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, cfgs);
    for (int i = 0; i < made; i++) {
      bool keep = st == CUDNN_STATUS_SUCCESS && i < got && g->ncfg < max_cand && g->ncfg < kMaxCfg;
      if (keep && det) keep = !has_note(cfgs[i], CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC);
      if (keep && strict)
        keep = !has_note(cfgs[i], CUDNN_NUMERICAL_NOTE_TENSOR_CORE) &&
               !has_note(cfgs[i], CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS);
      /* the fallback list repeats engines heuristics already gave */
      const int64_t e = keep ? engine_index(cfgs[i]) : -1;
      for (int j = 0; keep && mode == CUDNN_HEUR_MODE_FALLBACK && j < g->ncfg; j++)
        if (engine_index(g->cfg[j]) == e) keep = false;
      if (keep && runtime_compiled(cfgs[i])) {
        keep = g->nrtc < kMaxRtc;
        g->nrtc += keep;
      }
      if (keep) g->cfg[g->ncfg++] = cfgs[i];
      else cudnnBackendDestroyDescriptor(cfgs[i]);
    }
  }
  cudnnBackendDestroyDescriptor(heur);
  return st;
}

}  // namespace

cudnnStatus_t cg_cgraph_create(cudnnHandle_t h, const cg_cgraph_shape_t *s, int deterministic,
                               int strict_fp32, int max_cand, cg_cgraph_t **out) {
  *out = NULL;
  cg_cgraph_t *g = (cg_cgraph_t *)calloc(1, sizeof *g);
  if (!g) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
  g->h = h;
  g->s = *s;
  g->cur = -1;
  const int fuse = s->op == CG_CGRAPH_FWD ? s->fuse : 0;
  if (s->fuse < 0 || s->fuse > 2 || (s->fuse && s->op != CG_CGRAPH_FWD)) {
    free(g);
    return CUDNN_STATUS_BAD_PARAM;
  }
  const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
  const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  const int64_t nsp = 2, one[2] = {1, 1}, pad[2] = {s->pad, s->pad};
  const int64_t stride[2] = {s->stride, s->stride};
  const float alpha = 1.0f, beta = 0.0f;
  const cudnnBackendDescriptorType_t optype = kOpType[s->op];
  const cudnnBackendAttributeName_t *an = kOpAttr[s->op];
  cudnnStatus_t st;
  /* a, w, b in the attribute order of the operation (x/dx, w/dw, y/dy) */
  st = make_tensor(&g->ta, kUidA, s->dt, s->n, s->ca, s->ha, s->wa);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = make_tensor(&g->tw, kUidW, s->dt, s->cb, s->ca, s->k, s->k);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = make_tensor(&g->tb, kUidB, s->dt, s->n, s->cb, s->hb, s->wb);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &g->conv);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &comp);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, &mode);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, &nsp);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, one);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendSetAttribute(g->conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(g->conv);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  if (fuse) {
    st = make_tensor(&g->tbias, kUidBias, CUDNN_DATA_FLOAT, 1, s->cb, 1, 1, s->bias_align);
    if (st == CUDNN_STATUS_SUCCESS)
      st = make_tensor(&g->tconv, kUidConv, CUDNN_DATA_FLOAT, s->n, s->cb, s->hb, s->wb, 16, true);
    if (st == CUDNN_STATUS_SUCCESS && s->fuse == 2)
      st = make_tensor(&g->tsum, kUidSum, CUDNN_DATA_FLOAT, s->n, s->cb, s->hb, s->wb, 16, true);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
  }
  st = cudnnBackendCreateDescriptor(optype, &g->op);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->op, an[0], CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->ta);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->op, an[1], CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->tw);
  if (st == CUDNN_STATUS_SUCCESS)
    st = set1(g->op, an[2], CUDNN_TYPE_BACKEND_DESCRIPTOR, fuse ? &g->tconv : &g->tb);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->op, an[3], CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->conv);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->op, an[4], CUDNN_TYPE_FLOAT, &alpha);
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->op, an[5], CUDNN_TYPE_FLOAT, &beta);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(g->op);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  if (fuse) {
    st = make_pointwise(&g->op_add, &g->pw_add, CUDNN_POINTWISE_ADD, g->tconv, g->tbias,
                        s->fuse == 2 ? g->tsum : g->tb);
    if (st == CUDNN_STATUS_SUCCESS && s->fuse == 2)
      st = make_pointwise(&g->op_relu, &g->pw_relu, CUDNN_POINTWISE_RELU_FWD, g->tsum, NULL, g->tb);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
  }
  st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph);
  if (st == CUDNN_STATUS_SUCCESS) {
    desc_t ops[3] = {g->op, g->op_add, g->op_relu};
    st = cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1 + (fuse ? s->fuse : 0), ops);
  }
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->graph, kOpGraphHandle, CUDNN_TYPE_HANDLE, &g->h);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(g->graph);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = add_mode(g, CUDNN_HEUR_MODE_A, deterministic, strict_fp32, max_cand);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  /* the fallback list is best effort: heuristics alone suffice */
  (void)add_mode(g, CUDNN_HEUR_MODE_FALLBACK, deterministic, strict_fp32, max_cand);
  if (g->ncfg == 0) {
    st = CUDNN_STATUS_NOT_SUPPORTED;
    goto fail;
  }
  *out = g;
  return CUDNN_STATUS_SUCCESS;
fail:
  cg_cgraph_destroy(g);
  return st;
}

void cg_cgraph_destroy(cg_cgraph_t *g) {
  if (!g) return;
  drop_packs(g);
  if (g->kept && g->kept != g->plan) cudnnBackendDestroyDescriptor(g->kept);
  if (g->plan) cudnnBackendDestroyDescriptor(g->plan);
  for (int i = 0; i < g->ncfg; i++) cudnnBackendDestroyDescriptor(g->cfg[i]);
  desc_t ds[13] = {g->graph, g->op_relu, g->pw_relu, g->op_add, g->pw_add, g->op, g->conv,
                   g->tsum, g->tconv, g->tbias, g->tb, g->tw, g->ta};
  for (int i = 0; i < 13; i++)
    if (ds[i]) cudnnBackendDestroyDescriptor(ds[i]);
  free(g);
}

int cg_cgraph_count(const cg_cgraph_t *g) { return g->ncfg; }

cudnnStatus_t cg_cgraph_plan(cg_cgraph_t *g, int i, size_t *ws_bytes) {
  *ws_bytes = 0;
  if (i < 0 || i >= g->ncfg) return CUDNN_STATUS_BAD_PARAM;
  drop_packs(g); /* packs belong to the plan they were made for */
  if (g->plan && g->plan != g->kept) cudnnBackendDestroyDescriptor(g->plan);
  g->plan = NULL;
  g->cur = -1;
  desc_t p = NULL;
  int64_t ws = 0, got = 0;
  cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  st = set1(p, kPlanHandle, CUDNN_TYPE_HANDLE, &g->h);
  if (st == CUDNN_STATUS_SUCCESS)
    st = set1(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->cfg[i]);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(p);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnBackendGetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1,
                                  &got, &ws);
  if (st != CUDNN_STATUS_SUCCESS || ws < 0) {
    cudnnBackendDestroyDescriptor(p);
    return st != CUDNN_STATUS_SUCCESS ? st : CUDNN_STATUS_INTERNAL_ERROR;
  }
  g->plan = p;
  g->cur = i;
  g->cur_ws = (size_t)ws;
  *ws_bytes = (size_t)ws;
  return CUDNN_STATUS_SUCCESS;
}

void cg_cgraph_keep(cg_cgraph_t *g) {
  if (!g->plan || g->kept == g->plan) return;
  if (g->kept) cudnnBackendDestroyDescriptor(g->kept);
  g->kept = g->plan;
  g->kept_cur = g->cur;
  g->kept_ws = g->cur_ws;
}

cudnnStatus_t cg_cgraph_use_kept(cg_cgraph_t *g, size_t *ws_bytes) {
  *ws_bytes = 0;
  if (!g->kept) return CUDNN_STATUS_BAD_PARAM;
  if (g->plan != g->kept) {
    drop_packs(g);
    if (g->plan) cudnnBackendDestroyDescriptor(g->plan);
    g->plan = g->kept;
    g->cur = g->kept_cur;
    g->cur_ws = g->kept_ws;
  }
  *ws_bytes = g->kept_ws;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cg_cgraph_exec(cg_cgraph_t *g, const void *in0, const void *in1, void *out,
                             const float *bias, void *ws) {
  if (!g->plan || (g->s.fuse != 0) != (bias != NULL)) return CUDNN_STATUS_BAD_PARAM;
  if (bias && (uintptr_t)bias % (uintptr_t)g->s.bias_align) return CUDNN_STATUS_BAD_PARAM;
  pack_t *p = NULL;
  for (int i = 0; i < kPacks && !p; i++)
    if (g->pack[i].d && g->pack[i].in0 == in0 && g->pack[i].in1 == in1 && g->pack[i].out == out &&
        g->pack[i].bias == bias && g->pack[i].ws == ws)
      p = &g->pack[i];
  if (!p) {
    /* operands by tensor: a, w, b */
    const void *a, *w, *b;
    switch (g->s.op) {
      case CG_CGRAPH_FWD: a = in0; w = in1; b = out; break;
      case CG_CGRAPH_BWD_DATA: a = out; w = in1; b = in0; break;
      default: a = in0; w = out; b = in1; break;
    }
    void *ptrs[4] = {(void *)a, (void *)w, (void *)b, (void *)bias};
    const int64_t uids[4] = {kUidA, kUidW, kUidB, kUidBias};
    const int64_t nptr = bias ? 4 : 3;
    desc_t d = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &d);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    st = cudnnBackendSetAttribute(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, nptr,
                                  uids);
    if (st == CUDNN_STATUS_SUCCESS)
      st = cudnnBackendSetAttribute(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                                    nptr, ptrs);
    if (st == CUDNN_STATUS_SUCCESS)
      st = set1(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &ws);
    if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) {
      cudnnBackendDestroyDescriptor(d);
      return st;
    }
    p = &g->pack[g->next_pack];
    g->next_pack = (g->next_pack + 1) % kPacks;
    if (p->d) cudnnBackendDestroyDescriptor(p->d);
    p->in0 = in0;
    p->in1 = in1;
    p->bias = bias;
    p->out = out;
    p->ws = ws;
    p->d = d;
  }
  return cudnnBackendExecute(g->h, g->plan, p->d);
}

void cg_cgraph_describe(const cg_cgraph_t *g, char *buf, size_t len) {
  if (g->cur < 0) snprintf(buf, len, "no plan");
  else snprintf(buf, len, "eng %lld cfg %d", (long long)engine_index(g->cfg[g->cur]), g->cur);
}
