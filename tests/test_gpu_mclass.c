/* test_gpu_mclass.c: the multi-class (K >= 2) CUDA kernels and step against the CPU reference.
 *  1. cg_k_loss_k (softmax cross-entropy + class-averaged soft Dice) against cg_cpu_loss_k for
 *     K = 2, 4, 19 with ignore pixels and a weight-0 sample, fp32/bf16/fp16 (the logits
 *     rounded on the host first): loss value 1e-6, gradients as the binary loss (1e-4 fp32,
 *     2e-2 bf16, 2e-3 fp16 of the largest), exactly 0 at ignore pixels and for the padding
 *     sample, the argmax prediction bit-exact (ties: the first maximum), the loss bitwise
 *     reproducible. cg_k_loss_ign (binary with an ignore label) against cg_cpu_loss_k, K = 1.
 *  2. cg_head_k_fwd / cg_head_k_bwd (the 1x1 head to K logits) against loops in double, with
 *     and without the fused ReLU + bias backward of the layer before; bitwise reproducible.
 *  3. cg_k_confusion_k against the helpers' cg_confk_add, bitwise, K = 2, 4, 19 and 150 (the
 *     global-atomics path), ignore pixels and a padding sample; cg_k_confusion_ign against
 *     cg_confusion_add_ignore.
 *  4. One whole training step of a K = 4 UNet (ignore label 255) through the ops table: CUDA
 *     fp32 and bf16 against the CPU backend (loss, gradients, predictions), and the K x K
 *     counts of a metrics-on-device eval step against cg_confk_add of its own prediction; then
 *     five bf16 steps replayed as CUDA graphs bitwise equal to eager ones, the loss going down;
 *     and a step with class weights (cfg.class_weight, one of them 0) and label smoothing
 *     (cfg.label_smoothing), CUDA fp32 against the CPU backend, its loss not the default one;
 *     and one with class weights and OHEM (cfg.ohem_thresh), the same.
 * Section 1 also takes OHEM's keys and thresholds (cg_k_ohem_thr; tests/gpu_ohem_check.c), and
 * the loss with them against cg_cpu_loss_k with cg_loss_opt_t.ohem, K >= 2 and binary.
 * Fresh random inputs each run (the seed is printed; CG_TEST_SEED=<n> repeats it). Exits 77
 * without a usable GPU. A "RUN ..." line precedes each group, so a crash names the kernel. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* mkstemp, close, unlink: the shared algorithm cache */

#include "backend.h"     /* cg_backend_cuda, cg_backend_cpu: the whole step */
#include "cpu_layers.h"  /* cg_cpu_loss_k: the reference loss */
#include "head.h"        /* cg_head_k_* */
#include "kernels.h"     /* cg_k_loss_k, cg_k_loss_ign */
#include "kernels_feat.h" /* cg_k_confusion_k, cg_k_confusion_ign */
#include "log.h"
#include "metrics.h"     /* cg_confk_add, cg_confusion_add_ignore: the helpers' counts */
#include "model.h"
#include "rng.h"
#include "testutil.h"
#include "testutil_cuda.h"
#include "gpu_ohem_check.h" /* cg_test_ohem_thr: gpu_ohem_check.c */

static cudaStream_t S;
static uint64_t g_seed, g_ctr;
static const cg_dtype_t DTS[3] = {CG_DT_F32, CG_DT_BF16, CG_DT_F16};

static const char *dt_name(cg_dtype_t dt) {
  return dt == CG_DT_F32 ? "f32" : dt == CG_DT_BF16 ? "bf16" : "f16";
}

static double dt_tol(cg_dtype_t dt) {
  return dt == CG_DT_F32 ? 1e-4 : dt == CG_DT_BF16 ? 2e-2 : 2e-3;
}

static float *hnew(size_t n) { return cg_malloc((n ? n : 1) * sizeof(float), "test array"); }

static void fill(float *p, size_t n, float lo, float hi) {
  cg_test_fill(p, n, lo, hi, g_seed * 1000003u + g_ctr++);
}

static void round_dt(cg_dtype_t dt, float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (dt == CG_DT_BF16) x[i] = cg_test_bf16_to_f32(cg_test_f32_to_bf16(x[i]));
    if (dt == CG_DT_F16) x[i] = cg_test_f16_to_f32(cg_test_f32_to_f16(x[i]));
  }
}

static void *up_dt(cg_dtype_t dt, const float *h, size_t n) {
  const size_t es = cg_dtype_size(dt);
  void *d = cg_test_dnew(n * es, S);
  if (dt == CG_DT_F32) {
    cg_test_hput(d, h, n * es, S);
    return d;
  }
  uint16_t *t = cg_malloc(n * es + 1, "upload");
  for (size_t i = 0; i < n; i++)
    t[i] = dt == CG_DT_BF16 ? cg_test_f32_to_bf16(h[i]) : cg_test_f32_to_f16(h[i]);
  cg_test_hput(d, t, n * es, S);
  free(t);
  return d;
}

static void down_dt(cg_dtype_t dt, const void *d, size_t n, float *h) {
  if (dt == CG_DT_F32) {
    cg_test_hget(h, d, n * sizeof(float), S);
    return;
  }
  uint16_t *t = cg_malloc(n * 2 + 1, "download");
  cg_test_hget(t, d, n * 2, S);
  for (size_t i = 0; i < n; i++)
    h[i] = dt == CG_DT_BF16 ? cg_test_bf16_to_f32(t[i]) : cg_test_f16_to_f32(t[i]);
  free(t);
}

static void *up_bytes(const void *h, size_t bytes) {
  void *d = cg_test_dnew(bytes, S);
  cg_test_hput(d, h, bytes, S);
  return d;
}

static double maxabs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    if (fabs(x[i]) > m) m = fabs(x[i]);
  return m;
}

static void check_rel(const char *name, const float *got, const float *ref, size_t n, double tol) {
  cg_test_close(name, got, ref, n, tol * maxabs(ref, n) + 1e-30, tol);
}

