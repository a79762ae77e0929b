/* test_gpu_conv.c: the cuDNN layer ops of cuda/conv.h and the 1x1 head of cuda/head.h against
 * the CPU reference (src/model/cpu_layers.h), in the sequence the CUDA backend runs them:
 *   conv 3x3, 5 input channels padded to 8 (pad kernel + packed weights), + bias + ReLU:
 *     forward, dW (unpacked back to 5 channels), db
 *   conv 3x3 16 -> 32 + bias + ReLU: forward, dx (overwrite and accumulate), dW, db
 *   upconv 2x2/2 32 -> 16 + bias: forward, dx (overwrite and accumulate), dW, db
 *   head 1x1 c -> 1 (a small and a multi-chunk shape): forward, dx, dw, db
 *   conv 3x3 32 -> 32 and upconv 32 -> 16 writing and reading one half of a concat buffer
 *     (pixel stride 2 x channels: the concat in place), the conv's dx masked by the ReLU of
 *     its input in the same cuDNN kernel (drelu); the other half must stay as it was
 * The convolutions run three times: with cuDNN's legacy algorithms only, with graph-API engines
 * only (accumulating calls always take the legacy algorithm), and with the backend's default
 * search (both, our own dW kernel where it is faster and agrees with cuDNN, and the knob sweep
 * forced on for every operation).
 * in fp32 (TF32 off, tolerance 1e-4) and bf16 (2e-2, the reference computed on the
 * bf16-rounded inputs and weights). Errors are relative to the tensor's largest value
 * (atol = tol * max|ref|) plus tol per element.
 *
 * Outputs are poisoned (0xFF bytes: NaN in fp32 and bf16) before every op, so an element the
 * op does not write fails. The ReLU mask of the backward reference comes from the GPU's own
 * forward output, so values that round to either side of 0 do not count as errors. Inputs are
 * fresh random numbers each run (the seed is printed; CG_TEST_SEED=<n> repeats a run). Also
 * checks that the algorithm cache file round-trips. Exits 77 without a usable GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conv.h"
#include "cpu_layers.h"
#include "cuda_check.h"
#include "head.h"
#include "kernels.h"
#include "log.h"
#include "testutil.h"
#include "testutil_cuda.h"

static cudaStream_t S;
static cudnnHandle_t DNN;
static cg_conv_ctx_t *CTX;
static void *WS;                       /* search and run workspace */
static const size_t WS_BYTES = 256u << 20;
static uint64_t g_seed, g_ctr;
static cg_cpu_ws_t CPU_WS;

/* ---- host helpers -------------------------------------------------------------------------- */

static const char *dt_name(cg_dtype_t dt) { return dt == CG_DT_F32 ? "f32" : "bf16"; }
static double dt_tol(cg_dtype_t dt) { return dt == CG_DT_F32 ? 1e-4 : 2e-2; }

static float *hnew(size_t n) { return cg_calloc(n ? n : 1, sizeof(float), "test array"); }

/* Fresh uniform values in [lo, hi), rounded to dt so that GPU and reference see the same. */
static float *hrand(cg_dtype_t dt, size_t n, float lo, float hi) {
  float *p = hnew(n);
  cg_test_fill(p, n, lo, hi, g_seed * 1000003u + g_ctr++);
  if (dt == CG_DT_BF16)
    for (size_t i = 0; i < n; i++) p[i] = cg_test_bf16_to_f32(cg_test_f32_to_bf16(p[i]));
  return p;
}

static void *dnew(size_t bytes) {
  void *d = NULL;
  CG_CHECK_CUDA(cudaMalloc(&d, bytes ? bytes : 1));
  return d;
}

static void dpoison(void *d, size_t bytes) { CG_CHECK_CUDA(cudaMemsetAsync(d, 0xFF, bytes, S)); }

static void dsync(void) { CG_CHECK_CUDA(cudaStreamSynchronize(S)); }

/* host fp32 -> device dt (n elements) */
static void put(cg_dtype_t dt, void *d, const float *h, size_t n) {
  if (dt == CG_DT_F32) {
    CG_CHECK_CUDA(cudaMemcpyAsync(d, h, n * 4, cudaMemcpyHostToDevice, S));
  } else {
    uint16_t *t = cg_malloc(n * 2 + 2, "bf16 staging");
    for (size_t i = 0; i < n; i++) t[i] = cg_test_f32_to_bf16(h[i]);
    CG_CHECK_CUDA(cudaMemcpyAsync(d, t, n * 2, cudaMemcpyHostToDevice, S));
    dsync(); /* t is freed below */
    free(t);
  }
  dsync();
}

