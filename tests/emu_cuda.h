/* emu_cuda.h: an emulated CUDA device for running this project's kernels on the CPU
 * (tests/test_*_emu.cc). Include once, in one C++20 translation unit, before the kernels'
 * device code (cuda/*_kernels.cuh).
 *
 * Why: most machines this suite runs on (CI, laptops) have no GPU, so the GPU tests skip there;
 * these tests compile the very same device code with the host C++ compiler and execute it.
 * How: one host thread per CUDA thread of a block (std::thread), the blocks of a grid one after
 * the other (blockIdx and freshly poisoned shared memory between two barriers), __syncthreads
 * and __syncwarp as barriers, dynamic shared memory one buffer (extern __shared__ only), and:
 *  - cp.async (cg_mma::cp_async16): the 16-byte copy lands only when the thread's
 *    cp.async.wait_group lets its group complete, as late as allowed (so a read before the
 *    wait, or before the barrier after it, sees the NaN poison); or, the second time round
 *    (emu_both_ways), at once (so a refill of a buffer others still read shows);
 *  - wmma (nvcuda::wmma): whole 16x16 tiles loaded, multiplied and stored by lane 0 of the warp
 *    (the result is the same for every lane; the others only reach the barriers);
 *  - ldmatrix (cg_mma::ldsm_x4, ldsm_x4_t, ldsm_x2_t) and mma.sync m16n8k16 (cg_mma::mma16816)
 *    lane by lane, through a per-warp exchange area, with the fragment layouts of the PTX ISA
 *    (ldmatrix: lanes 8j..8j+7 give the row addresses of matrix j, lane l receives row l/4,
 *    elements 2(l%4) and 2(l%4)+1, or with .trans the column l/4, rows 2(l%4) and 2(l%4)+1;
 *    mma: g = l/4, t = l%4, A registers (g, 2t..) (g+8, 2t..) (g, 2t+8..) (g+8, 2t+8..), B
 *    (2t.., g) (2t+8.., g), C/D (g, 2t) (g, 2t+1) (g+8, 2t) (g+8, 2t+1), the lower 16 bits the
 *    lower index). These maps were checked against NVIDIA's own encoding of them in CUTLASS
 *    (CuTe's Copy_Traits of SM75_U32x4_LDSM_N / SM75_U16x8_LDSM_T / SM75_U16x4_LDSM_T and
 *    MMA_Traits of SM80_16x8x16_F32BF16BF16F32_TN: the thread/value layouts work out to the
 *    same elements).
 * The emulated operations also check their rules (g_faults): 32-byte aligned wmma tiles, leading
 * dimensions a multiple of 8 elements (16-bit) or 4 (fp32), 16-byte aligned cp.async and
 * ldmatrix rows inside shared memory.
 * What it cannot see: timing, bank conflicts, races between plain shared-memory accesses of
 * threads the host happens to schedule in a safe order, or a misreading of the PTX / wmma
 * semantics above (shared by the kernel and this emulation); the GPU tests and
 * compute-sanitizer's racecheck cover those. */
#ifndef CG_TEST_EMU_CUDA_H
#define CG_TEST_EMU_CUDA_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h> /* uint4, make_uint4 */
#include <math.h>

#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#include "dtype.cuh"

extern "C" {
#include "testutil.h" /* cg_test_fill */
}

/* ---- the emulated CUDA device ------------------------------------------------------------ */

#define __launch_bounds__(...)

struct emu_dim {
  unsigned x, y, z;
};
static thread_local emu_dim threadIdx;
static thread_local unsigned g_tid; /* the thread's linear index in its block */
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
static void __syncwarp() { g_warps[g_tid / 32]->arrive_and_wait(); }
static size_t __cvta_generic_to_shared(const void *p) {
  const unsigned char *c = static_cast<const unsigned char *>(p);
  if (c < smem || c >= smem + sizeof smem) fault("a shared address outside shared memory", p, 0);
  return (size_t)(c - smem);
}