/* Random class ids in [0, K), about one pixel in `ign_every` the ignore label (ign >= 0). */
static void make_mask(uint8_t *mask, size_t n, int K, int ign, int ign_every) {
  cg_rng_t r = cg_rng_make(g_seed, CG_RNG_TEST, 7, g_ctr++);
  for (size_t j = 0; j < n; j++) {
    const uint32_t u = (uint32_t)(cg_rng_next(&r) >> 32);
    mask[j] = ign >= 0 && ign_every > 0 && u % (uint32_t)ign_every == 0 ? (uint8_t)ign
                                                                        : (uint8_t)((u >> 8) % K);
  }
}

/* ---- 1. the loss ------------------------------------------------------------------------- */

static float g_dw = 1.0f; /* the Dice term's weight (--dice-weight) of test_loss_k */
static int g_cw;          /* 1: class weights (K >= 2: --class-weights; binary: --pos-weight) */
static float g_ls;        /* K >= 2: label smoothing (--label-smoothing) */
static float g_fg;        /* the focal loss's gamma (--focal-gamma) */
static float g_ohem;      /* OHEM's threshold (--ohem-thresh); 0 = none */
static double g_ohem_kf;  /* OHEM's min_kept as a fraction of hw (>= 1: above every count) */
static int g_ohem_hits[3]; /* OHEM samples whose threshold was: thresh, v > thresh, +inf */

static void test_loss_k(cg_dtype_t dt, int n, int64_t hw, int K, int ign, float scale) {
  char tag[220], name[280];
  const int64_t mk = (int64_t)(g_ohem_kf * (double)hw);
  char ohem[64] = "";
  if (g_ohem > 0) snprintf(ohem, sizeof ohem, " ohem=%g min_kept=%lld", g_ohem, (long long)mk);
  snprintf(tag, sizeof tag,
           "%s n=%d hw=%lld K=%d ignore=%d scale=%g dice_w=%g%s smooth=%g focal=%g%s",
           dt_name(dt), n, (long long)hw, K, ign, scale > 0 ? scale : 1.0f, g_dw,
           g_cw ? " weighted" : "", K > 1 ? g_ls : 0.0f, g_fg, ohem);
  const size_t np = (size_t)n * hw, nz = np * K, es = cg_dtype_size(dt);
  float *z = hnew(nz), *gref = hnew(nz), *got = hnew(nz), *w = hnew(n);
  uint8_t *mask = cg_malloc(np, "mask"), *pred = cg_malloc(np, "pred"), *pr = cg_malloc(np, "pr");
  fill(z, nz, -5, 5);
  for (size_t j = 0; j < np; j += 89) /* ties: the first maximum wins */
    for (int c = 0; c < K; c++) z[j * K + c] = c == 0 || c == K - 1 ? 3.0f : -1.0f;
  round_dt(dt, z, nz);
  make_mask(mask, np, K == 1 ? 2 : K, ign, 7); /* binary: ids 0/1 */
  for (int i = 0; i < n; i++) w[i] = i == 1 ? 0.0f : 0.25f + 0.125f * (float)i;
  for (size_t j = 0; j < np; j++) {
    int a = 0;
    if (K == 1) {
      a = z[j] > 0.0f;
    } else {
      for (int c = 1; c < K; c++)
        if (z[j * K + c] > z[j * K + a]) a = c;
    }
    pr[j] = (uint8_t)a;
  }
  const float gs = scale > 0 ? scale : 1.0f;
  /* class weights: 0 for class 1 (its pixels add no cross-entropy), others in [0.5, 2.75] */
  float cw[255];
  for (int c = 0; c < K; c++)
    cw[c] = K == 1 ? 3.5f : c == 1 ? 0.0f : 0.5f + 0.25f * (float)(c % 10);
  const float *hcw = g_cw ? cw : NULL, pw = g_cw && K == 1 ? cw[0] : 1.0f;
  const cg_loss_opt_t lo = {g_dw, hcw, K > 1 ? g_ls : 0.0f, g_fg, g_ohem, g_ohem > 0 ? mk : 0};
  const double lref = cg_cpu_loss_k(z, mask, w, n, (size_t)hw, K, ign, gs, &lo, gref, NULL);

  void *d_z = up_dt(dt, z, nz);
  uint8_t *d_mask = up_bytes(mask, np);
  float *d_w = up_bytes(w, n * sizeof(float));
  float *d_cw = g_cw && K > 1 ? up_bytes(cw, (size_t)K * sizeof(float)) : NULL;
  cg_scaler_t sc = {scale, 1, 0, 0, 0, 0};
  cg_scaler_t *d_sc = scale > 0 ? up_bytes(&sc, sizeof sc) : NULL;
  void *d_dz = cg_test_dnew(nz * es, S);
  double *d_loss = cg_test_dnew(sizeof(double), S);
  uint8_t *d_pred = cg_test_dnew(np, S);
  const size_t wb = K == 1 ? cg_k_loss_work_bytes(n, hw) : cg_k_loss_k_work_bytes(n, hw, K);
  void *d_work = cg_test_dnew(wb, S);
  float *d_thr = g_ohem > 0 ? cg_test_dnew((size_t)n * sizeof(float), S) : NULL;
  if (d_thr)
    cg_test_ohem_thr(tag, dt, z, d_z, mask, d_mask, n, hw, K, ign, &lo, d_thr, g_ohem_hits, S);
  double lgot = 0, lgot2 = 0;
  if (K == 1)
    cg_k_loss_ign(dt, d_z, d_mask, d_w, n, hw, ign, g_dw, pw, g_fg, d_thr, d_sc, d_dz, d_loss,
                  d_pred, d_work, S);
  else
    cg_k_loss_k(dt, d_z, d_mask, d_w, n, hw, K, ign, g_dw, d_cw, g_ls, g_fg, d_thr, d_sc, d_dz,
                d_loss, d_pred, d_work, S);
  cg_test_hget(&lgot, d_loss, sizeof(double), S);
  snprintf(name, sizeof name, "loss_k value %s", tag);
  cg_test_close_d(name, &lgot, &lref, 1, 1e-12, 1e-6);
  cg_test_guard_check(name, d_loss, sizeof(double), S);
  cg_test_guard_check("loss_k work", d_work, wb, S);

  down_dt(dt, d_dz, nz, got);
  snprintf(name, sizeof name, "loss_k dlogits %s", tag);
  check_rel(name, got, gref, nz, dt_tol(dt));
  cg_test_guard_check(name, d_dz, nz * es, S);
  size_t nonzero = 0, nign = 0;
  for (size_t j = 0; j < np; j++) {
    const int skip = (j / hw) == 1 || mask[j] == ign;
    nign += mask[j] == ign;
    if (skip)
      for (int c = 0; c < K; c++) nonzero += got[j * K + c] != 0.0f;
  }
  CG_TEST_CHECK(nonzero == 0, "%s: %zu gradients of ignore pixels / the padding sample not 0",
                name, nonzero);
  CG_TEST_CHECK(ign < 0 || nign > 0, "%s: the mask has no ignore pixel", name);

  cg_test_hget(pred, d_pred, np, S);
  size_t pd = 0, first = np;
  for (size_t j = 0; j < np; j++)
    if (pred[j] != pr[j]) {
      if (first == np) first = j;
      pd++;
    }
  snprintf(name, sizeof name, "loss_k pred %s", tag);
  CG_TEST_CHECK(pd == 0, "%s: %zu of %zu differ (first [%zu] got %d want %d)", name, pd, np,
                first, first < np ? pred[first] : 0, first < np ? pr[first] : 0);
  if (pd == 0) printf("PASS %s\n", name);
  cg_test_guard_check(name, d_pred, np, S);

  cg_test_dpoison(d_loss, sizeof(double), S);
  if (K == 1)
    cg_k_loss_ign(dt, d_z, d_mask, d_w, n, hw, ign, g_dw, pw, g_fg, d_thr, d_sc, NULL, d_loss,
                  NULL, d_work, S);
  else
    cg_k_loss_k(dt, d_z, d_mask, d_w, n, hw, K, ign, g_dw, d_cw, g_ls, g_fg, d_thr, d_sc, NULL,
                d_loss, NULL, d_work, S);
  cg_test_hget(&lgot2, d_loss, sizeof(double), S);
  CG_TEST_CHECK(memcmp(&lgot, &lgot2, sizeof(double)) == 0,
                "loss_k %s: not deterministic (%.17g vs %.17g)", tag, lgot, lgot2);
  cg_test_dfree(d_z, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_cw, S);
  cg_test_dfree(d_sc, S);
  cg_test_dfree(d_dz, S);
  cg_test_dfree(d_loss, S);
  cg_test_dfree(d_pred, S);
  cg_test_dfree(d_work, S);
  cg_test_dfree(d_thr, S);
  free(z);
  free(gref);
  free(got);
  free(w);
  free(mask);
  free(pred);
  free(pr);
}

