/* test_fprop_emu.cc: our 3x3 convolution kernel (cuda/fprop_kernels.cuh: forward and input
 * gradient with its epilogue) run on the CPU by tests/emu_cuda.h, against the double-precision
 * reference of ref_layers.h (cg_ref_fprop), as test_gpu_fprop does on a GPU.
 *
 * The kernel's launch arithmetic is fprop_kernels.cuh's own (make_plan: the ring of x rows, the
 * swizzled weights, the threads); the grids are small (1-3 blocks), so that blocks walk rows
 * across images and the ring of four rows wraps. Cases: 8 input channels (the first layer:
 * two taps a k-step), 16-128 in, 16-64 out, forward and dgrad, every epilogue step (bias,
 * ReLU, mask, accumulation), strided x, y and mask with NaN in the unused channels (which must
 * not leak in, and y's other channels must keep their bytes), weights 2 bytes past a 16-byte
 * boundary, one to eight warps (rows of 32 to 256 pixels). */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "emu_cuda.h" /* the emulated device; CUDA headers */
extern "C" {
#include "fprop.h"
#include "ref_layers.h"
#include "testutil.h"
}

#include "fprop_kernels.cuh"

struct tcase_t {
  const char *name;
  cg_dtype_t dt;
  int n, h, w, cin, cout, dgrad;
  int bias, relu, mask, accum;
  int ldx, ldy, ldm; /* 0: dense */
  int runs;          /* blocks */
  int wmis;          /* weights 2 bytes past a 16-byte boundary */
  int mt;            /* m-tiles a warp (cg_fprop_shape_t.mt; 0: 2) */
};

static uint64_t g_ctr;

template <typename T>
static std::vector<T> make(size_t npix, int c, int ld, float lo, float hi, std::vector<float> *d) {
  return emu_act<T>(npix, c, ld, lo, hi, 4099u + g_ctr++, d);
}

template <typename T, int CP, int NT, int MT, bool DG>
static void run_kernel(const plan_t &p, const args_t &a) {
  launch((unsigned)a.runs, 1, (unsigned)p.threads, (size_t)p.smem,
         [&] { fprop_kernel<T, CP, NT, MT, DG>(a); });
}

template <typename T, int CP, bool DG>
static void run_nt(int nt, const plan_t &p, const args_t &a) {
  if (p.mt == 4) { /* 64 pixels a warp (make_plan) */
    if constexpr (CP <= 8) {
      if (nt == 2) return run_kernel<T, CP, 2, 4, DG>(p, a);
      if (nt == 4) return run_kernel<T, CP, 4, 4, DG>(p, a);
    }
    fault("64 pixels a warp: a plan the kernels do not have", nullptr, (unsigned)nt);
    return;
  }
  if (nt == 2) run_kernel<T, CP, 2, 2, DG>(p, a);
  if (nt == 4) run_kernel<T, CP, 4, 2, DG>(p, a);
  if (nt == 8) run_kernel<T, CP, 8, 2, DG>(p, a);
}

template <typename T, bool DG> static void run_cp(const plan_t &p, const args_t &a) {
  switch (p.cp) {
    case 1:
      if constexpr (!DG) run_nt<T, 1, false>(p.nt, p, a);
      break;
    case 2: run_nt<T, 2, DG>(p.nt, p, a); break;
    case 4: run_nt<T, 4, DG>(p.nt, p, a); break;
    case 8: run_nt<T, 8, DG>(p.nt, p, a); break;
    case 16: run_nt<T, 16, DG>(p.nt, p, a); break;
  }
}

