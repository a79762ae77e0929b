/* test_upconv_emu.cc: the upconv kernels of cuda/upconv_kernels.cuh, run on the CPU.
 *
 * Why: the kernels are new and most machines this suite runs on (CI, laptops) have no GPU, so
 * test_gpu_upconv skips there. This test compiles the very same device code with the host
 * C++ compiler and executes it: one host thread per CUDA thread of a block (std::thread), the
 * blocks of a grid one after the other, __syncthreads and __syncwarp as barriers, dynamic
 * shared memory one buffer (poisoned with NaN before every block), cp.async as an immediate
 * 16-byte copy, and wmma's collective operations on whole 16x16 tiles by lane 0 of the warp
 * (the result is the same for every lane; the others only reach the barriers). The emulated
 * operations also check wmma's and cp.async's rules: 32-byte aligned tile pointers, leading
 * dimensions a multiple of 8 elements (16-bit) or 4 (fp32), 16-byte aligned copies inside the
 * shared buffer. What it cannot see: timing, bank conflicts, a race that only an asynchronous
 * copy would expose, or a wrong reading of wmma's semantics (the GPU test covers those).
 *
 * The launch arithmetic (tiles, grids, the weight gradient's column parts and partial sums) is
 * upconv_kernels.cuh's own; the grids here are small (1-3 blocks), so that blocks walk many
 * tiles and both buffers take turns. Results are compared with ref_layers.h in double, as in
 * test_gpu_upconv: forward (bias, ReLU, strided x and y), input gradient (accumulated, strided
 * dy and dx), weight gradient (with the bias gradient, two column parts for 128 -> 64), the
 * reduction kernel and the naive reference kernels too. Unused channels of strided tensors
 * hold NaN; outputs outside the named channels must keep their bytes. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h> /* uint4, make_uint4 */

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

extern "C" {
#include "ref_layers.h"
#include "testutil.h"
#include "upconv.h"
}
#include "dtype.cuh"

/* ---- the emulated CUDA device ------------------------------------------------------------ */

#define __launch_bounds__(...)

struct emu_dim {
  unsigned x, y, z;
};
static thread_local emu_dim threadIdx;
static emu_dim blockIdx, gridDim, blockDim;
static int g_faults; /* broken rules of wmma / cp.async */

static void fault(const char *what, const void *p, unsigned v) {
  if (g_faults++ < 10) fprintf(stderr, "emulation: %s (%p, %u)\n", what, p, v);
}

namespace {
alignas(128) unsigned char smem[232448]; /* the block's dynamic shared memory (227 KB) */
std::barrier<> *g_block;                 /* __syncthreads */
std::vector<std::unique_ptr<std::barrier<>>> g_warps; /* __syncwarp, one a warp */
}  // namespace

static void __syncthreads() { g_block->arrive_and_wait(); }
static void __syncwarp() { g_warps[threadIdx.x / 32]->arrive_and_wait(); }
static size_t __cvta_generic_to_shared(const void *p) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  if (c < smem || c >= smem + sizeof smem) fault("a shared address outside shared memory", p, 0);
  return (size_t)(c - smem);
}

namespace cg_mma {
static void cp_async16(uint32_t dst, const void *src) {
  if (dst % 16 || (uintptr_t)src % 16 || dst + 16 > sizeof smem)
    fault("cp.async: misaligned or out of range", src, dst);
  else
    memcpy(smem + dst, src, 16);
}
static void cp_async_commit() {}
template <int N> static void cp_async_wait() {}
}  // namespace cg_mma

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename L = void> struct fragment {
  float v[16 * 16]; /* the whole tile, row-major (lane 0's copy is the one used) */
};

static bool lane0() { return threadIdx.x % 32 == 0; }

template <typename Use, typename T, typename L>
static void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
  if (!lane0()) return;
  if ((uintptr_t)p % 32 || ldm % 8) fault("wmma load: pointer or ldm", p, ldm);
  constexpr bool col = std::is_same<L, col_major>::value;
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.v[r * 16 + c] = to_f(col ? p[c * ldm + r] : p[r * ldm + c]);
}

template <typename F> static void fill_fragment(F &f, float v) {
  if (!lane0()) return;
  for (float &e : f.v) e = v;
}

template <typename FD, typename FA, typename FB, typename FC>
static void mma_sync(FD &d, const FA &a, const FB &b, const FC &c) {
  if (!lane0()) return;
  float t[256];
  for (int r = 0; r < 16; r++)
    for (int col = 0; col < 16; col++) {
      float s = c.v[r * 16 + col];
      for (int k = 0; k < 16; k++) s += a.v[r * 16 + k] * b.v[k * 16 + col];
      t[r * 16 + col] = s;
    }
  memcpy(d.v, t, sizeof t);
}

template <typename F> static void store_matrix_sync(float *p, const F &f, unsigned ldm, layout_t) {
  if (!lane0()) return;
  if ((uintptr_t)p % 32 || ldm % 4) fault("wmma store: pointer or ldm", p, ldm);
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) p[r * ldm + c] = f.v[r * 16 + c];
}
}  // namespace wmma
}  // namespace nvcuda

#include "upconv_kernels.cuh"

/* Runs kernel (a callable run by every thread) on a gx x gy grid of blocks of `threads`
 * (a multiple of 32), with `shared` bytes of dynamic shared memory: one host thread per CUDA
 * thread, which walk the blocks together (blockIdx and the poisoned shared memory set between
 * two barriers). */