/* ---- 2. the head ------------------------------------------------------------------------- */

static void test_head_k(cg_dtype_t dt, int64_t npix, int c, int K, int relu_x, int with_dbias,
                        int with_dx) {
  char tag[160], name[220];
  snprintf(tag, sizeof tag, "%s npix=%lld c=%d K=%d relu_x=%d dbias=%d dx=%d", dt_name(dt),
           (long long)npix, c, K, relu_x, with_dbias, with_dx);
  const size_t nx = (size_t)npix * c, nl = (size_t)npix * K, nw = (size_t)K * c;
  const size_t es = cg_dtype_size(dt);
  float *x = hnew(nx), *w = hnew(nw), *b = hnew(K), *dl = hnew(nl);
  float *lref = hnew(nl), *lgot = hnew(nl), *dxr = hnew(nx), *dxg = hnew(nx);
  float *dwr = hnew(nw), *dwg = hnew(nw), *dbr = hnew(K), *dbg = hnew(K);
  float *dbxr = hnew(c), *dbxg = hnew(c), *dw2 = hnew(nw), *dx2 = hnew(nx);
  fill(x, nx, -1, 2);
  if (relu_x)
    for (size_t i = 0; i < nx; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
  round_dt(dt, x, nx);
  fill(w, nw, -0.5f, 0.5f);
  round_dt(dt, w, nw);
  fill(b, K, -0.2f, 0.2f);
  fill(dl, nl, -1, 1);
  round_dt(dt, dl, nl);
  for (int64_t p = 0; p < npix; p++)
    for (int k = 0; k < K; k++) {
      double a = b[k];
      for (int j = 0; j < c; j++) a += (double)x[p * c + j] * w[(size_t)k * c + j];
      lref[p * K + k] = (float)a;
    }
  round_dt(dt, lref, nl);
  for (int64_t p = 0; p < npix; p++)
    for (int j = 0; j < c; j++) {
      double a = 0;
      for (int k = 0; k < K; k++) a += (double)dl[p * K + k] * w[(size_t)k * c + j];
      dxr[p * c + j] = relu_x && !(x[p * c + j] > 0.0f) ? 0.0f : (float)a;
    }
  round_dt(dt, dxr, nx);
  double aw = 0, ab = 0;
  for (int k = 0; k < K; k++) {
    double s = 0, sa = 0;
    for (int64_t p = 0; p < npix; p++) {
      s += dl[p * K + k];
      sa += fabs(dl[p * K + k]);
    }
    dbr[k] = (float)s;
    if (sa > ab) ab = sa;
    for (int j = 0; j < c; j++) {
      double t = 0, ta = 0;
      for (int64_t p = 0; p < npix; p++) {
        t += (double)dl[p * K + k] * x[p * c + j];
        ta += fabs((double)dl[p * K + k] * x[p * c + j]);
      }
      dwr[(size_t)k * c + j] = (float)t;
      if (ta > aw) aw = ta;
    }
  }

  void *d_x = up_dt(dt, x, nx), *d_w = up_dt(dt, w, nw), *d_dl = up_dt(dt, dl, nl);
  float *d_b = up_bytes(b, K * sizeof(float));
  void *d_l = cg_test_dnew(nl * es, S), *d_dx = cg_test_dnew(nx * es, S);
  float *d_dw = cg_test_dnew(nw * sizeof(float), S), *d_db = cg_test_dnew(K * sizeof(float), S);
  float *d_dbx = cg_test_dnew(c * sizeof(float), S);
  const size_t wb = cg_head_k_bwd_work_bytes(npix, c, K);
  void *d_work = cg_test_dnew(wb, S);

  cg_head_k_fwd(dt, d_x, npix, c, K, d_w, d_b, d_l, S);
  down_dt(dt, d_l, nl, lgot);
  snprintf(name, sizeof name, "head_k fwd %s", tag);
  check_rel(name, lgot, lref, nl, dt_tol(dt));
  cg_test_guard_check(name, d_l, nl * es, S);

  for (int run = 0; run < 2; run++) {
    if (run) {
      cg_test_dpoison(d_dx, nx * es, S);
      cg_test_dpoison(d_dw, nw * sizeof(float), S);
    }
    cg_head_k_bwd(dt, d_x, d_w, d_dl, npix, c, K, with_dx ? d_dx : NULL, relu_x,
                  with_dbias ? d_dbx : NULL, d_dw, d_db, d_work, S);
    if (with_dx) down_dt(dt, d_dx, nx, run ? dx2 : dxg);
    cg_test_hget(run ? dw2 : dwg, d_dw, nw * sizeof(float), S);
  }
  cg_test_hget(dbg, d_db, K * sizeof(float), S);
  if (with_dx) {
    snprintf(name, sizeof name, "head_k dx %s", tag);
    check_rel(name, dxg, dxr, nx, dt_tol(dt));
    cg_test_guard_check(name, d_dx, nx * es, S);
    size_t leak = 0;
    for (size_t i = 0; i < nx; i++) leak += relu_x && !(x[i] > 0.0f) && dxg[i] != 0.0f;
    CG_TEST_CHECK(leak == 0, "%s: %zu masked elements not 0", name, leak);
  }
  snprintf(name, sizeof name, "head_k dw %s", tag);
  cg_test_close(name, dwg, dwr, nw, 1e-6 * aw, 1e-4);
  cg_test_guard_check(name, d_dw, nw * sizeof(float), S);
  snprintf(name, sizeof name, "head_k db %s", tag);
  cg_test_close(name, dbg, dbr, K, 1e-6 * ab, 1e-4);
  cg_test_guard_check(name, d_db, K * sizeof(float), S);
  cg_test_guard_check("head_k work", d_work, wb, S);
  if (with_dbias) { /* the sums of dx as stored */
    double abx = 0;
    for (int j = 0; j < c; j++) {
      double s = 0, sa = 0;
      for (int64_t p = 0; p < npix; p++) {
        s += dxg[p * c + j];
        sa += fabs(dxg[p * c + j]);
      }
      dbxr[j] = (float)s;
      if (sa > abx) abx = sa;
    }
    cg_test_hget(dbxg, d_dbx, c * sizeof(float), S);
    snprintf(name, sizeof name, "head_k dbias_x %s", tag);
    cg_test_close(name, dbxg, dbxr, c, 1e-6 * abx + 1e-30, 1e-4);
    cg_test_guard_check(name, d_dbx, c * sizeof(float), S);
  }
  CG_TEST_CHECK(memcmp(dwg, dw2, nw * sizeof(float)) == 0 &&
                    (!with_dx || memcmp(dxg, dx2, nx * sizeof(float)) == 0),
                "head_k %s: not deterministic", tag);
  cg_test_dfree(d_x, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_dl, S);
  cg_test_dfree(d_b, S);
  cg_test_dfree(d_l, S);
  cg_test_dfree(d_dx, S);
  cg_test_dfree(d_dw, S);
  cg_test_dfree(d_db, S);
  cg_test_dfree(d_dbx, S);
  cg_test_dfree(d_work, S);
  float *fr[] = {x, w, b, dl, lref, lgot, dxr, dxg, dwr, dwg, dbr, dbg, dbxr, dbxg, dw2, dx2};
  for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) free(fr[i]);
}

