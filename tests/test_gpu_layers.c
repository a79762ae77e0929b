/* test_gpu_layers.c: every custom CUDA kernel of cuda/kernels.h against the CPU reference
 * (src/model/cpu_layers.h where it has the layer, else a direct loop here).
 *
 * - Fresh random inputs each run; the seed is printed, CG_TEST_SEED=<n> repeats a run.
 * - Outputs are poisoned with 0xFF bytes (NaN in every float type, 255 in a mask) before each
 *   launch, and every device buffer is followed by a guard area that must stay 0xFF, so an
 *   unwritten element or a write past the end fails.
 * - Low-precision inputs are the fp32 ones rounded to bf16/fp16 on the host; the reference
 *   runs on the rounded values. Tolerances: 1e-4 (fp32), 2e-2 (bf16), 2e-3 (fp16);
 *   data movement (concat, pool, pad, casts) must be bit-exact.
 * - Exits 77 (skipped) when no CUDA device is usable. A line "RUN ..." precedes each group so
 *   a crash on the device names the kernel. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_layers.h"
#include "head.h"
#include "kernels.h"
#include "log.h"
#include "testutil.h"
#include "testutil_cuda.h"
#include "gpu_ohem_check.h" /* cg_test_ohem_thr: gpu_ohem_check.c */

static cudaStream_t S; /* non-blocking: every kernel, fill and copy (testutil_cuda.h) */
/* Set by test_layers_emu.c (an emulated device, a thousand times slower): the sections leave
 * out their largest shapes (too_big). */
static int g_small;
static int too_big(int64_t elems) { return g_small && elems > 300000; }
static uint64_t g_seed, g_ctr;
static const cg_dtype_t DTS[3] = {CG_DT_F32, CG_DT_BF16, CG_DT_F16};

/* ---- host-side element types (conversions in testutil.h) ------------------------------ */

static const char *dt_name(cg_dtype_t dt) {
  return dt == CG_DT_F32 ? "f32" : dt == CG_DT_BF16 ? "bf16" : "f16";
}

static double dt_tol(cg_dtype_t dt) {
  return dt == CG_DT_F32 ? 1e-4 : dt == CG_DT_BF16 ? 2e-2 : 2e-3;
}

static void to_dt(cg_dtype_t dt, const float *src, size_t n, void *dst) {
  if (dt == CG_DT_F32) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  uint16_t *d = dst;
  for (size_t i = 0; i < n; i++)
    d[i] = dt == CG_DT_BF16 ? cg_test_f32_to_bf16(src[i]) : cg_test_f32_to_f16(src[i]);
}

static void from_dt(cg_dtype_t dt, const void *src, size_t n, float *dst) {
  if (dt == CG_DT_F32) {
    memcpy(dst, src, n * sizeof(float));
    return;
  }
  const uint16_t *s = src;
  for (size_t i = 0; i < n; i++)
    dst[i] = dt == CG_DT_BF16 ? cg_test_bf16_to_f32(s[i]) : cg_test_f16_to_f32(s[i]);
}

/* x = the dt value nearest to x (what the device sees). */
static void round_dt(cg_dtype_t dt, float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (dt == CG_DT_BF16) x[i] = cg_test_bf16_to_f32(cg_test_f32_to_bf16(x[i]));
    if (dt == CG_DT_F16) x[i] = cg_test_f16_to_f32(cg_test_f32_to_f16(x[i]));
  }
}

/* ---- device buffers (guarded: testutil_cuda.h) ------------------------------------------ */

/* A dt buffer holding h (n floats, converted), with `off` leading elements of slack; returns
 * the buffer, *data = its first element. */
static void *dup_dt(cg_dtype_t dt, const float *h, size_t n, size_t off, void **data) {
  const size_t es = cg_dtype_size(dt);
  void *d = cg_test_dnew((n + off) * es, S);
  void *tmp = cg_malloc(n * es, "upload");
  to_dt(dt, h, n, tmp);
  *data = (char *)d + off * es;
  cg_test_hput(*data, tmp, n * es, S);
  free(tmp);
  return d;
}

static void *up_dt(cg_dtype_t dt, const float *h, size_t n) {
  void *data;
  return dup_dt(dt, h, n, 0, &data);
}

static void *up_bytes(const void *h, size_t bytes) {
  void *d = cg_test_dnew(bytes, S);
  cg_test_hput(d, h, bytes, S);
  return d;
}

static void down_dt(cg_dtype_t dt, const void *d, size_t n, float *h) {
  const size_t es = cg_dtype_size(dt);
  void *tmp = cg_malloc(n * es, "download");
  cg_test_hget(tmp, d, n * es, S);
  from_dt(dt, tmp, n, h);
  free(tmp);
}

/* ---- host helpers --------------------------------------------------------------------- */

static float *hnew(size_t n) { return cg_malloc((n ? n : 1) * sizeof(float), "test array"); }

static void fill(float *p, size_t n, float lo, float hi) {
  cg_test_fill(p, n, lo, hi, g_seed * 1000003u + g_ctr++);
}

static double maxabs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(x[i]) > m) m = fabs(x[i]);
  return m;
}

/* Element-wise relative check (outputs rounded once from an exact float result). */
static void check_elem(const char *name, const float *got, const float *ref, size_t n,
                       double tol) {
  cg_test_close(name, got, ref, n, 1e-6 * maxabs(ref, n) + 1e-30, tol);
}

/* Tensor-relative check: errors measured against the largest reference value (reductions). */
static void check_rel(const char *name, const float *got, const float *ref, size_t n, double tol) {
  cg_test_close(name, got, ref, n, tol * maxabs(ref, n) + 1e-30, tol);
}

static void check_exact(const char *name, const float *got, const float *ref, size_t n) {
  cg_test_close(name, got, ref, n, 0.0, 0.0);
}

/* Downloads the n dt elements at d into got: they must equal ref bitwise, and the guard after
 * them must be intact. */
static void check_exact_dev(const char *name, cg_dtype_t dt, const void *d, size_t n,
                            const float *ref, float *got) {
  down_dt(dt, d, n, got);
  check_exact(name, got, ref, n);
  cg_test_guard_check(name, d, n * cg_dtype_size(dt), S);
}

/* ---- bias + activation ------------------------------------------------------------------ */

static void test_bias_act_fwd(cg_dtype_t dt, int64_t npix, int c, int relu, int with_bias,
                              size_t off) {
  char name[160];
  snprintf(name, sizeof name, "bias_act_fwd %s npix=%lld c=%d relu=%d bias=%d off=%zu",
           dt_name(dt), (long long)npix, c, relu, with_bias, off);
  const size_t n = (size_t)npix * c, es = cg_dtype_size(dt);
  float *y = hnew(n), *b = hnew(c), *ref = hnew(n), *got = hnew(n);
  fill(y, n, -2, 2);
  round_dt(dt, y, n);
  fill(b, c, -1, 1);
  for (size_t i = 0; i < n; i++) {
    float v = y[i] + (with_bias ? b[i % c] : 0.0f);
    ref[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
  void *data;
  void *d_y = dup_dt(dt, y, n, off, &data);
  float *d_b = up_bytes(b, c * sizeof(float));
  cg_k_bias_act_fwd(dt, data, npix, c, with_bias ? d_b : NULL, relu, S);
  down_dt(dt, data, n, got);
  check_elem(name, got, ref, n, dt_tol(dt));
  cg_test_guard_check(name, d_y, (n + off) * es, S);
  cg_test_dfree(d_y, S);
  cg_test_dfree(d_b, S);
  free(y);
  free(b);
  free(ref);
  free(got);
}

static void test_bias_act_bwd(cg_dtype_t dt, int64_t npix, int c, int relu, int with_dbias) {
  char name[160];
  snprintf(name, sizeof name, "bias_act_bwd %s npix=%lld c=%d relu=%d dbias=%d", dt_name(dt),
           (long long)npix, c, relu, with_dbias);
  const size_t n = (size_t)npix * c, es = cg_dtype_size(dt);
  float *dy = hnew(n), *y = hnew(n), *ref = hnew(n), *got = hnew(n);
  float *dbr = hnew(c), *dbg = hnew(c), *dbg2 = hnew(c);
  double *acc = cg_calloc(c, sizeof(double), "dbias ref"), *aabs = cg_calloc(c, sizeof(double), "");
  fill(dy, n, -1, 1);
  round_dt(dt, dy, n);
  fill(y, n, -1, 1);
  for (size_t i = 0; i < n; i++) y[i] = y[i] > 0 ? y[i] : 0.0f; /* a ReLU output: many zeros */
  round_dt(dt, y, n);
  for (size_t i = 0; i < n; i++) {
    ref[i] = relu && !(y[i] > 0.0f) ? 0.0f : dy[i];
    acc[i % c] += ref[i];
    aabs[i % c] += fabs(ref[i]);
  }
  double amax = 0;
  for (int k = 0; k < c; k++) {
    dbr[k] = (float)acc[k];
    if (aabs[k] > amax) amax = aabs[k];
  }
  void *d_dy = up_dt(dt, dy, n), *d_y = up_dt(dt, y, n);
  const size_t wb = cg_k_bias_act_bwd_work_bytes(npix, c);
  float *d_db = cg_test_dnew(c * sizeof(float), S);
  void *d_work = cg_test_dnew(wb, S); /* poisoned: a read of an unwritten partial gives NaN */
  cg_k_bias_act_bwd(dt, d_dy, d_y, npix, c, relu, with_dbias ? d_db : NULL, d_work, S);
  down_dt(dt, d_dy, n, got);
  snprintf(name, sizeof name, "bias_act_bwd dy %s npix=%lld c=%d relu=%d dbias=%d", dt_name(dt),
           (long long)npix, c, relu, with_dbias);
  check_exact(name, got, ref, n); /* masking is exact */
  cg_test_guard_check(name, d_dy, n * es, S);
  if (with_dbias) {
    snprintf(name, sizeof name, "bias_act_bwd dbias %s npix=%lld c=%d relu=%d", dt_name(dt),
             (long long)npix, c, relu);
    cg_test_hget(dbg, d_db, c * sizeof(float), S);
    /* float summation error scales with sum |dy|, not with the (cancelling) sum itself */
    cg_test_close(name, dbg, dbr, c, 1e-6 * amax, 1e-4);
    cg_test_guard_check(name, d_db, c * sizeof(float), S);
    cg_test_guard_check("bias_act_bwd work", d_work, wb, S);
    /* again on the (idempotently) masked dy: bitwise the same sums */
    cg_test_dpoison(d_db, c * sizeof(float), S);
    cg_k_bias_act_bwd(dt, d_dy, d_y, npix, c, relu, d_db, d_work, S);
    cg_test_hget(dbg2, d_db, c * sizeof(float), S);
    CG_TEST_CHECK(memcmp(dbg, dbg2, c * sizeof(float)) == 0, "%s: not deterministic", name);
  }
  cg_test_dfree(d_dy, S);
  cg_test_dfree(d_y, S);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_work, S);
  free(dy);
  free(y);
  free(ref);
  free(got);
  free(dbr);
  free(dbg);
  free(dbg2);
  free(acc);
  free(aabs);
}

/* ---- max pool ----------------------------------------------------------------------------- */

static void test_maxpool(cg_dtype_t dt, int n, int h, int w, int c, int ties) {
  char name[160];
  const size_t nx = (size_t)n * h * w * c, ny = nx / 4, es = cg_dtype_size(dt);
  float *x = hnew(nx), *yr = hnew(ny), *yg = hnew(ny), *dy = hnew(ny);
  float *dx0 = hnew(nx), *dxr = hnew(nx), *dxg = hnew(nx);
  fill(x, nx, 0, 1);
  for (size_t i = 0; i < nx; i++) {
    if (ties) { /* ReLU-like: mostly 0, some 0.5 and 1: whole windows of equal values */
      float q = floorf(x[i] * 5.0f) - 2.0f;
      x[i] = q > 0 ? 0.5f * q : 0.0f;
    } else {
      x[i] = 4.0f * x[i] - 2.0f;
    }
  }
  round_dt(dt, x, nx);
  cg_view_t xv = {x, n, h, w, c, c}, yv = {yr, n, h / 2, w / 2, c, c};
  cg_cpu_maxpool_fwd(&xv, &yv);

  void *d_x = up_dt(dt, x, nx), *d_y = cg_test_dnew(ny * es, S);
  snprintf(name, sizeof name, "maxpool_fwd %s n=%d h=%d w=%d c=%d ties=%d", dt_name(dt), n, h, w,
           c, ties);
  cg_k_maxpool_fwd(dt, d_x, n, h, w, c, d_y, S);
  check_exact_dev(name, dt, d_y, ny, yr, yg);

  fill(dy, ny, -1, 1);
  round_dt(dt, dy, ny);
  void *d_dy = up_dt(dt, dy, ny);
  for (int accum = 0; accum <= 1; accum++) {
    if (accum) {
      fill(dx0, nx, -1, 1);
      round_dt(dt, dx0, nx);
    } else {
      memset(dx0, 0, nx * sizeof(float));
    }
    memcpy(dxr, dx0, nx * sizeof(float));
    cg_view_t dyv = {dy, n, h / 2, w / 2, c, c}, dxv = {dxr, n, h, w, c, c};
    cg_cpu_maxpool_bwd(&xv, &yv, &dyv, &dxv, accum);
    void *d_dx = accum ? up_dt(dt, dx0, nx) : cg_test_dnew(nx * es, S); /* else poisoned */
    snprintf(name, sizeof name, "maxpool_bwd %s n=%d h=%d w=%d c=%d ties=%d accum=%d",
             dt_name(dt), n, h, w, c, ties, accum);
    cg_k_maxpool_bwd(dt, d_x, d_y, d_dy, n, h, w, c, d_dx, accum, S);
    down_dt(dt, d_dx, nx, dxg);
    if (accum)
      check_elem(name, dxg, dxr, nx, dt_tol(dt)); /* one rounding of dx + dy */
    else
      check_exact(name, dxg, dxr, nx); /* the tie rule must route exactly as the CPU */
    cg_test_guard_check(name, d_dx, nx * es, S);
    cg_test_dfree(d_dx, S);
  }
  cg_test_dfree(d_x, S);
  cg_test_dfree(d_y, S);
  cg_test_dfree(d_dy, S);
  free(x);
  free(yr);
  free(yg);
  free(dy);
  free(dx0);
  free(dxr);
  free(dxg);
}

/* ---- concat ------------------------------------------------------------------------------- */

static void test_concat(cg_dtype_t dt, int64_t npix, int ca, int cb) {
  char name[160];
  const int cc = ca + cb;
  const size_t na = (size_t)npix * ca, nb = (size_t)npix * cb, nc = (size_t)npix * cc;
  const size_t es = cg_dtype_size(dt);
  float *a = hnew(na), *b = hnew(nb), *ref = hnew(nc), *got = hnew(nc);
  float *ga = hnew(na), *gb = hnew(nb);
  fill(a, na, -3, 3);
  fill(b, nb, -3, 3);
  round_dt(dt, a, na);
  round_dt(dt, b, nb);
  for (int64_t p = 0; p < npix; p++) {
    for (int k = 0; k < ca; k++) ref[p * cc + k] = a[p * ca + k];
    for (int k = 0; k < cb; k++) ref[p * cc + ca + k] = b[p * cb + k];
  }
  void *d_a = up_dt(dt, a, na), *d_b = up_dt(dt, b, nb), *d_c = cg_test_dnew(nc * es, S);
  snprintf(name, sizeof name, "concat_fwd %s npix=%lld ca=%d cb=%d", dt_name(dt),
           (long long)npix, ca, cb);
  cg_k_concat_fwd(dt, d_a, ca, d_b, cb, npix, d_c, S);
  check_exact_dev(name, dt, d_c, nc, ref, got);

  /* backward: split a fresh dcat (ref holds it) into poisoned da, db */
  fill(ref, nc, -3, 3);
  round_dt(dt, ref, nc);
  cg_test_dfree(d_c, S);
  d_c = up_dt(dt, ref, nc);
  cg_test_dpoison(d_a, na * es + CG_TEST_GUARD, S);
  cg_test_dpoison(d_b, nb * es + CG_TEST_GUARD, S);
  for (int64_t p = 0; p < npix; p++) {
    for (int k = 0; k < ca; k++) a[p * ca + k] = ref[p * cc + k];
    for (int k = 0; k < cb; k++) b[p * cb + k] = ref[p * cc + ca + k];
  }
  cg_k_concat_bwd(dt, d_c, ca, cb, npix, d_a, d_b, S);
  down_dt(dt, d_a, na, ga);
  down_dt(dt, d_b, nb, gb);
  snprintf(name, sizeof name, "concat_bwd da %s npix=%lld ca=%d cb=%d", dt_name(dt),
           (long long)npix, ca, cb);
  check_exact(name, ga, a, na);
  cg_test_guard_check(name, d_a, na * es, S);
  snprintf(name, sizeof name, "concat_bwd db %s npix=%lld ca=%d cb=%d", dt_name(dt),
           (long long)npix, ca, cb);
  check_exact(name, gb, b, nb);
  cg_test_guard_check(name, d_b, nb * es, S);
  cg_test_dfree(d_a, S);
  cg_test_dfree(d_b, S);
  cg_test_dfree(d_c, S);
  free(a);
  free(b);
  free(ref);
  free(got);
  free(ga);
  free(gb);
}

/* ---- casts, padding, weight packing ------------------------------------------------------- */

static void test_casts(cg_dtype_t dt, size_t n) {
  char name[160];
  const size_t es = cg_dtype_size(dt);
  float *src = hnew(n), *ref = hnew(n), *got = hnew(n), *e = hnew(n);
  fill(src, n, -3, 3);
  fill(e, n, -8, 8); /* magnitudes 2^-8 .. 2^8: exercises fp16 subnormals near 0 */
  for (size_t i = 0; i < n; i++) src[i] = ldexpf(src[i], (int)floorf(e[i]));
  memcpy(ref, src, n * sizeof(float));
  round_dt(dt, ref, n);
  float *d_src = up_bytes(src, n * sizeof(float));
  void *d_dst = cg_test_dnew(n * es, S);
  snprintf(name, sizeof name, "cast_from_f32 %s n=%zu", dt_name(dt), n);
  cg_k_cast_from_f32(dt, d_src, (int64_t)n, d_dst, S);
  check_exact_dev(name, dt, d_dst, n, ref, got); /* round to nearest even, both sides */

  const float muls[3] = {1.0f, 0.125f, 1.0f / 3.0f};
  float *d_out = cg_test_dnew(n * sizeof(float), S);
  for (int t = 0; t < 3; t++) {
    /* ref (already dt values, and in d_dst) times mul: one float multiply both sides */
    for (size_t i = 0; i < n; i++) e[i] = ref[i] * muls[t];
    cg_test_dpoison(d_out, n * sizeof(float), S);
    snprintf(name, sizeof name, "cast_to_f32 %s n=%zu mul=%g", dt_name(dt), n, muls[t]);
    cg_k_cast_to_f32(dt, d_dst, (int64_t)n, muls[t], d_out, S);
    cg_test_hget(got, d_out, n * sizeof(float), S);
    check_exact(name, got, e, n);
    cg_test_guard_check(name, d_out, n * sizeof(float), S);
  }
  cg_test_dfree(d_src, S);
  cg_test_dfree(d_dst, S);
  cg_test_dfree(d_out, S);
  free(src);
  free(ref);
  free(got);
  free(e);
}

/* pad (npix rows) and weight pack ([k][rs] rows) are the same mapping; both are run. */
static void test_pad(cg_dtype_t dt, int k, int rs, int c, int cpad) {
  char name[160];
  const int64_t rows = (int64_t)k * rs;
  const size_t ns = (size_t)rows * c, nd = (size_t)rows * cpad, es = cg_dtype_size(dt);
  float *src = hnew(ns), *ref = hnew(nd), *got = hnew(nd), *g = hnew(nd), *gref = hnew(ns);
  fill(src, ns, -2, 2);
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < cpad; j++) ref[r * cpad + j] = j < c ? src[r * c + j] : 0.0f;
  round_dt(dt, ref, nd);
  float *d_src = up_bytes(src, ns * sizeof(float));
  void *d_dst = cg_test_dnew(nd * es, S);
  snprintf(name, sizeof name, "pad_channels_from_f32 %s npix=%lld c=%d cpad=%d", dt_name(dt),
           (long long)rows, c, cpad);
  cg_k_pad_channels_from_f32(dt, d_src, rows, c, cpad, d_dst, S);
  check_exact_dev(name, dt, d_dst, nd, ref, got);

  cg_test_dpoison(d_dst, nd * es + CG_TEST_GUARD, S);
  snprintf(name, sizeof name, "pack_weight_cpad %s k=%d rs=%d c=%d cpad=%d", dt_name(dt), k, rs,
           c, cpad);
  cg_k_pack_weight_cpad(dt, d_src, k, rs, c, cpad, d_dst, S);
  check_exact_dev(name, dt, d_dst, nd, ref, got);

  /* unpack: [k][rs][cpad] dt -> [k][rs][c] fp32 */
  fill(g, nd, -2, 2);
  round_dt(dt, g, nd);
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < c; j++) gref[r * c + j] = g[r * cpad + j];
  void *d_g = up_dt(dt, g, nd);
  float *d_out = cg_test_dnew(ns * sizeof(float), S);
  snprintf(name, sizeof name, "unpack_grad_cpad %s k=%d rs=%d c=%d cpad=%d", dt_name(dt), k, rs,
           c, cpad);
  cg_k_unpack_grad_cpad(dt, d_g, k, rs, c, cpad, d_out, S);
  cg_test_hget(got, d_out, ns * sizeof(float), S);
  check_exact(name, got, gref, ns);
  cg_test_guard_check(name, d_out, ns * sizeof(float), S);
  cg_test_dfree(d_src, S);
  cg_test_dfree(d_dst, S);
  cg_test_dfree(d_g, S);
  cg_test_dfree(d_out, S);
  free(src);
  free(ref);
  free(got);
  free(g);
  free(gref);
}

