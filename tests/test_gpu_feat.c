/* test_gpu_feat.c: the GPU side of the CPU/GPU work split (cuda/kernels_feat.h) against the CPU.
 *
 * - cg_k_prep_input: batches of random, synthetic (cg_synth_sample), flat and 0/255
 *   checkerboard images at even, odd, tile-straddling and degenerate sizes (1x1, 1xW, Hx1,
 *   H < 5), every split point n_cpu = 0..n, fp32/bf16/fp16, cpad 5, 6 and 8 (8 also at a
 *   misaligned output, which must leave the packed-store path). The reference is cg_pack_input
 *   of every sample on the CPU. fp32 must be within 1e-5 + 1e-5|ref| (the kernel is designed
 *   to be bit-exact; the count of inexact elements is printed); bf16/fp16 must be the rounding
 *   of the reference, or of a value within that tolerance of it (ties); padding channels must
 *   be +0. Border pixels (within 2 of an edge) are reported apart from the interior.
 * - cg_k_confusion: random 0/1 and arbitrary-byte masks/predictions, weight-0 padding samples,
 *   chunk-cap sizes; exact against cg_confusion_add over the weighted samples.
 * Outputs are poisoned (0xFF) before each launch and followed by a guard area that must stay
 * 0xFF. A "RUN ..." line precedes every launch, so a device fault names its case. Fresh inputs
 * each run: the seed is printed, CG_TEST_SEED=<n> repeats a run. Exits 77 without a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth.h"
#include "feat.h"
#include "kernels_feat.h"
#include "log.h"
#include "metrics.h"
#include "rng.h"
#include "testutil.h"
#include "testutil_cuda.h"

#define NC (3 + CG_NFEAT)

static cudaStream_t S; /* non-blocking: every kernel, fill and copy (testutil_cuda.h) */
static uint64_t g_seed, g_ctr;
static const cg_dtype_t DTS[3] = {CG_DT_F32, CG_DT_BF16, CG_DT_F16};

/* ---- host-side element types (conversions in testutil.h) ------------------------------ */

static const char *dt_name(cg_dtype_t dt) {
  return dt == CG_DT_F32 ? "f32" : dt == CG_DT_BF16 ? "bf16" : "f16";
}

/* The dt value nearest to x, as a float. */
static float round_dt(cg_dtype_t dt, float x) {
  if (dt == CG_DT_BF16) return cg_test_bf16_to_f32(cg_test_f32_to_bf16(x));
  if (dt == CG_DT_F16) return cg_test_f16_to_f32(cg_test_f32_to_f16(x));
  return x;
}

/* ---- images --------------------------------------------------------------------------- */

enum { IMG_RANDOM, IMG_SYNTH, IMG_FLAT, IMG_CHECKER, IMG_KINDS };
static const char *const IMG_NAME[IMG_KINDS] = {"random", "synth", "flat", "checker"};

static void make_image(int kind, int h, int w, uint8_t *rgb) {
  const size_t hw = (size_t)h * w;
  cg_rng_t r = cg_rng_make(g_seed, CG_RNG_TEST, g_ctr++, (uint64_t)kind);
  switch (kind) {
    case IMG_RANDOM:
      for (size_t i = 0; i < 3 * hw; i++) rgb[i] = (uint8_t)(cg_rng_next(&r) >> 56);
      break;
    case IMG_SYNTH: {
      uint8_t *mask = cg_malloc(hw, "synth mask");
      cg_synth_sample(g_seed, (int64_t)(g_ctr++ % 100000), h, w, rgb, mask);
      free(mask);
    } break;
    case IMG_FLAT: { /* variance exactly 0 after cancellation, Sobel exactly 0 */
      const uint8_t c[3] = {(uint8_t)(cg_rng_next(&r) >> 56), (uint8_t)(cg_rng_next(&r) >> 56),
                            (uint8_t)(cg_rng_next(&r) >> 56)};
      for (size_t i = 0; i < hw; i++) memcpy(rgb + 3 * i, c, 3);
    } break;
    default: /* 0/255 checkerboard of 1..3-pixel cells: the largest gradients and variances */
    {
      const int cell = 1 + (int)cg_rng_below(&r, 3);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          memset(rgb + ((size_t)y * w + x) * 3, ((y / cell + x / cell) & 1) ? 255 : 0, 3);
    } break;
  }
}