/* ---- 3. confusion counts ----------------------------------------------------------------- */

static void test_confusion_k(int n, int64_t hw, int K, int ign) {
  char name[160];
  snprintf(name, sizeof name, "confusion_k n=%d hw=%lld K=%d ignore=%d", n, (long long)hw, K,
           ign);
  const size_t np = (size_t)n * hw, kk = (size_t)K * K;
  uint8_t *pred = cg_malloc(np, "pred"), *mask = cg_malloc(np, "mask");
  float *w = hnew(n);
  make_mask(mask, np, K, ign, 5);
  make_mask(pred, np, K, -1, 0);
  for (size_t j = 0; j < np; j += 3) pred[j] = mask[j] < K ? mask[j] : 0; /* a diagonal */
  for (int i = 0; i < n; i++) w[i] = i == n / 2 ? 0.0f : 1.0f / n; /* one padding sample */
  int64_t *ref = cg_calloc(kk, sizeof(int64_t), "ref");
  int64_t *got = cg_malloc(kk * sizeof(int64_t), "got");
  for (int i = 0; i < n; i++)
    if (w[i] > 0) cg_confk_add(ref, K, pred + (size_t)i * hw, mask + (size_t)i * hw, hw, ign);
  uint8_t *d_pred = up_bytes(pred, np), *d_mask = up_bytes(mask, np);
  float *d_w = up_bytes(w, n * sizeof(float));
  unsigned long long *d_c = cg_test_dnew(kk * sizeof(int64_t), S);
  for (int run = 0; run < 2; run++) { /* the second run overwrites, not adds */
    cg_k_confusion_k(d_pred, d_mask, d_w, n, hw, K, ign, d_c, S);
    cg_test_hget(got, d_c, kk * sizeof(int64_t), S);
    size_t bad = 0, first = kk;
    for (size_t e = 0; e < kk; e++)
      if (got[e] != ref[e]) {
        if (first == kk) first = e;
        bad++;
      }
    CG_TEST_CHECK(bad == 0, "%s run %d: %zu of %zu counts differ (first [%zu] %lld vs %lld)",
                  name, run, bad, kk, first, first < kk ? (long long)got[first] : 0LL,
                  first < kk ? (long long)ref[first] : 0LL);
    if (bad == 0) printf("PASS %s run %d (bitwise)\n", name, run);
  }
  cg_test_guard_check(name, d_c, kk * sizeof(int64_t), S);
  cg_test_dfree(d_pred, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_c, S);
  free(pred);
  free(mask);
  free(w);
  free(ref);
  free(got);
}

