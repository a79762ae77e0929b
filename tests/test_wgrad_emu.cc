/* test_wgrad_emu.cc: our 3x3 weight-gradient kernel (cuda/wgrad_kernels.cuh: the main kernel's
 * per-run partial sums, with the bias gradient in the same pass, and the reduce kernel) run on
 * the CPU by tests/emu_cuda.h, against the double-precision reference of ref_layers.h
 * (cg_ref_conv3_wgrad), as test_gpu_wgrad does on a GPU.
 *
 * The launch arithmetic is wgrad_kernels.cuh's own (make_plan: tiles, runs of rows, the rings of
 * x and dy rows); the shapes are small, so every run is a few rows, some crossing images. Cases:
 * 8, 16, 32 and 64 input channels (two channel tiles), 32 and 64 output channels, widths not a
 * multiple of 16, strided x and dy with NaN in the unused channels, with and without the bias
 * gradient, bf16 and fp16. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "emu_cuda.h" /* the emulated device; CUDA headers */
extern "C" {
#include "ref_layers.h"
#include "testutil.h"
#include "wgrad.h"
}

#include "wgrad_kernels.cuh"

struct tcase_t {
  const char *name;
  cg_dtype_t dt;
  int n, h, w, cin, cout;
  int ldx, lddy; /* 0: dense */
  int db;
};

static uint64_t g_ctr;

template <typename T>
static std::vector<T> make(size_t npix, int c, int ld, std::vector<float> *d) {
  return emu_act<T>(npix, c, ld, -1.0f, 1.0f, 8191u + g_ctr++, d);
}

template <typename T, int CO_B, int CI_B> static void run_main(const plan_t &p, const args_t &a) {
  launch((unsigned)p.grid, 1, (unsigned)kThreads, (size_t)p.smem,
         [&] { wgrad_main_kernel<T, CO_B, CI_B>(a); });
}

template <typename T> static void run_main_t(const plan_t &p, const args_t &a) {
  if (p.co_b == 32) {
    if (p.ci_b == 32) run_main<T, 32, 32>(p, a);
    if (p.ci_b == 16) run_main<T, 32, 16>(p, a);
    if (p.ci_b == 8) run_main<T, 32, 8>(p, a);
  } else {
    if (p.ci_b == 32) run_main<T, 64, 32>(p, a);
    if (p.ci_b == 16) run_main<T, 64, 16>(p, a);
    if (p.ci_b == 8) run_main<T, 64, 8>(p, a);
  }
}

template <typename T> static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, lddy = t->lddy ? t->lddy : t->cout;
  const cg_wgrad_shape_t sh = {t->dt, t->n, t->h, t->w, t->cin, t->cout, 3, ldx, lddy};
  printf("RUN %s (%s)\n", t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16");
  plan_t p;
  if (!make_plan(&sh, &p)) {
    CG_TEST_CHECK(0, "%s: not supported", t->name);
    return;
  }
  const size_t npix = (size_t)t->n * t->h * t->w, wl = (size_t)t->cout * 9 * t->cin;
  std::vector<float> xf, dyf;
  auto xh = make<T>(npix, t->cin, ldx, &xf);
  auto dyh = make<T>(npix, t->cout, lddy, &dyf);
  std::vector<double> ref(wl), refdb(t->cout);
  cg_ref_conv3_wgrad(t->n, t->h, t->w, t->cin, t->cout, xf.data(), dyf.data(), ref.data(),
                     refdb.data());
  emu_buf<T> x(xh, 0), dy(dyh, 0);
  std::vector<T> dw(wl, from_f<T>(NAN));
  std::vector<float> db(t->cout, NAN), work((size_t)p.grid * p.pb + 64, NAN);
  float *part = reinterpret_cast<float *>(((uintptr_t)work.data() + 15) / 16 * 16);
  const args_t a = make_args(p, &sh, x.p, dy.p, part, t->db);
  run_main_t<T>(p, a);
  const rargs_t r = make_rargs(p, &sh, part, t->db);
  launch((unsigned)((p.pb + 31) / 32), (unsigned)p.tiles, 32u, (unsigned)kRedY,
         (size_t)kRedY * 32 * sizeof(float),
         [&] { wgrad_reduce_kernel<T>(r, dw.data(), t->db ? db.data() : nullptr); });
  std::vector<double> got(wl);
  double mx = 0;
  for (size_t i = 0; i < wl; i++) {
    got[i] = to_f(dw[i]);
    mx = fabs(ref[i]) > mx ? fabs(ref[i]) : mx;
  }
  const double rtol = t->dt == CG_DT_BF16 ? 1e-2 : 2e-3;
  const double atol = (t->dt == CG_DT_BF16 ? 4e-3 : 1e-3) * (mx > 1 ? mx : 1);
  char name[200];
  snprintf(name, sizeof name, "%s dw", t->name);
  cg_test_close_d(name, got.data(), ref.data(), wl, atol, rtol);
  if (t->db) {
    std::vector<double> dbd(db.begin(), db.end());
    snprintf(name, sizeof name, "%s db", t->name);
    cg_test_close_d(name, dbd.data(), refdb.data(), t->cout, 1e-6 * npix + 1e-4, 1e-4);
  }
  CG_TEST_CHECK(g_faults == 0, "%s: %d broken ldmatrix / cp.async rules", t->name, g_faults);
  g_faults = 0;
}

int main(void) {
  const cg_dtype_t B = CG_DT_BF16, H = CG_DT_F16;
  const tcase_t cases[] = {
      /* name, dt, n, h, w, cin, cout, ldx, lddy, db */
      {"32->32 with db, rows across images", B, 2, 3, 32, 32, 32, 0, 0, 1},
      {"8->32 (the first layer), w 20", B, 1, 4, 20, 8, 32, 0, 0, 1},
      {"16->64 strided x and dy", H, 2, 2, 24, 16, 64, 32, 128, 0},
      {"64->32 two channel tiles, w 48, dy a half", B, 1, 3, 48, 64, 32, 0, 64, 1},
      {"32->64 w 16", H, 1, 5, 16, 32, 64, 0, 0, 1},
  };
  emu_run_cases(cases, [](auto t, const tcase_t *c) { run_case<decltype(t)>(c); });
  return cg_test_done("test_wgrad_emu");
}