template <typename K>
static void launch(unsigned gx, unsigned gy, unsigned threads, size_t shared, K kernel) {
  gridDim = {gx, gy, 1};
  blockDim = {threads, 1, 1};
  std::barrier<> block((std::ptrdiff_t)threads);
  g_block = &block;
  g_warps.clear();
  for (unsigned w = 0; w < threads / 32; w++)
    g_warps.emplace_back(std::make_unique<std::barrier<>>(32));
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; t++)
    ts.emplace_back([t, gx, gy, shared, &block, &kernel] {
      threadIdx = {t, 0, 0};
      for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++) {
          if (t == 0) {
            blockIdx = {bx, by, 0};
            memset(smem, 0xFF, shared); /* NaN: a read of what no one wrote shows */
          }
          block.arrive_and_wait();
          kernel();
          block.arrive_and_wait();
        }
    });
  for (auto &t : ts) t.join();
}

/* ---- the cases --------------------------------------------------------------------------- */

struct tcase_t {
  const char *name;
  cg_dtype_t dt;
  int op, n, h, w, cin, cout;
  int bias, relu, accum, db;
  int ldx, ldy;   /* 0: dense */
  unsigned grid;  /* blocks along x */
};

static uint64_t g_ctr;

/* npix x c values in [lo, hi) rounded to T at pixel stride ld (the rest NaN), and their dense
 * double copy. */
template <typename T>
static std::vector<T> make(size_t npix, int c, int ld, float lo, float hi,
                           std::vector<double> *dense) {
  std::vector<float> f(npix * c + 1);
  cg_test_fill(f.data(), npix * c, lo, hi, 977u + g_ctr++);
  std::vector<T> v(npix * ld + 8, from_f<T>(NAN));
  dense->assign(npix * c, 0.0);
  for (size_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      v[p * ld + k] = from_f<T>(f[p * c + k]);
      (*dense)[p * c + k] = to_f(v[p * ld + k]);
    }
  return v;
}

/* 16-byte aligned copy of v (the kernels' 16-byte loads), plus an offset of `off` elements. */
template <typename T> struct dbuf {
  std::vector<unsigned char> raw;
  T *p;
  dbuf(const std::vector<T> &v, int off) : raw(v.size() * sizeof(T) + 64 + off * sizeof(T)) {
    uintptr_t a = ((uintptr_t)raw.data() + 31) / 32 * 32;
    p = reinterpret_cast<T *>(a) + off;
    memcpy(p, v.data(), v.size() * sizeof(T));
  }
};

template <typename T> static void run_case(const tcase_t *t) {
  const int ldx = t->ldx ? t->ldx : t->cin, ldy = t->ldy ? t->ldy : t->cout;
  const cg_upconv_shape_t sh = {t->dt,    t->op,   t->n,    t->h,     t->w, t->cin,
                                t->cout,  t->bias, t->relu, t->accum, ldx,  ldy};
  printf("RUN %s (%s)\n", t->name, t->dt == CG_DT_BF16 ? "bf16" : "fp16");
  CG_TEST_CHECK(cg_upconv_supported(&sh) == 1, "%s: not supported", t->name);
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
  dbuf<T> bx(x, 0), bdy(dy, 0), bw(w, 1); /* w 2 bytes past a 32-byte boundary */
  for (int naive = 0; naive < 2; naive++) {
    if (naive && !fw && !dg) break; /* the weight gradient's: one block an output, too slow */
    dbuf<T> out(oldv, dg || fw ? 0 : 1);
    if (!t->accum) /* poisoned in the named channels */
      for (size_t p = 0; p < onpix; p++)
        for (int k = 0; k < oc; k++) out.p[p * old + k] = from_f<T>(NAN);
    std::vector<float> db(t->cout, NAN);
    args_t a = make_args(&sh, dg ? (const void *)bdy.p : bx.p,
                         t->op == CG_UPCONV_WGRAD ? (const void *)bdy.p : bw.p, bias.data(),
                         out.p, nullptr);
    if (naive) {
      if (fw) launch(3, 1, 256, 0, [&] { ref_fwd<T>(a); });
      if (dg) launch(3, 1, 256, 0, [&] { ref_dgrad<T>(a); });
    } else if (fw || dg) {
      const int shared = dx_smem(t->cin, t->cout, dg);
      CG_TEST_CHECK(shared <= (int)sizeof smem, "%s: shared memory", t->name);
      a.tiles = ((int64_t)m + kBM - 1) / kBM;
      const unsigned grid = (unsigned)(a.tiles < t->grid ? a.tiles : t->grid);
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
      a.tiles = ((int64_t)m + kBMW - 1) / kBMW;
      a.nb = 4 * t->cout / parts;
      a.wstride = wgrad_stride(&sh);
      a.bias_on = t->db;
      const unsigned grid = (unsigned)(a.tiles < t->grid ? a.tiles : t->grid);
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
      {"wgrad 64->32 with db, from halves", B, W, 2, 9, 8, 64, 32, 0, 0, 0, 1, 128, 64, 2},
      {"wgrad 16->32", H, W, 3, 5, 7, 16, 32, 0, 0, 0, 1, 0, 0, 3},
      {"wgrad 32->16 no db", B, W, 2, 10, 10, 32, 16, 0, 0, 0, 0, 0, 0, 1},
      {"wgrad 128->64, two column parts", B, W, 1, 12, 12, 128, 64, 0, 0, 0, 1, 0, 128, 2},
      {"wgrad 32->32 (2 fragments a warp)", H, W, 2, 6, 11, 32, 32, 0, 0, 0, 1, 0, 64, 3},
      {"wgrad 64->64 (8 fragments a warp)", B, W, 1, 9, 10, 64, 64, 0, 0, 0, 1, 128, 0, 2},
  };
  for (const tcase_t &c : cases) {
    if (c.dt == CG_DT_BF16)
      run_case<__nv_bfloat16>(&c);
    else
      run_case<__half>(&c);
  }
  return cg_test_done("test_upconv_emu");
}