/* Binary counts with an ignore label: the existing kernel, pixels of the label left out. */
static void test_confusion_ign(int n, int64_t hw, int ign) {
  char name[160];
  snprintf(name, sizeof name, "confusion_ign n=%d hw=%lld ignore=%d", n, (long long)hw, ign);
  const size_t np = (size_t)n * hw;
  uint8_t *pred = cg_malloc(np, "pred"), *mask = cg_malloc(np, "mask");
  float *w = hnew(n);
  make_mask(mask, np, 2, ign, 6);
  make_mask(pred, np, 2, -1, 0);
  for (int i = 0; i < n; i++) w[i] = i == 0 ? 0.0f : 1.0f;
  cg_confusion_t ref;
  memset(&ref, 0, sizeof ref);
  for (int i = 1; i < n; i++)
    cg_confusion_add_ignore(&ref, pred + (size_t)i * hw, mask + (size_t)i * hw, hw, ign);
  uint8_t *d_pred = up_bytes(pred, np), *d_mask = up_bytes(mask, np);
  float *d_w = up_bytes(w, n * sizeof(float));
  unsigned long long *d_c = cg_test_dnew(4 * sizeof(unsigned long long), S);
  const size_t wb = cg_k_confusion_work_bytes(n, hw);
  void *d_work = cg_test_dnew(wb, S);
  cg_k_confusion_ign(d_pred, d_mask, d_w, n, hw, ign, d_c, d_work, S);
  unsigned long long got[4];
  cg_test_hget(got, d_c, sizeof got, S);
  const int64_t want[4] = {ref.tp, ref.fp, ref.fn, ref.tn};
  int ok = 1;
  for (int k = 0; k < 4; k++) ok = ok && (int64_t)got[k] == want[k];
  CG_TEST_CHECK(ok, "%s: got %llu %llu %llu %llu want %lld %lld %lld %lld", name, got[0], got[1],
                got[2], got[3], (long long)want[0], (long long)want[1], (long long)want[2],
                (long long)want[3]);
  if (ok) printf("PASS %s (bitwise)\n", name);
  cg_test_dfree(d_pred, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_c, S);
  cg_test_dfree(d_work, S);
  free(pred);
  free(mask);
  free(w);
}

/* ---- 4. a whole step, K = 4 -------------------------------------------------------------- */

enum { SN = 3, SC = 5, SBASE = 8, SDEPTH = 3, SHW = 32, SK = 4, SIGN = 255 };
static const float *g_kcw; /* cfg.class_weight of make_backend */
static float g_kls;        /* cfg.label_smoothing of make_backend */
static float g_kohem;      /* cfg.ohem_thresh of make_backend, min_kept a quarter of a sample */

static cg_backend_t *make_backend(const cg_backend_ops_t *ops, const cg_model_t *m,
                                  const cg_buckets_t *bk, cg_precision_t prec, int graph,
                                  const char *cache) {
  cg_backend_cfg_t cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.batch = SN;
  cfg.nclass = SK;
  cfg.ignore_index = SIGN;
  cfg.precision = prec;
  cfg.deterministic = 1;
  cfg.dice_weight = 1.0f;
  cfg.class_weight = g_kcw;
  cfg.label_smoothing = g_kls;
  cfg.ohem_thresh = g_kohem;
  cfg.ohem_min_kept = g_kohem > 0 ? SHW * SHW / 4 : 0;
  cfg.tf32 = 0;
  cfg.cuda_graph = graph;
  cfg.algo_cache = cache;
  cfg.buckets = bk;
  cfg.fault_nan_step = -1;
  cg_backend_t *b = NULL;
  char err[1024];
  if (ops->create(m, &cfg, &b, err, sizeof err)) CG_FATAL("%s backend: %s", ops->name, err);
  return b;
}

typedef struct {
  double loss;
  uint8_t *pred;
  float *grads;
  int64_t conf[SK * SK];
  int has_confk;
} kstep_t;

static kstep_t k_step(const cg_backend_ops_t *ops, const cg_model_t *m, const cg_buckets_t *bk,
                      cg_precision_t prec, const float *p0, const cg_test_data_t *d) {
  const size_t px = (size_t)SN * SHW * SHW;
  kstep_t r;
  memset(&r, 0, sizeof r);
  r.pred = cg_malloc(px, "pred");
  r.grads = cg_malloc(sizeof(float) * m->nparams, "grads");
  cg_backend_t *b = make_backend(ops, m, bk, prec, 0, NULL);
  ops->set_params(b, p0);
  cg_batch_t v = cg_test_data_batch(d);
  cg_step_out_t o;
  if (ops == &cg_backend_cuda) { /* the K x K counts on the device first (eval: no update) */
    v.metrics_on_device = 1;
    ops->upload(b, 0, &v);
    ops->upload_wait(b, 0);
    ops->eval_step(b, 0);
    ops->fetch(b, &o);
    r.has_confk = o.has_conf && o.confk != NULL;
    if (r.has_confk) memcpy(r.conf, o.confk, sizeof r.conf);
    v.metrics_on_device = 0;
  }
  ops->upload(b, 0, &v);
  ops->upload_wait(b, 0);
  cg_optim_t opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, 1, 0.0f};
  ops->train_step(b, 0, &opt);
  ops->fetch(b, &o);
  r.loss = o.loss;
  memcpy(r.pred, o.pred, px);
  ops->get_grads(b, r.grads);
  ops->destroy(b);
  return r;
}

/* GS bf16 train steps on one batch, one at a time; with graph, steps after the warm-up replay
 * a captured CUDA graph (the K-class loss and head inside it). Losses into loss[]. */
enum { GS = 5 };
static void k_steps(const cg_model_t *m, const cg_buckets_t *bk, const float *p0,
                    const cg_test_data_t *d, int graph, const char *cache, double *loss) {
  cg_backend_t *b = make_backend(&cg_backend_cuda, m, bk, CG_PREC_BF16, graph, cache);
  cg_backend_cuda.set_params(b, p0);
  cg_batch_t v = cg_test_data_batch(d);
  cg_step_out_t o;
  for (int k = 0; k < GS; k++) {
    cg_optim_t opt = {2e-3f, 0.9f, 0.999f, 1e-8f, 1e-4f, k + 1, 0.0f};
    cg_backend_cuda.upload(b, k % 2, &v);
    cg_backend_cuda.upload_wait(b, k % 2);
    cg_backend_cuda.train_step(b, k % 2, &opt);
    cg_backend_cuda.fetch(b, &o);
    loss[k] = o.loss;
  }
  cg_backend_cuda.destroy(b);
}

