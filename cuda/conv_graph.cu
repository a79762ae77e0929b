/* conv_graph.cu: one convolution operation through cuDNN's graph API (see conv_graph.h).
 *
 * Descriptors are kept for the life of the object: cuDNN documents no rule that a finalized
 * plan outlives the graph it came from, so nothing is destroyed early. Unique ids of the three
 * tensors are fixed (a = 1, w = 2, b = 3). The handle attributes of the operation graph and the
 * plan are deprecated in cuDNN 9.x in favour of device-property descriptors but still required
 * for a plan that executes; they are set through their numeric values to keep builds free of
 * deprecation warnings. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_graph.h"

namespace {

enum { kUidA = 1, kUidW = 2, kUidB = 3, kUidBias = 4, kUidConv = 5, kUidSum = 6, kUidMask = 7 };
enum { kPacks = 8 };  /* cached variant packs per operation */
enum { kMaxCfg = 192 };
enum { kMaxRtc = 3 }; /* runtime-compiled candidates per operation: each costs a compilation */
enum { kMaxKnobs = CUDNN_KNOB_TYPE_COUNTS };
enum { kSweepValues = 8 }; /* values tried per knob: all of a small range, else spread */
enum { kSigLen = 512 };     /* a configuration's signature (44 knobs fit) */
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

/* An NHWC tensor of logical dims (n, c, h, w) and pixel stride ld (0: dense, ld = c); virtual
 * ones live only inside a fused kernel. */
cudnnStatus_t make_tensor(desc_t *out, int64_t uid, cudnnDataType_t dt, int64_t n, int64_t c,
                          int64_t h, int64_t w, int64_t align = 16, bool is_virtual = false,
                          int64_t ld = 0) {
  const int64_t dims[4] = {n, c, h, w};
  const int64_t px = ld > 0 ? ld : c;
  const int64_t strides[4] = {h * w * px, 1, w * px, px};
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

/* A pointwise descriptor of mode computed in fp32. */
cudnnStatus_t make_pw(desc_t *pw, cudnnPointwiseMode_t mode) {
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, pw));
  TRY(set1(*pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode));
  TRY(set1(*pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &prec));
  return cudnnBackendFinalize(*pw);
}

/* A pointwise node y = mode(x[, b]) in fp32 (forward modes), or, with bwd, dx = mode(dy, x)
 * (RELU_BWD: dy where x > 0) with x, b, y standing for dy, x, dx. *pw receives the pointwise
 * descriptor (owned by the caller as well). */
cudnnStatus_t make_pointwise(desc_t *op, desc_t *pw, cudnnPointwiseMode_t mode, desc_t x, desc_t b,
                             desc_t y, bool bwd = false) {
  TRY(make_pw(pw, mode));
  TRY(cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op));
  TRY(set1(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, pw));
  TRY(set1(*op, bwd ? CUDNN_ATTR_OPERATION_POINTWISE_DYDESC : CUDNN_ATTR_OPERATION_POINTWISE_XDESC,
           CUDNN_TYPE_BACKEND_DESCRIPTOR, &x));
  if (b)
    TRY(set1(*op, bwd ? CUDNN_ATTR_OPERATION_POINTWISE_XDESC : CUDNN_ATTR_OPERATION_POINTWISE_BDESC,
             CUDNN_TYPE_BACKEND_DESCRIPTOR, &b));
  TRY(set1(*op, bwd ? CUDNN_ATTR_OPERATION_POINTWISE_DXDESC : CUDNN_ATTR_OPERATION_POINTWISE_YDESC,
           CUDNN_TYPE_BACKEND_DESCRIPTOR, &y));
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