/* ---- strided views: one channel half of a concat buffer ----------------------------------- */

/* c channels at offset off of pixels ld elements apart (ld == c, off == 0: dense). */
typedef struct {
  int ld, off;
} lay_t;

/* The layouts every strided test runs: dense, both halves of a [2c] concat buffer, and an odd
 * stride with an odd and with an aligned offset (never packed: the pointer, resp. the stride,
 * must send the launch to the one-element path). */
#define NLAY 5
static int layouts(int c, lay_t *l) {
  l[0] = (lay_t){c, 0};
  l[1] = (lay_t){2 * c, 0};
  l[2] = (lay_t){2 * c, c};
  l[3] = (lay_t){c + 3, 2};
  l[4] = (lay_t){c + 3, 0};
  return NLAY;
}

/* A device buffer of npix x ld elements; raw keeps the bytes uploaded, so the channels
 * outside the view can be checked bitwise after a kernel wrote (only) the view. */
typedef struct {
  void *d, *view;
  unsigned char *raw;
  int64_t npix;
  int c;
  lay_t l;
} sbuf_t;

/* full: npix x ld values (already dt values); poison_view: the view's bytes are 0xFF instead. */
static sbuf_t sbuf_new(cg_dtype_t dt, const float *full, int64_t npix, int c, lay_t l,
                       int poison_view) {
  const size_t es = cg_dtype_size(dt), n = (size_t)npix * l.ld;
  sbuf_t b = {NULL, NULL, cg_malloc(n * es + 1, "raw"), npix, c, l};
  to_dt(dt, full, n, b.raw);
  if (poison_view)
    for (int64_t p = 0; p < npix; p++)
      memset(b.raw + ((size_t)p * l.ld + l.off) * es, 0xFF, c * es);
  b.d = cg_test_dnew(n * es, S);
  b.view = (char *)b.d + l.off * es;
  cg_test_hput(b.d, b.raw, n * es, S);
  return b;
}

static void sbuf_reset(cg_dtype_t dt, const sbuf_t *b) {
  cg_test_hput(b->d, b->raw, (size_t)b->npix * b->l.ld * cg_dtype_size(dt), S);
}

/* The view into out (npix x c floats); fails if a byte outside the view or past the end
 * changed. */
static void sbuf_get(const char *name, cg_dtype_t dt, const sbuf_t *b, float *out) {
  const size_t es = cg_dtype_size(dt), n = (size_t)b->npix * b->l.ld;
  unsigned char *now = cg_malloc(n * es + 1, "download");
  cg_test_hget(now, b->d, n * es, S);
  size_t bad = 0;
  for (int64_t p = 0; p < b->npix; p++) {
    const size_t row = (size_t)p * b->l.ld * es, v0 = b->l.off * es, v1 = v0 + b->c * es;
    for (size_t j = 0; j < (size_t)b->l.ld * es; j++)
      if ((j < v0 || j >= v1) && now[row + j] != b->raw[row + j]) bad++;
    from_dt(dt, now + row + v0, b->c, out + (size_t)p * b->c);
  }
  CG_TEST_CHECK(bad == 0, "%s: %zu bytes outside the view (ld %d, off %d) changed", name, bad,
                b->l.ld, b->l.off);
  cg_test_guard_check(name, b->d, n * es, S);
  free(now);
}

static void sbuf_free(sbuf_t *b) {
  cg_test_dfree(b->d, S);
  free(b->raw);
}

/* out[p][k] = full[p * l.ld + l.off + k]. */
static void view_of(const float *full, int64_t npix, int c, lay_t l, float *out) {
  for (int64_t p = 0; p < npix; p++)
    memcpy(out + (size_t)p * c, full + (size_t)p * l.ld + l.off, c * sizeof(float));
}

/* The concat copy with one part's bias (+ ReLU) forward folded in, against the concat of the
 * part with that bias applied on the host (one rounding of x + bias, as cg_k_bias_act_fwd). */
static void test_concat_fwd_bias(cg_dtype_t dt, int64_t npix, int ca, int cb, int part, int relu) {
  char name[160];
  snprintf(name, sizeof name, "concat_fwd_bias %s npix=%lld ca=%d cb=%d part=%d relu=%d",
           dt_name(dt), (long long)npix, ca, cb, part, relu);
  const int cc = ca + cb, cp = part ? cb : ca;
  const size_t na = (size_t)npix * ca, nb = (size_t)npix * cb, nc = (size_t)npix * cc;
  float *a = hnew(na), *b = hnew(nb), *bias = hnew(cp), *ref = hnew(nc), *got = hnew(nc);
  fill(a, na, -3, 3);
  fill(b, nb, -3, 3);
  fill(bias, cp, -1, 1);
  round_dt(dt, a, na);
  round_dt(dt, b, nb);
  for (int64_t p = 0; p < npix; p++)
    for (int k = 0; k < cc; k++) {
      const int in_a = k < ca;
      float v = in_a ? a[p * ca + k] : b[p * cb + (k - ca)];
      if (in_a == (part == 0)) {
        v += bias[in_a ? k : k - ca];
        if (relu && !(v > 0.0f)) v = 0.0f;
      }
      ref[p * cc + k] = v;
    }
  round_dt(dt, ref, nc);
  void *d_a = up_dt(dt, a, na), *d_b = up_dt(dt, b, nb);
  void *d_c = cg_test_dnew(nc * cg_dtype_size(dt), S);
  float *d_bias = cg_test_dnew(cp * sizeof(float), S);
  cg_test_hput(d_bias, bias, cp * sizeof(float), S);
  cg_k_concat_fwd_bias(dt, d_a, ca, d_b, cb, part, d_bias, relu, npix, d_c, S);
  check_exact_dev(name, dt, d_c, nc, ref, got);
  cg_test_dfree(d_a, S);
  cg_test_dfree(d_b, S);
  cg_test_dfree(d_c, S);
  cg_test_dfree(d_bias, S);
  free(a);
  free(b);
  free(bias);
  free(ref);
  free(got);
}

/* The split of a dense dcat (ca + cb channels) into strided parts: da in layout la, db in lb
 * (the skip's gradient into the other half of its concat's copy: devplan.h gcat). Exact,
 * and nothing outside the views changes. */