static void test_step_k(void) {
  cg_model_t m;
  cg_buckets_t bk;
  char err[256];
  if (cg_model_build(&m, SC, SBASE, SDEPTH, SHW, SHW, SK, err, sizeof err))
    CG_FATAL("cg_model_build: %s", err);
  cg_buckets_plan(&m, 0, &bk);
  float *p0 = cg_malloc(sizeof(float) * m.nparams, "params");
  cg_model_init_params(&m, 7, p0);
  for (int i = 0; i < m.nlayers; i++)
    for (size_t j = 0; j < m.layers[i].b_len; j++)
      p0[m.layers[i].b_off + j] = 0.02f * (float)((int)(j % 5) - 2);
  cg_test_data_t d = cg_test_data_make(SN, SHW, SHW, SC, 1, 42);
  make_mask(d.y, (size_t)SN * SHW * SHW, SK, SIGN, 9); /* class ids + ignore */
  const size_t px = (size_t)SN * SHW * SHW;

  printf("RUN one K=%d step: cpu vs cuda fp32 and bf16\n", SK);
  kstep_t c = k_step(&cg_backend_cpu, &m, &bk, CG_PREC_FP32, p0, &d);
  const cg_precision_t precs[2] = {CG_PREC_FP32, CG_PREC_BF16};
  for (int k = 0; k < 2; k++) {
    const int bf = precs[k] == CG_PREC_BF16;
    kstep_t g = k_step(&cg_backend_cuda, &m, &bk, precs[k], p0, &d);
    const char *pn = bf ? "bf16" : "fp32";
    const double ltol = bf ? 2e-2 : 1e-4, gtol = bf ? 5e-2 : 1e-4;
    CG_TEST_CHECK(fabs(g.loss - c.loss) <= ltol * fabs(c.loss), "K=%d %s loss %.9g vs cpu %.9g",
                  SK, pn, g.loss, c.loss);
    printf("  K=%d loss cpu %.9g cuda %s %.9g\n", SK, c.loss, pn, g.loss);
    const double rel = cg_test_rel_err(g.grads, c.grads, m.nparams);
    CG_TEST_CHECK(rel < gtol, "K=%d %s gradients: relative error %.3e", SK, pn, rel);
    printf("%s K=%d %s gradients (max abs err / max |ref| = %.3e)\n", rel < gtol ? "PASS" : "FAIL",
           SK, pn, rel);
    const cg_layer_t *hl = &m.layers[m.nlayers - 1]; /* the head: K x C weights, K biases */
    printf("    head dW %.3e db %.3e\n",
           cg_test_rel_err(g.grads + hl->w_off, c.grads + hl->w_off, hl->w_len),
           cg_test_rel_err(g.grads + hl->b_off, c.grads + hl->b_off, hl->b_len));
    size_t pd = 0;
    for (size_t j = 0; j < px; j++) pd += g.pred[j] != c.pred[j];
    const size_t pmax = bf ? px / 10 : 4; /* near-ties of the top two logits flip in bf16 */
    CG_TEST_CHECK(pd <= pmax, "K=%d %s: %zu of %zu predicted pixels differ", SK, pn, pd, px);
    printf("  K=%d %s predictions: %zu of %zu pixels differ\n", SK, pn, pd, px);
    /* the device's counts of its own eval prediction (= the train step's forward) */
    int64_t ref[SK * SK];
    memset(ref, 0, sizeof ref);
    for (int i = 0; i < SN; i++)
      if (d.wt[i] > 0)
        cg_confk_add(ref, SK, g.pred + (size_t)i * SHW * SHW, d.y + (size_t)i * SHW * SHW,
                     (size_t)SHW * SHW, SIGN);
    CG_TEST_CHECK(g.has_confk, "K=%d %s: no K x K counts from a metrics-on-device step", SK, pn);
    const int same = g.has_confk && memcmp(ref, g.conf, sizeof ref) == 0;
    CG_TEST_CHECK(same, "K=%d %s: device counts differ from cg_confk_add of its prediction", SK,
                  pn);
    if (same) printf("PASS K=%d %s device confusion counts (bitwise)\n", SK, pn);
    free(g.pred);
    free(g.grads);
  }
  free(c.pred);
  free(c.grads);

  printf("RUN %d K=%d bf16 steps: CUDA graphs vs eager (deterministic)\n", GS, SK);
  char cache[] = "/tmp/cg_gpu_mclass_algosXXXXXX";
  const int fd = mkstemp(cache);
  CG_ASSERT(fd >= 0);
  close(fd);
  double lg[GS], le[GS];
  k_steps(&m, &bk, p0, &d, 1, cache, lg);
  k_steps(&m, &bk, p0, &d, 0, cache, le);
  unlink(cache);
  const int same = memcmp(lg, le, sizeof lg) == 0;
  for (int k = 0; k < GS; k++) printf("  step %d: loss graph %.9g eager %.9g\n", k, lg[k], le[k]);
  CG_TEST_CHECK(same, "K=%d: graph losses differ from eager", SK);
  CG_TEST_CHECK(lg[GS - 1] < lg[0], "K=%d: the loss did not go down (%.6g -> %.6g)", SK, lg[0],
                lg[GS - 1]);
  if (same) printf("PASS K=%d graphs: bitwise equal to eager over %d steps\n", SK, GS);

  printf("RUN one K=%d step with class weights and label smoothing: cpu vs cuda fp32\n", SK);
  const float cw[SK] = {0.5f, 2.0f, 0.0f, 1.5f};
  g_kcw = cw, g_kls = 0.125f;
  kstep_t wc = k_step(&cg_backend_cpu, &m, &bk, CG_PREC_FP32, p0, &d);
  kstep_t wg = k_step(&cg_backend_cuda, &m, &bk, CG_PREC_FP32, p0, &d);
  g_kcw = NULL, g_kls = 0.0f;
  kstep_t uc = k_step(&cg_backend_cpu, &m, &bk, CG_PREC_FP32, p0, &d);
  CG_TEST_CHECK(fabs(wg.loss - wc.loss) <= 1e-4 * fabs(wc.loss) &&
                    fabs(wc.loss - uc.loss) > 1e-3 * fabs(uc.loss),
                "class weights: loss cuda %.9g cpu %.9g (unweighted %.9g)", wg.loss, wc.loss,
                uc.loss);
  printf("  loss cpu %.9g cuda %.9g (unweighted: %.9g)\n", wc.loss, wg.loss, uc.loss);
  const double wrel = cg_test_rel_err(wg.grads, wc.grads, m.nparams);
  CG_TEST_CHECK(wrel < 1e-4, "class weights fp32 gradients: relative error %.3e", wrel);
  printf("%s class weights fp32 gradients (max abs err / max |ref| = %.3e)\n",
         wrel < 1e-4 ? "PASS" : "FAIL", wrel);

  /* the untrained net's p_y are near 1/K, above 0.05: each sample's hardest quarter */
  printf("RUN one K=%d step with class weights and OHEM (0.05, a quarter): cpu vs cuda fp32\n",
         SK);
  g_kcw = cw, g_kohem = 0.05f;
  kstep_t oc = k_step(&cg_backend_cpu, &m, &bk, CG_PREC_FP32, p0, &d);
  kstep_t og = k_step(&cg_backend_cuda, &m, &bk, CG_PREC_FP32, p0, &d);
  g_kcw = NULL, g_kohem = 0.0f;
  CG_TEST_CHECK(fabs(og.loss - oc.loss) <= 1e-4 * fabs(oc.loss) && oc.loss > wc.loss,
                "OHEM: loss cuda %.9g cpu %.9g (weighted, every pixel: %.9g)", og.loss, oc.loss,
                wc.loss);
  printf("  loss cpu %.9g cuda %.9g (weighted, every pixel: %.9g)\n", oc.loss, og.loss, wc.loss);
  const double orel = cg_test_rel_err(og.grads, oc.grads, m.nparams);
  CG_TEST_CHECK(orel < 1e-4, "OHEM fp32 gradients: relative error %.3e", orel);
  printf("%s OHEM fp32 gradients (max abs err / max |ref| = %.3e)\n",
         orel < 1e-4 ? "PASS" : "FAIL", orel);
  kstep_t *ks[5] = {&wc, &wg, &uc, &oc, &og};
  for (int k = 0; k < 5; k++) free(ks[k]->pred), free(ks[k]->grads);
  cg_test_data_free(&d);
  free(p0);
}