/* The knob choices of a configuration: types and values (count at most kMaxKnobs). */
int knob_choices(desc_t cfg, cudnnBackendKnobType_t *type, int64_t *value) {
  desc_t ch[kMaxKnobs] = {};
  int64_t got = 0;
  int n = 0;
  for (int i = 0; i < kMaxKnobs; i++)
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR, &ch[i]) !=
        CUDNN_STATUS_SUCCESS)
      ch[i] = NULL;
  bool ok = true;
  for (int i = 0; i < kMaxKnobs; i++) ok = ok && ch[i];
  if (ok && cudnnBackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, kMaxKnobs, &got, ch) ==
                CUDNN_STATUS_SUCCESS) {
    for (int64_t i = 0; i < got && i < kMaxKnobs; i++) {
      int64_t g1 = 0, g2 = 0;
      if (cudnnBackendGetAttribute(ch[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE,
                                   1, &g1, &type[n]) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(ch[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, 1,
                                   &g2, &value[n]) == CUDNN_STATUS_SUCCESS)
        n++;
    }
  }
  for (int i = 0; i < kMaxKnobs; i++)
    if (ch[i]) cudnnBackendDestroyDescriptor(ch[i]);
  return n;
}

/* "engine:type=value,..." with the knobs sorted by type: two configurations with the same
 * signature run the same kernel. A signature that does not fit is left empty, and an empty one
 * equals nothing (a repeat kept is only a wasted timing). */
void signature(desc_t cfg, char *buf, size_t len) {
  cudnnBackendKnobType_t t[kMaxKnobs];
  int64_t v[kMaxKnobs];
  const int n = knob_choices(cfg, t, v);
  for (int i = 1; i < n; i++) /* insertion sort by type */
    for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
      const cudnnBackendKnobType_t tt = t[j];
      t[j] = t[j - 1];
      t[j - 1] = tt;
      const int64_t vv = v[j];
      v[j] = v[j - 1];
      v[j - 1] = vv;
    }
  int k = snprintf(buf, len, "%lld:", (long long)engine_index(cfg));
  for (int i = 0; i < n && k > 0 && (size_t)k < len; i++)
    k += snprintf(buf + k, len - (size_t)k, "%d=%lld,", (int)t[i], (long long)v[i]);
  if (k <= 0 || (size_t)k >= len) buf[0] = 0;
}

/* Whether a signature repeats one of the first n. */
bool repeats(char (*sigs)[kSigLen], int n, const char *sig) {
  if (!sig[0]) return false;
  for (int j = 0; j < n; j++)
    if (!strcmp(sigs[j], sig)) return true;
  return false;
}

}  // namespace