/* ---- input preparation ---------------------------------------------------------------- */

/* Per-region statistics of one comparison. */
typedef struct {
  size_t n, bad, inexact;
  double max_err;
  size_t worst; /* element index into the output (pixel * cpad + channel) */
  double worst_excess;
} region_t;

static void region_add(region_t *g, size_t idx, double got, double ref, int ok, int exact) {
  const double err = fabs(got - ref);
  const double e = (err == err) ? err : INFINITY;
  const double excess = ok ? -1.0 : (e == INFINITY ? INFINITY : e + 1.0);
  g->n++;
  g->bad += !ok;
  g->inexact += !exact;
  if (e > g->max_err) g->max_err = e;
  if (g->n == 1 || excess > g->worst_excess) {
    g->worst_excess = excess;
    g->worst = idx;
  }
}

/* Failing cases, recapped at the end (the log of a device run may keep only its tail). */
static char g_failed[16][200];
static int g_nfailed;
static char g_first_detail[600]; /* the first FAIL line with its worst element */

static void note_failure(const char *name) {
  if (g_nfailed < 16) snprintf(g_failed[g_nfailed], sizeof g_failed[0], "%s", name);
  g_nfailed++;
}

/* Prints a FAIL line with the worst element of a region; returns 1 when the region passed. */
static int region_check(const char *name, const char *what, const region_t *g, const float *got,
                        const float *ref, int h, int w, int cpad, int n_cpu) {
  if (g->bad == 0) return 1;
  const size_t c = g->worst % cpad, p = g->worst / cpad;
  const size_t x = p % w, y = (p / w) % h, s = p / ((size_t)h * w);
  char msg[sizeof g_first_detail];
  snprintf(msg, sizeof msg,
           "FAIL %s [%s]: %zu of %zu elements wrong; worst [sample %zu (%s) y %zu x %zu c %zu]"
           " got %.9g ref %.9g (max abs err %.3e)",
           name, what, g->bad, g->n, s, (int)s < n_cpu ? "cpu" : "gpu", y, x, c, got[g->worst],
           ref[g->worst], g->max_err);
  cg_test_failures++;
  printf("\n%s", msg);
  if (!g_first_detail[0]) memcpy(g_first_detail, msg, sizeof msg);
  return 0;
}

/* n samples of h x w, the first n_cpu prepared on the CPU; the output starts `off` elements
 * into its buffer (off = 1 misaligns it for cpad = 8). */