/* Class weights of 1 on the device are bitwise none: the loss and every gradient's bits. */
static void test_loss_k_ones(cg_dtype_t dt, int n, int64_t hw, int K, int ign) {
  const size_t np = (size_t)n * hw, nz = np * K, es = cg_dtype_size(dt);
  float *z = hnew(nz), *w = hnew(n), ones[255];
  uint8_t *mask = cg_malloc(np, "mask");
  fill(z, nz, -5, 5);
  make_mask(mask, np, K, ign, 7);
  for (int i = 0; i < n; i++) w[i] = 0.25f + 0.125f * (float)i;
  for (int c = 0; c < K; c++) ones[c] = 1.0f;
  void *d_z = up_dt(dt, z, nz);
  uint8_t *d_mask = up_bytes(mask, np);
  float *d_w = up_bytes(w, n * sizeof(float)), *d_one = up_bytes(ones, (size_t)K * sizeof(float));
  void *d_dz[2] = {cg_test_dnew(nz * es, S), cg_test_dnew(nz * es, S)};
  double *d_loss = cg_test_dnew(2 * sizeof(double), S), loss[2];
  const size_t wb = cg_k_loss_k_work_bytes(n, hw, K);
  void *d_work = cg_test_dnew(wb, S);
  for (int k = 0; k < 2; k++)
    cg_k_loss_k(dt, d_z, d_mask, d_w, n, hw, K, ign, 1.0f, k ? d_one : NULL, 0.0f, 0.0f, NULL,
                NULL, d_dz[k], d_loss + k, NULL, d_work, S);
  cg_test_hget(loss, d_loss, sizeof loss, S);
  char *g0 = cg_malloc(nz * es, "g0"), *g1 = cg_malloc(nz * es, "g1");
  cg_test_hget(g0, d_dz[0], nz * es, S);
  cg_test_hget(g1, d_dz[1], nz * es, S);
  const int same = !memcmp(&loss[0], &loss[1], sizeof(double)) && !memcmp(g0, g1, nz * es);
  CG_TEST_CHECK(same, "loss_k %s K=%d: class weights of 1 are not bitwise none (%.17g vs %.17g)",
                dt_name(dt), K, loss[0], loss[1]);
  if (same) printf("PASS loss_k %s K=%d: class weights of 1 bitwise none\n", dt_name(dt), K);
  cg_test_dfree(d_z, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_one, S);
  cg_test_dfree(d_dz[0], S);
  cg_test_dfree(d_dz[1], S);
  cg_test_dfree(d_loss, S);
  cg_test_dfree(d_work, S);
  free(z), free(w), free(mask), free(g0), free(g1);
}

/* Sections 1-3, the kernels on their own (test_mclass_emu.c runs them on the emulated
 * device). */