struct cg_cgraph {
  cudnnHandle_t h;
  cg_cgraph_shape_t s;
  desc_t ta, tw, tb, conv, op, graph;
  /* the fused forward: bias, the virtual conv output and sum, the pointwise nodes; the fused
   * backward-data: the virtual dgrad output (tconv), the ReLU's output (tmask), RELU_BWD */
  desc_t tbias, tconv, tsum, pw_add, op_add, pw_relu, op_relu, tmask;
  desc_t cfg[kMaxCfg];
  char sig[kMaxCfg][kSigLen]; /* signature() of each, to leave out repeats */
  int ncfg;
  int nheur;              /* the first nheur come from the heuristics, the rest from the sweep */
  int swept;              /* cg_cgraph_sweep ran */
  int nrtc; /* runtime-compiled candidates kept (at most kMaxRtc) */
  int det, strict; /* the rules the candidates passed */
  desc_t *owned;    /* descriptors the swept configurations refer to (engines, knob choices) */
  int nowned, capowned;
  desc_t plan;
  int cur; /* candidate behind plan, -1 none */
  /* a plan set aside by cg_cgraph_keep (may be plan itself): finalized once, never again, as a
   * second finalize of a runtime-compiled configuration is not guaranteed to succeed */
  desc_t kept;
  int kept_cur;
  size_t kept_ws, cur_ws;
  /* the heuristics' winner, held while the knob sweep looks for a faster variant, so that a
   * winning variant's output can be checked against it (cg_cgraph_hold) */
  desc_t held;
  int held_cur;
  size_t held_ws;
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
      /* the fallback list repeats engines heuristics already gave, and mode B repeats
       * configurations of mode A */
      char sig[sizeof g->sig[0]] = "";
      if (keep) signature(cfgs[i], sig, sizeof sig);
      const int64_t e = keep ? engine_index(cfgs[i]) : -1;
      if (keep && repeats(g->sig, g->ncfg, sig)) keep = false;
      for (int j = 0; keep && mode == CUDNN_HEUR_MODE_FALLBACK && j < g->ncfg; j++)
        if (engine_index(g->cfg[j]) == e) keep = false;
      if (keep && runtime_compiled(cfgs[i])) {
        keep = g->nrtc < kMaxRtc;
        g->nrtc += keep;
      }
      if (keep) {
        snprintf(g->sig[g->ncfg], sizeof g->sig[0], "%s", sig);
        g->cfg[g->ncfg++] = cfgs[i];
      } else {
        cudnnBackendDestroyDescriptor(cfgs[i]);
      }
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
  const int drelu = s->op == CG_CGRAPH_BWD_DATA ? s->drelu : 0;
  if (s->fuse < 0 || s->fuse > 2 || (s->fuse && s->op != CG_CGRAPH_FWD) ||
      (s->drelu && s->op != CG_CGRAPH_BWD_DATA)) {
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
  st = make_tensor(&g->ta, kUidA, s->dt, s->n, s->ca, s->ha, s->wa, 16, false, s->lda);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = make_tensor(&g->tw, kUidW, s->dt, s->cb, s->ca, s->k, s->k);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = make_tensor(&g->tb, kUidB, s->dt, s->n, s->cb, s->hb, s->wb, 16, false, s->ldb);
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
  if (drelu) { /* da = dgrad(db, w) * (m > 0), m shaped and strided like a */
    st = make_tensor(&g->tconv, kUidConv, CUDNN_DATA_FLOAT, s->n, s->ca, s->ha, s->wa, 16, true);
    if (st == CUDNN_STATUS_SUCCESS)
      st = make_tensor(&g->tmask, kUidMask, s->dt, s->n, s->ca, s->ha, s->wa, 16, false, s->lda);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
  }
  st = cudnnBackendCreateDescriptor(optype, &g->op);
  if (st == CUDNN_STATUS_SUCCESS)
    st = set1(g->op, an[0], CUDNN_TYPE_BACKEND_DESCRIPTOR, drelu ? &g->tconv : &g->ta);
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
  if (drelu) {
    st = make_pointwise(&g->op_relu, &g->pw_relu, CUDNN_POINTWISE_RELU_BWD, g->tconv, g->tmask,
                        g->ta, true);
    if (st != CUDNN_STATUS_SUCCESS) goto fail;
  }
  st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &g->graph);
  if (st == CUDNN_STATUS_SUCCESS) {
    desc_t ops[3] = {g->op, g->op_add, g->op_relu};
    if (drelu) ops[1] = g->op_relu;
    st = cudnnBackendSetAttribute(g->graph, CUDNN_ATTR_OPERATIONGRAPH_OPS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                  1 + (fuse ? s->fuse : 0) + (drelu ? 1 : 0), ops);
  }
  if (st == CUDNN_STATUS_SUCCESS) st = set1(g->graph, kOpGraphHandle, CUDNN_TYPE_HANDLE, &g->h);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(g->graph);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  st = add_mode(g, CUDNN_HEUR_MODE_A, deterministic, strict_fp32, max_cand);
  if (st != CUDNN_STATUS_SUCCESS) goto fail;
  /* mode B (a slower, more thorough model) and the fallback list are best effort: mode A
   * alone suffices */
  (void)add_mode(g, CUDNN_HEUR_MODE_B, deterministic, strict_fp32, max_cand);
  (void)add_mode(g, CUDNN_HEUR_MODE_FALLBACK, deterministic, strict_fp32, max_cand);
  g->nheur = g->ncfg;
  g->det = deterministic;
  g->strict = strict_fp32;
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
  for (int i = 0; i < g->nowned; i++) cudnnBackendDestroyDescriptor(g->owned[i]);
  free(g->owned);
  if (g->held && g->held != g->plan && g->held != g->kept) cudnnBackendDestroyDescriptor(g->held);
  if (g->kept && g->kept != g->plan) cudnnBackendDestroyDescriptor(g->kept);
  if (g->plan) cudnnBackendDestroyDescriptor(g->plan);
  for (int i = 0; i < g->ncfg; i++) cudnnBackendDestroyDescriptor(g->cfg[i]);
  desc_t ds[14] = {g->graph, g->op_relu, g->pw_relu, g->op_add, g->pw_add, g->op, g->conv,
                   g->tsum, g->tconv, g->tbias, g->tb, g->tw, g->ta, g->tmask};
  for (int i = 0; i < 14; i++)
    if (ds[i]) cudnnBackendDestroyDescriptor(ds[i]);
  free(g);
}