static void test_prep(cg_dtype_t dt, int n, int n_cpu, int h, int w, int cpad, size_t off,
                      int kind0) {
  char name[200];
  snprintf(name, sizeof name, "prep_input %s %dx%d n=%d n_cpu=%d cpad=%d off=%zu imgs=%s..",
           dt_name(dt), h, w, n, n_cpu, cpad, off, IMG_NAME[kind0 % IMG_KINDS]);
  const size_t hw = (size_t)h * w, per = hw * NC, es = cg_dtype_size(dt);
  const size_t nout = (size_t)n * hw * cpad;
  uint8_t *rgb = cg_malloc((size_t)n * hw * 3 + 1, "rgb");
  float *x = cg_malloc(((size_t)n * per + 1) * sizeof(float), "x");
  float *scratch = cg_malloc(3 * hw * sizeof(float), "scratch");
  for (int i = 0; i < n; i++) {
    make_image((kind0 + i) % IMG_KINDS, h, w, rgb + (size_t)i * hw * 3);
    cg_pack_input(rgb + (size_t)i * hw * 3, h, w, CG_NFEAT, scratch, x + (size_t)i * per);
  }
  /* expected output in fp32: the reference rounded to dt, zeros in the padding */
  float *ref = cg_malloc((nout + 1) * sizeof(float), "ref");
  float *got = cg_malloc((nout + 1) * sizeof(float), "got");
  for (size_t p = 0; p < (size_t)n * hw; p++)
    for (int c = 0; c < cpad; c++) ref[p * cpad + c] = c < NC ? x[p * NC + c] : 0.0f;

  /* the CPU share as fp32 5-channel samples, the GPU share as RGB8 only */
  float *d_x = n_cpu ? cg_test_dnew((size_t)n_cpu * per * sizeof(float), S) : NULL;
  uint8_t *d_rgb = n > n_cpu ? cg_test_dnew((size_t)(n - n_cpu) * hw * 3, S) : NULL;
  cg_test_hput(d_x, x, (size_t)n_cpu * per * sizeof(float), S);
  cg_test_hput(d_rgb, rgb + (size_t)n_cpu * hw * 3, (size_t)(n - n_cpu) * hw * 3, S);
  char *d_buf = cg_test_dnew((off + nout) * es, S);
  cg_test_dpoison(d_buf, (off + nout) * es + CG_TEST_GUARD, S);
  printf("RUN %s ... ", name); /* completed on this line, so a device fault names the case */
  fflush(stdout);
  cg_k_prep_input(dt, d_x, n_cpu, d_rgb, n, h, w, cpad, d_buf + off * es, S);
  cg_test_dsync(S);

  /* download, convert, compare element by element */
  void *raw = cg_malloc(nout * es + 1, "raw");
  cg_test_hget(raw, d_buf + off * es, nout * es, S);
  region_t inner = {0}, border = {0}, pad = {0};
  for (size_t i = 0; i < nout; i++) {
    const size_t c = i % cpad, p = i / cpad;
    const int xx = (int)(p % w), yy = (int)((p / w) % h);
    float g;
    uint32_t bits;
    if (dt == CG_DT_F32) {
      memcpy(&g, (const char *)raw + i * 4, 4);
      memcpy(&bits, &g, 4);
    } else {
      uint16_t b16;
      memcpy(&b16, (const char *)raw + i * 2, 2);
      g = dt == CG_DT_BF16 ? cg_test_bf16_to_f32(b16) : cg_test_f16_to_f32(b16);
      bits = b16;
    }
    got[i] = g;
    if ((int)c >= NC) {
      region_add(&pad, i, g, 0.0, bits == 0, bits == 0); /* +0 exactly */
      continue;
    }
    const float r = ref[i];
    const double tol = 1e-5 + 1e-5 * fabs((double)r);
    int ok, exact;
    if (dt == CG_DT_F32) {
      exact = memcmp(&g, &r, 4) == 0;
      ok = fabs((double)g - r) <= tol; /* NaN fails */
    } else {
      const float rr = round_dt(dt, r);
      exact = g == rr;
      ok = exact || g == round_dt(dt, (float)(r - tol)) || g == round_dt(dt, (float)(r + tol));
      ref[i] = rr; /* reports show the rounded reference */
    }
    const int edge = yy < 2 || yy >= h - 2 || xx < 2 || xx >= w - 2;
    region_add(edge ? &border : &inner, i, g, ref[i], ok, exact);
  }
  int ok = region_check(name, "interior", &inner, got, ref, h, w, cpad, n_cpu);
  ok &= region_check(name, "border", &border, got, ref, h, w, cpad, n_cpu);
  ok &= region_check(name, "padding", &pad, got, ref, h, w, cpad, n_cpu);
  if (ok)
    printf("ok (max abs err interior %.2e border %.2e; %zu of %zu not bit-exact)\n",
           inner.max_err, border.max_err, inner.inexact + border.inexact, inner.n + border.n);
  else {
    printf("\n");
    note_failure(name);
  }
  const int before = cg_test_failures;
  cg_test_guard_check(name, d_buf, (off + nout) * es, S);
  if (cg_test_failures != before) note_failure(name);

  cg_test_dfree(d_x, S);
  cg_test_dfree(d_rgb, S);
  cg_test_dfree(d_buf, S);
  free(raw);
  free(rgb);
  free(x);
  free(scratch);
  free(ref);
  free(got);
}

/* ---- confusion counts ----------------------------------------------------------------- */

/* n samples of hw pixels; p_pred / p_mask: probability of a positive; bytes: positives are
 * arbitrary non-zero bytes instead of 1; every third sample (from the second) is padding
 * (weight 0) unless all_pad, which pads them all. */