static void test_kernels(void) {
  static const int KS[3] = {2, 4, 19};
  printf("RUN loss_k\n");
  for (int t = 0; t < 3; t++)
    for (int k = 0; k < 3; k++) {
      /* fp16 with many pixels: gradients ~1/hw need the loss scale, as in training */
      const float big_scale = DTS[t] == CG_DT_F16 ? 8192.0f : 0.0f;
      test_loss_k(DTS[t], 4, 1000, KS[k], 255, 0.0f);
      test_loss_k(DTS[t], 3, 70000, KS[k], KS[k] + 3, big_scale); /* several chunks */
    }
  test_loss_k(CG_DT_F16, 4, 4096, 4, 255, 1024.0f); /* the fp16 loss scale */
  test_loss_k(CG_DT_F32, 4, 1000, 4, -1, 0.0f);     /* no ignore label */
  test_loss_k(CG_DT_F32, 2, 513, 255, 255, 0.0f);   /* the most classes */
  printf("RUN loss_ign (binary, ignore label)\n");
  for (int t = 0; t < 3; t++)
    test_loss_k(DTS[t], 4, 5000, 1, 255, DTS[t] == CG_DT_F16 ? 1024.0f : 0.0f);
  printf("RUN loss_k and loss_ign with the Dice term weighted (--dice-weight 0 and 0.5)\n");
  for (int d = 0; d < 2; d++) {
    g_dw = d ? 0.5f : 0.0f;
    test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
    test_loss_k(CG_DT_BF16, 3, 70000, 19, 22, 0.0f);
    test_loss_k(CG_DT_F16, 4, 5000, 1, 255, 1024.0f);
  }
  g_dw = 1.0f;
  printf("RUN loss_k and loss_ign with class weights (--class-weights, --pos-weight)\n");
  g_cw = 1;
  for (int d = 0; d < 2; d++) {
    g_dw = d ? 1.0f : 0.0f;
    test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
    test_loss_k(CG_DT_BF16, 2, 9000, 19, 22, 0.0f); /* several chunks */
    test_loss_k(CG_DT_F16, 4, 4096, 4, -1, 1024.0f);
    test_loss_k(CG_DT_F32, 4, 5000, 1, 255, 0.0f);
    test_loss_k(CG_DT_F16, 4, 5000, 1, 255, 1024.0f);
  }
  g_cw = 0, g_dw = 1.0f;
  printf("RUN loss_k with label smoothing (--label-smoothing 0.125), weighted and not\n");
  g_ls = 0.125f;
  for (int k = 0; k < 2; k++) {
    g_cw = k;
    test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
    test_loss_k(CG_DT_BF16, 2, 9000, 19, 22, 0.0f);
    test_loss_k(CG_DT_F16, 4, 4096, 4, -1, 1024.0f);
  }
  g_ls = 0.0f, g_cw = 0;
  printf("RUN loss_k and loss_ign focal (--focal-gamma 2 and 0.5), weighted and not\n");
  for (int k = 0; k < 2; k++) {
    g_cw = k, g_fg = k ? 0.5f : 2.0f;
    test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
    test_loss_k(CG_DT_BF16, 2, 9000, 19, 22, 0.0f);
    test_loss_k(CG_DT_F16, 4, 4096, 4, -1, 1024.0f);
    test_loss_k(CG_DT_F32, 4, 5000, 1, 255, 0.0f);
    test_loss_k(CG_DT_F16, 4, 5000, 1, 255, 1024.0f);
  }
  g_fg = 0.0f, g_cw = 0;
  printf("RUN ohem_thr, and loss_k and loss_ign with OHEM (--ohem-thresh, --ohem-min-kept)\n");
  /* min_kept 10% with 0.7 and 50% with 0.05: thresholds thresh and v > thresh; 90%: above the
   * valid pixels where an ignore label takes about 1 in 7 (+inf), else v or thresh */
  static const struct {
    float thresh;
    double kf;
  } OH[3] = {{0.7f, 0.1}, {0.05f, 0.5}, {0.7f, 0.9}};
  for (int o = 0; o < 3; o++) {
    g_ohem = OH[o].thresh, g_ohem_kf = OH[o].kf;
    test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
    test_loss_k(CG_DT_BF16, 2, 9000, 19, 22, 0.0f); /* several chunks */
    test_loss_k(CG_DT_F16, 4, 4096, 4, -1, 1024.0f);
    test_loss_k(CG_DT_F32, 4, 5000, 1, 255, 0.0f);   /* binary, an ignore label */
    test_loss_k(CG_DT_F16, 3, 5000, 1, -1, 1024.0f); /* binary without: the IGN sums still */
  }
  g_ohem = 0.7f, g_ohem_kf = 0.25;
  g_cw = 1; /* class weights: the mean over the kept pixels' weights; binary pos_weight */
  test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
  test_loss_k(CG_DT_BF16, 2, 9000, 19, -1, 0.0f);
  test_loss_k(CG_DT_F32, 4, 5000, 1, 255, 0.0f);
  test_loss_k(CG_DT_F32, 3, 3000, 1, -1, 0.0f);
  g_ls = 0.125f; /* label smoothing: the whole smoothed CE term of a pixel not kept is left out */
  test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
  g_ls = 0.0f, g_cw = 0, g_fg = 2.0f; /* focal, K classes and binary */
  test_loss_k(CG_DT_F32, 4, 1000, 4, 255, 0.0f);
  test_loss_k(CG_DT_F16, 4, 5000, 1, 255, 1024.0f);
  g_fg = 0.0f, g_ohem = 0.0f, g_ohem_kf = 0.0;
  CG_TEST_CHECK(g_ohem_hits[0] > 0 && g_ohem_hits[1] > 0 && g_ohem_hits[2] > 0,
                "ohem_thr: thresholds thresh %d, v %d, +inf %d: a branch never taken",
                g_ohem_hits[0], g_ohem_hits[1], g_ohem_hits[2]);
  printf("  ohem_thr: %d thresholds were thresh, %d v above it, %d +inf\n", g_ohem_hits[0],
         g_ohem_hits[1], g_ohem_hits[2]);
  test_loss_k_ones(CG_DT_F32, 3, 1000, 4, 255);
  test_loss_k_ones(CG_DT_BF16, 2, 9000, 19, -1);
  printf("RUN head_k\n");
  for (int t = 0; t < 3; t++)
    for (int k = 0; k < 3; k++) {
      test_head_k(DTS[t], 3000, 32, KS[k], 1, 1, 1);
      test_head_k(DTS[t], 777, 8, KS[k], 0, 0, 1);
    }
  test_head_k(CG_DT_F32, 500, 16, 4, 0, 0, 0);     /* no dx */
  test_head_k(CG_DT_BF16, 300, 64, 255, 1, 1, 1);  /* accumulators in the partials */
  test_head_k(CG_DT_F32, 70000, 16, 19, 1, 1, 1);  /* many chunks */
  printf("RUN confusion_k\n");
  test_confusion_k(5, 40000, 2, 255);
  test_confusion_k(5, 40000, 4, 255);
  test_confusion_k(3, 65536, 19, 255);
  test_confusion_k(3, 10007, 150, 200); /* K*K bins beyond shared memory */
  test_confusion_k(3, 1000, 4, -1);
  test_confusion_ign(4, 30000, 255);
  test_confusion_ign(4, 30000, -1);
}

int main(void) {
  if (cg_test_gpu_begin("test_gpu_mclass", &S, &g_seed)) return CG_TEST_SKIP;
  test_kernels();
  test_step_k();
  CG_CHECK_CUDA(cudaStreamDestroy(S));
  return cg_test_done("test_gpu_mclass");
}