static void test_concat_bwd_ld(cg_dtype_t dt, int64_t npix, int ca, int cb, lay_t la, lay_t lb) {
  char name[200];
  snprintf(name, sizeof name, "concat_bwd_ld %s npix=%lld ca=%d cb=%d a(ld=%d off=%d) "
           "b(ld=%d off=%d)", dt_name(dt), (long long)npix, ca, cb, la.ld, la.off, lb.ld, lb.off);
  const int cc = ca + cb;
  const size_t nc = (size_t)npix * cc, na = (size_t)npix * ca, nb = (size_t)npix * cb;
  const size_t nfa = (size_t)npix * la.ld, nfb = (size_t)npix * lb.ld;
  float *dcat = hnew(nc), *fa = hnew(nfa), *fb = hnew(nfb), *ra = hnew(na), *rb = hnew(nb);
  float *ga = hnew(na), *gb = hnew(nb);
  fill(dcat, nc, -3, 3);
  round_dt(dt, dcat, nc);
  fill(fa, nfa, -1, 1); /* the bytes around the views, checked unchanged */
  round_dt(dt, fa, nfa);
  fill(fb, nfb, -1, 1);
  round_dt(dt, fb, nfb);
  for (int64_t p = 0; p < npix; p++) {
    for (int k = 0; k < ca; k++) ra[p * ca + k] = dcat[p * cc + k];
    for (int k = 0; k < cb; k++) rb[p * cb + k] = dcat[p * cc + ca + k];
  }
  void *d_c = up_dt(dt, dcat, nc);
  sbuf_t sa = sbuf_new(dt, fa, npix, ca, la, 1), sb = sbuf_new(dt, fb, npix, cb, lb, 1);
  cg_k_concat_bwd_ld(dt, d_c, ca, cb, npix, sa.view, la.ld, sb.view, lb.ld, S);
  sbuf_get(name, dt, &sa, ga);
  sbuf_get(name, dt, &sb, gb);
  check_exact(name, ga, ra, na);
  check_exact(name, gb, rb, nb);
  sbuf_free(&sa);
  sbuf_free(&sb);
  cg_test_dfree(d_c, S);
  free(dcat);
  free(fa);
  free(fb);
  free(ra);
  free(rb);
  free(ga);
  free(gb);
}

/* Whether a strided tensor takes the packed path exactly when a dense one of c channels does
 * (then the two reductions run in the same order and agree bitwise). */
static int same_path(cg_dtype_t dt, int c, lay_t l) {
  const int v = (int)(16 / cg_dtype_size(dt));
  return c % v != 0 || (l.ld % v == 0 && l.off % v == 0);
}

/* Per-channel sums in double of a (npix x c) array, and the largest per-channel sum of |.|
 * (the scale of a float summation's error). */
static double col_sums(const float *a, int64_t npix, int c, float *sum) {
  double *acc = cg_calloc(c, sizeof(double), "sums"), *aabs = cg_calloc(c, sizeof(double), "");
  for (int64_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      acc[k] += a[(size_t)p * c + k];
      aabs[k] += fabs(a[(size_t)p * c + k]);
    }
  double amax = 0;
  for (int k = 0; k < c; k++) {
    sum[k] = (float)acc[k];
    if (aabs[k] > amax) amax = aabs[k];
  }
  free(acc);
  free(aabs);
  return amax;
}

static void test_bias_act_fwd_ld(cg_dtype_t dt, int64_t npix, int c, lay_t l, int relu,
                                 int with_bias) {
  char name[200];
  snprintf(name, sizeof name, "bias_act_fwd_ld %s npix=%lld c=%d ld=%d off=%d relu=%d bias=%d",
           dt_name(dt), (long long)npix, c, l.ld, l.off, relu, with_bias);
  const size_t n = (size_t)npix * c, nf = (size_t)npix * l.ld;
  float *full = hnew(nf), *y = hnew(n), *ref = hnew(n), *got = hnew(n), *b = hnew(c);
  fill(full, nf, -2, 2);
  round_dt(dt, full, nf);
  fill(b, c, -1, 1);
  view_of(full, npix, c, l, y);
  for (size_t i = 0; i < n; i++) {
    float v = y[i] + (with_bias ? b[i % c] : 0.0f);
    ref[i] = relu ? (v > 0.0f ? v : 0.0f) : v;
  }
  sbuf_t sb = sbuf_new(dt, full, npix, c, l, 0);
  float *d_b = up_bytes(b, c * sizeof(float));
  cg_k_bias_act_fwd_ld(dt, sb.view, l.ld, npix, c, with_bias ? d_b : NULL, relu, S);
  sbuf_get(name, dt, &sb, got);
  check_elem(name, got, ref, n, dt_tol(dt));
  sbuf_free(&sb);
  cg_test_dfree(d_b, S);
  free(full);
  free(y);
  free(ref);
  free(got);
  free(b);
}

/* dy in layout ldy_l, y in layout y_l; also against the dense call on the same values. */
static void test_bias_act_bwd_ld(cg_dtype_t dt, int64_t npix, int c, lay_t dl, lay_t yl,
                                 int relu, int with_dbias) {
  char tag[160], name[220];
  snprintf(tag, sizeof tag, "%s npix=%lld c=%d dy(ld=%d off=%d) y(ld=%d off=%d) relu=%d dbias=%d",
           dt_name(dt), (long long)npix, c, dl.ld, dl.off, yl.ld, yl.off, relu, with_dbias);
  const size_t n = (size_t)npix * c;
  const size_t ndf = (size_t)npix * dl.ld, nyf = (size_t)npix * yl.ld;
  float *dyf = hnew(ndf), *yf = hnew(nyf), *dy = hnew(n), *y = hnew(n), *ref = hnew(n);
  float *got = hnew(n), *got2 = hnew(n), *dbr = hnew(c), *dbg = hnew(c), *dbd = hnew(c);
  fill(dyf, ndf, -1, 1);
  round_dt(dt, dyf, ndf);
  fill(yf, nyf, -1, 1);
  for (size_t i = 0; i < nyf; i++) yf[i] = yf[i] > 0 ? yf[i] : 0.0f; /* a ReLU output */
  round_dt(dt, yf, nyf);
  view_of(dyf, npix, c, dl, dy);
  view_of(yf, npix, c, yl, y);
  for (size_t i = 0; i < n; i++) ref[i] = relu && !(y[i] > 0.0f) ? 0.0f : dy[i];
  const double amax = col_sums(ref, npix, c, dbr);

  sbuf_t sdy = sbuf_new(dt, dyf, npix, c, dl, 0), sy = sbuf_new(dt, yf, npix, c, yl, 0);
  const size_t wb = cg_k_bias_act_bwd_work_bytes(npix, c);
  float *d_db = cg_test_dnew(c * sizeof(float), S);
  void *d_work = cg_test_dnew(wb, S);
  cg_k_bias_act_bwd_ld(dt, sdy.view, dl.ld, sy.view, yl.ld, npix, c, relu,
                       with_dbias ? d_db : NULL, d_work, S);
  snprintf(name, sizeof name, "bias_act_bwd_ld dy %s", tag);
  sbuf_get(name, dt, &sdy, got);
  check_exact(name, got, ref, n);
  snprintf(name, sizeof name, "bias_act_bwd_ld y untouched %s", tag);
  sbuf_get(name, dt, &sy, got2);
  check_exact(name, got2, y, n);
  if (with_dbias) {
    snprintf(name, sizeof name, "bias_act_bwd_ld dbias %s", tag);
    cg_test_hget(dbg, d_db, c * sizeof(float), S);
    cg_test_close(name, dbg, dbr, c, 1e-6 * amax, 1e-4);
    cg_test_guard_check(name, d_db, c * sizeof(float), S);
    cg_test_guard_check(name, d_work, wb, S);
    if (same_path(dt, c, dl) && (!relu || same_path(dt, c, yl))) {
      /* the dense call on the same values: the same bits */
      void *d_dy = up_dt(dt, dy, n), *d_y = up_dt(dt, y, n);
      cg_test_dpoison(d_db, c * sizeof(float), S);
      cg_k_bias_act_bwd(dt, d_dy, d_y, npix, c, relu, d_db, d_work, S);
      cg_test_hget(dbd, d_db, c * sizeof(float), S);
      down_dt(dt, d_dy, n, got2);
      CG_TEST_CHECK(memcmp(dbg, dbd, c * sizeof(float)) == 0 &&
                        memcmp(got, got2, n * sizeof(float)) == 0,
                    "%s: the dense call's result differs", name);
      cg_test_dfree(d_dy, S);
      cg_test_dfree(d_y, S);
    }
  }
  sbuf_free(&sdy);
  sbuf_free(&sy);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_work, S);
  free(dyf);
  free(yf);
  free(dy);
  free(y);
  free(ref);
  free(got);
  free(got2);
  free(dbr);
  free(dbg);
  free(dbd);
}

/* x values for the pool tests: ties = ReLU-like (0, 0.5, 1: whole windows of equal values),
 * else uniform in [-2, 2). */
static void pool_x(cg_dtype_t dt, float *x, size_t n, int ties) {
  fill(x, n, 0, 1);
  for (size_t i = 0; i < n; i++) {
    if (ties) {
      float q = floorf(x[i] * 5.0f) - 2.0f;
      x[i] = q > 0 ? 0.5f * q : 0.0f;
    } else {
      x[i] = 4.0f * x[i] - 2.0f;
    }
  }
  round_dt(dt, x, n);
}

static void test_maxpool_fwd_ld(cg_dtype_t dt, int n, int h, int w, int c, lay_t l, int ties) {
  char name[200];
  snprintf(name, sizeof name, "maxpool_fwd_ld %s n=%d h=%d w=%d c=%d ld=%d off=%d ties=%d",
           dt_name(dt), n, h, w, c, l.ld, l.off, ties);
  const int64_t npix = (int64_t)n * h * w;
  const size_t nf = (size_t)npix * l.ld, nx = (size_t)npix * c, ny = nx / 4;
  const size_t es = cg_dtype_size(dt);
  float *xf = hnew(nf), *x = hnew(nx), *xg = hnew(nx), *yr = hnew(ny), *yg = hnew(ny);
  pool_x(dt, xf, nf, ties);
  view_of(xf, npix, c, l, x);
  cg_view_t xv = {xf + l.off, n, h, w, c, l.ld}, yv = {yr, n, h / 2, w / 2, c, c};
  cg_cpu_maxpool_fwd(&xv, &yv);
  sbuf_t sx = sbuf_new(dt, xf, npix, c, l, 0);
  void *d_y = cg_test_dnew(ny * es, S);
  cg_k_maxpool_fwd_ld(dt, sx.view, l.ld, n, h, w, c, d_y, S);
  check_exact_dev(name, dt, d_y, ny, yr, yg);
  sbuf_get(name, dt, &sx, xg);
  CG_TEST_CHECK(memcmp(xg, x, nx * sizeof(float)) == 0, "%s: x changed", name);
  sbuf_free(&sx);
  cg_test_dfree(d_y, S);
  free(xf);
  free(x);
  free(xg);
  free(yr);
  free(yg);
}

/* The fused pool backward: x in layout xl, dx in layout dl, dy dense; dbias against the
 * column sums of the reference's final dx. With accum, the gradient added to is dx itself, or,
 * with ol, a tensor of its own in layout ol (dx then only written; the old one unchanged).
 * Run twice: bitwise the same dx and dbias. */
static void test_maxpool_bwd_ld(cg_dtype_t dt, int n, int h, int w, int c, lay_t xl, lay_t dl,
                                int ties, int accum, int relu, int with_dbias, const lay_t *ol) {
  char tag[220], name[280];
  snprintf(tag, sizeof tag,
           "%s n=%d h=%d w=%d c=%d x(ld=%d off=%d) dx(ld=%d off=%d) ties=%d accum=%d relu=%d "
           "dbias=%d old(ld=%d off=%d)",
           dt_name(dt), n, h, w, c, xl.ld, xl.off, dl.ld, dl.off, ties, accum, relu, with_dbias,
           ol ? ol->ld : 0, ol ? ol->off : 0);
  if (ol) accum = 1;
  const int64_t npix = (int64_t)n * h * w;
  const size_t nxf = (size_t)npix * xl.ld, ndf = (size_t)npix * dl.ld, nx = (size_t)npix * c;
  const size_t ny = nx / 4;
  float *xf = hnew(nxf), *dxf = hnew(ndf), *x = hnew(nx), *dy = hnew(ny), *dxr = hnew(nx);
  float *got = hnew(nx), *got2 = hnew(nx), *dbr = hnew(c), *dbg = hnew(c), *dbg2 = hnew(c);
  pool_x(dt, xf, nxf, ties);
  view_of(xf, npix, c, xl, x);
  fill(dy, ny, -1, 1);
  round_dt(dt, dy, ny);
  fill(dxf, ndf, -1, 1); /* the other half's contents, and the old dx when accum in place */
  round_dt(dt, dxf, ndf);
  sbuf_t sold = {0};
  float *oldv = NULL, *oldg = NULL;
  if (ol) { /* the gradient to add to, apart from dx */
    const size_t nof = (size_t)npix * ol->ld;
    float *of = hnew(nof);
    fill(of, nof, -1, 1);
    round_dt(dt, of, nof);
    oldv = hnew(nx);
    oldg = hnew(nx);
    view_of(of, npix, c, *ol, oldv);
    sold = sbuf_new(dt, of, npix, c, *ol, 0);
    free(of);
  }
  if (ol)
    memcpy(dxr, oldv, nx * sizeof(float));
  else if (accum)
    view_of(dxf, npix, c, dl, dxr);
  else
    memset(dxr, 0, nx * sizeof(float));
  cg_view_t xv = {x, n, h, w, c, c}, yv = {dy, n, h / 2, w / 2, c, c}; /* y: not read */
  cg_view_t dyv = {dy, n, h / 2, w / 2, c, c}, dxv = {dxr, n, h, w, c, c};
  cg_cpu_maxpool_bwd(&xv, &yv, &dyv, &dxv, accum);
  if (relu)
    for (size_t i = 0; i < nx; i++)
      if (!(x[i] > 0.0f)) dxr[i] = 0.0f;
  round_dt(dt, dxr, nx); /* what the device stores: one rounding of old + dy */
  const double amax = col_sums(dxr, npix, c, dbr);

  sbuf_t sx = sbuf_new(dt, xf, npix, c, xl, 0);
  sbuf_t sdx = sbuf_new(dt, dxf, npix, c, dl, !accum || ol != NULL);
  void *d_dy = up_dt(dt, dy, ny);
  const size_t wb = cg_k_maxpool_bwd_work_bytes(n, h, w, c);
  float *d_db = cg_test_dnew(c * sizeof(float), S);
  void *d_work = cg_test_dnew(wb, S);
  for (int run = 0; run < 2; run++) {
    if (run) {
      sbuf_reset(dt, &sdx);
      cg_test_dpoison(d_db, c * sizeof(float), S);
    }
    const void *old = ol ? sold.view : accum ? sdx.view : NULL;
    cg_k_maxpool_bwd_ld(dt, sx.view, xl.ld, d_dy, n, h, w, c, sdx.view, dl.ld, old,
                        ol ? ol->ld : dl.ld, relu, with_dbias ? d_db : NULL, d_work, S);
    snprintf(name, sizeof name, "maxpool_bwd_ld dx %s", tag);
    sbuf_get(name, dt, &sdx, run ? got2 : got);
    if (with_dbias) cg_test_hget(run ? dbg2 : dbg, d_db, c * sizeof(float), S);
  }
  if (accum)
    check_elem(name, got, dxr, nx, dt_tol(dt));
  else
    check_exact(name, got, dxr, nx); /* routing and masking are exact */
  CG_TEST_CHECK(memcmp(got, got2, nx * sizeof(float)) == 0, "%s: dx not deterministic", name);
  if (with_dbias) {
    snprintf(name, sizeof name, "maxpool_bwd_ld dbias %s", tag);
    cg_test_close(name, dbg, dbr, c, 1e-6 * amax, 1e-4);
    cg_test_guard_check(name, d_db, c * sizeof(float), S);
    cg_test_guard_check(name, d_work, wb, S);
    CG_TEST_CHECK(memcmp(dbg, dbg2, c * sizeof(float)) == 0, "%s: not deterministic", name);
  }
  if (ol) {
    snprintf(name, sizeof name, "maxpool_bwd_ld old %s", tag);
    sbuf_get(name, dt, &sold, oldg);
    CG_TEST_CHECK(memcmp(oldg, oldv, nx * sizeof(float)) == 0, "%s: the old gradient changed",
                  name);
    sbuf_free(&sold);
    free(oldv);
    free(oldg);
  }
  sbuf_free(&sx);
  sbuf_free(&sdx);
  cg_test_dfree(d_dy, S);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_work, S);
  free(xf);
  free(dxf);
  free(x);
  free(dy);
  free(dxr);
  free(got);
  free(got2);
  free(dbr);
  free(dbg);
  free(dbg2);
}

