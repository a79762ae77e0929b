/* test_upconv_emu.cc: the upconv kernels (cuda/upconv_kernels.cuh) run on the CPU by
 * tests/emu_cuda.h, against the double-precision reference of ref_layers.h, as
 * test_gpu_upconv does on a GPU.
 *
 * The launch arithmetic is upconv_kernels.cuh's own (make_args: tiles, the weight gradient's
 * column parts and partial sums); the grids are small (1-3 blocks), so that blocks walk many
 * tiles and both buffers take turns. Cases: forward (bias, ReLU, strided x and y), input
 * gradient (accumulated, strided dy and dx), weight gradient (with the bias gradient; 1, 2, 4
 * and 8 fragments a warp; two column parts for 128 -> 64), the reduction kernel, and the naive
 * reference kernels of the forward and input gradient. Unused channels of strided tensors hold
 * NaN; outputs outside the named channels must keep their bytes. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "emu_cuda.h" /* the emulated device: threadIdx, launch, wmma, cp.async; CUDA headers */
extern "C" {
#include "ref_layers.h"
#include "testutil.h"
#include "upconv.h"
}

#include "upconv_kernels.cuh"

/* ---- the cases --------------------------------------------------------------------------- */

struct tcase_t {
  const char *name;
  cg_dtype_t dt;
  int op, n, h, w, cin, cout;
  int bias, relu, accum, db;
  int ldx, ldy;   /* 0: dense */
  unsigned grid;  /* a wave: the SMs x blocks an SM the launcher would see */
};

static uint64_t g_ctr;

/* emu_act with this test's next seed, dense copy in double. */
template <typename T>
static std::vector<T> make(size_t npix, int c, int ld, float lo, float hi,
                           std::vector<double> *dense) {
  std::vector<float> f;
  std::vector<T> v = emu_act<T>(npix, c, ld, lo, hi, 977u + g_ctr++, &f);
  dense->assign(f.begin(), f.begin() + npix * c);
  return v;
}