int cg_cgraph_count(const cg_cgraph_t *g) { return g->ncfg; }

int cg_cgraph_heuristic_count(const cg_cgraph_t *g) { return g->nheur; }

namespace {

/* Keeps d alive as long as g (the configurations made from it refer to it). */
bool own(cg_cgraph_t *g, desc_t d) {
  if (g->nowned == g->capowned) {
    const int cap = g->capowned ? 2 * g->capowned : 64;
    desc_t *n = (desc_t *)realloc(g->owned, sizeof(desc_t) * (size_t)cap);
    if (!n) return false;
    g->owned = n;
    g->capowned = cap;
  }
  g->owned[g->nowned++] = d;
  return true;
}

/* A new engine descriptor for the engine behind cfg, built the documented way (operation graph
 * and global index, finalized), or NULL. */
desc_t engine_of(const cg_cgraph_t *g, desc_t cfg) {
  const int64_t idx = engine_index(cfg);
  desc_t eng = NULL;
  if (idx < 0 ||
      cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) != CUDNN_STATUS_SUCCESS)
    return NULL;
  if (set1(eng, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, &g->graph) !=
          CUDNN_STATUS_SUCCESS ||
      set1(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, &idx) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendFinalize(eng) != CUDNN_STATUS_SUCCESS) {
    cudnnBackendDestroyDescriptor(eng);
    return NULL;
  }
  return eng;
}

struct knob_info_t {
  cudnnBackendKnobType_t type;
  int64_t lo, hi, stride;
};

/* The knobs an engine offers, with their ranges. */
int knob_infos(desc_t eng, knob_info_t *out) {
  desc_t info[kMaxKnobs] = {};
  int64_t got = 0;
  int n = 0;
  bool ok = true;
  for (int i = 0; i < kMaxKnobs; i++)
    ok = ok && cudnnBackendCreateDescriptor(CUDNN_BACKEND_KNOB_INFO_DESCRIPTOR, &info[i]) ==
                   CUDNN_STATUS_SUCCESS;
  if (ok && cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_KNOB_INFO,
                                     CUDNN_TYPE_BACKEND_DESCRIPTOR, kMaxKnobs, &got, info) ==
                CUDNN_STATUS_SUCCESS) {
    for (int64_t i = 0; i < got && i < kMaxKnobs; i++) {
      int64_t c1, c2, c3, c4;
      knob_info_t k;
      if (cudnnBackendGetAttribute(info[i], CUDNN_ATTR_KNOB_INFO_TYPE, CUDNN_TYPE_KNOB_TYPE, 1,
                                   &c1, &k.type) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(info[i], CUDNN_ATTR_KNOB_INFO_MINIMUM_VALUE, CUDNN_TYPE_INT64,
                                   1, &c2, &k.lo) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(info[i], CUDNN_ATTR_KNOB_INFO_MAXIMUM_VALUE, CUDNN_TYPE_INT64,
                                   1, &c3, &k.hi) == CUDNN_STATUS_SUCCESS &&
          cudnnBackendGetAttribute(info[i], CUDNN_ATTR_KNOB_INFO_STRIDE, CUDNN_TYPE_INT64, 1, &c4,
                                   &k.stride) == CUDNN_STATUS_SUCCESS &&
          k.hi >= k.lo)
        out[n++] = k;
    }
  }
  for (int i = 0; i < kMaxKnobs; i++)
    if (info[i]) cudnnBackendDestroyDescriptor(info[i]);
  return n;
}

/* A configuration of eng with the given knob choices (finalized), or NULL when cuDNN refuses
 * the combination. The engine and the choices are kept alive by g. */