/* ---- the fused head backward -------------------------------------------------------------- */

static void test_head_fused(cg_dtype_t dt, int64_t npix, int c, int relu_x, int with_dbias) {
  char tag[120], name[200];
  snprintf(tag, sizeof tag, "%s npix=%lld c=%d relu_x=%d dbias=%d", dt_name(dt),
           (long long)npix, c, relu_x, with_dbias);
  const size_t n = (size_t)npix * c, es = cg_dtype_size(dt);
  float *x = hnew(n), *wt = hnew(c), *dl = hnew(npix), *dxr = hnew(n), *dxg = hnew(n);
  float *gx = hnew(n), *dwr = hnew(c), *dwg = hnew(c), *dbxr = hnew(c), *dbxg = hnew(c);
  float *dx2 = hnew(n), *dw2 = hnew(c), *dbx2 = hnew(c);
  float dbr, dbg, db2;
  fill(x, n, -1, 2);
  if (relu_x)
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.0f; /* a ReLU output */
  round_dt(dt, x, n);
  fill(wt, c, -0.5f, 0.5f);
  round_dt(dt, wt, c);
  fill(dl, npix, -1, 1);
  round_dt(dt, dl, npix);
  for (int64_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      const size_t i = (size_t)p * c + k;
      dxr[i] = relu_x && !(x[i] > 0.0f) ? 0.0f : dl[p] * wt[k];
      gx[i] = (float)((double)dl[p] * x[i]);
    }
  round_dt(dt, dxr, n);
  const double aw = col_sums(gx, npix, c, dwr), abx = col_sums(dxr, npix, c, dbxr);
  const double ab = col_sums(dl, npix, 1, &dbr);

  void *d_x = up_dt(dt, x, n), *d_w = up_dt(dt, wt, c), *d_dl = up_dt(dt, dl, npix);
  void *d_dx = cg_test_dnew(n * es, S);
  float *d_dw = cg_test_dnew(c * sizeof(float), S), *d_db = cg_test_dnew(sizeof(float), S);
  float *d_dbx = cg_test_dnew(c * sizeof(float), S);
  const size_t wb = cg_head_bwd_fused_work_bytes(npix, c);
  void *d_work = cg_test_dnew(wb, S);
  for (int run = 0; run < 2; run++) {
    if (run) {
      cg_test_dpoison(d_dx, n * es, S);
      cg_test_dpoison(d_dw, c * sizeof(float), S);
      cg_test_dpoison(d_db, sizeof(float), S);
      cg_test_dpoison(d_dbx, c * sizeof(float), S);
    }
    cg_head_bwd_fused(dt, d_x, d_w, d_dl, npix, c, d_dx, relu_x, with_dbias ? d_dbx : NULL,
                      d_dw, d_db, d_work, S);
    down_dt(dt, d_dx, n, run ? dx2 : dxg);
    cg_test_hget(run ? dw2 : dwg, d_dw, c * sizeof(float), S);
    cg_test_hget(run ? &db2 : &dbg, d_db, sizeof(float), S);
    if (with_dbias) cg_test_hget(run ? dbx2 : dbxg, d_dbx, c * sizeof(float), S);
  }
  snprintf(name, sizeof name, "head_bwd_fused dx %s", tag);
  check_elem(name, dxg, dxr, n, dt_tol(dt)); /* one rounding of dlogit * w, or exactly 0 */
  cg_test_guard_check(name, d_dx, n * es, S);
  snprintf(name, sizeof name, "head_bwd_fused dw %s", tag);
  cg_test_close(name, dwg, dwr, c, 1e-6 * aw, 1e-4);
  cg_test_guard_check(name, d_dw, c * sizeof(float), S);
  snprintf(name, sizeof name, "head_bwd_fused db %s", tag);
  cg_test_close(name, &dbg, &dbr, 1, 1e-6 * ab, 1e-4);
  cg_test_guard_check(name, d_db, sizeof(float), S);
  cg_test_guard_check("head_bwd_fused work", d_work, wb, S);
  if (with_dbias) {
    snprintf(name, sizeof name, "head_bwd_fused dbias_x %s", tag);
    cg_test_close(name, dbxg, dbxr, c, 1e-6 * abx, 1e-4);
    cg_test_guard_check(name, d_dbx, c * sizeof(float), S);
  } else {
    unsigned char raw[4];
    cg_test_hget(raw, d_dbx, 4, S);
    CG_TEST_CHECK(raw[0] == 0xFF && raw[3] == 0xFF, "head_bwd_fused %s: dbias_x NULL but written",
                  tag);
  }
  CG_TEST_CHECK(memcmp(dxg, dx2, n * sizeof(float)) == 0 &&
                    memcmp(dwg, dw2, c * sizeof(float)) == 0 && memcmp(&dbg, &db2, 4) == 0 &&
                    (!with_dbias || memcmp(dbxg, dbx2, c * sizeof(float)) == 0),
                "head_bwd_fused %s: not deterministic", tag);
  cg_test_dfree(d_x, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_dl, S);
  cg_test_dfree(d_dx, S);
  cg_test_dfree(d_dw, S);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_dbx, S);
  cg_test_dfree(d_work, S);
  free(x);
  free(wt);
  free(dl);
  free(dxr);
  free(dxg);
  free(gx);
  free(dwr);
  free(dwg);
  free(dbxr);
  free(dbxg);
  free(dx2);
  free(dw2);
  free(dbx2);
}

/* ---- the plain head ----------------------------------------------------------------------- */

/* cg_head_fwd and cg_head_bwd against loops in double (test_gpu_conv also runs them, beside
 * cuDNN's convolutions; here without cuDNN, so that the emulated device runs them too). c a
 * multiple of a 16-byte pack takes the packed paths, others the warp-per-pixel ones. */
static void test_head_plain(cg_dtype_t dt, int64_t npix, int c) {
  char tag[80], name[160];
  snprintf(tag, sizeof tag, "%s npix=%lld c=%d", dt_name(dt), (long long)npix, c);
  const size_t n = (size_t)npix * c, es = cg_dtype_size(dt);
  float *x = hnew(n), *wt = hnew(c), *dl = hnew(npix), *lg = hnew(npix), *lgr = hnew(npix);
  float *dx = hnew(n), *dxr = hnew(n), *gx = hnew(n), *dw = hnew(c), *dwr = hnew(c);
  float *dw2 = hnew(c), db, dbr, db2;
  const float b = 0.25f;
  fill(x, n, -1, 2);
  round_dt(dt, x, n);
  fill(wt, c, -0.5f, 0.5f);
  round_dt(dt, wt, c);
  fill(dl, npix, -1, 1);
  round_dt(dt, dl, npix);
  for (int64_t p = 0; p < npix; p++) {
    double z = b;
    for (int k = 0; k < c; k++) {
      const size_t i = (size_t)p * c + k;
      z += (double)x[i] * wt[k];
      dxr[i] = dl[p] * wt[k];
      gx[i] = (float)((double)dl[p] * x[i]);
    }
    lgr[p] = (float)z;
  }
  round_dt(dt, dxr, n);
  const double aw = col_sums(gx, npix, c, dwr), ab = col_sums(dl, npix, 1, &dbr);
  void *d_x = up_dt(dt, x, n), *d_w = up_dt(dt, wt, c), *d_dl = up_dt(dt, dl, npix);
  float *d_b = up_bytes(&b, sizeof b);
  void *d_l = cg_test_dnew(npix * es, S), *d_dx = cg_test_dnew(n * es, S);
  float *d_dw = cg_test_dnew(c * sizeof(float), S), *d_db = cg_test_dnew(sizeof(float), S);
  const size_t wb = cg_head_bwd_work_bytes(npix, c);
  void *d_work = cg_test_dnew(wb, S);
  cg_head_fwd(dt, d_x, npix, c, d_w, d_b, d_l, S);
  down_dt(dt, d_l, npix, lg);
  snprintf(name, sizeof name, "head_fwd %s", tag);
  /* fp32 sums of c products, then one rounding: errors against the size of the terms */
  double terms = fabs(b);
  for (int64_t p = 0; p < npix; p++) {
    double t = fabs(b);
    for (int k = 0; k < c; k++) t += fabs((double)x[(size_t)p * c + k] * wt[k]);
    if (t > terms) terms = t;
  }
  cg_test_close(name, lg, lgr, npix, dt_tol(dt) * terms, dt_tol(dt));
  cg_test_guard_check(name, d_l, npix * es, S);
  for (int run = 0; run < 2; run++) { /* the second without dx */
    cg_test_dpoison(d_dw, c * sizeof(float), S);
    cg_test_dpoison(d_db, sizeof(float), S);
    cg_head_bwd(dt, d_x, d_w, d_dl, npix, c, run ? NULL : d_dx, d_dw, d_db, d_work, S);
    cg_test_hget(run ? dw2 : dw, d_dw, c * sizeof(float), S);
    cg_test_hget(run ? &db2 : &db, d_db, sizeof(float), S);
  }
  down_dt(dt, d_dx, n, dx);
  snprintf(name, sizeof name, "head_bwd dx %s", tag);
  check_elem(name, dx, dxr, n, dt_tol(dt)); /* one rounding of dlogit * w */
  cg_test_guard_check(name, d_dx, n * es, S);
  snprintf(name, sizeof name, "head_bwd dw %s", tag);
  cg_test_close(name, dw, dwr, c, 1e-6 * aw, 1e-4);
  cg_test_guard_check(name, d_dw, c * sizeof(float), S);
  snprintf(name, sizeof name, "head_bwd db %s", tag);
  cg_test_close(name, &db, &dbr, 1, 1e-6 * ab, 1e-4);
  cg_test_guard_check(name, d_db, sizeof(float), S);
  cg_test_guard_check("head_bwd work", d_work, wb, S);
  CG_TEST_CHECK(memcmp(dw, dw2, c * sizeof(float)) == 0 && memcmp(&db, &db2, 4) == 0,
                "head_bwd %s: not deterministic", tag);
  void *dfree[] = {d_x, d_w, d_dl, d_b, d_l, d_dx, d_dw, d_db, d_work};
  for (size_t i = 0; i < sizeof dfree / sizeof dfree[0]; i++) cg_test_dfree(dfree[i], S);
  float *hfree[] = {x, wt, dl, lg, lgr, dx, dxr, gx, dw, dwr, dw2};
  for (size_t i = 0; i < sizeof hfree / sizeof hfree[0]; i++) free(hfree[i]);
}

/* ---- batched casts ------------------------------------------------------------------------ */

/* Segments (src offset, dst offset, length) in a src buffer of dt and a dst buffer of floats;
 * every float outside the segments must keep its poison bits. With graph, the launch is
 * captured, the host table is then scribbled over, and the graph replayed: the table must
 * have been taken by value. */
static void test_cast_segs(cg_dtype_t dt, const int64_t (*seg)[3], int nseg, int graph) {
  char name[160];
  snprintf(name, sizeof name, "cast_segs_to_f32 %s nseg=%d graph=%d", dt_name(dt), nseg, graph);
  size_t ns = 1, nd = 1;
  for (int k = 0; k < nseg; k++) {
    if ((size_t)(seg[k][0] + seg[k][2]) > ns) ns = seg[k][0] + seg[k][2];
    if ((size_t)(seg[k][1] + seg[k][2]) > nd) nd = seg[k][1] + seg[k][2];
  }
  const size_t es = cg_dtype_size(dt);
  float *src = hnew(ns);
  uint32_t *ref = cg_malloc(nd * sizeof(uint32_t), "ref"), *got = cg_malloc(nd * 4, "got");
  fill(src, ns, -3, 3);
  round_dt(dt, src, ns);
  memset(ref, 0xFF, nd * sizeof(uint32_t));
  for (int k = 0; k < nseg; k++) memcpy(ref + seg[k][1], src + seg[k][0], seg[k][2] * 4);
  void *d_src = up_dt(dt, src, ns);
  float *d_dst = cg_test_dnew(nd * sizeof(float), S);
  cg_k_segs_t t;
  memset(&t, 0, sizeof t);
  t.nseg = nseg;
  for (int k = 0; k < nseg; k++) {
    t.src[k] = (const char *)d_src + seg[k][0] * es;
    t.dst[k] = d_dst + seg[k][1];
    t.n[k] = seg[k][2];
  }
  if (graph) {
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CG_CHECK_CUDA(cudaStreamBeginCapture(S, cudaStreamCaptureModeThreadLocal));
    cg_k_cast_segs_to_f32(dt, &t, S);
    CG_CHECK_CUDA(cudaStreamEndCapture(S, &g));
    CG_CHECK_CUDA(cudaGraphInstantiate(&ge, g, 0));
    memset(&t, 0xAB, sizeof t); /* a replay that read the host table would now fault */
    CG_CHECK_CUDA(cudaGraphLaunch(ge, S));
    cg_test_dsync(S);
    CG_CHECK_CUDA(cudaGraphExecDestroy(ge));
    CG_CHECK_CUDA(cudaGraphDestroy(g));
  } else {
    cg_k_cast_segs_to_f32(dt, &t, S);
  }
  cg_test_hget(got, d_dst, nd * sizeof(float), S);
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < nd; i++)
    if (got[i] != ref[i] && bad++ == 0) first = i;
  CG_TEST_CHECK(bad == 0, "%s: %zu of %zu floats differ; first [%zu] got 0x%08x want 0x%08x",
                name, bad, nd, first, got[first], ref[first]);
  cg_test_guard_check(name, d_dst, nd * sizeof(float), S);
  if (bad == 0) printf("PASS %s (%zu floats, bitwise)\n", name, nd);
  cg_test_dfree(d_src, S);
  cg_test_dfree(d_dst, S);
  free(src);
  free(ref);
  free(got);
}