namespace cg_mma {
/* cp.async, as late as the rules allow: a copy lands in shared memory only when its thread's
 * cp.async.wait_group lets its group complete (or the thread's kernel returns), so a kernel that
 * reads a tile before waiting for it (and passing a barrier) reads the NaN poison instead. */
struct emu_cp {
  uint32_t dst;
  const void *src;
};
static thread_local std::vector<emu_cp> g_cp_open;                /* not committed yet */
static thread_local std::vector<std::vector<emu_cp>> g_cp_groups; /* committed, oldest first */

static void emu_cp_land(const std::vector<emu_cp> &g) {
  for (const emu_cp &c : g) memcpy(smem + c.dst, c.src, 16);
}
static bool g_cp_early; /* land every copy at once instead (emu_both_ways) */

static void cp_async16(uint32_t dst, const void *src) {
  if (dst % 16 || (uintptr_t)src % 16 || dst + 16 > sizeof smem)
    fault("cp.async: misaligned or out of range", src, dst);
  else if (g_cp_early)
    memcpy(smem + dst, src, 16);
  else
    g_cp_open.push_back({dst, src});
}
static void cp_async_commit() {
  g_cp_groups.push_back(std::move(g_cp_open));
  g_cp_open.clear();
}
template <int N> static void cp_async_wait() {
  while (g_cp_groups.size() > (size_t)N) {
    emu_cp_land(g_cp_groups.front());
    g_cp_groups.erase(g_cp_groups.begin());
  }
}
/* At the end of a thread's kernel: what is still in flight lands (nothing may read it). */
static void emu_cp_drain() {
  for (const auto &g : g_cp_groups) emu_cp_land(g);
  emu_cp_land(g_cp_open);
  g_cp_groups.clear();
  g_cp_open.clear();
}
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

static bool lane0() { return g_tid % 32 == 0; }

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

namespace cg_mma {
/* The warps' exchange area for the collective ldmatrix / mma emulations. */
struct emu_warp_x {
  uint32_t addr[32];
  uint32_t a[32][4], b[32][2];
};
static emu_warp_x g_wx[8];

static uint32_t emu_ld32(uint32_t addr) {
  uint32_t v = 0;
  if (addr % 4 || addr + 4 > sizeof smem) fault("ldmatrix: a bad address", nullptr, addr);
  else memcpy(&v, smem + addr, 4);
  return v;
}
static uint16_t emu_ld16(uint32_t addr) {
  uint16_t v = 0;
  if (addr % 2 || addr + 2 > sizeof smem) fault("ldmatrix: a bad address", nullptr, addr);
  else memcpy(&v, smem + addr, 2);
  return v;
}

/* ldmatrix .m8n8 .b16 of nm matrices (.x1/.x2/.x4), .trans or not. */
static void emu_ldsm(uint32_t *r, uint32_t addr, int nm, bool trans) {
  const int lane = g_tid % 32;
  emu_warp_x *w = &g_wx[g_tid / 32];
  w->addr[lane] = addr;
  __syncwarp();
  for (int j = 0; j < nm; j++) {
    for (int k = 0; k < 8; k++)
      if (lane == 0 && w->addr[j * 8 + k] % 16) fault("ldmatrix: a row not 16-byte aligned",
                                                      nullptr, w->addr[j * 8 + k]);
    if (!trans) {
      r[j] = emu_ld32(w->addr[j * 8 + lane / 4] + (lane % 4) * 4);
    } else {
      const uint32_t e0 = emu_ld16(w->addr[j * 8 + 2 * (lane % 4)] + (lane / 4) * 2);
      const uint32_t e1 = emu_ld16(w->addr[j * 8 + 2 * (lane % 4) + 1] + (lane / 4) * 2);
      r[j] = e0 | e1 << 16;
    }
  }
  __syncwarp();
}
static void ldsm_x4(uint32_t *r, uint32_t addr) { emu_ldsm(r, addr, 4, false); }
static void ldsm_x4_t(uint32_t *r, uint32_t addr) { emu_ldsm(r, addr, 4, true); }
static void ldsm_x2_t(uint32_t *r, uint32_t addr) { emu_ldsm(r, addr, 2, true); }

template <typename T> static float emu_half(uint32_t reg, int hi) {
  T e[2];
  memcpy(e, &reg, 4);
  return to_f(e[hi]);
}

/* d += A (16x16, row) * B (16x8, col), fp32 accumulators. */
template <typename T>
static void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
  const int lane = g_tid % 32, g = lane / 4, t = lane % 4;
  emu_warp_x *w = &g_wx[g_tid / 32];
  for (int i = 0; i < 4; i++) w->a[lane][i] = a[i];
  w->b[lane][0] = b0;
  w->b[lane][1] = b1;
  __syncwarp();
  auto A = [&](int r, int k) {
    return emu_half<T>(w->a[(r % 8) * 4 + (k % 8) / 2][(r >= 8) + 2 * (k >= 8)], k % 2);
  };
  auto B = [&](int k, int n) { return emu_half<T>(w->b[n * 4 + (k % 8) / 2][k >= 8], k % 2); };
  const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  float out[4];
  for (int i = 0; i < 4; i++) {
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += A(rows[i], k) * B(k, cols[i]);
    out[i] = d[i] + s;
  }
  __syncwarp();
  for (int i = 0; i < 4; i++) d[i] = out[i];
}
}  // namespace cg_mma