desc_t make_cfg(cg_cgraph_t *g, desc_t eng, const cudnnBackendKnobType_t *t, const int64_t *v,
                int n) {
  desc_t ch[kMaxKnobs];
  int made = 0;
  bool ok = true;
  for (int i = 0; i < n && ok; i++) {
    ok = cudnnBackendCreateDescriptor(CUDNN_BACKEND_KNOB_CHOICE_DESCRIPTOR, &ch[made]) ==
         CUDNN_STATUS_SUCCESS;
    if (!ok) break;
    made++;
    ok = set1(ch[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_TYPE, CUDNN_TYPE_KNOB_TYPE, &t[i]) ==
             CUDNN_STATUS_SUCCESS &&
         set1(ch[i], CUDNN_ATTR_KNOB_CHOICE_KNOB_VALUE, CUDNN_TYPE_INT64, &v[i]) ==
             CUDNN_STATUS_SUCCESS &&
         cudnnBackendFinalize(ch[i]) == CUDNN_STATUS_SUCCESS;
  }
  desc_t cfg = NULL;
  if (ok) ok = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfg) ==
               CUDNN_STATUS_SUCCESS;
  if (ok) ok = set1(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, &eng) ==
               CUDNN_STATUS_SUCCESS;
  if (ok && n > 0)
    ok = cudnnBackendSetAttribute(cfg, CUDNN_ATTR_ENGINECFG_KNOB_CHOICES,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ch) == CUDNN_STATUS_SUCCESS;
  if (ok) ok = cudnnBackendFinalize(cfg) == CUDNN_STATUS_SUCCESS;
  for (int i = 0; i < made; i++)
    if (!ok || !own(g, ch[i])) cudnnBackendDestroyDescriptor(ch[i]);
  if (!ok && cfg) {
    cudnnBackendDestroyDescriptor(cfg);
    cfg = NULL;
  }
  return cfg;
}

}  // namespace

int cg_cgraph_sweep(cg_cgraph_t *g, int top, int max_new) {
  if (g->swept) return 0;
  g->swept = 1;
  if (g->det) return 0; /* knobs such as split-K reductions may change the summation order */
  /* each engine its share, each knob at most kSweepValues values: one wide knob of the first
   * engine must not take every slot */
  const int share = max_new / (top > 0 ? top : 1) > 0 ? max_new / (top > 0 ? top : 1) : 1;
  int added = 0;
  for (int c = 0, seen = 0; c < g->nheur && seen < top && added < max_new; c++) {
    if (runtime_compiled(g->cfg[c])) continue; /* each variant would be compiled again */
    seen++;
    desc_t eng = engine_of(g, g->cfg[c]);
    if (!eng) continue;
    if (!own(g, eng)) {
      cudnnBackendDestroyDescriptor(eng);
      continue;
    }
    knob_info_t info[kMaxKnobs];
    const int ni = knob_infos(eng, info);
    cudnnBackendKnobType_t bt[kMaxKnobs + 1];
    int64_t bv[kMaxKnobs + 1];
    const int nb = knob_choices(g->cfg[c], bt, bv);
    int mine = 0;
    for (int k = 0; k < ni && mine < share && added < max_new && g->ncfg < kMaxCfg; k++) {
      const knob_info_t *ki = &info[k];
      const long double stride = ki->stride > 0 ? (long double)ki->stride : 1.0L;
      const long double span = (long double)ki->hi - (long double)ki->lo; /* no overflow */
      const long double count = span / stride + 1.0L;
      if (count < 2.0L) continue;
      /* this knob's slot among the base choices (appended when the base leaves it default) */
      int slot = nb;
      for (int j = 0; j < nb; j++)
        if (bt[j] == ki->type) slot = j;
      const int64_t base = slot < nb ? bv[slot] : INT64_MIN;
      const int steps = count <= kSweepValues ? (int)count : kSweepValues;
      for (int st = 0; st < steps && mine < share && added < max_new && g->ncfg < kMaxCfg; st++) {
        /* all values of a small range; else the ends and evenly spread points between */
        const long double q = count <= kSweepValues
                                  ? (long double)st
                                  : floorl((long double)st * (count - 1.0L) / (steps - 1));
        const int64_t val = (int64_t)((long double)ki->lo + q * stride);
        if (val == base || val < ki->lo || val > ki->hi) continue;
        cudnnBackendKnobType_t t[kMaxKnobs + 1];
        int64_t v[kMaxKnobs + 1];
        memcpy(t, bt, sizeof(cudnnBackendKnobType_t) * (size_t)nb);
        memcpy(v, bv, sizeof(int64_t) * (size_t)nb);
        t[slot] = ki->type;
        v[slot] = val;
        const int n = slot < nb ? nb : nb + 1;
        desc_t cfg = make_cfg(g, eng, t, v, n);
        if (!cfg) continue;
        char sig[kSigLen];
        signature(cfg, sig, sizeof sig);
        if (repeats(g->sig, g->ncfg, sig)) {
          cudnnBackendDestroyDescriptor(cfg);
          continue;
        }
        snprintf(g->sig[g->ncfg], sizeof g->sig[0], "%s", sig);
        g->cfg[g->ncfg++] = cfg;
        added++;
        mine++;
      }
    }
  }
  return added;
}