static void test_cast_segs_all(cg_dtype_t dt) {
  /* aligned (packs + tail), misaligned src and/or dst, one element, empty, large */
  static const int64_t seg[][3] = {{0, 0, 1000},          {1003, 1001, 37},
                                   {2048, 2052, 4099},    {7001, 7000, 1},
                                   {8000, 7100, 0},       {8003, 7201, 5001},
                                   {16384, 12400, 200001}, {216390, 212500, 3},
                                   {216400, 212504, 8},   {220000, 213001, 100}};
  const int nseg = (int)(sizeof seg / sizeof seg[0]);
  test_cast_segs(dt, seg, nseg, 0);
  test_cast_segs(dt, seg, nseg, 1);
  /* the most segments, odd lengths, in reverse order in dst */
  int64_t many[CG_K_MAX_SEGS][3];
  int64_t d = 0;
  for (int k = CG_K_MAX_SEGS - 1; k >= 0; k--) {
    many[k][0] = (int64_t)k * 301 + (k % 3);
    many[k][2] = 1 + (k * 37) % 290;
    many[k][1] = d;
    d += many[k][2] + (k % 5);
  }
  test_cast_segs(dt, (const int64_t(*)[3])many, CG_K_MAX_SEGS, 0);
}

/* ---- loss --------------------------------------------------------------------------------- */

/* scale <= 0: d_scaler = NULL (gradient scale 1). */
static float g_dw = 1.0f; /* the Dice term's weight (--dice-weight) of test_loss */
static float g_pw = 1.0f; /* BCE's pos_weight (--pos-weight) of test_loss */
static float g_fg;        /* the focal loss's gamma (--focal-gamma) of test_loss */
static float g_ohem;      /* OHEM's threshold (--ohem-thresh) of test_loss; 0 = none */
static int64_t g_ohem_mk; /* OHEM's min_kept (--ohem-min-kept) */
static int g_ohem_hits[3]; /* thresholds that were thresh, v > thresh, +inf */

/* g_ohem > 0: the loss with OHEM, cg_k_ohem_thr's thresholds into cg_k_loss_ign (ignore -1)
 * against cg_cpu_loss_k (K = 1, no ignore label); else cg_k_loss against cg_cpu_loss. */
static void test_loss(cg_dtype_t dt, int n, int64_t hw, float scale, int with_dlogits,
                      int with_pred) {
  char name[300], tag[240], ohem[64] = "";
  if (g_ohem > 0)
    snprintf(ohem, sizeof ohem, " ohem=%g min_kept=%lld", g_ohem, (long long)g_ohem_mk);
  snprintf(tag, sizeof tag,
           "%s n=%d hw=%lld scale=%g dlogits=%d pred=%d dice_w=%g pos_w=%g focal=%g%s",
           dt_name(dt), n, (long long)hw, scale > 0 ? scale : 1.0f, with_dlogits, with_pred, g_dw,
           g_pw, g_fg, ohem);
  const size_t np = (size_t)n * hw, es = cg_dtype_size(dt);
  float *z = hnew(np), *u = hnew(np), *gref = hnew(np), *got = hnew(np), *w = hnew(n);
  float *pr = hnew(np), *pg = hnew(np);
  uint8_t *mask = cg_malloc(np, "mask"), *pred = cg_malloc(np, "pred");
  fill(z, np, -6, 6);
  for (size_t j = 0; j < np; j += 97) z[j] = 0.0f; /* p = 1/2 exactly, and pred must be 0 */
  round_dt(dt, z, np);
  fill(u, np, 0, 1);
  for (int i = 0; i < n; i++) {
    const float density = (float)(i % 4) / 3.0f; /* sample 0 has an empty mask, 3 a full one */
    for (int64_t p = 0; p < hw; p++) mask[(size_t)i * hw + p] = u[(size_t)i * hw + p] < density;
    w[i] = (i == 1) ? 0.0f : 0.25f + 0.125f * (float)i; /* sample 1 is padding */
  }
  for (size_t j = 0; j < np; j++) pr[j] = z[j] > 0.0f ? 1.0f : 0.0f;
  const cg_loss_opt_t lo = {g_dw, g_pw != 1.0f ? &g_pw : NULL, 0.0f, g_fg, g_ohem,
                           g_ohem > 0 ? g_ohem_mk : 0};
  const double lref =
      g_ohem > 0 ? cg_cpu_loss_k(z, mask, w, n, (size_t)hw, 1, -1, scale > 0 ? scale : 1.0f, &lo,
                                 gref, NULL)
                 : cg_cpu_loss(z, mask, w, n, (size_t)hw, scale > 0 ? scale : 1.0f, &lo, gref,
                               NULL);

  void *d_z = up_dt(dt, z, np);
  uint8_t *d_mask = up_bytes(mask, np);
  float *d_w = up_bytes(w, n * sizeof(float));
  cg_scaler_t sc = {scale, 1, 0, 0, 0, 0};
  cg_scaler_t *d_sc = scale > 0 ? up_bytes(&sc, sizeof sc) : NULL;
  void *d_dz = cg_test_dnew(np * es, S);
  double *d_loss = cg_test_dnew(sizeof(double), S);
  uint8_t *d_pred = cg_test_dnew(np, S);
  const size_t wb = cg_k_loss_work_bytes(n, hw);
  void *d_work = cg_test_dnew(wb, S);
  float *d_thr = g_ohem > 0 ? cg_test_dnew((size_t)n * sizeof(float), S) : NULL;
  if (d_thr)
    cg_test_ohem_thr(tag, dt, z, d_z, mask, d_mask, n, hw, 1, -1, &lo, d_thr, g_ohem_hits, S);
  double lgot = 0, lgot2 = 0;
  if (d_thr)
    cg_k_loss_ign(dt, d_z, d_mask, d_w, n, hw, -1, g_dw, g_pw, g_fg, d_thr, d_sc,
                  with_dlogits ? d_dz : NULL, d_loss, with_pred ? d_pred : NULL, d_work, S);
  else
    cg_k_loss(dt, d_z, d_mask, d_w, n, hw, g_dw, g_pw, g_fg, d_sc, with_dlogits ? d_dz : NULL,
              d_loss, with_pred ? d_pred : NULL, d_work, S);
  cg_test_hget(&lgot, d_loss, sizeof(double), S);
  snprintf(name, sizeof name, "loss value %s", tag);
  cg_test_close_d(name, &lgot, &lref, 1, 1e-12, 1e-6);
  cg_test_guard_check(name, d_loss, sizeof(double), S);
  cg_test_guard_check("loss work", d_work, wb, S);
  if (with_dlogits) {
    down_dt(dt, d_dz, np, got);
    snprintf(name, sizeof name, "loss dlogits %s", tag);
    check_rel(name, got, gref, np, dt_tol(dt));
    cg_test_guard_check(name, d_dz, np * es, S);
    int nonzero = 0;
    for (int64_t p = 0; p < hw; p++) nonzero += got[(size_t)1 * hw + p] != 0.0f;
    CG_TEST_CHECK(nonzero == 0, "%s: %d gradients of the weight-0 sample are not 0", name,
                  nonzero);
  }
  if (with_pred) {
    cg_test_hget(pred, d_pred, np, S);
    for (size_t j = 0; j < np; j++) pg[j] = (float)pred[j]; /* 0xFF poison -> 255 fails */
    snprintf(name, sizeof name, "loss pred %s", tag);
    check_exact(name, pg, pr, np);
    cg_test_guard_check(name, d_pred, np, S);
  }
  /* a second run gives bitwise the same loss */
  cg_test_dpoison(d_loss, sizeof(double), S);
  if (d_thr)
    cg_k_loss_ign(dt, d_z, d_mask, d_w, n, hw, -1, g_dw, g_pw, g_fg, d_thr, d_sc, NULL, d_loss,
                  NULL, d_work, S);
  else
    cg_k_loss(dt, d_z, d_mask, d_w, n, hw, g_dw, g_pw, g_fg, d_sc, NULL, d_loss, NULL, d_work,
              S);
  cg_test_hget(&lgot2, d_loss, sizeof(double), S);
  CG_TEST_CHECK(memcmp(&lgot, &lgot2, sizeof(double)) == 0, "loss %s: not deterministic (%.17g vs %.17g)",
                tag, lgot, lgot2);
  cg_test_dfree(d_z, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_sc, S);
  cg_test_dfree(d_dz, S);
  cg_test_dfree(d_loss, S);
  cg_test_dfree(d_pred, S);
  cg_test_dfree(d_work, S);
  cg_test_dfree(d_thr, S);
  free(z);
  free(u);
  free(gref);
  free(got);
  free(w);
  free(pr);
  free(pg);
  free(mask);
  free(pred);
}

/* ---- optimizer and loss scaling ----------------------------------------------------------- */

static cg_scaler_t scaler_get(const cg_scaler_t *d) {
  cg_scaler_t s;
  cg_test_hget(&s, d, sizeof s, S);
  return s;
}

static void scaler_put(cg_scaler_t *d, float scale, int enabled, int found_inf, int good,
                       long long skipped, long long steps) {
  cg_scaler_t s = {scale, enabled, found_inf, good, skipped, steps};
  cg_test_hput(d, &s, sizeof s, S);
}

static void test_check_finite(void) {
  char name[160];
  const size_t n = 3000017; /* > one pass of the capped grid, odd tail */
  float *g = hnew(n);
  fill(g, n, -1e4f, 1e4f);
  float *d_g = up_bytes(g, n * sizeof(float));
  cg_scaler_t *d_sc = cg_test_dnew(sizeof(cg_scaler_t), S);
  const struct {
    size_t at;
    float val;
    int preset, expect;
  } cases[] = {
      {n, 0.0f, 0, 0},           /* all finite: stays 0 */
      {n, 0.0f, 1, 1},           /* never cleared by the check */
      {0, INFINITY, 0, 1},       /* first element */
      {n - 1, NAN, 0, 1},        /* last element (the tail) */
      {n / 2 + 7, -INFINITY, 0, 1},
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    if (cases[t].at < n) cg_test_hput(d_g + cases[t].at, &cases[t].val, sizeof(float), S);
    scaler_put(d_sc, 1024.0f, 1, cases[t].preset, 5, 0, 0);
    cg_k_check_finite(d_g, (int64_t)n, d_sc, S);
    const cg_scaler_t s = scaler_get(d_sc);
    snprintf(name, sizeof name, "check_finite case %zu (at %zu)", t, cases[t].at);
    CG_TEST_CHECK(s.found_inf == cases[t].expect, "%s: found_inf %d, expected %d", name,
                  s.found_inf, cases[t].expect);
    CG_TEST_CHECK(s.scale == 1024.0f && s.good_steps == 5, "%s: other fields changed", name);
    if (s.found_inf == cases[t].expect) printf("PASS %s\n", name);
    if (cases[t].at < n) /* restore */
      cg_test_hput(d_g + cases[t].at, &g[cases[t].at], sizeof(float), S);
  }
  cg_test_dfree(d_g, S);
  cg_test_dfree(d_sc, S);
  free(g);
}

/* An optimizer kernel's low-precision copy d_low (NULL: none) of n parameters in ldt: after a
 * step, p (the device's new fp32 parameters) rounded once; after a skipped step (p NULL),
 * untouched (cg_test_dnew's 0xFF). */
static void check_lowp(const char *name, cg_dtype_t ldt, const void *d_low, size_t n,
                       const float *p) {
  if (!d_low) return;
  const size_t les = cg_dtype_size(ldt);
  if (!p) {
    unsigned char *raw = cg_malloc(n * les, "lowp");
    cg_test_hget(raw, d_low, n * les, S);
    size_t touched = 0;
    for (size_t i = 0; i < n * les; i++) touched += raw[i] != 0xFF;
    CG_TEST_CHECK(touched == 0, "%s: low-precision copy written on a skipped step", name);
    free(raw);
    return;
  }
  float *want = hnew(n), *got = hnew(n);
  memcpy(want, p, n * sizeof(float));
  round_dt(ldt, want, n);
  down_dt(ldt, d_low, n, got);
  check_exact(name, got, want, n);
  cg_test_guard_check(name, d_low, n * les, S);
  free(want);
  free(got);
}

/* An optimizer kernel's device inputs besides p, g and its state: the loss scaler (scale <= 0:
 * none) with found_inf, the low-precision copy (dt_lowp < 0: none; else cg_test_dnew's 0xFF),
 * and with clip > 0 the gradient norm of d_g and its clip factor, measured (gn: what the
 * reference multiplies by besides 1 / scale; {0, 1} without clipping). */
typedef struct {
  cg_scaler_t *d_sc;
  cg_dtype_t ldt;
  void *d_low, *d_work;
  cg_gnorm_t *d_gn, gn;
} opt_dev_t;

static opt_dev_t opt_dev_make(const float *d_g, size_t n, float scale, int found_inf,
                              int dt_lowp, float clip, const char *what, const char *tag) {
  opt_dev_t o = {NULL, dt_lowp < 0 ? CG_DT_F32 : (cg_dtype_t)dt_lowp, NULL, NULL, NULL,
                 {0.0f, 1.0f}};
  cg_scaler_t s0 = {scale > 0 ? scale : 1.0f, 1, found_inf, 0, 0, 0};
  o.d_sc = scale > 0 ? up_bytes(&s0, sizeof s0) : NULL;
  if (dt_lowp >= 0) o.d_low = cg_test_dnew(n * cg_dtype_size(o.ldt), S);
  if (clip > 0) {
    o.d_gn = cg_test_dnew(sizeof(cg_gnorm_t), S);
    o.d_work = cg_test_dnew(cg_k_grad_norm_work_bytes(), S);
    cg_k_grad_norm(d_g, (int64_t)n, o.d_sc, clip, o.d_work, o.d_gn, S);
    cg_test_hget(&o.gn, o.d_gn, sizeof o.gn, S);
    CG_TEST_CHECK(found_inf || clip > 1e8f || o.gn.coef < 0.5f, "%s %s: nothing clipped", what,
                  tag);
  }
  return o;
}