template <typename T> static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  const int ldm = t->ldm ? t->ldm : t->cout;
  const cg_fprop_shape_t sh = {t->dt,   t->n,    t->h,    t->w,     t->cin, t->cout, t->dgrad,
                               t->bias, t->relu, t->mask, t->accum, ldx,    ldy,     ldm, t->mt};
  printf("RUN %s (%s, %d pixels a warp)\n", t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16",
         t->mt == 4 ? 64 : 32);
  plan_t p;
  if (!make_plan(&sh, &p)) {
    CG_TEST_CHECK(0, "%s: not supported", t->name);
    return;
  }
  const size_t npix = (size_t)t->n * t->h * t->w, wl = (size_t)t->cout * 9 * t->cin;
  std::vector<float> xf, wf, yf, mf;
  auto xh = make<T>(npix, t->cin, ldx, -1, 1, &xf);
  auto wh = make<T>(wl, 1, 1, -0.2f, 0.2f, &wf);
  auto yh = make<T>(npix, t->cout, ldy, -1, 1, &yf); /* the old y (accum) */
  auto mh = make<T>(npix, t->cout, ldm, -1, 1, &mf);
  std::vector<float> bias(t->cout);
  cg_test_fill(bias.data(), t->cout, -0.5f, 0.5f, 77u + g_ctr++);
  std::vector<double> ref(npix * t->cout);
  const cg_ref_fprop_t r = {t->n,     t->h,    t->w,    t->cin,  t->cout,
                            t->dgrad, t->bias, t->relu, t->mask, t->accum};
  cg_ref_fprop(&r, xf.data(), wf.data(), bias.data(), mf.data(), yf.data(), ref.data());
  emu_buf<T> bx(xh, 0), bw(wh, t->wmis ? 1 : 0), bm(mh, 0), by(yh, 0);
  if (!t->accum) /* poisoned in y's channels */
    for (size_t q = 0; q < npix; q++)
      for (int c = 0; c < t->cout; c++) by.p[q * ldy + c] = from_f<T>(NAN);
  const std::vector<T> y0(by.p, by.p + yh.size()); /* y before (accum; mt 2 again below) */
  auto run = [&](const plan_t &pl) {
    args_t a = make_args(pl, &sh, bx.p, bw.p, t->bias ? bias.data() : nullptr,
                         t->mask ? bm.p : nullptr, by.p);
    a.runs = t->runs < a.rows ? t->runs : a.rows; /* the launcher's: one wave */
    if (t->dgrad)
      run_cp<T, true>(pl, a);
    else
      run_cp<T, false>(pl, a);
  };
  /* shared-memory bytes read by ldmatrix per mma.sync (the design's point of 64 pixels a warp) */
  auto mix = [&](const plan_t &pl, long long *mma) {
    const long long m0 = g_emu_mma, l0 = g_bank_mats;
    run(pl);
    *mma = g_emu_mma - m0;
    return *mma ? 128.0 * (double)(g_bank_mats - l0) / (double)*mma : 0.0;
  };
  long long mma4 = 0, mma2 = 0;
  const double per4 = mix(p, &mma4);
  if (t->mt == 4) { /* the same sums in the same order with 32 pixels a warp: the same bits */
    const std::vector<T> y4(by.p, by.p + yh.size());
    memcpy(by.p, y0.data(), y0.size() * sizeof(T));
    cg_fprop_shape_t s2 = sh;
    s2.mt = 2;
    plan_t p2;
    CG_TEST_CHECK(make_plan(&s2, &p2), "%s: mt 2 not supported", t->name);
    const double per2 = mix(p2, &mma2);
    CG_TEST_CHECK(memcmp(y4.data(), by.p, y4.size() * sizeof(T)) == 0,
                  "%s: 64 and 32 pixels a warp give different bits", t->name);
    printf("  %lld mma.sync a pass; ldmatrix bytes per mma.sync: %.1f with 64 pixels a warp, "
           "%.1f with 32 (%+.0f%%)\n", mma4, per4, per2, 100.0 * (per4 / per2 - 1.0));
    CG_TEST_CHECK(mma4 == mma2 && per4 < per2, "%s: 64 pixels a warp should read less shared "
                  "memory per product (%.1f against %.1f bytes)", t->name, per4, per2);
  }
  std::vector<double> got(npix * t->cout);
  size_t outside = 0;
  for (size_t q = 0; q < npix; q++)
    for (int c = 0; c < ldy; c++) {
      const T v = by.p[q * ldy + c];
      if (c >= t->cout) {
        outside += memcmp(&v, &yh[q * ldy + c], sizeof v) != 0;
        continue;
      }
      got[q * t->cout + c] = to_f(v);
    }
  CG_TEST_CHECK(outside == 0, "%s: %zu elements outside y's channels changed", t->name, outside);
  double mx = 0;
  for (double v : ref) mx = fabs(v) > mx ? fabs(v) : mx;
  const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
  const double atol = (t->dt == CG_DT_BF16 ? 4e-3 : 1e-3) * (mx > 1 ? mx : 1);
  cg_test_close_d(t->name, got.data(), ref.data(), got.size(), atol, rtol);
  CG_TEST_CHECK(g_faults == 0, "%s: %d broken ldmatrix / cp.async rules", t->name, g_faults);
  g_faults = 0;
}