template <typename T> static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  const cg_upconv_shape_t sh = {t->dt,    t->op,   t->n,    t->h,     t->w, t->cin,
                                t->cout,  t->bias, t->relu, t->accum, ldx,  ldy};
  printf("RUN %s (%s)\n", t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16");
  /* the kernels' own rule, with this emulated device's shared memory (not the host GPU's) */
  CG_TEST_CHECK(shape_ok(&sh, (int)sizeof smem), "%s: not supported", t->name);
  const size_t m = (size_t)t->n * t->h * t->w, wl = (size_t)t->cin * 4 * t->cout;
  std::vector<double> xd, dyd, wd, oldd;
  auto x = make<T>(m, t->cin, ldx, -1, 1, &xd);
  auto dy = make<T>(4 * m, t->cout, ldy, -1, 1, &dyd);
  auto w = make<T>(wl, 1, 1, -0.2f, 0.2f, &wd);
  std::vector<float> bias(t->cout);
  cg_test_fill(bias.data(), t->cout, -0.5f, 0.5f, 31u + g_ctr++);
  /* the output: y (4m x cout, ldy), dx (m x cin, ldx) or dw (cin x 4 cout) */
  const bool fw = t->op == CG_UPCONV_FWD, dg = t->op == CG_UPCONV_DGRAD;
  const size_t onpix = fw ? 4 * m : dg ? m : 1;
  const int oc = fw ? t->cout : dg ? t->cin : (int)wl, old = fw ? ldy : dg ? ldx : (int)wl;
  auto oldv = make<T>(onpix, oc, old, -1, 1, &oldd);
  /* the reference */
  std::vector<double> ref(onpix * oc), refdb(t->cout);
  std::vector<double> bd(t->cout, 0.0);
  cg_ref_view_t vx = {xd.data(), t->n, t->h, t->w, t->cin, t->cin};
  cg_ref_view_t vdy = {dyd.data(), t->n, 2 * t->h, 2 * t->w, t->cout, t->cout};
  if (fw) {
    for (int co = 0; co < t->cout && t->bias; co++) bd[co] = bias[co];
    cg_ref_view_t vy = {ref.data(), t->n, 2 * t->h, 2 * t->w, t->cout, t->cout};
    cg_ref_upconv_fwd(&vx, wd.data(), bd.data(), &vy);
    for (double &v : ref)
      if (t->relu && !(v > 0)) v = 0;
  } else if (dg) {
    cg_ref_view_t vdx = {ref.data(), t->n, t->h, t->w, t->cin, t->cin};
    cg_ref_upconv_bwd_data(&vdy, wd.data(), &vdx);
    for (size_t i = 0; i < ref.size() && t->accum; i++) ref[i] += oldd[i];
  } else {
    cg_ref_upconv_bwd_filter(&vx, &vdy, ref.data(), refdb.data());
  }
  emu_buf<T> bx(x, 0), bdy(dy, 0), bw(w, 1); /* w 2 bytes past a 32-byte boundary */
  for (int naive = 0; naive < 2; naive++) {
    if (naive && !fw && !dg) break; /* the weight gradient's: one block an output, too slow */
    emu_buf<T> out(oldv, dg || fw ? 0 : 1);
    if (!t->accum) /* poisoned in the named channels */
      for (size_t p = 0; p < onpix; p++)
        for (int k = 0; k < oc; k++) out.p[p * old + k] = from_f<T>(NAN);
    std::vector<float> db(t->cout, NAN);
    args_t a = make_args(&sh, dg ? (const void *)bdy.p : bx.p,
                         t->op == CG_UPCONV_WGRAD ? (const void *)bdy.p : bw.p, bias.data(),
                         out.p, nullptr, t->db);
    if (naive) {
      if (fw) launch(3, 1, 256, 0, [&] { ref_fwd<T>(a); });
      if (dg) launch(3, 1, 256, 0, [&] { ref_dgrad<T>(a); });
    } else if (fw || dg) {
      const int shared = dx_smem(t->cin, t->cout, dg);
      CG_TEST_CHECK(shared <= (int)sizeof smem, "%s: shared memory", t->name);
      /* the launcher's arithmetic, with t->grid standing for a wave (SMs x blocks an SM) */
      const unsigned grid = (unsigned)dx_blocks(a.tiles, t->grid, 0);
      auto run = [&](auto ci) {
        constexpr int CI = decltype(ci)::value;
        if (fw) launch(grid, 1, kThreads, shared, [&] { updx_kernel<T, CI, false>(a); });
        else launch(grid, 1, kThreads, shared, [&] { updx_kernel<T, CI, true>(a); });
      };
      if (t->cin == 16) run(std::integral_constant<int, 1>());
      if (t->cin == 32) run(std::integral_constant<int, 2>());
      if (t->cin == 64) run(std::integral_constant<int, 4>());
      if (t->cin == 128) run(std::integral_constant<int, 8>());
    } else {
      int parts, nf;
      wgrad_split(&sh, &parts, &nf);
      CG_TEST_CHECK(wgrad_smem(&sh, parts) <= (int)sizeof smem, "%s: shared memory", t->name);
      const unsigned grid = (unsigned)wgrad_blocks(&sh, parts, (int64_t)t->grid * parts, 0);
      /* 64 floats of slack: room to align the partial sums to 256 bytes */
      std::vector<float> work((size_t)grid * a.wstride + 64, NAN);
      a.work = reinterpret_cast<float *>(((uintptr_t)work.data() + 255) / 256 * 256);
      const int shared = wgrad_smem(&sh, parts);
      auto run = [&](auto nfc) {
        constexpr int NF = decltype(nfc)::value;
        launch(grid, (unsigned)parts, kThreads, shared, [&] { upw_kernel<T, NF>(a); });
      };
      if (nf == 1) run(std::integral_constant<int, 1>());
      if (nf == 2) run(std::integral_constant<int, 2>());
      if (nf == 4) run(std::integral_constant<int, 4>());
      if (nf == 8) run(std::integral_constant<int, 8>());
      const int total = (int)wl + (t->db ? t->cout : 0);
      launch((unsigned)((total + 31) / 32), 1, kThreads, kThreads * sizeof(float), [&] {
        upw_reduce<T>(a.work, a.wstride, (int)grid, t->cin, t->cout, out.p,
                      t->db ? db.data() : nullptr);
      });
    }
    /* compare */
    std::vector<double> got(onpix * oc);
    size_t outside = 0;
    for (size_t p = 0; p < onpix; p++)
      for (int k = 0; k < old; k++) {
        const T v = out.p[p * old + k];
        if (k >= oc) {
          outside += memcmp(&v, &oldv[p * old + k], sizeof v) != 0;
          continue;
        }
        got[p * oc + k] = to_f(v);
      }
    char name[200];
    snprintf(name, sizeof name, "%s%s", t->name, naive ? " (naive kernel)" : "");
    CG_TEST_CHECK(outside == 0, "%s: %zu elements outside the output's channels changed", name,
                  outside);
    double mx = 0;
    for (double v : ref) mx = fabs(v) > mx ? fabs(v) : mx;
    const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
    const double atol = (t->dt == CG_DT_BF16 ? 4e-3 : 1e-3) * (mx > 1 ? mx : 1);
    cg_test_close_d(name, got.data(), ref.data(), got.size(), atol, rtol);
    if (!fw && !dg && t->db) {
      std::vector<double> dbd(db.begin(), db.end());
      cg_test_close_d(name, dbd.data(), refdb.data(), t->cout, 1e-6 * 4 * m + 1e-4, 1e-4);
    }
  }
  CG_TEST_CHECK(g_faults == 0, "%s: %d broken wmma / cp.async rules", t->name, g_faults);
  g_faults = 0;
}