static void opt_dev_free(opt_dev_t *o) {
  cg_test_dfree(o->d_sc, S);
  cg_test_dfree(o->d_low, S);
  cg_test_dfree(o->d_gn, S);
  cg_test_dfree(o->d_work, S);
}

/* An optimizer step from p0: the device's new parameters pg against the reference's pr, the
 * update itself (p_new - p_old, which p alone hides) within rel of its largest, p within elem. */
static void check_update(const char *what, const char *tag, const float *p0, const float *pg,
                         const float *pr, size_t n, double rel, double elem) {
  float *dg = hnew(n), *dr = hnew(n);
  for (size_t i = 0; i < n; i++) {
    dg[i] = pg[i] - p0[i];
    dr[i] = pr[i] - p0[i];
  }
  char name[240];
  snprintf(name, sizeof name, "%s update %s", what, tag);
  check_rel(name, dg, dr, n, rel);
  snprintf(name, sizeof name, "%s p %s", what, tag);
  check_elem(name, pg, pr, n, elem);
  free(dg);
  free(dr);
}

/* dt_lowp < 0: no low-precision copy. scale <= 0: d_scaler = NULL. clip > 0: the gradients
 * clipped to that norm (cg_k_grad_norm's factor, test_grad_norm checks it; here AdamW's use). */
static void test_adamw(int dt_lowp, float scale, int found_inf, float clip) {
  char name[200], tag[120];
  snprintf(tag, sizeof tag, "lowp=%s scale=%g found_inf=%d clip=%g",
           dt_lowp < 0 ? "none" : dt_name((cg_dtype_t)dt_lowp), scale, found_inf, clip);
  const size_t n = 10007;
  const int64_t t = 3;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
  const float sc = scale > 0 ? scale : 1.0f;
  float *p = hnew(n), *g = hnew(n), *m = hnew(n), *v = hnew(n);
  float *pr = hnew(n), *mr = hnew(n), *vr = hnew(n), *pg = hnew(n), *mg = hnew(n), *vg = hnew(n);
  fill(p, n, -1, 1);
  fill(g, n, -sc, sc); /* gradients carry the loss scale */
  fill(m, n, -0.1f, 0.1f);
  fill(v, n, 0, 0.01f);
  memcpy(pr, p, n * sizeof(float));
  memcpy(mr, m, n * sizeof(float));
  memcpy(vr, v, n * sizeof(float));

  const float ew = 0.01f; /* --ema-decay 0.99: lerp's first branch */
  float *e = hnew(n), *er = hnew(n), *eg = hnew(n);
  fill(e, n, -1, 1);
  memcpy(er, e, n * sizeof(float));
  cg_step_params_t hp = {lr, b1, b2, eps, wd, (float)(1.0 - pow(b1, (double)t)),
                         (float)(1.0 - pow(b2, (double)t)), ew};
  float *d_p = up_bytes(p, n * sizeof(float)), *d_g = up_bytes(g, n * sizeof(float));
  float *d_m = up_bytes(m, n * sizeof(float)), *d_v = up_bytes(v, n * sizeof(float));
  float *d_e = up_bytes(e, n * sizeof(float));
  cg_step_params_t *d_hp = up_bytes(&hp, sizeof hp);
  opt_dev_t o = opt_dev_make(d_g, n, scale, found_inf, dt_lowp, clip, "adamw", tag);
  cg_scaler_t *d_sc = o.d_sc;
  const cg_dtype_t ldt = o.ldt;
  void *d_low = o.d_low;
  cg_gnorm_t *d_gn = o.d_gn, gn = o.gn;
  /* the reference: PyTorch's order, unscale then clip (the device folds both into one factor) */
  if (!found_inf) {
    cg_cpu_adamw(pr, g, mr, vr, n, lr, b1, b2, eps, wd, t, 1.0f / sc * gn.coef);
    cg_cpu_ema(er, pr, n, ew);
  }
  cg_k_adamw(d_p, d_g, d_m, d_v, (int64_t)n, d_hp, d_sc, d_gn, ldt, d_low, d_e, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  cg_test_hget(mg, d_m, n * sizeof(float), S);
  cg_test_hget(vg, d_v, n * sizeof(float), S);
  cg_test_hget(eg, d_e, n * sizeof(float), S);
  if (found_inf) {
    snprintf(name, sizeof name, "adamw skipped %s", tag);
    int same = memcmp(pg, p, n * sizeof(float)) == 0 && memcmp(mg, m, n * sizeof(float)) == 0 &&
               memcmp(vg, v, n * sizeof(float)) == 0 && memcmp(eg, e, n * sizeof(float)) == 0;
    CG_TEST_CHECK(same, "%s: p, m, v or the average changed on a skipped step", name);
    check_lowp(name, ldt, d_low, n, NULL);
    if (same) printf("PASS %s\n", name);
  } else {
    check_update("adamw", tag, p, pg, pr, n, 1e-4, 1e-5);
    snprintf(name, sizeof name, "adamw m %s", tag);
    check_rel(name, mg, mr, n, 1e-5);
    snprintf(name, sizeof name, "adamw v %s", tag);
    check_elem(name, vg, vr, n, 1e-5);
    snprintf(name, sizeof name, "adamw lowp copy %s", tag);
    check_lowp(name, ldt, d_low, n, pg);
    snprintf(name, sizeof name, "adamw moving average %s", tag);
    check_elem(name, eg, er, n, 1e-6);
  }
  cg_test_guard_check("adamw p", d_p, n * sizeof(float), S);
  cg_test_guard_check("adamw moving average", d_e, n * sizeof(float), S);
  cg_test_dfree(d_e, S);
  free(e);
  free(er);
  free(eg);
  cg_test_guard_check("adamw m", d_m, n * sizeof(float), S);
  cg_test_guard_check("adamw v", d_v, n * sizeof(float), S);
  cg_test_dfree(d_p, S);
  cg_test_dfree(d_g, S);
  cg_test_dfree(d_m, S);
  cg_test_dfree(d_v, S);
  cg_test_dfree(d_hp, S);
  opt_dev_free(&o);
  free(p);
  free(g);
  free(m);
  free(v);
  free(pr);
  free(mr);
  free(vr);
  free(pg);
  free(mg);
  free(vg);
}

/* cg_k_ema_swap (--ema-decay's validation): the parameters and the average exchanged bit for
 * bit, twice back to the start, the low-precision copy (dt_lowp < 0: none) the new parameters
 * rounded once. */
static void test_ema_swap(int dt_lowp) {
  char name[160];
  snprintf(name, sizeof name, "ema swap lowp=%s",
           dt_lowp < 0 ? "none" : dt_name((cg_dtype_t)dt_lowp));
  const size_t n = 10007;
  const cg_dtype_t ldt = dt_lowp < 0 ? CG_DT_F32 : (cg_dtype_t)dt_lowp;
  float *p = hnew(n), *e = hnew(n), *pg = hnew(n), *eg = hnew(n);
  fill(p, n, -1, 1);
  fill(e, n, -2, 2);
  float *d_p = up_bytes(p, n * sizeof(float)), *d_e = up_bytes(e, n * sizeof(float));
  void *d_low = dt_lowp < 0 ? NULL : cg_test_dnew(n * cg_dtype_size(ldt), S);
  cg_k_ema_swap(d_p, d_e, (int64_t)n, ldt, d_low, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  cg_test_hget(eg, d_e, n * sizeof(float), S);
  const int swapped = !memcmp(pg, e, n * sizeof(float)) && !memcmp(eg, p, n * sizeof(float));
  CG_TEST_CHECK(swapped, "%s: not exchanged", name);
  check_lowp(name, ldt, d_low, n, e);
  cg_k_ema_swap(d_p, d_e, (int64_t)n, ldt, d_low, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  cg_test_hget(eg, d_e, n * sizeof(float), S);
  const int back = !memcmp(pg, p, n * sizeof(float)) && !memcmp(eg, e, n * sizeof(float));
  CG_TEST_CHECK(back, "%s: two swaps are not the start", name);
  check_lowp(name, ldt, d_low, n, p);
  cg_test_guard_check("ema swap p", d_p, n * sizeof(float), S);
  cg_test_guard_check("ema swap average", d_e, n * sizeof(float), S);
  if (swapped && back) printf("PASS %s\n", name);
  cg_test_dfree(d_p, S);
  cg_test_dfree(d_e, S);
  cg_test_dfree(d_low, S);
  free(p);
  free(e);
  free(pg);
  free(eg);
}

/* cg_k_sgd (--optimizer sgd) against cg_cpu_sgd, as test_adamw: a buffer from earlier steps,
 * unscaled and clipped gradients, a skipped step untouched, the low-precision copy. */
static void test_sgd(int dt_lowp, float scale, int found_inf, float clip, float mu, int nest) {
  char name[200], tag[160];
  snprintf(tag, sizeof tag, "lowp=%s scale=%g found_inf=%d clip=%g momentum=%g nesterov=%d",
           dt_lowp < 0 ? "none" : dt_name((cg_dtype_t)dt_lowp), scale, found_inf, clip, mu, nest);
  const size_t n = 10007;
  const float lr = 5e-2f, wd = 5e-4f;
  const float sc = scale > 0 ? scale : 1.0f;
  float *p = hnew(n), *g = hnew(n), *m = hnew(n), *pr = hnew(n), *mr = hnew(n);
  float *pg = hnew(n), *mg = hnew(n);
  fill(p, n, -1, 1);
  fill(g, n, -sc, sc);
  fill(m, n, -0.5f, 0.5f);
  memcpy(pr, p, n * sizeof(float));
  memcpy(mr, m, n * sizeof(float));
  const float ew = 0.75f; /* lerp's second branch */
  float *e = hnew(n), *er = hnew(n), *eg = hnew(n);
  fill(e, n, -1, 1);
  memcpy(er, e, n * sizeof(float));
  cg_step_params_t hp = {lr, 0.9f, 0.999f, 1e-8f, wd, 1.0f, 1.0f, ew};
  float *d_p = up_bytes(p, n * sizeof(float)), *d_g = up_bytes(g, n * sizeof(float));
  float *d_m = up_bytes(m, n * sizeof(float)), *d_e = up_bytes(e, n * sizeof(float));
  cg_step_params_t *d_hp = up_bytes(&hp, sizeof hp);
  opt_dev_t o = opt_dev_make(d_g, n, scale, found_inf, dt_lowp, clip, "sgd", tag);
  cg_scaler_t *d_sc = o.d_sc;
  const cg_dtype_t ldt = o.ldt;
  void *d_low = o.d_low;
  cg_gnorm_t *d_gn = o.d_gn, gn = o.gn;
  if (!found_inf) {
    cg_cpu_sgd(pr, g, mr, n, lr, mu, nest, wd, 1.0f / sc * gn.coef);
    cg_cpu_ema(er, pr, n, ew);
  }
  cg_k_sgd(d_p, d_g, d_m, (int64_t)n, d_hp, d_sc, d_gn, mu, nest, ldt, d_low, d_e, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  cg_test_hget(mg, d_m, n * sizeof(float), S);
  cg_test_hget(eg, d_e, n * sizeof(float), S);
  if (found_inf) {
    snprintf(name, sizeof name, "sgd skipped %s", tag);
    int same = memcmp(pg, p, n * sizeof(float)) == 0 && memcmp(mg, m, n * sizeof(float)) == 0 &&
               memcmp(eg, e, n * sizeof(float)) == 0;
    CG_TEST_CHECK(same, "%s: p or the buffer changed on a skipped step", name);
    check_lowp(name, ldt, d_low, n, NULL);
    if (same) printf("PASS %s\n", name);
  } else {
    check_update("sgd", tag, p, pg, pr, n, 1e-5, 1e-6);
    snprintf(name, sizeof name, "sgd buffer %s", tag);
    check_rel(name, mg, mr, n, 1e-6);
    snprintf(name, sizeof name, "sgd lowp copy %s", tag);
    check_lowp(name, ldt, d_low, n, pg);
    snprintf(name, sizeof name, "sgd moving average %s", tag);
    check_elem(name, eg, er, n, 1e-6);
  }
  cg_test_guard_check("sgd p", d_p, n * sizeof(float), S);
  cg_test_guard_check("sgd buffer", d_m, n * sizeof(float), S);
  cg_test_guard_check("sgd moving average", d_e, n * sizeof(float), S);
  opt_dev_free(&o);
  void *dev[] = {d_p, d_g, d_m, d_hp, d_e};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) cg_test_dfree(dev[i], S);
  float *host[] = {p, g, m, pr, mr, pg, mg, e, er, eg};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) free(host[i]);
}

/* cg_k_grad_norm (--clip-grad-norm) against cg_cpu_grad_norm and cg_clip_coef: the norm of
 * the unscaled gradients (scale <= 0: no scaler), the same bits on a second run (a fixed
 * summation order), a non-finite element (poison) giving a non-finite norm and factor 1. */
static void test_grad_norm(size_t n, float scale, float max_norm, int poison) {
  char name[200];
  snprintf(name, sizeof name, "grad_norm n=%zu scale=%g max=%g poison=%d", n, scale, max_norm,
           poison);
  const float sc = scale > 0 ? scale : 1.0f;
  float *g = hnew(n);
  fill(g, n, -sc, sc);
  if (poison && n) g[n - 1 - n / 3] = poison > 1 ? NAN : INFINITY;
  double *part = cg_malloc((n / CG_NORM_CHUNK + 1) * sizeof(double), "norm partials");
  const double ref = cg_cpu_grad_norm(g, n, 1.0f, part) / (double)sc;
  const float cref = cg_clip_coef(ref, max_norm);
  float *d_g = up_bytes(g, (n ? n : 1) * sizeof(float));
  cg_scaler_t s0 = {sc, 1, 0, 0, 0, 0};
  cg_scaler_t *d_sc = scale > 0 ? up_bytes(&s0, sizeof s0) : NULL;
  cg_gnorm_t *d_gn = cg_test_dnew(sizeof(cg_gnorm_t), S), gn[2];
  void *d_work = cg_test_dnew(cg_k_grad_norm_work_bytes(), S);
  for (int k = 0; k < 2; k++) {
    cg_k_grad_norm(d_g, (int64_t)n, d_sc, max_norm, d_work, d_gn, S);
    cg_test_hget(&gn[k], d_gn, sizeof gn[k], S);
  }
  int ok = memcmp(&gn[0], &gn[1], sizeof gn[0]) == 0;
  CG_TEST_CHECK(ok, "%s: two runs differ (%.9g, %.9g)", name, gn[0].norm, gn[1].norm);
  if (poison) {
    const int bad = !isfinite(gn[0].norm) && gn[0].coef == 1.0f;
    CG_TEST_CHECK(bad, "%s: norm %g coef %g, expected not finite and 1", name, gn[0].norm,
                  gn[0].coef);
    ok &= bad;
  } else {
    const double e = fabs(gn[0].norm - ref) / (ref > 0 ? ref : 1.0);
    const double ec = fabs(gn[0].coef - cref) / cref;
    CG_TEST_CHECK(e <= 1e-6 && ec <= 1e-6, "%s: norm %.9g coef %.9g, reference %.9g %.9g",
                  name, gn[0].norm, gn[0].coef, ref, cref);
    ok &= e <= 1e-6 && ec <= 1e-6;
  }
  if (ok) printf("PASS %s (norm %.6g, coef %.6g)\n", name, gn[0].norm, gn[0].coef);
  cg_test_dfree(d_g, S);
  cg_test_dfree(d_sc, S);
  cg_test_dfree(d_gn, S);
  cg_test_dfree(d_work, S);
  free(part);
  free(g);
}

#define EXPECT_SCALER(what, s, sc_, good_, skipped_, steps_)                                   \
  CG_TEST_CHECK((s).scale == (sc_) && (s).good_steps == (good_) && (s).skipped == (skipped_) && \
                    (s).steps == (steps_) && (s).found_inf == 0,                              \
                "%s: scale %g good %d skipped %lld steps %lld found_inf %d, expected %g %d "   \
                "%lld %lld 0",                                                                \
                what, (s).scale, (s).good_steps, (s).skipped, (s).steps, (s).found_inf,       \
                (double)(sc_), (good_), (long long)(skipped_), (long long)(steps_))

/* A whole fp16 step sequence: inf injected -> found, skipped, halved; 2000 clean -> doubled. */
static void test_scaler(void) {
  const int before = cg_test_failures;
  const size_t n = 4099;
  const float inf = INFINITY;
  float *p = hnew(n), *g = hnew(n), *z = hnew(n), *pg = hnew(n);
  fill(p, n, -1, 1);
  fill(g, n, -100, 100);
  memset(z, 0, n * sizeof(float));
  float *d_p = up_bytes(p, n * sizeof(float)), *d_g = up_bytes(g, n * sizeof(float));
  float *d_m = up_bytes(z, n * sizeof(float)), *d_v = up_bytes(z, n * sizeof(float));
  cg_step_params_t hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 0.1f, 0.001f};
  cg_step_params_t *d_hp = up_bytes(&hp, sizeof hp);
  cg_scaler_t *d_sc = cg_test_dnew(sizeof(cg_scaler_t), S);
  scaler_put(d_sc, 65536.0f, 1, 0, 0, 0, 0);

  /* step 1: an inf in the gradient */
  cg_test_hput(d_g + 123, &inf, sizeof inf, S);
  cg_k_check_finite(d_g, (int64_t)n, d_sc, S);
  cg_scaler_t s = scaler_get(d_sc);
  CG_TEST_CHECK(s.found_inf == 1, "scaler: inf in the gradient not found");
  cg_k_adamw(d_p, d_g, d_m, d_v, (int64_t)n, d_hp, d_sc, NULL, CG_DT_F16, NULL, NULL, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  CG_TEST_CHECK(memcmp(pg, p, n * sizeof(float)) == 0, "scaler: overflow step was not skipped");
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler after overflow", s, 32768.0f, 0, 1, 1);

  /* step 2: clean */
  cg_test_hput(d_g + 123, &g[123], sizeof(float), S);
  cg_k_check_finite(d_g, (int64_t)n, d_sc, S);
  s = scaler_get(d_sc);
  CG_TEST_CHECK(s.found_inf == 0, "scaler: finite gradient flagged");
  cg_k_adamw(d_p, d_g, d_m, d_v, (int64_t)n, d_hp, d_sc, NULL, CG_DT_F16, NULL, NULL, S);
  cg_test_hget(pg, d_p, n * sizeof(float), S);
  CG_TEST_CHECK(memcmp(pg, p, n * sizeof(float)) != 0, "scaler: clean step did not update p");
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler after a clean step", s, 32768.0f, 1, 1, 2);

  /* 1998 more clean steps: 1999 in a row, no growth yet; the 2000th doubles */
  for (int i = 0; i < 1998; i++) cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler after 1999 clean steps", s, 32768.0f, 1999, 1, 2000);
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler after 2000 clean steps", s, 65536.0f, 0, 1, 2001);

  /* an overflow after some clean steps resets the count */
  for (int i = 0; i < 10; i++) cg_k_scaler_update(d_sc, S);
  cg_test_hput(d_g + n - 1, &inf, sizeof inf, S);
  cg_k_check_finite(d_g, (int64_t)n, d_sc, S);
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler overflow after 10 clean", s, 32768.0f, 0, 2, 2012);

  /* the scale never drops below 1 */
  scaler_put(d_sc, 1.0f, 1, 1, 7, 0, 0);
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler floor at 1", s, 1.0f, 0, 1, 1);

  /* disabled (bf16/fp32): the scale stays put; skips are still counted */
  scaler_put(d_sc, 1.0f, 0, 1, 0, 0, 0);
  cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler disabled overflow", s, 1.0f, 0, 1, 1);
  for (int i = 0; i < 2000; i++) cg_k_scaler_update(d_sc, S);
  s = scaler_get(d_sc);
  EXPECT_SCALER("scaler disabled 2000 clean", s, 1.0f, 0, 1, 2001);

  if (cg_test_failures == before) printf("PASS scaler sequences\n");
  cg_test_dfree(d_p, S);
  cg_test_dfree(d_g, S);
  cg_test_dfree(d_m, S);
  cg_test_dfree(d_v, S);
  cg_test_dfree(d_hp, S);
  cg_test_dfree(d_sc, S);
  free(p);
  free(g);
  free(z);
  free(pg);
}

/* Empty shapes launch nothing and fail nothing; an empty bias gradient is zeros. */
static void test_empty(void) {
  cg_scaler_t *d_sc = cg_test_dnew(sizeof(cg_scaler_t), S);
  scaler_put(d_sc, 1.0f, 0, 0, 0, 0, 0);
  cg_step_params_t hp = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.1f, 0.001f};
  cg_step_params_t *d_hp = up_bytes(&hp, sizeof hp);
  float *d_db = cg_test_dnew(5 * sizeof(float), S);
  double *d_loss = cg_test_dnew(sizeof(double), S);
  for (int t = 0; t < 3; t++) {
    cg_k_bias_act_fwd(DTS[t], NULL, 0, 8, NULL, 1, S);
    cg_k_maxpool_fwd(DTS[t], NULL, 0, 4, 4, 3, NULL, S);
    cg_k_maxpool_bwd(DTS[t], NULL, NULL, NULL, 0, 4, 4, 3, NULL, 1, S);
    cg_k_concat_fwd(DTS[t], NULL, 3, NULL, 5, 0, NULL, S);
    cg_k_concat_bwd(DTS[t], NULL, 3, 5, 0, NULL, NULL, S);
    cg_k_cast_from_f32(DTS[t], NULL, 0, NULL, S);
    cg_k_cast_to_f32(DTS[t], NULL, 0, 1.0f, NULL, S);
    cg_k_pad_channels_from_f32(DTS[t], NULL, 0, 5, 8, NULL, S);
    cg_k_pack_weight_cpad(DTS[t], NULL, 0, 9, 5, 8, NULL, S);
    cg_k_unpack_grad_cpad(DTS[t], NULL, 0, 9, 5, 8, NULL, S);
  }
  cg_k_check_finite(NULL, 0, d_sc, S);
  cg_k_adamw(NULL, NULL, NULL, NULL, 0, d_hp, d_sc, NULL, CG_DT_BF16, NULL, NULL, S);
  cg_k_bias_act_bwd(CG_DT_BF16, NULL, NULL, 0, 5, 1, d_db, NULL, S);
  float db[5];
  cg_test_hget(db, d_db, sizeof db, S);
  int zeros = 1;
  for (int k = 0; k < 5; k++) zeros &= db[k] == 0.0f;
  CG_TEST_CHECK(zeros, "bias_act_bwd npix=0: dbias not zeroed");
  /* the strided and fused variants: no launch, overwritten sums are zeros */
  for (int t = 0; t < 3; t++) {
    cg_k_bias_act_fwd_ld(DTS[t], NULL, 16, 0, 8, NULL, 1, S);
    cg_k_bias_act_bwd_ld(DTS[t], NULL, 10, NULL, 10, 0, 5, 1, NULL, NULL, S);
    cg_k_maxpool_fwd_ld(DTS[t], NULL, 6, 0, 4, 4, 3, NULL, S);
    cg_k_maxpool_bwd_ld(DTS[t], NULL, 6, NULL, 0, 4, 4, 3, NULL, 6, NULL, 6, 1, NULL, NULL, S);
  }
  const struct {
    const char *what;
    int kind;
  } zc[] = {{"bias_act_bwd_ld", 0}, {"maxpool_bwd_ld", 1}, {"head_bwd_fused dbias_x", 2},
            {"head_bwd_fused dw", 3}};
  float *d_dw = cg_test_dnew(5 * sizeof(float), S), *d_db1 = cg_test_dnew(sizeof(float), S);
  for (size_t z = 0; z < sizeof zc / sizeof zc[0]; z++) {
    cg_test_dpoison(d_db, 5 * sizeof(float), S);
    cg_test_dpoison(d_dw, 5 * sizeof(float), S);
    if (zc[z].kind == 0)
      cg_k_bias_act_bwd_ld(CG_DT_F16, NULL, 10, NULL, 10, 0, 5, 1, d_db, NULL, S);
    if (zc[z].kind == 1)
      cg_k_maxpool_bwd_ld(CG_DT_BF16, NULL, 10, NULL, 0, 4, 4, 5, NULL, 10, NULL, 10, 1, d_db,
                          NULL, S);
    if (zc[z].kind >= 2)
      cg_head_bwd_fused(CG_DT_BF16, NULL, NULL, NULL, 0, 5, NULL, 1, d_db, d_dw, d_db1, NULL, S);
    cg_test_hget(db, zc[z].kind == 3 ? d_dw : d_db, sizeof db, S);
    int zz = 1;
    for (int k = 0; k < 5; k++) zz &= db[k] == 0.0f;
    if (zc[z].kind == 3) {
      float b1 = -1;
      cg_test_hget(&b1, d_db1, sizeof b1, S);
      zz &= b1 == 0.0f;
    }
    CG_TEST_CHECK(zz, "%s with no pixels: sums not zeroed", zc[z].what);
    zeros &= zz;
  }
  cg_test_dfree(d_dw, S);
  cg_test_dfree(d_db1, S);
  cg_k_segs_t none;
  memset(&none, 0, sizeof none);
  cg_k_cast_segs_to_f32(CG_DT_BF16, &none, S); /* no segments */
  none.nseg = 3;                               /* only empty ones, NULL pointers */
  cg_k_cast_segs_to_f32(CG_DT_F32, &none, S);
  cg_k_loss(CG_DT_BF16, NULL, NULL, NULL, 0, 16, 1.0f, 1.0f, 0.0f, NULL, NULL, d_loss, NULL, NULL,
            S);
  double l = -1;
  cg_test_hget(&l, d_loss, sizeof l, S);
  CG_TEST_CHECK(l == 0.0, "loss n=0: %g, expected 0", l);
  if (zeros && l == 0.0) printf("PASS empty shapes\n");
  cg_test_dfree(d_sc, S);
  cg_test_dfree(d_hp, S);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_loss, S);
}