static void test_confusion(int n, int64_t hw, double p_pred, double p_mask, int bytes,
                           int all_pad) {
  char name[160];
  snprintf(name, sizeof name, "confusion n=%d hw=%lld p_pred=%.2f p_mask=%.2f bytes=%d pad=%s", n,
           (long long)hw, p_pred, p_mask, bytes, all_pad ? "all" : "1/3");
  const size_t np = (size_t)n * (size_t)hw;
  uint8_t *pred = cg_malloc(np + 1, "pred"), *mask = cg_malloc(np + 1, "mask");
  float *wt = cg_malloc(((size_t)n + 1) * sizeof(float), "weights");
  cg_rng_t r = cg_rng_make(g_seed, CG_RNG_TEST, g_ctr++, 7);
  const uint32_t tp = (uint32_t)(p_pred * 4294967295.0), tm = (uint32_t)(p_mask * 4294967295.0);
  for (size_t i = 0; i < np; i++) {
    const uint64_t b = cg_rng_next(&r);
    const int a = (uint32_t)b < tp, m = (uint32_t)(b >> 32) < tm;
    pred[i] = (uint8_t)(a ? (bytes ? 1 + ((b >> 8) & 0xFE) : 1) : 0);
    mask[i] = (uint8_t)(m ? (bytes ? 1 + ((b >> 40) & 0xFE) : 1) : 0);
  }
  cg_confusion_t ref = {0, 0, 0, 0};
  for (int i = 0; i < n; i++) {
    wt[i] = (all_pad || i % 3 == 1) ? 0.0f : (i % 3 == 2 ? 0.5f : 1.0f);
    if (wt[i] > 0) cg_confusion_add(&ref, pred + (size_t)i * hw, mask + (size_t)i * hw, (size_t)hw);
  }
  const size_t wb = cg_k_confusion_work_bytes(n, hw);
  uint8_t *d_pred = np ? cg_test_dnew(np, S) : NULL, *d_mask = np ? cg_test_dnew(np, S) : NULL;
  float *d_w = n ? cg_test_dnew((size_t)n * sizeof(float), S) : NULL;
  void *d_work = wb ? cg_test_dnew(wb, S) : NULL; /* poisoned: an unwritten partial shows */
  unsigned long long *d_counts = cg_test_dnew(4 * sizeof(unsigned long long), S);
  cg_test_hput(d_pred, pred, np, S);
  cg_test_hput(d_mask, mask, np, S);
  cg_test_hput(d_w, wt, (size_t)n * sizeof(float), S);
  unsigned long long got[2][4];
  printf("RUN %s ... ", name);
  fflush(stdout);
  for (int rep = 0; rep < 2; rep++) { /* twice: overwritten, not accumulated; deterministic */
    cg_test_dpoison(d_counts, 4 * sizeof(unsigned long long), S);
    cg_k_confusion(d_pred, d_mask, d_w, n, hw, d_counts, d_work, S);
    cg_test_dsync(S);
    cg_test_hget(got[rep], d_counts, sizeof got[rep], S);
  }
  const unsigned long long want[4] = {(unsigned long long)ref.tp, (unsigned long long)ref.fp,
                                      (unsigned long long)ref.fn, (unsigned long long)ref.tn};
  int ok = 1;
  for (int rep = 0; rep < 2; rep++)
    for (int k = 0; k < 4; k++) ok &= got[rep][k] == want[k];
  if (ok) {
    printf("ok (tp %llu fp %llu fn %llu tn %llu)\n", want[0], want[1], want[2], want[3]);
  } else {
    cg_test_failures++;
    note_failure(name);
    printf("\nFAIL %s: got tp %llu fp %llu fn %llu tn %llu, again %llu %llu %llu %llu; want"
           " tp %llu fp %llu fn %llu tn %llu\n",
           name, got[0][0], got[0][1], got[0][2], got[0][3], got[1][0], got[1][1], got[1][2],
           got[1][3], want[0], want[1], want[2], want[3]);
  }
  cg_test_guard_check(name, d_counts, 4 * sizeof(unsigned long long), S);
  cg_test_dfree(d_pred, S);
  cg_test_dfree(d_mask, S);
  cg_test_dfree(d_w, S);
  cg_test_dfree(d_work, S);
  cg_test_dfree(d_counts, S);
  free(pred);
  free(mask);
  free(wt);
}