int main(void) {
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  const tcase_t cases[] = {
      /* name, dt, n, h, w, cin, cout, dgrad, bias, relu, mask, accum, ldx, ldy, ldm, runs,
       * wmis, mt */
      {"fwd 32->32 bias relu, rows across images", B, 2, 3, 32, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0, 2,
       0},
      {"first layer 8->32, weights off 16", B, 1, 4, 32, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1},
      {"first layer 8->16 strided, masked, accumulated", H, 2, 2, 32, 8, 16, 0, 1, 0, 1, 1, 24,
       64, 40, 3, 0},
      {"fwd 16->64 two warps, half out", B, 1, 3, 64, 16, 64, 0, 1, 0, 0, 0, 32, 128, 0, 2, 0},
      {"fwd 128->16, one block", H, 1, 3, 32, 128, 16, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1},
      {"dgrad 32->16 masked, rows across images", B, 2, 3, 32, 32, 16, 1, 0, 0, 1, 0, 0, 0, 0, 3,
       0},
      {"dgrad 64->32 into a half, accumulated", B, 1, 4, 32, 64, 32, 1, 0, 0, 0, 1, 0, 64, 0, 2,
       1},
      {"dgrad 16->64 from a half, strided mask", H, 1, 3, 32, 16, 64, 1, 0, 0, 1, 0, 32, 0, 128, 1,
       0},
      {"fwd 64->32 three warps, concat in, half out", B, 1, 2, 96, 64, 32, 0, 1, 1, 0, 0, 0, 64, 0,
       1, 0},
      {"dgrad 32->32 eight warps (256 wide), masked", B, 1, 2, 256, 32, 32, 1, 0, 0, 1, 0, 0, 0, 0,
       2, 0},
      /* several warps walking many rows in one block: the ring of x rows wraps while other
       * warps may still read a slot (the skewed schedule of emu_both_ways) */
      {"fwd 32->32 two warps, nine rows in one block", B, 1, 9, 64, 32, 32, 0, 1, 1, 0, 0, 0, 0, 0,
       1, 0},
      {"dgrad 64->16 three warps, seven rows across images", H, 2, 4, 96, 64, 16, 1, 0, 0, 1, 0, 0,
       0, 0, 1, 0},
      /* 64 pixels a warp (mt 4) */
      {"fwd 32->32 mt4 two warps, nine rows in one block", B, 1, 9, 128, 32, 32, 0, 1, 1, 0, 0, 0,
       0, 0, 1, 0, 4},
      {"first layer 8->32 mt4, weights off 16", H, 1, 3, 64, 8, 32, 0, 1, 1, 0, 0, 0, 0, 0, 2, 1,
       4},
      {"fwd 64->32 mt4 concat in, half out", B, 2, 2, 64, 64, 32, 0, 1, 1, 0, 0, 0, 64, 0, 3, 0, 4},
      {"dgrad 32->16 mt4 masked, accumulated, strided", H, 2, 3, 128, 32, 16, 1, 0, 0, 1, 1, 40,
       24, 48, 2, 0, 4},
      {"dgrad 64->32 mt4 four warps (256 wide) into a half", B, 1, 3, 256, 64, 32, 1, 0, 0, 0, 0, 0,
       64, 0, 1, 0, 4},
  };
  emu_run_cases(cases, [](auto t, const tcase_t *c) { run_case<decltype(t)>(c); });
  return cg_test_done("test_fprop_emu");
}