/* The strided and fused variants (the in-place concat, the concat copies, the fused
 * backward): every layout of layouts() and the UNet's shapes. */
static void test_strided(void) {
  printf("RUN strided bias_act (concat halves)\n");
  for (int t = 0; t < 3; t++) {
    const struct {
      int64_t npix;
      int c;
    } sh[] = {{333, 3}, {1000, 6}, {4096, 32}, {777, 8}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
      lay_t l[NLAY];
      const int nl = layouts(sh[i].c, l);
      for (int j = 0; j < nl; j++) {
        for (int relu = 0; relu <= 1; relu++)
          test_bias_act_fwd_ld(DTS[t], sh[i].npix, sh[i].c, l[j], relu, 1);
        test_bias_act_fwd_ld(DTS[t], sh[i].npix, sh[i].c, l[j], 1, 0);
      }
    }
    const struct {
      int64_t npix;
      int c;
    } shb[] = {{333, 3}, {5000, 6}, {8192, 32}, {2000, 8}};
    for (size_t i = 0; i < sizeof shb / sizeof shb[0]; i++) {
      lay_t l[NLAY];
      const int nl = layouts(shb[i].c, l);
      for (int j = 0; j < nl; j++)
        for (int relu = 0; relu <= 1; relu++)
          for (int db = 0; db <= 1; db++)
            test_bias_act_bwd_ld(DTS[t], shb[i].npix, shb[i].c, l[j], l[j], relu, db);
      /* dy a concat half, y dense, and the other way round; then only one of the two with a
       * stride that is no whole number of packs */
      test_bias_act_bwd_ld(DTS[t], shb[i].npix, shb[i].c, l[2], l[0], 1, 1);
      test_bias_act_bwd_ld(DTS[t], shb[i].npix, shb[i].c, l[0], l[2], 1, 1);
      test_bias_act_bwd_ld(DTS[t], shb[i].npix, shb[i].c, l[0], l[4], 1, 1);
      test_bias_act_bwd_ld(DTS[t], shb[i].npix, shb[i].c, l[4], l[0], 1, 1);
    }
  }

  printf("RUN concat forward with a part's bias\n");
  for (int t = 0; t < 3; t++) {
    /* ... and packs in one part only (ca % V == 0 but cb % V != 0, and the other way round):
     * the vector path must not be taken */
    const int sh[][3] = {{333, 3, 5},    {4096, 32, 32}, {1000, 8, 16}, {70001, 32, 32},
                         {1000, 16, 4},  {1000, 4, 16},  {777, 8, 12}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      for (int part = 0; part <= 1 && !too_big((int64_t)sh[i][0] * (sh[i][1] + sh[i][2]));
           part++)
        for (int relu = 0; relu <= 1; relu++)
          test_concat_fwd_bias(DTS[t], sh[i][0], sh[i][1], sh[i][2], part, relu);
  }

  printf("RUN strided concat backward\n");
  for (int t = 0; t < 3; t++) {
    const int sh[][3] = {{333, 3, 3}, {4096, 32, 32}, {1000, 8, 8}, {777, 6, 10}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
      const int ca = sh[i][1], cb = sh[i][2];
      const lay_t dense_a = {ca, 0}, dense_b = {cb, 0};
      const lay_t half2 = {ca + cb, cb}; /* a into the second half of an [b | a]-sized buffer */
      const lay_t half1 = {ca + cb, 0}, odd = {ca + 3, 1};
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, half2, dense_b);
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, dense_a, (lay_t){ca + cb, ca});
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, half1, dense_b);
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, odd, dense_b);
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, dense_a, dense_b);
      /* odd strides behind aligned pointers: the word size must follow the strides too */
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, (lay_t){ca + 1, 0}, dense_b);
      test_concat_bwd_ld(DTS[t], sh[i][0], ca, cb, dense_a, (lay_t){cb + 2, 0});
    }
  }

  printf("RUN strided maxpool, fused backward\n");
  for (int t = 0; t < 3; t++) {
    /* scalar (c = 3, 6), packed (8, 32), and 2x64x64x32 / 4x64x64x32: many chunks */
    const int sh[][4] = {{2, 16, 16, 3}, {1, 8, 6, 6}, {3, 2, 2, 8}, {2, 16, 12, 32},
                         {2, 64, 64, 32}, {4, 64, 64, 32}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
      const int n = sh[i][0], h = sh[i][1], w = sh[i][2], c = sh[i][3];
      const int big = n * h * w > 10000;
      if (too_big((int64_t)n * h * w * c)) continue;
      lay_t l[NLAY];
      const int nl = layouts(c, l);
      for (int j = 0; j < nl; j++) {
        for (int ties = 0; ties <= 1; ties++) test_maxpool_fwd_ld(DTS[t], n, h, w, c, l[j], ties);
        for (int accum = 0; accum <= 1; accum++)
          for (int relu = 0; relu <= 1; relu++)
            for (int db = 0; db <= 1; db++) {
              if (big && !(relu && db) && j != 2) continue; /* the big shapes: the UNet's case */
              test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[j], l[j], (accum + relu + j) % 2, accum,
                                  relu, db, NULL);
            }
      }
      /* x and dx in different layouts (a concat half and a dense tensor, both ways) */
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[2], l[0], 1, 1, 1, 1, NULL);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[0], l[2], 0, 1, 1, 1, NULL);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[3], l[1], 1, 0, 1, 1, NULL);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[2], l[4], 0, 1, 1, 1, NULL);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[4], l[2], 1, 1, 0, 1, NULL);
      /* the gradient to add to apart from dx: the skip's part in the other half of its copied
       * concat buffer (x its copy in the first half: one buffer's two halves in the step, two
       * here), dx dense (the UNet's case, devplan.h gcat); then odd strides both ways */
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[1], l[0], 1, 1, 1, 1, &l[2]);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[1], l[0], 0, 1, 1, 0, &l[2]);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[0], l[0], 1, 1, 0, 1, &l[0]);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[3], l[0], 0, 1, 1, 1, &l[4]);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[0], l[3], 1, 1, 1, 1, &l[3]);
      /* x and dx packed, the old gradient alone misaligned or of an odd stride: it alone must
       * send the pool to the one-element path */
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[1], l[0], 1, 1, 1, 1, &l[4]);
      test_maxpool_bwd_ld(DTS[t], n, h, w, c, l[1], l[0], 1, 1, 1, 1, &l[3]);
    }
  }
}