int main(void) {
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  enum { F = CG_UPCONV_FWD, D = CG_UPCONV_DGRAD, W = CG_UPCONV_WGRAD };
  const tcase_t cases[] = {
      /* name, dt, op, n, h, w, cin, cout, bias, relu, accum, db, ldx, ldy, grid */
      {"fwd 32->16, 300 pixels", B, F, 3, 10, 10, 32, 16, 0, 0, 0, 0, 0, 0, 2},
      {"fwd bias relu into a half", B, F, 2, 9, 8, 64, 32, 1, 1, 0, 0, 0, 64, 1},
      {"fwd strided x 16->64", H, F, 2, 7, 9, 16, 64, 1, 0, 0, 0, 48, 0, 3},
      {"fwd 128->64", B, F, 1, 12, 12, 128, 64, 1, 0, 0, 0, 0, 128, 1},
      {"dgrad 32->16", B, D, 3, 10, 10, 32, 16, 0, 0, 0, 0, 0, 0, 2},
      {"dgrad from a half, accumulated into a half", H, D, 2, 9, 8, 32, 64, 0, 0, 1, 0, 64, 128,
       3},
      {"dgrad 16->32", B, D, 2, 5, 30, 16, 32, 0, 0, 0, 0, 0, 0, 1},
      {"dgrad 128->64", B, D, 1, 12, 12, 128, 64, 0, 0, 0, 0, 0, 128, 1},
      {"wgrad 64->32 with db, from halves", B, W, 2, 16, 24, 64, 32, 0, 0, 0, 1, 128, 64, 2},
      {"wgrad 16->32", H, W, 3, 10, 26, 16, 32, 0, 0, 0, 1, 0, 0, 3},
      {"wgrad 32->16 no db", B, W, 2, 10, 10, 32, 16, 0, 0, 0, 0, 0, 0, 1},
      {"wgrad 128->64, two column parts", B, W, 1, 24, 32, 128, 64, 0, 0, 0, 1, 0, 128, 2},
      {"wgrad 32->32 (2 fragments a warp)", H, W, 2, 6, 11, 32, 32, 0, 0, 0, 1, 0, 64, 3},
      {"wgrad 64->64 (8 fragments a warp)", B, W, 1, 9, 10, 64, 64, 0, 0, 0, 1, 128, 0, 2},
  };
  emu_run_cases(cases, [](auto t, const tcase_t *c) { run_case<decltype(t)>(c); });
  return cg_test_done("test_upconv_emu");
}