int main(void) {
  if (cg_test_gpu_begin("test_gpu_feat", &S, &g_seed)) return CG_TEST_SKIP;
  const double t0 = cg_now();

  printf("RUN prep_input empty batch\n");
  cg_k_prep_input(CG_DT_BF16, NULL, 0, NULL, 0, 16, 16, 8, NULL, S);
  cg_test_dsync(S);
  printf("PASS prep_input n=0\n");

  /* sizes: the brief's four, then degenerate ones (every pixel a border, h or w below the
   * window) and ones straddling the 32 x 16 tiles */
  const int sizes[][3] = {{16, 16, 3},  {33, 47, 3}, {64, 64, 3}, {256, 256, 2}, {1, 1, 3},
                          {1, 37, 2},   {29, 1, 2},  {2, 2, 3},   {3, 40, 2},    {4, 5, 2},
                          {17, 33, 3},  {48, 100, 2}};
  const int nsizes = (int)(sizeof sizes / sizeof sizes[0]);
  for (int t = 0; t < 3; t++)
    for (int si = 0; si < nsizes; si++) {
      const int h = sizes[si][0], w = sizes[si][1], n = sizes[si][2];
      for (int n_cpu = 0; n_cpu <= n; n_cpu++) {
        test_prep(DTS[t], n, n_cpu, h, w, 8, 0, si + n_cpu);
        test_prep(DTS[t], n, n_cpu, h, w, 5, 0, si + n_cpu + 1);
      }
      test_prep(DTS[t], n, n / 2, h, w, 6, 0, si + 2);
      test_prep(DTS[t], n, n / 2, h, w, 8, 1, si + 3); /* misaligned: element-wise stores */
    }
  /* many images: blockIdx.z addressing, CPU/GPU boundary in the middle */
  test_prep(CG_DT_BF16, 40, 13, 64, 64, 8, 0, 0);
  test_prep(CG_DT_F32, 37, 0, 40, 24, 8, 0, 1);
  /* a tall and a wide image: many tile rows / columns */
  test_prep(CG_DT_F32, 1, 0, 600, 20, 8, 0, 1);
  test_prep(CG_DT_BF16, 1, 0, 7, 1000, 8, 0, 0);

  printf("RUN confusion\n");
  test_confusion(0, 100, 0.5, 0.5, 0, 0);         /* n = 0: zeros */
  test_confusion(3, 0, 0.5, 0.5, 0, 0);           /* hw = 0: zeros */
  test_confusion(5, 1000, 0.4, 0.3, 0, 0);
  test_confusion(3, 65573, 0.5, 0.5, 0, 0);
  test_confusion(2, 1, 0.5, 0.5, 0, 0);
  test_confusion(7, 16385, 0.1, 0.9, 0, 0);       /* one pixel over a chunk */
  test_confusion(2, 256 * 256 * 70, 0.5, 0.2, 0, 0); /* over the chunk cap */
  test_confusion(4, 256 * 256, 0.5, 0.5, 0, 1);   /* all padding: zeros */
  test_confusion(6, 4099, 0.5, 0.5, 1, 0);        /* any non-zero byte is positive */
  test_confusion(3, 5000, 0.0, 1.0, 0, 0);        /* all fn */
  test_confusion(3, 5000, 1.0, 1.0, 0, 0);        /* all tp */
  test_confusion(32, 256 * 256, 0.3, 0.3, 0, 0);  /* a training batch */

  CG_CHECK_CUDA(cudaStreamDestroy(S));
  printf("test_gpu_feat: %.2f s\n", cg_now() - t0);
  if (g_nfailed) {
    printf("failed cases (%d):\n", g_nfailed);
    for (int i = 0; i < g_nfailed && i < 16; i++) printf("  %s\n", g_failed[i]);
    if (g_first_detail[0]) printf("first element failure: %s\n", g_first_detail);
  }
  return cg_test_done("test_gpu_feat");
}