static void *up(cg_dtype_t dt, const float *h, size_t n) {
  void *d = dnew(n * cg_dtype_size(dt));
  put(dt, d, h, n);
  return d;
}

/* device dt -> host fp32 */
static void get(cg_dtype_t dt, const void *d, size_t n, float *h) {
  dsync();
  if (dt == CG_DT_F32) {
    CG_CHECK_CUDA(cudaMemcpy(h, d, n * 4, cudaMemcpyDeviceToHost));
  } else {
    uint16_t *t = cg_malloc(n * 2 + 2, "bf16 staging");
    CG_CHECK_CUDA(cudaMemcpy(t, d, n * 2, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) h[i] = cg_test_bf16_to_f32(t[i]);
    free(t);
  }
}

static void check(const char *what, const char *layer, cg_dtype_t dt, const float *got,
                  const float *ref, size_t n) {
  double mx = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
  char name[128];
  snprintf(name, sizeof name, "%s %s %s", layer, dt_name(dt), what);
  const double tol = dt_tol(dt);
  cg_test_close(name, got, ref, n, tol * (mx > 0 ? mx : 1.0), tol);
}

static cg_conv_t *make_conv(cg_conv_kind_t kind, int n, int h, int w, int cin, int cout, int k,
                            cg_dtype_t dt, int ops, int bias_act, const cg_conv_bufs_t *bufs) {
  cg_conv_shape_t sh = {.kind = kind, .n = n, .h = h, .w = w, .cin = cin, .cout = cout, .k = k,
                        .dt = dt, .bias_act = bias_act};
  cg_conv_t *c = NULL;
  char err[1024];
  if (cg_conv_create(&sh, ops, &c, err, sizeof err)) CG_FATAL("cg_conv_create: %s", err);
  if (cg_conv_select(CTX, c, bufs, WS, WS_BYTES, S, err, sizeof err))
    CG_FATAL("cg_conv_select: %s", err);
  CG_ASSERT(cg_conv_ws_bytes(c) <= WS_BYTES);
  char desc[512];
  cg_conv_describe(c, desc, sizeof desc);
  printf("  %s\n", desc);
  return c;
}

#define RUN(call) CG_CHECK_CUDNN(call)

/* ---- conv 3x3 on the padded 5-channel input (the backend's first layer) -------------------- */

static void test_first_conv(cg_dtype_t dt) {
  const int n = 2, h = 12, w = 10, c = 5, cp = 8, co = 16, k = 3;
  const size_t px = (size_t)n * h * w, wl = (size_t)co * k * k * c, wlp = (size_t)co * k * k * cp;
  const size_t es = cg_dtype_size(dt);
  printf("RUN first conv %d(->%d)->%d %s\n", c, cp, co, dt_name(dt));
  float *x = hrand(dt, px * c, -1, 1), *wt = hrand(dt, wl, -0.5f, 0.5f);
  float *bias = hrand(CG_DT_F32, co, -0.3f, 0.3f), *dy = hrand(dt, px * co, -1, 1);
  float *y = hnew(px * co), *yref = hnew(px * co), *dw = hnew(wl), *dwref = hnew(wl);
  float *db = hnew(co), *dbref = hnew(co);
  /* the backend's path: fp32 input and master weights, padded and cast on the device */
  float *d_x32 = dnew(px * c * 4), *d_w32 = dnew(wl * 4), *d_b = dnew(co * 4), *d_dw32 = dnew(wl * 4);
  float *d_db = dnew(co * 4);
  void *d_xp = dnew(px * cp * es), *d_wp = dnew(wlp * es), *d_y = dnew(px * co * es);
  void *d_dy = dnew(px * co * es), *d_dwp = dnew(wlp * es);
  void *d_work = dnew(cg_k_bias_act_bwd_work_bytes((int64_t)px, co));
  put(CG_DT_F32, d_x32, x, px * c);
  put(CG_DT_F32, d_w32, wt, wl);
  put(CG_DT_F32, d_b, bias, co);
  dpoison(d_xp, px * cp * es);
  dpoison(d_wp, wlp * es);
  cg_k_pad_channels_from_f32(dt, d_x32, (int64_t)px, c, cp, d_xp, S);
  cg_k_pack_weight_cpad(dt, d_w32, co, k * k, c, cp, d_wp, S);
  dsync();
  cg_conv_bufs_t bufs = {d_xp, d_wp, d_dy, d_y, NULL, d_dwp, NULL};
  cg_conv_t *cv = make_conv(CG_CONV_PLAIN, n, h, w, cp, co, k, dt,
                            CG_CONV_OP_FWD | CG_CONV_OP_BWD_FILTER, 0, &bufs);
  /* forward */
  dpoison(d_y, px * co * es);
  RUN(cg_conv_fwd(CTX, cv, d_xp, d_wp, d_y, WS, WS_BYTES, S));
  cg_k_bias_act_fwd(dt, d_y, (int64_t)px, co, d_b, 1, S);
  get(dt, d_y, px * co, y);
  cg_view_t xv = {x, n, h, w, c, c}, yv = {yref, n, h, w, co, co};
  cg_cpu_conv_fwd(&xv, wt, bias, k, 1, &yv, &CPU_WS);
  check("fwd", "first conv", dt, y, yref, px * co);
  /* backward: ReLU mask + db, dW, unpack */
  put(dt, d_dy, dy, px * co);
  dpoison(d_db, co * 4);
  dpoison(d_dwp, wlp * es);
  dpoison(d_dw32, wl * 4);
  cg_k_bias_act_bwd(dt, d_dy, d_y, (int64_t)px, co, 1, d_db, d_work, S);
  RUN(cg_conv_bwd_filter(CTX, cv, d_xp, d_dy, d_dwp, WS, WS_BYTES, S));
  cg_k_unpack_grad_cpad(dt, d_dwp, co, k * k, c, cp, d_dw32, S);
  get(CG_DT_F32, d_dw32, wl, dw);
  get(CG_DT_F32, d_db, co, db);
  cg_view_t ygv = {y, n, h, w, co, co}, dyv = {dy, n, h, w, co, co};
  cg_cpu_conv_bwd(&xv, wt, &ygv, &dyv, k, 1, NULL, 0, dwref, dbref, &CPU_WS);
  check("dW", "first conv", dt, dw, dwref, wl);
  check("db", "first conv", dt, db, dbref, co);
  cg_conv_destroy(cv);
  void *dfree[] = {d_x32, d_w32, d_b, d_dw32, d_db, d_xp, d_wp, d_y, d_dy, d_dwp, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
  float *hfree[] = {x, wt, bias, dy, y, yref, dw, dwref, db, dbref};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- plain conv and upconv: forward, dx (both modes), dW, db ------------------------------- */

/* A conv3x3 (+ bias, ReLU when relu) or, with up, an upconv 2x2/2 (+ bias): x [n][h][w][ci] ->
 * y [n][oh][ow][co]. */
typedef struct {
  int up, n, h, w, ci, co, k, relu, oh, ow;
} layer_t;

/* The CPU reference of layer L: the forward into yref; the backward from dy into dxref, dwref
 * and dbref, the ReLU mask from y, the GPU's own output; dy copied (the reference may eat it). */
static void layer_ref(const layer_t *L, const float *x, const float *wt, const float *bias,
                      const float *y, const float *dy, float *yref, float *dxref, float *dwref,
                      float *dbref) {
  const int n = L->n, h = L->h, w = L->w, ci = L->ci, co = L->co, oh = L->oh, ow = L->ow;
  const size_t pxo = (size_t)n * oh * ow;
  cg_view_t xv = {(float *)x, n, h, w, ci, ci}, yv = {yref, n, oh, ow, co, co};
  if (L->up)
    cg_cpu_upconv_fwd(&xv, wt, bias, &yv, &CPU_WS);
  else
    cg_cpu_conv_fwd(&xv, wt, bias, L->k, L->relu, &yv, &CPU_WS);
  float *dyc = hnew(pxo * co);
  memcpy(dyc, dy, pxo * co * sizeof(float));
  cg_view_t ygv = {(float *)y, n, oh, ow, co, co}, dyv = {dyc, n, oh, ow, co, co};
  cg_view_t dxv = {dxref, n, h, w, ci, ci};
  if (L->up)
    cg_cpu_upconv_bwd(&xv, wt, &dyv, &dxv, 0, dwref, dbref, &CPU_WS);
  else
    cg_cpu_conv_bwd(&xv, wt, &ygv, &dyv, L->k, L->relu, &dxv, 0, dwref, dbref, &CPU_WS);
  free(dyc);
}

static void test_layer(cg_conv_kind_t kind, cg_dtype_t dt) {
  const int up_ = kind == CG_CONV_UP;
  const int n = 2, h = up_ ? 6 : 12, w = up_ ? 5 : 10, ci = up_ ? 32 : 16, co = up_ ? 16 : 32;
  const int k = up_ ? 2 : 3, relu = !up_;
  const int oh = up_ ? 2 * h : h, ow = up_ ? 2 * w : w;
  const size_t pxi = (size_t)n * h * w, pxo = (size_t)n * oh * ow, wl = (size_t)ci * k * k * co;
  const size_t es = cg_dtype_size(dt);
  const char *name = up_ ? "upconv" : "conv3x3";
  printf("RUN %s %d->%d %s\n", name, ci, co, dt_name(dt));
  float *x = hrand(dt, pxi * ci, -1, 1), *wt = hrand(dt, wl, -0.3f, 0.3f);
  float *bias = hrand(CG_DT_F32, co, -0.3f, 0.3f), *dy = hrand(dt, pxo * co, -1, 1);
  float *dx0 = hrand(dt, pxi * ci, -1, 1);
  float *y = hnew(pxo * co), *yref = hnew(pxo * co), *dx = hnew(pxi * ci), *dxref = hnew(pxi * ci);
  float *dw = hnew(wl), *dwref = hnew(wl), *db = hnew(co), *dbref = hnew(co);
  void *d_x = up(dt, x, pxi * ci), *d_w = up(dt, wt, wl), *d_y = dnew(pxo * co * es);
  void *d_dy = dnew(pxo * co * es), *d_dx = dnew(pxi * ci * es), *d_dw = dnew(wl * es);
  float *d_b = up(CG_DT_F32, bias, co), *d_db = dnew(co * 4), *d_dw32 = dnew(wl * 4);
  void *d_work = dnew(cg_k_bias_act_bwd_work_bytes((int64_t)pxo, co));
  /* the plain layer offers its bias + ReLU for fusion (taken whenever it runs with the graph
   * API alone; with the legacy API never) */
  cg_conv_bufs_t bufs = {d_x, d_w, d_dy, d_y, d_dx, d_dw, up_ ? NULL : d_b};
  cg_conv_t *cv = make_conv(kind, n, h, w, ci, co, k, dt, CG_CONV_OP_ALL, up_ ? 0 : 2, &bufs);
  /* forward */
  dpoison(d_y, pxo * co * es);
  if (cg_conv_fused(cv)) {
    printf("  forward fused with bias + ReLU\n");
    RUN(cg_conv_fwd_bias_act(CTX, cv, d_x, d_w, d_b, d_y, WS, WS_BYTES, S));
  } else {
    RUN(cg_conv_fwd(CTX, cv, d_x, d_w, d_y, WS, WS_BYTES, S));
    cg_k_bias_act_fwd(dt, d_y, (int64_t)pxo, co, d_b, relu, S);
  }
  get(dt, d_y, pxo * co, y);
  const layer_t L = {up_, n, h, w, ci, co, k, relu, oh, ow};
  layer_ref(&L, x, wt, bias, y, dy, yref, dxref, dwref, dbref);
  check("fwd", name, dt, y, yref, pxo * co);
  /* GPU backward in the backend's order */
  put(dt, d_dy, dy, pxo * co);
  dpoison(d_db, co * 4);
  cg_k_bias_act_bwd(dt, d_dy, d_y, (int64_t)pxo, co, relu, d_db, d_work, S);
  get(CG_DT_F32, d_db, co, db);
  check("db", name, dt, db, dbref, co);
  dpoison(d_dx, pxi * ci * es);
  RUN(cg_conv_bwd_data(CTX, cv, d_dy, d_w, d_dx, 0, WS, WS_BYTES, S));
  get(dt, d_dx, pxi * ci, dx);
  check("dx", name, dt, dx, dxref, pxi * ci);
  put(dt, d_dx, dx0, pxi * ci);
  RUN(cg_conv_bwd_data(CTX, cv, d_dy, d_w, d_dx, 1, WS, WS_BYTES, S));
  get(dt, d_dx, pxi * ci, dx);
  for (size_t i = 0; i < pxi * ci; i++) dxref[i] += dx0[i];
  check("dx accumulate", name, dt, dx, dxref, pxi * ci);
  dpoison(d_dw, wl * es);
  dpoison(d_dw32, wl * 4);
  RUN(cg_conv_bwd_filter(CTX, cv, d_x, d_dy, d_dw, WS, WS_BYTES, S));
  cg_k_cast_to_f32(dt, d_dw, (int64_t)wl, 1.0f, d_dw32, S);
  get(CG_DT_F32, d_dw32, wl, dw);
  check("dW", name, dt, dw, dwref, wl);
  cg_conv_destroy(cv);
  void *dfree[] = {d_x, d_w, d_y, d_dy, d_dx, d_dw, d_b, d_db, d_dw32, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
  float *hfree[] = {x, wt, bias, dy, dx0, y, yref, dx, dxref, dw, dwref, db, dbref};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- halves of a concat buffer, and dx masked by the input's ReLU ---------------------------- */

/* Copies channels [off, off + c) of a [px][ld] array into a dense [px][c] one. */
static void take_half(const float *src, size_t px, int ld, int off, int c, float *dst) {
  for (size_t p = 0; p < px; p++)
    for (int k = 0; k < c; k++) dst[p * c + k] = src[p * ld + off + k];
}

/* Whether channels outside [off, off + c) of a strided device buffer still hold `was`. */
static int other_half_kept(cg_dtype_t dt, const void *d, const float *was, size_t px, int ld, int off,
                           int c) {
  float *now = hnew(px * ld);
  get(dt, d, px * ld, now);
  size_t bad = 0;
  for (size_t p = 0; p < px; p++)
    for (int k = 0; k < ld; k++)
      if ((k < off || k >= off + c) && memcmp(&now[p * ld + k], &was[p * ld + k], sizeof(float)))
        bad++;
  free(now);
  return bad == 0;
}

static void test_strided(cg_conv_kind_t kind, cg_dtype_t dt) {
  const int up_ = kind == CG_CONV_UP;
  const int n = 2, h = up_ ? 6 : 12, w = up_ ? 5 : 10, ci = 32, co = up_ ? 16 : 32;
  const int k = up_ ? 2 : 3, relu = !up_, ld = 2 * co, off = up_ ? 0 : co; /* [up | skip] */
  const int oh = up_ ? 2 * h : h, ow = up_ ? 2 * w : w;
  const size_t pxi = (size_t)n * h * w, pxo = (size_t)n * oh * ow, wl = (size_t)ci * k * k * co;
  const size_t es = cg_dtype_size(dt);
  const char *name = up_ ? "upconv into half" : "conv3x3 into half, drelu";
  printf("RUN %s %d->%d %s\n", name, ci, co, dt_name(dt));
  float *x = hrand(dt, pxi * ci, -1, 1), *wt = hrand(dt, wl, -0.3f, 0.3f);
  /* the conv's input is a ReLU's output: about half exact zeros, which the mask must treat as
   * the unfused path does (x > 0 passes), and some tiny positive values */
  if (!up_)
    for (size_t i = 0; i < pxi * ci; i++)
      x[i] = x[i] < 0.0f ? 0.0f : (i % 97 == 0 ? 1e-30f * x[i] : x[i]);
  float *bias = hrand(CG_DT_F32, co, -0.3f, 0.3f);
  float *ybuf = hrand(dt, pxo * ld, -5, 5), *dybuf = hrand(dt, pxo * ld, -5, 5); /* others' halves */
  float *dy = hnew(pxo * co), *y = hnew(pxo * co), *yref = hnew(pxo * co);
  float *dx = hnew(pxi * ci), *dxref = hnew(pxi * ci), *dw = hnew(wl), *dwref = hnew(wl);
  float *db = hnew(co), *dbref = hnew(co);
  take_half(dybuf, pxo, ld, off, co, dy);
  void *d_x = up(dt, x, pxi * ci), *d_w = up(dt, wt, wl), *d_ybuf = up(dt, ybuf, pxo * ld);
  void *d_dybuf = up(dt, dybuf, pxo * ld), *d_dx = dnew(pxi * ci * es), *d_dw = dnew(wl * es);
  float *d_b = up(CG_DT_F32, bias, co), *d_db = dnew(co * 4), *d_dw32 = dnew(wl * 4);
  void *d_work = dnew(cg_k_bias_act_bwd_work_bytes((int64_t)pxo, co));
  void *d_y = (char *)d_ybuf + (size_t)off * es, *d_dy = (char *)d_dybuf + (size_t)off * es;
  cg_conv_shape_t sh = {.kind = kind, .n = n, .h = h, .w = w, .cin = ci, .cout = co, .k = k,
                        .dt = dt, .bias_act = up_ ? 0 : 2, .ldy = ld, .drelu = !up_};
  cg_conv_bufs_t bufs = {d_x, d_w, d_dy, d_y, d_dx, d_dw, up_ ? NULL : d_b};
  cg_conv_t *cv = NULL;
  char err[1024];
  if (cg_conv_create(&sh, CG_CONV_OP_ALL, &cv, err, sizeof err)) CG_FATAL("cg_conv_create: %s", err);
  if (cg_conv_select(CTX, cv, &bufs, WS, WS_BYTES, S, err, sizeof err)) {
    /* no engine for a strided half is an outcome the backend handles (it copies instead) */
    printf("  NOTE: %s: %s (the backend would concatenate with copies)\n", name, err);
    cg_conv_destroy(cv);
    goto out;
  }
  cg_conv_describe(cv, err, sizeof err);
  printf("  %s\n", err);
  /* the search may leave junk in the layer's own halves, never in the other ones */
  CG_TEST_CHECK(other_half_kept(dt, d_ybuf, ybuf, pxo, ld, off, co),
                "%s %s: the search wrote outside the y half", name, dt_name(dt));
  CG_TEST_CHECK(other_half_kept(dt, d_dybuf, dybuf, pxo, ld, off, co),
                "%s %s: the search wrote outside the dy half", name, dt_name(dt));
  put(dt, d_ybuf, ybuf, pxo * ld);
  put(dt, d_dybuf, dybuf, pxo * ld);
  if (cg_conv_fused(cv)) {
    RUN(cg_conv_fwd_bias_act(CTX, cv, d_x, d_w, d_b, d_y, WS, WS_BYTES, S));
  } else {
    RUN(cg_conv_fwd(CTX, cv, d_x, d_w, d_y, WS, WS_BYTES, S));
    cg_k_bias_act_fwd_ld(dt, d_y, ld, (int64_t)pxo, co, d_b, relu, S);
  }
  {
    float *yb = hnew(pxo * ld);
    get(dt, d_ybuf, pxo * ld, yb);
    take_half(yb, pxo, ld, off, co, y);
    free(yb);
  }
  CG_TEST_CHECK(other_half_kept(dt, d_ybuf, ybuf, pxo, ld, off, co),
                "%s %s: the forward wrote outside its half", name, dt_name(dt));
  const layer_t L = {up_, n, h, w, ci, co, k, relu, oh, ow};
  layer_ref(&L, x, wt, bias, y, dy, yref, dxref, dwref, dbref);
  check("fwd", name, dt, y, yref, pxo * co);
  /* the dy half masked in place, with its bias gradient; then dW and dx read it strided */
  dpoison(d_db, co * 4);
  cg_k_bias_act_bwd_ld(dt, d_dy, ld, d_y, ld, (int64_t)pxo, co, relu, d_db, d_work, S);
  get(CG_DT_F32, d_db, co, db);
  check("db", name, dt, db, dbref, co);
  dpoison(d_dw, wl * es);
  RUN(cg_conv_bwd_filter(CTX, cv, d_x, d_dy, d_dw, WS, WS_BYTES, S));
  cg_k_cast_to_f32(dt, d_dw, (int64_t)wl, 1.0f, d_dw32, S);
  get(CG_DT_F32, d_dw32, wl, dw);
  check("dW", name, dt, dw, dwref, wl);
  dpoison(d_dx, pxi * ci * es);
  if (cg_conv_drelu_fused(cv)) {
    printf("  dx fused with the ReLU backward of x\n");
    RUN(cg_conv_bwd_data_drelu(CTX, cv, d_dy, d_w, d_x, d_dx, WS, WS_BYTES, S));
    for (size_t i = 0; i < pxi * ci; i++)
      if (!(x[i] > 0.0f)) dxref[i] = 0.0f;
  } else {
    RUN(cg_conv_bwd_data(CTX, cv, d_dy, d_w, d_dx, 0, WS, WS_BYTES, S));
  }
  get(dt, d_dx, pxi * ci, dx);
  check("dx", name, dt, dx, dxref, pxi * ci);
  CG_TEST_CHECK(other_half_kept(dt, d_dybuf, dybuf, pxo, ld, off, co),
                "%s %s: the backward wrote outside the dy half", name, dt_name(dt));
  cg_conv_destroy(cv);
out:;
  void *dfree[] = {d_x, d_w, d_ybuf, d_dybuf, d_dx, d_dw, d_b, d_db, d_dw32, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
  float *hfree[] = {x, wt, bias, ybuf, dybuf, dy, y, yref, dx, dxref, dw, dwref, db, dbref};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- the head -------------------------------------------------------------------------------- */

static void test_head(cg_dtype_t dt, int n, int h, int w, int c) {
  const size_t px = (size_t)n * h * w, es = cg_dtype_size(dt);
  char name[64];
  snprintf(name, sizeof name, "head %dx%dx%dx%d", n, h, w, c);
  printf("RUN %s %s\n", name, dt_name(dt));
  float *x = hrand(dt, px * c, 0, 2), *wt = hrand(dt, c, -0.5f, 0.5f);
  float *bias = hrand(CG_DT_F32, 1, -0.3f, 0.3f), *dl = hrand(dt, px, -1, 1);
  float *lg = hnew(px), *lgref = hnew(px), *dx = hnew(px * c), *dxref = hnew(px * c);
  float *dw = hnew(c), *dwref = hnew(c), *db = hnew(1), *dbref = hnew(1);
  void *d_x = up(dt, x, px * c), *d_w = up(dt, wt, c), *d_l = dnew(px * es);
  void *d_dl = up(dt, dl, px), *d_dx = dnew(px * c * es);
  float *d_b = up(CG_DT_F32, bias, 1), *d_dw = dnew(c * 4), *d_db = dnew(4);
  void *d_work = dnew(cg_head_bwd_work_bytes((int64_t)px, c));
  dpoison(d_l, px * es);
  cg_head_fwd(dt, d_x, (int64_t)px, c, d_w, d_b, d_l, S);
  get(dt, d_l, px, lg);
  cg_view_t xv = {x, n, h, w, c, c}, lv = {lgref, n, h, w, 1, 1};
  cg_cpu_conv_fwd(&xv, wt, bias, 1, 0, &lv, &CPU_WS);
  check("fwd", name, dt, lg, lgref, px);
  dpoison(d_dx, px * c * es);
  dpoison(d_dw, c * 4);
  dpoison(d_db, 4);
  cg_head_bwd(dt, d_x, d_w, d_dl, (int64_t)px, c, d_dx, d_dw, d_db, d_work, S);
  get(dt, d_dx, px * c, dx);
  get(CG_DT_F32, d_dw, c, dw);
  get(CG_DT_F32, d_db, 1, db);
  float *dlc = hnew(px);
  memcpy(dlc, dl, px * sizeof(float));
  cg_view_t dlv = {dlc, n, h, w, 1, 1}, dxv = {dxref, n, h, w, c, c};
  cg_cpu_conv_bwd(&xv, wt, &lv, &dlv, 1, 0, &dxv, 0, dwref, dbref, &CPU_WS);
  check("dx", name, dt, dx, dxref, px * c);
  check("dw", name, dt, dw, dwref, c);
  check("db", name, dt, db, dbref, 1);
  /* the fixed-order reduction is bitwise reproducible */
  float *dw2 = hnew(c);
  cg_head_bwd(dt, d_x, d_w, d_dl, (int64_t)px, c, NULL, d_dw, d_db, d_work, S);
  get(CG_DT_F32, d_dw, c, dw2);
  CG_TEST_CHECK(memcmp(dw, dw2, c * sizeof(float)) == 0, "%s %s: dw differs between runs", name,
                dt_name(dt));
  void *dfree[] = {d_x, d_w, d_l, d_dl, d_dx, d_b, d_dw, d_db, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
  float *hfree[] = {x, wt, bias, dl, lg, lgref, dx, dxref, dw, dwref, db, dbref, dlc, dw2};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- the algorithm cache file ----------------------------------------------------------------- */

static void test_cache(void) {
  printf("RUN algorithm cache\n");
  char path[] = "/tmp/cg_algo_cacheXXXXXX";
  int fd = mkstemp(path);
  CG_ASSERT(fd >= 0);
  close(fd);
  unlink(path); /* the context must cope with a missing file */
  const int n = 2, h = 8, w = 8, c = 16;
  const size_t px = (size_t)n * h * w;
  void *d_a = dnew(px * c * 2), *d_b = dnew(px * c * 2), *d_w = dnew((size_t)c * 9 * c * 2);
  void *d_g = dnew(px * c * 2), *d_d = dnew(px * c * 2), *d_dw = dnew((size_t)c * 9 * c * 2);
  CG_CHECK_CUDA(cudaMemset(d_a, 0, px * c * 2));
  CG_CHECK_CUDA(cudaMemset(d_w, 0, (size_t)c * 9 * c * 2));
  CG_CHECK_CUDA(cudaMemset(d_g, 0, px * c * 2));
  cg_conv_bufs_t bufs = {d_a, d_w, d_g, d_b, d_d, d_dw, NULL};
  cg_conv_shape_t sh = {.kind = CG_CONV_PLAIN, .n = n, .h = h, .w = w, .cin = c, .cout = c, .k = 3,
                        .dt = CG_DT_BF16};
  char err[1024], d1[512], d2[512];
  cg_conv_ctx_t *c1 = cg_conv_ctx_create(DNN, 1, path);
  cg_conv_t *v1 = NULL, *v2 = NULL;
  CG_ASSERT(cg_conv_create(&sh, CG_CONV_OP_ALL, &v1, err, sizeof err) == 0);
  if (cg_conv_select(c1, v1, &bufs, WS, WS_BYTES, S, err, sizeof err)) CG_FATAL("%s", err);
  CG_TEST_CHECK(cg_conv_ctx_save(c1, err, sizeof err) == 0, "save: %s", err);
  cg_conv_describe(v1, d1, sizeof d1);
  /* a second context reads the file: same choice, and a selection that needs no buffers */
  cg_conv_ctx_t *c2 = cg_conv_ctx_create(DNN, 1, path);
  CG_ASSERT(cg_conv_create(&sh, CG_CONV_OP_ALL, &v2, err, sizeof err) == 0);
  cg_conv_bufs_t none;
  memset(&none, 0, sizeof none); /* a cache miss would assert on the NULL buffers */
  CG_TEST_CHECK(cg_conv_select(c2, v2, &none, NULL, 0, S, err, sizeof err) == 0, "%s", err);
  cg_conv_describe(v2, d2, sizeof d2);
  CG_TEST_CHECK(strcmp(d1, d2) == 0, "cached choice differs: '%s' vs '%s'", d1, d2);
  FILE *f = fopen(path, "r");
  int lines = 0;
  char line[512];
  while (f && fgets(line, sizeof line, f)) lines += line[0] != '#';
  if (f) fclose(f);
  CG_TEST_CHECK(lines == 3, "cache file has %d entries, expected 3", lines);
  if (lines == 3) printf("PASS algorithm cache (%s)\n", d1);
  unlink(path);
  cg_conv_destroy(v1);
  cg_conv_destroy(v2);
  cg_conv_ctx_destroy(c1);
  cg_conv_ctx_destroy(c2);
  void *dfree[] = {d_a, d_b, d_w, d_g, d_d, d_dw};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) CG_CHECK_CUDA(cudaFree(dfree[i]));
}

int main(void) {
  if (cg_test_need_gpu()) return CG_TEST_SKIP;
  g_seed = cg_test_seed();
  printf("seed %llu (CG_TEST_SEED=%llu repeats this run); cuDNN %zu (built with %d.%d)\n",
         (unsigned long long)g_seed, (unsigned long long)g_seed, cudnnGetVersion(), CUDNN_MAJOR,
         CUDNN_MINOR);
  CG_CHECK_CUDA(cudaSetDevice(0));
  /* a blocking stream: ordered with the synchronous cudaMemcpy/cudaMemset of the helpers */
  CG_CHECK_CUDA(cudaStreamCreate(&S));
  CG_CHECK_CUDNN(cudnnCreate(&DNN));
  CTX = cg_conv_ctx_create(DNN, 0, NULL);
  WS = dnew(WS_BYTES);
  const cg_dtype_t dts[2] = {CG_DT_F32, CG_DT_BF16};
  /* each cuDNN interface on its own (the backend's default times both and may pick either) */
  const int apis[3] = {CG_CONV_API_LEGACY, CG_CONV_API_GRAPH, CG_CONV_API_AUTO};
  const char *api_names[3] = {"legacy API only", "graph API only",
                              "default search, knob sweep for every operation"};
  for (int a = 0; a < 3; a++) {
    if (apis[a] == CG_CONV_API_AUTO) { /* a fresh context that sweeps even tiny operations */
      cg_conv_ctx_destroy(CTX);
      setenv("CG_CONV_SWEEP_MS", "0", 1);
      CTX = cg_conv_ctx_create(DNN, 0, NULL);
      unsetenv("CG_CONV_SWEEP_MS");
    }
    cg_conv_ctx_set_api(CTX, apis[a]);
    printf("== cuDNN: %s\n", api_names[a]);
    for (int d = 0; d < 2; d++) {
      test_first_conv(dts[d]);
      test_layer(CG_CONV_PLAIN, dts[d]);
      test_layer(CG_CONV_UP, dts[d]);
      /* with the legacy API alone the strided descriptors of cudnnSetTensor4dDescriptorEx,
       * and the dx unfused */
      test_strided(CG_CONV_PLAIN, dts[d]);
      test_strided(CG_CONV_UP, dts[d]);
    }
  }
  cg_conv_ctx_set_api(CTX, CG_CONV_API_AUTO);
  for (int d = 0; d < 2; d++) {
    test_head(dts[d], 2, 12, 10, 16);
    test_head(dts[d], 3, 64, 64, 40); /* several chunks, two column tiles */
    test_head(dts[d], 2, 7, 9, 5);    /* c not a whole 16-byte pack: the warp-per-pixel path */
  }
  test_cache();
  CG_CHECK_CUDA(cudaFree(WS));
  cg_conv_ctx_destroy(CTX);
  CG_CHECK_CUDNN(cudnnDestroy(DNN));
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  cg_cpu_ws_free(&CPU_WS);
  return cg_test_done("test_gpu_conv");
}