/* The element-wise and data-movement kernels of kernels_act.cu: the sections an emulated
 * device runs too (test_layers_emu.c, with g_small). */
static void test_elementwise(void) {
  printf("RUN bias_act_fwd\n");
  for (int t = 0; t < 3; t++) {
    const struct {
      int64_t npix;
      int c;
    } sh[] = {{420, 1}, {420, 5}, {333, 37}, {256, 64}, {70001, 37}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      for (int relu = 0; relu <= 1 && !too_big(sh[i].npix * sh[i].c); relu++)
        for (int bias = 0; bias <= 1; bias++)
          test_bias_act_fwd(DTS[t], sh[i].npix, sh[i].c, relu, bias, 0);
    test_bias_act_fwd(DTS[t], 300, 64, 1, 1, 1); /* misaligned: the 16-byte path must step aside */
  }

  printf("RUN bias_act_bwd\n");
  for (int t = 0; t < 3; t++) {
    const struct {
      int64_t npix;
      int c;
    } sh[] = {{420, 1},    {420, 5},  {333, 37}, {4096, 64},  {20000, 3}, {5000, 70}, {1, 1},
              {63, 33},    /* 16-byte packs: UNet-like, several tiles, one pack per pixel */
              {70001, 32}, {1000, 512}, {333, 8}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      for (int relu = 0; relu <= 1 && !too_big(sh[i].npix * sh[i].c); relu++)
        for (int db = 0; db <= 1; db++) test_bias_act_bwd(DTS[t], sh[i].npix, sh[i].c, relu, db);
  }

  printf("RUN maxpool\n");
  for (int t = 0; t < 3; t++) {
    const int sh[][4] = {{2, 6, 10, 3}, {2, 4, 8, 16}, {1, 8, 6, 37}, {3, 2, 2, 8}, {2, 16, 12, 64}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      for (int ties = 0; ties <= 1; ties++)
        test_maxpool(DTS[t], sh[i][0], sh[i][1], sh[i][2], sh[i][3], ties);
  }

  printf("RUN concat\n");
  for (int t = 0; t < 3; t++) {
    const int sh[][3] = {{333, 3, 5}, {333, 16, 8}, {257, 32, 32}, {100, 7, 1}, {70000, 20, 13},
                         {4099, 4, 4}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      if (!too_big((int64_t)sh[i][0] * (sh[i][1] + sh[i][2])))
        test_concat(DTS[t], sh[i][0], sh[i][1], sh[i][2]);
  }

  printf("RUN casts, padding, weight packing\n");
  for (int t = 0; t < 3; t++) {
    test_casts(DTS[t], 1001);
    if (!too_big(2500003)) test_casts(DTS[t], 2500003); /* more than one grid-stride pass */
    test_pad(DTS[t], 257, 1, 5, 8);
    test_pad(DTS[t], 100, 1, 3, 4);
    test_pad(DTS[t], 64, 1, 8, 8);
    test_pad(DTS[t], 33, 1, 1, 8);
    test_pad(DTS[t], 32, 9, 5, 8); /* enc0.conv1 weight: 32 x 3x3 x 5 -> 8 */
    test_pad(DTS[t], 7, 1, 3, 4);
  }

  test_strided();
}

/* Every section; test_layers_emu.c runs them on the emulated device. */
static void test_all(void) {
  printf("RUN empty shapes\n");
  test_empty();

  test_elementwise();

  printf("RUN fused head backward\n");
  for (int t = 0; t < 3; t++) {
    const struct {
      int64_t npix;
      int c;
    } sh[] = {{8192, 32}, {16384, 32}, {333, 3}, {1000, 6}, {777, 40}, {3000, 1}, {2500, 300},
              {20, 32}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      for (int relu = 0; relu <= 1; relu++)
        for (int db = 0; db <= 1; db++) test_head_fused(DTS[t], sh[i].npix, sh[i].c, relu, db);
  }

  printf("RUN plain head\n");
  for (int t = 0; t < 3; t++) {
    const struct {
      int64_t npix;
      int c;
    } sh[] = {{1200, 16}, {4096, 32}, {630, 5}, {777, 40}, {1, 1}, {0, 8}};
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++)
      test_head_plain(DTS[t], sh[i].npix, sh[i].c);
  }

  printf("RUN batched casts\n");
  for (int t = 0; t < 3; t++) test_cast_segs_all(DTS[t]);

  printf("RUN loss\n");
  test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
  test_loss(CG_DT_F32, 3, 65573, 1024.0f, 1, 1);
  test_loss(CG_DT_F32, 2, 1, 3.0f, 1, 1);
  test_loss(CG_DT_F32, 4, 777, 0.0f, 0, 0); /* eval: no gradient, no mask */
  test_loss(CG_DT_BF16, 5, 1000, 0.0f, 1, 1);
  test_loss(CG_DT_BF16, 3, 65573, 1024.0f, 1, 1);
  test_loss(CG_DT_F16, 4, 4099, 8192.0f, 1, 1);
  if (!too_big(300001)) test_loss(CG_DT_F16, 2, 300001, 65536.0f, 1, 0);
  for (int d = 0; d < 2; d++) { /* --dice-weight 0 (BCE alone) and 0.5 */
    g_dw = d ? 0.5f : 0.0f;
    test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
    test_loss(CG_DT_BF16, 3, 65573, 1024.0f, 1, 1);
  }
  g_dw = 1.0f;
  for (int d = 0; d < 2; d++) { /* --pos-weight 3.5, with Dice and without */
    g_pw = 3.5f, g_dw = d ? 1.0f : 0.0f;
    test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
    test_loss(CG_DT_F16, 4, 4099, 8192.0f, 1, 1);
  }
  g_pw = 1.0f, g_dw = 1.0f;
  for (int d = 0; d < 2; d++) { /* --focal-gamma 2 (with --pos-weight 3.5) and 0.5 */
    g_fg = d ? 0.5f : 2.0f, g_pw = d ? 1.0f : 3.5f;
    test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
    test_loss(CG_DT_F16, 4, 4099, 8192.0f, 1, 1);
  }
  g_fg = 0.0f, g_pw = 1.0f;
  printf("RUN ohem_thr, and the loss with OHEM (--ohem-thresh; binary, no ignore label)\n");
  /* min_kept 10% with 0.7 and 50% with 0.05: thresholds thresh and v > thresh; every pixel:
   * +inf (all kept) */
  static const struct {
    float thresh;
    double kf;
  } OH[3] = {{0.7f, 0.1}, {0.05f, 0.5}, {0.7f, 1.0}};
  for (int o = 0; o < 3; o++) {
    g_ohem = OH[o].thresh;
    g_ohem_mk = (int64_t)(OH[o].kf * 1000);
    test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
    g_ohem_mk = (int64_t)(OH[o].kf * 4099);
    test_loss(CG_DT_F16, 4, 4099, 8192.0f, 1, 1);
    g_ohem_mk = (int64_t)(OH[o].kf * 65573);
    test_loss(CG_DT_BF16, 3, 65573, 1024.0f, 1, 1); /* several chunks */
  }
  g_ohem = 0.7f, g_ohem_mk = 0; /* min_kept 0: a pixel alone is kept only below 0.7 */
  test_loss(CG_DT_F32, 2, 1, 3.0f, 1, 1);
  g_ohem_mk = 250;
  test_loss(CG_DT_F32, 4, 777, 0.0f, 0, 0); /* no gradient, no mask */
  g_pw = 3.5f, g_fg = 2.0f; /* --pos-weight and --focal-gamma: the kept pixels' terms */
  test_loss(CG_DT_F32, 5, 1000, 0.0f, 1, 1);
  g_pw = 1.0f, g_fg = 0.0f, g_ohem = 0.0f, g_ohem_mk = 0;
  CG_TEST_CHECK(g_ohem_hits[0] > 0 && g_ohem_hits[1] > 0 && g_ohem_hits[2] > 0,
                "ohem_thr: thresholds thresh %d, v %d, +inf %d: a branch never taken",
                g_ohem_hits[0], g_ohem_hits[1], g_ohem_hits[2]);
  printf("  ohem_thr: %d thresholds were thresh, %d v above it, %d +inf\n", g_ohem_hits[0],
         g_ohem_hits[1], g_ohem_hits[2]);

  printf("RUN check_finite\n");
  test_check_finite();

  printf("RUN grad_norm\n");
  test_grad_norm(10007, 0.0f, 1.0f, 0);
  test_grad_norm(10007, 1024.0f, 1e9f, 0);
  test_grad_norm(3000017, 65536.0f, 0.5f, 0); /* > one pass of the fixed grid, odd tail */
  test_grad_norm(1, 1.0f, 2.0f, 0);
  test_grad_norm(0, 0.0f, 1.0f, 0);
  test_grad_norm(4099, 8.0f, 1.0f, 1);
  test_grad_norm(4099, 0.0f, 1.0f, 2);

  printf("RUN adamw\n");
  test_adamw(-1, 1024.0f, 0, 0);
  test_adamw(-1, 0.0f, 0, 0);
  test_adamw(CG_DT_BF16, 1.0f, 0, 0);
  test_adamw(CG_DT_F16, 65536.0f, 0, 0);
  test_adamw(CG_DT_F32, 8.0f, 0, 0);
  test_adamw(-1, 1024.0f, 1, 0);
  test_adamw(CG_DT_BF16, 1024.0f, 1, 0);
  test_adamw(CG_DT_F16, 65536.0f, 1, 0);
  test_adamw(-1, 1024.0f, 0, 0.5f); /* clipped */
  test_adamw(-1, 0.0f, 0, 2.0f);
  test_adamw(CG_DT_BF16, 1.0f, 0, 1e9f); /* measured, not clipped */
  test_adamw(CG_DT_F16, 65536.0f, 1, 0.5f); /* skipped: untouched */
  test_sgd(-1, 0.0f, 0, 0, 0.9f, 0);
  test_sgd(CG_DT_BF16, 1.0f, 0, 0, 0.9f, 1);
  test_sgd(CG_DT_F16, 65536.0f, 0, 0.5f, 0.9f, 0); /* unscaled, then clipped */
  test_sgd(CG_DT_F32, 8.0f, 0, 0, 0.0f, 0);        /* plain SGD */
  test_sgd(CG_DT_F16, 65536.0f, 1, 0, 0.9f, 1);    /* skipped: untouched */
  test_ema_swap(-1);
  test_ema_swap(CG_DT_BF16);
  test_ema_swap(CG_DT_F16);

  printf("RUN scaler\n");
  test_scaler();
}

int main(void) {
  if (cg_test_gpu_begin("test_gpu_layers", &S, &g_seed)) return CG_TEST_SKIP;
  const double t0 = cg_now();
  test_all();
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  printf("test_gpu_layers: %.2f s\n", cg_now() - t0);
  return cg_test_done("test_gpu_layers");
}