/* The arithmetic of mma.cuh (the swizzle) as it is; its PTX is emulated above. */
#define CG_MMA_EMULATE 1
#include "mma.cuh"

/* Runs kernel (a callable run by every thread) on a gx x gy grid of blocks of tx x ty threads
 * (tx * ty a multiple of 32, at most 256), with `shared` bytes of dynamic shared memory: one
 * host thread per CUDA thread, which walk the blocks together (blockIdx and the poisoned shared
 * memory set between two barriers). */
template <typename K>
static void launch(unsigned gx, unsigned gy, unsigned tx, unsigned ty, size_t shared, K kernel) {
  const unsigned threads = tx * ty;
  if (threads % 32 || threads > 256 || shared > sizeof smem) {
    fault("launch: a block shape or shared memory size the emulation does not take", nullptr,
          threads);
    return;
  }
  gridDim = {gx, gy, 1};
  blockDim = {tx, ty, 1};
  std::barrier<> block((std::ptrdiff_t)threads);
  g_block = &block;
  g_warps.clear();
  for (unsigned w = 0; w < threads / 32; w++)
    g_warps.emplace_back(std::make_unique<std::barrier<>>(32));
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; t++)
    ts.emplace_back([t, tx, gx, gy, shared, &block, &kernel] {
      threadIdx = {t % tx, t / tx, 0};
      g_tid = t;
      for (unsigned by = 0; by < gy; by++)
        for (unsigned bx = 0; bx < gx; bx++) {
          if (t == 0) {
            blockIdx = {bx, by, 0};
            memset(smem, 0xFF, shared); /* NaN: a read of what no one wrote shows */
          }
          block.arrive_and_wait();
          kernel();
          cg_mma::emu_cp_drain();
          block.arrive_and_wait();
        }
    });
  for (auto &t : ts) t.join();
}

/* One-dimensional blocks of `threads`. */
template <typename K>
static void launch(unsigned gx, unsigned gy, unsigned threads, size_t shared, K kernel) {
  launch(gx, gy, threads, 1u, shared, kernel);
}

/* Runs the test body twice: copies landing as late as allowed (a read before its wait shows),
 * then at once (a refill of a buffer before every thread is done reading it shows). */
template <typename F> static void emu_both_ways(F body) {
  for (int early = 0; early < 2; early++) {
    cg_mma::g_cp_early = early != 0;
    printf("== cp.async copies land %s\n", early ? "at once" : "as late as allowed");
    body();
  }
  cg_mma::g_cp_early = false;
}

/* ---- test data ---------------------------------------------------------------------------- */

/* npix x c values uniform in [lo, hi) (seeded) rounded to T at pixel stride ld, the unused
 * channels NaN (they must not leak into a kernel's result); their dense float copy in *dense. */
template <typename T>
static std::vector<T> emu_act(size_t npix, int c, int ld, float lo, float hi, uint64_t seed,
                              std::vector<float> *dense) {
  dense->assign(npix * c + 1, 0.0f);
  cg_test_fill(dense->data(), npix * c, lo, hi, seed);
  std::vector<T> v(npix * ld + 8, from_f<T>(NAN));
  for (size_t p = 0; p < npix; p++)
    for (int k = 0; k < c; k++) {
      v[p * ld + k] = from_f<T>((*dense)[p * c + k]);
      (*dense)[p * c + k] = to_f(v[p * ld + k]);
    }
  return v;
}

/* A 32-byte aligned copy of v starting off elements further (a "device" buffer). */
template <typename T> struct emu_buf {
  std::vector<unsigned char> raw;
  T *p;
  emu_buf(const std::vector<T> &v, int off) : raw(v.size() * sizeof(T) + 64 + off * sizeof(T)) {
    p = reinterpret_cast<T *>(((uintptr_t)raw.data() + 31) / 32 * 32) + off;
    memcpy(p, v.data(), v.size() * sizeof(T));
  }
};

#endif