cudnnStatus_t cg_cgraph_plan(cg_cgraph_t *g, int i, size_t *ws_bytes) {
  *ws_bytes = 0;
  if (i < 0 || i >= g->ncfg) return CUDNN_STATUS_BAD_PARAM;
  drop_packs(g); /* packs belong to the plan they were made for */
  if (g->plan && g->plan != g->kept && g->plan != g->held) cudnnBackendDestroyDescriptor(g->plan);
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
  if (g->kept && g->kept != g->held) cudnnBackendDestroyDescriptor(g->kept);
  g->kept = g->plan;
  g->kept_cur = g->cur;
  g->kept_ws = g->cur_ws;
}

void cg_cgraph_hold(cg_cgraph_t *g) {
  if (g->held && g->held != g->plan && g->held != g->kept) cudnnBackendDestroyDescriptor(g->held);
  g->held = g->kept;
  g->held_cur = g->kept_cur;
  g->held_ws = g->kept_ws;
  g->kept = NULL;
}

cudnnStatus_t cg_cgraph_use_held(cg_cgraph_t *g) {
  if (!g->held) return CUDNN_STATUS_BAD_PARAM;
  if (g->plan != g->held) {
    drop_packs(g);
    if (g->plan && g->plan != g->kept) cudnnBackendDestroyDescriptor(g->plan);
    g->plan = g->held;
    g->cur = g->held_cur;
    g->cur_ws = g->held_ws;
  }
  return CUDNN_STATUS_SUCCESS;
}

/* Destroys d, first making it not current when it is. */
static void retire(cg_cgraph_t *g, desc_t d) {
  if (g->plan == d) {
    drop_packs(g);
    g->plan = NULL;
    g->cur = -1;
  }
  cudnnBackendDestroyDescriptor(d);
}

void cg_cgraph_release_held(cg_cgraph_t *g, int restore) {
  if (!g->held) return;
  if (restore) { /* the held plan is kept again; a variant kept since goes */
    if (g->kept && g->kept != g->held) retire(g, g->kept);
    g->kept = g->held;
    g->kept_cur = g->held_cur;
    g->kept_ws = g->held_ws;
  } else if (g->held != g->kept) {
    retire(g, g->held);
  }
  g->held = NULL;
}

void cg_cgraph_drop_kept(cg_cgraph_t *g) {
  if (g->kept && g->kept != g->held) retire(g, g->kept);
  g->kept = NULL;
}

cudnnStatus_t cg_cgraph_use_kept(cg_cgraph_t *g, size_t *ws_bytes) {
  *ws_bytes = 0;
  if (!g->kept) return CUDNN_STATUS_BAD_PARAM;
  if (g->plan != g->kept) {
    drop_packs(g);
    if (g->plan && g->plan != g->held) cudnnBackendDestroyDescriptor(g->plan);
    g->plan = g->kept;
    g->cur = g->kept_cur;
    g->cur_ws = g->kept_ws;
  }
  *ws_bytes = g->kept_ws;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cg_cgraph_exec(cg_cgraph_t *g, const void *in0, const void *in1, void *out,
                             const void *bias, void *ws) {
  const bool aux = g->s.fuse != 0 || g->s.drelu != 0;
  if (!g->plan || aux != (bias != NULL)) return CUDNN_STATUS_BAD_PARAM;
  if (bias && g->s.fuse && (uintptr_t)bias % (uintptr_t)g->s.bias_align) return CUDNN_STATUS_BAD_PARAM;
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
    const int64_t uids[4] = {kUidA, kUidW, kUidB, g->s.drelu ? kUidMask : kUidBias};
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
