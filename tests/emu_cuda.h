/* emu_cuda.h: an emulated CUDA device for running this project's kernels on the CPU
 * (tests/test_*_emu.cc, tests/emu_kernels.h). Include before the kernels' device code
 * (cuda/*_kernels.cuh), in C++20. Each translation unit that includes it gets an emulator of
 * its own (blocks run one at a time wherever they come from); the count of broken rules,
 * g_faults, is one for the program.
 *
 * Why: most machines this suite runs on (CI, laptops) have no GPU, so the GPU tests skip there;
 * these tests compile the very same device code with the host C++ compiler and execute it.
 * How: the CUDA threads of a block are fibers of the one host thread (each runs until
 * it reaches __syncthreads or __syncwarp, or returns; a barrier is released when every thread
 * that must reach it has, exited threads counting as arrived; threads waiting at different
 * kinds of barrier are reported as a deadlock, at different __syncthreads or warp collectives
 * as a fault; a shuffle from a lane that has exited gives all bits set), the blocks of a grid
 * one after the other, each with freshly poisoned shared memory; deterministic, and no host
 * threads to schedule. Two
 * schedules (emu_both_ways runs a test under both): warps in lockstep, and warps skewed (the
 * last first, each as far as it can go before the next starts). Grids of up to three
 * dimensions, blocks of up to 256 threads in two. Dynamic shared memory is one buffer (static
 * __shared__ arrays: see emu_kernels.h), and:
 *  - cp.async (cg_mma::cp_async16): in the lockstep schedule the 16-byte copy lands only when
 *    the thread's cp.async.wait_group lets its group complete, as late as allowed (so a read
 *    before the wait, or before the barrier after it, sees the NaN poison); in the skewed one
 *    at once (so a warp refilling a buffer other warps still have to read spoils their read);
 *  - __shfl_down_sync, __shfl_xor_sync and __ballot_sync through a per-warp exchange area,
 *    __syncthreads_or through a per-block one; atomicAdd as a plain read-modify-write (fibers
 *    switch only at barriers);
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
 * Bank conflicts of those matrix loads are counted (emu_bank_matrix), not those of other
 * shared-memory accesses.
 * What it cannot see: timing, races that neither schedule exposes (e.g. among
 * the threads of one warp between two __syncwarp), or a misreading of the PTX / wmma semantics
 * above (shared by the kernel and this emulation); the GPU tests and compute-sanitizer's
 * racecheck cover those. The kernels' inline PTX outside mma.cuh leaves itself out under
 * CG_EMULATED_DEVICE (kernels_act.cu's hold kernel). */
#ifndef CG_TEST_EMU_CUDA_H
#define CG_TEST_EMU_CUDA_H

/* Device code that cannot run here (inline PTX) leaves itself out under this. */
#define CG_EMULATED_DEVICE 1

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h> /* uint4, make_uint4 */
#include <math.h>

#include <sys/mman.h>
#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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
static emu_dim threadIdx;
static unsigned g_tid; /* the running thread's linear index in its block */
static emu_dim blockIdx, gridDim, blockDim;
/* broken rules of wmma / cp.async, and faults of the emulated runtime: one count for every
 * translation unit that includes this (tests/emu_kernels.h builds several) */
inline int g_faults;
/* The instruction mix of the tensor-core kernels, for the program: warp-wide mma.sync
 * m16n8k16 (counted once a warp) and bytes copied by cp.async. */
inline long long g_emu_mma, g_emu_cp_bytes;

/* The device emulated: an H100/H200's SMs, their count and shared memory (a block's at most,
 * and an SM's), for the runtime's answers (emu_runtime.cc, emu_kernels.h) and the block's
 * buffer below. */
constexpr int kEmuSms = 132;
constexpr size_t kEmuSmemBlock = 232448, kEmuSmemSm = 233472;

static void fault(const char *what, const void *p, unsigned v) {
  if (g_faults++ < 10) fprintf(stderr, "emulation: %s (%p, %u)\n", what, p, v);
}

namespace {
alignas(128) unsigned char smem[kEmuSmemBlock]; /* the block's dynamic shared memory */

/* The block's threads as fibers: state, context, the scheduler they yield to. */
enum { kEmuRun = 0, kEmuAtBlock = 1, kEmuAtWarp = 2, kEmuDone = 3 };
constexpr size_t kEmuStack = (size_t)256 << 10; /* a fiber's stack */
struct emu_fiber {
  void *sp;        /* its saved stack pointer (emu_ctx_swap) */
  ucontext_t ctx;  /* or its context (elsewhere) */
  int state;
  const char *site_file; /* the __syncthreads it waits at (every thread must be at one) */
  int site_line;
  const void *coll;      /* the warp collective it takes part in (emu_coll) */
};
emu_fiber g_fib[256];
void *g_sched_sp;
ucontext_t g_sched;
unsigned char *g_stacks;          /* 256 stacks of kEmuStack bytes, allocated once */
void (*g_run)(void *);            /* the launch's kernel callable, type-erased */
void *g_run_arg;
}  // namespace

/* Switching between the scheduler and a fiber. On x86-64 a switch saves the callee-saved
 * registers on the stack it leaves and restores them from the one it enters: a few
 * instructions, where swapcontext also makes a system call (the signal mask) each time, which
 * made a kernel with many warp collectives run for minutes. Elsewhere, and under AddressSanitizer
 * (which must see the stacks change), ucontext. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CG_EMU_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CG_EMU_ASAN 1
#endif
/* (and not with CET shadow stacks, which a return into another stack would break) */
#if defined(__x86_64__) && !defined(CG_EMU_ASAN) && !(defined(__CET__) && (__CET__ & 2))
#define CG_EMU_FAST_SWITCH 1
/* Saves the running context's stack pointer in *from (rdi) and continues the one saved at to
 * (rsi). Parameters unnamed: a naked function may hold nothing but the assembly. */
#if defined(__clang__)
__attribute__((naked, noinline)) static void emu_ctx_swap(void **, void *)
#else
__attribute__((naked, noipa)) static void emu_ctx_swap(void **, void *)
#endif
{
  asm("pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
      "movq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n\t"
      "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret");
}
#endif

static void emu_yield(int state) {
  g_fib[g_tid].state = state;
#ifdef CG_EMU_FAST_SWITCH
  emu_ctx_swap(&g_fib[g_tid].sp, g_sched_sp);
#else
  swapcontext(&g_fib[g_tid].ctx, &g_sched);
#endif
}
/* __syncthreads is a macro so that the barrier knows where it is: CUDA requires every thread
 * of the block to reach the same one (emu_block faults otherwise). */
static void emu_syncthreads_at(const char *file, int line) {
  g_fib[g_tid].site_file = file;
  g_fib[g_tid].site_line = line;
  emu_yield(kEmuAtBlock);
}
#define __syncthreads() emu_syncthreads_at(__FILE__, __LINE__)
static void __syncwarp() { emu_yield(kEmuAtWarp); }
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
static std::vector<emu_cp> g_cp_open_[256];                /* per thread: not committed yet */
static std::vector<std::vector<emu_cp>> g_cp_groups_[256]; /* committed, oldest first */
static std::vector<emu_cp> &cp_open() { return g_cp_open_[g_tid]; }
static std::vector<std::vector<emu_cp>> &cp_groups() { return g_cp_groups_[g_tid]; }

static void emu_cp_land(const std::vector<emu_cp> &g) {
  for (const emu_cp &c : g) memcpy(smem + c.dst, c.src, 16);
}
/* land every copy at once instead (emu_both_ways); one for the program, as g_emu_skew */
inline bool g_cp_early;

static void cp_async16(uint32_t dst, const void *src) {
  g_emu_cp_bytes += 16;
  if (dst % 16 || (uintptr_t)src % 16 || dst + 16 > sizeof smem)
    fault("cp.async: misaligned or out of range", src, dst);
  else if (g_cp_early)
    memcpy(smem + dst, src, 16);
  else
    cp_open().push_back({dst, src});
}
static void cp_async_commit() {
  cp_groups().push_back(std::move(cp_open()));
  cp_open().clear();
}
template <int N> static void cp_async_wait() {
  while (cp_groups().size() > (size_t)N) {
    emu_cp_land(cp_groups().front());
    cp_groups().erase(cp_groups().begin());
  }
}
/* At the end of a thread's kernel: what is still in flight lands (nothing may read it). */
static void emu_cp_drain() {
  for (const auto &g : cp_groups()) emu_cp_land(g);
  emu_cp_land(cp_open());
  cp_groups().clear();
  cp_open().clear();
}
}  // namespace cg_mma

/* Shared-memory banks of the warp-wide matrix loads (ldmatrix, and wmma's 16-bit loads from
 * shared memory, which read 8x8 matrices the same way): a matrix is 8 rows of 16 bytes, read in
 * one pass when its rows fall in 8 distinct 16-byte bank groups ((address / 16) mod 8; rows at
 * one address count once), else in as many passes as the most rows in one group. Counted for
 * the program (tests print them and require no extra pass where a kernel claims so). */
inline long long g_bank_mats, g_bank_extra;
static void emu_bank_matrix(const uint32_t *row_addr /* 8 byte offsets in smem */) {
  int per_group[8] = {0};
  for (int i = 0; i < 8; i++) {
    bool seen = false;
    for (int k = 0; k < i; k++) seen = seen || row_addr[k] == row_addr[i];
    if (!seen) per_group[(row_addr[i] / 16) % 8]++;
  }
  int most = 1;
  for (int g = 0; g < 8; g++) most = per_group[g] > most ? per_group[g] : most;
  g_bank_mats++;
  g_bank_extra += most - 1;
}

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
  const unsigned char *b = reinterpret_cast<const unsigned char *>(p);
  if (sizeof(T) == 2 && b >= smem && b < smem + sizeof smem) /* 16 rows of 2 x 16 bytes */
    for (int m = 0; m < 4; m++) {
      uint32_t rows[8];
      for (int i = 0; i < 8; i++)
        rows[i] = (uint32_t)(b - smem) + ((m % 2) * 8 + i) * ldm * 2 + (m / 2) * 16;
      emu_bank_matrix(rows);
    }
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
    if (lane == 0) emu_bank_matrix(&w->addr[j * 8]);
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
  g_emu_mma += lane == 0;
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

/* ---- warp and block collectives, atomics, bit casts ---------------------------------------- */

/* Joins the warp collective named by tag (its exchange area) and waits for the warp's other
 * lanes: a fault when a lane that has not exited waits at another collective or at a plain
 * __syncwarp (CUDA requires the lanes of the full-warp masks these kernels use to meet at the
 * same one; their exchange areas would differ). The lowest lane still running checks, before
 * any other resumes (emu_warp_round runs lanes in order); emu_coll_end clears the tag. Masks
 * are not modelled: two collectives over disjoint masks at once would be reported too. */
static void emu_coll(const void *tag) {
  g_fib[g_tid].coll = tag;
  __syncwarp();
  const unsigned w0 = g_tid / 32 * 32;
  unsigned first = w0;
  while (g_fib[first].state == kEmuDone) first++;
  if (g_tid == first)
    for (unsigned l = 0; l < 32; l++)
      if (g_fib[w0 + l].state != kEmuDone && g_fib[w0 + l].coll != tag)
        fault("warp collective: lanes at different collectives", tag, l);
}
/* The second barrier of a collective (its exchange area is free again), tag cleared. */
static void emu_coll_end() {
  __syncwarp();
  g_fib[g_tid].coll = nullptr;
}

/* The value that lane src(lane) of the calling warp passed (all 32 lanes taking part; a source
 * outside the warp gives the lane its own value), through an exchange area. From a lane that
 * has exited (or that a partial warp lacks), whose value CUDA leaves undefined: all bits set
 * (NaN in a float), so that a result that uses it shows. */
template <typename T, typename F> static T emu_shfl(T v, F src) {
  static T xch[256];
  xch[g_tid] = v;
  emu_coll(xch);
  const unsigned lane = g_tid % 32, from = src(lane);
  T r = v;
  if (from < 32 && g_fib[g_tid - lane + from].state == kEmuDone)
    memset(&r, 0xFF, sizeof r);
  else if (from < 32)
    r = xch[g_tid - lane + from];
  emu_coll_end();
  return r;
}
template <typename T> static T __shfl_down_sync(unsigned, T v, unsigned off) {
  return emu_shfl(v, [off](unsigned lane) { return lane + off; });
}
template <typename T> static T __shfl_xor_sync(unsigned, T v, int m) {
  return emu_shfl(v, [m](unsigned lane) { return lane ^ (unsigned)m; });
}

/* Bit l of the result: lane l's predicate, for the lanes of mask that have not exited (as
 * CUDA defines it: an exited lane gives 0). */
static unsigned __ballot_sync(unsigned mask, int pred) {
  static int xch[256];
  xch[g_tid] = pred != 0;
  emu_coll(xch);
  const unsigned w0 = g_tid / 32 * 32;
  unsigned r = 0;
  for (unsigned l = 0; l < 32; l++)
    if ((mask >> l & 1u) && g_fib[w0 + l].state != kEmuDone && xch[w0 + l]) r |= 1u << l;
  emu_coll_end();
  return r;
}

/* __syncthreads, returning 1 when any thread of the block that has not exited passed a
 * nonzero predicate. */
static int __syncthreads_or(int pred) {
  static int vote[256];
  vote[g_tid] = pred != 0;
  __syncthreads();
  int r = 0;
  for (unsigned t = 0; t < blockDim.x * blockDim.y; t++)
    r |= g_fib[t].state != kEmuDone && vote[t];
  __syncthreads();
  return r;
}

/* The threads of a block are fibers that switch only at barriers, and blocks run one after the
 * other: a read-modify-write is atomic as it is. */
template <typename T> static T atomicAdd(T *p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}

static int __popc(unsigned v) { return __builtin_popcount(v); }
template <typename To, typename From> static To emu_bits(From v) {
  static_assert(sizeof(To) == sizeof(From), "a bit cast between types of one size");
  To r;
  memcpy(&r, &v, sizeof r);
  return r;
}
static float __int_as_float(int v) { return emu_bits<float>(v); }
static float __uint_as_float(unsigned v) { return emu_bits<float>(v); }
static int __float_as_int(float v) { return emu_bits<int>(v); }
static unsigned __float_as_uint(float v) { return emu_bits<unsigned>(v); }
static double __longlong_as_double(long long v) { return emu_bits<double>(v); }

/* Arithmetic rounded to nearest, never fused (the build compiles with -ffp-contract=off). */
static float __fadd_rn(float a, float b) { return a + b; }
static float __fsub_rn(float a, float b) { return a - b; }
static float __fmul_rn(float a, float b) { return a * b; }
static float __fdiv_rn(float a, float b) { return a / b; }
static float __fsqrt_rn(float a) { return sqrtf(a); }
static float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); } /* one rounding */
static double __dadd_rn(double a, double b) { return a + b; }
static double __dsub_rn(double a, double b) { return a - b; }
static double __dmul_rn(double a, double b) { return a * b; }
static float __double2float_rn(double a) { return (float)a; }

/* The arithmetic of mma.cuh (the swizzle) as it is; its PTX is emulated above. */
#define CG_MMA_EMULATE 1
#include "mma.cuh"

/* A fiber's life: the kernel, then its copies still in flight land, then done. */
static void emu_fiber_main() {
  g_run(g_run_arg);
  cg_mma::emu_cp_drain();
  g_fib[g_tid].state = kEmuDone;
#ifdef CG_EMU_FAST_SWITCH
  emu_ctx_swap(&g_fib[g_tid].sp, g_sched_sp); /* never resumed */
  abort();
#endif
  /* else returns to g_sched (uc_link) */
}

/* Fiber t, ready to start emu_fiber_main on its own stack. */
static void emu_fiber_init(unsigned t) {
#ifdef CG_EMU_FAST_SWITCH
  /* what emu_ctx_swap pops: six registers, then the address it returns to, emu_fiber_main,
   * which is entered with the stack as after a call (16-byte aligned + 8: its own return
   * address, never used) */
  void **sp = reinterpret_cast<void **>(
      (uintptr_t)(g_stacks + (size_t)(t + 1) * kEmuStack) / 16 * 16);
  *--sp = nullptr;
  *--sp = reinterpret_cast<void *>(emu_fiber_main);
  for (int i = 0; i < 6; i++) *--sp = nullptr;
  g_fib[t].sp = sp;
#else
  getcontext(&g_fib[t].ctx);
  g_fib[t].ctx.uc_stack.ss_sp = g_stacks + (size_t)t * kEmuStack;
  g_fib[t].ctx.uc_stack.ss_size = kEmuStack;
  g_fib[t].ctx.uc_link = &g_sched;
  makecontext(&g_fib[t].ctx, emu_fiber_main, 0);
#endif
  g_fib[t].state = kEmuRun;
  g_fib[t].coll = nullptr;
  cg_mma::g_cp_open_[t].clear(); /* copies a deadlocked block left in flight never land */
  cg_mma::g_cp_groups_[t].clear();
}

/* Runs warp w's runnable threads in turn until each yields; releases its __syncwarp when all
 * its threads are there (exited ones counting). True when it released one. */
static bool emu_warp_round(unsigned w, unsigned tx) {
  unsigned at_warp = 0, done = 0;
  for (unsigned t = 32 * w; t < 32 * w + 32; t++) {
    if (g_fib[t].state == kEmuRun) {
      g_tid = t;
      threadIdx = {t % tx, t / tx, 0};
#ifdef CG_EMU_FAST_SWITCH
      emu_ctx_swap(&g_sched_sp, g_fib[t].sp);
#else
      swapcontext(&g_sched, &g_fib[t].ctx);
#endif
    }
    at_warp += g_fib[t].state == kEmuAtWarp;
    done += g_fib[t].state == kEmuDone;
  }
  if (!at_warp || at_warp + done != 32) return false;
  for (unsigned t = 32 * w; t < 32 * w + 32; t++)
    if (g_fib[t].state == kEmuAtWarp) g_fib[t].state = kEmuRun;
  return true;
}

/* emu_block's second schedule (emu_both_ways, or cg_emu_schedule of emu_runtime.cc for every
 * translation unit at once) */
inline bool g_emu_skew;

/* Runs every thread of the block until all are done, in one of two schedules: lockstep (every
 * warp one step, warp after warp, barriers released as they fill), or skewed (the last warp
 * first, each warp as far as it can go before the next starts: up to a __syncthreads, so a
 * warp that refills a buffer others still have to read does it before they read). Then the
 * __syncthreads is released when every thread is there (exited ones counting). */
static void emu_block(unsigned n, unsigned tx) {
  for (unsigned t = 0; t < n; t++) emu_fiber_init(t);
  for (unsigned t = n; t % 32; t++) g_fib[t].state = kEmuDone; /* the lanes a last warp lacks */
  const unsigned nw = (n + 31) / 32;
  for (;;) {
    bool released = false;
    for (unsigned i = 0; i < nw; i++) {
      const unsigned w = g_emu_skew ? nw - 1 - i : i;
      if (g_emu_skew)
        while (emu_warp_round(w, tx)) {
        }
      else
        released = emu_warp_round(w, tx) || released;
    }
    if (released) continue;
    unsigned at_block = 0, done = 0;
    for (unsigned t = 0; t < n; t++) {
      at_block += g_fib[t].state == kEmuAtBlock;
      done += g_fib[t].state == kEmuDone;
    }
    if (done == n) return;
    if (at_block + done == n) {
      const emu_fiber *first = nullptr;
      for (unsigned t = 0; t < n; t++) {
        emu_fiber *f = &g_fib[t];
        if (f->state != kEmuAtBlock) continue;
        if (!first) first = f;
        else if (f->site_line != first->site_line || strcmp(f->site_file, first->site_file))
          fault("__syncthreads: threads of the block wait at different ones", nullptr,
                (unsigned)f->site_line);
        f->state = kEmuRun;
      }
      continue;
    }
    fault("deadlock: threads wait at different barriers", nullptr, at_block);
    return; /* the fibers left behind are started afresh by the next block */
  }
}

/* Runs kernel (a callable run by every thread) on a gx x gy x gz grid of blocks of tx x ty threads
 * (tx * ty at most 256), with `shared` bytes of dynamic shared memory,
 * poisoned with NaN (0xFF) before each block, so that a read of what no one wrote shows. */
template <typename K>
static void launch3(unsigned gx, unsigned gy, unsigned gz, unsigned tx, unsigned ty, size_t shared,
                    K kernel) {
  const unsigned threads = tx * ty;
  if (threads < 1 || threads > 256 || shared > sizeof smem) {
    fault("launch: a block shape or shared memory size the emulation does not take", nullptr,
          threads);
    return;
  }
  if (!g_stacks) { /* 256 stacks, touched as used, each above a page that faults if touched */
    void *m = mmap(nullptr, 256 * kEmuStack, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) abort();
    g_stacks = static_cast<unsigned char *>(m);
    for (size_t t = 0; t < 256; t++)
      if (mprotect(g_stacks + t * kEmuStack, 4096, PROT_NONE) != 0) abort();
  }
  gridDim = {gx, gy, gz};
  blockDim = {tx, ty, 1};
  g_run = [](void *k) { (*static_cast<K *>(k))(); };
  g_run_arg = &kernel;
  for (unsigned bz = 0; bz < gz; bz++)
    for (unsigned by = 0; by < gy; by++)
      for (unsigned bx = 0; bx < gx; bx++) {
        blockIdx = {bx, by, bz};
        memset(smem, 0xFF, shared);
        emu_block(threads, tx);
      }
}
template <typename K>
static void launch(unsigned gx, unsigned gy, unsigned tx, unsigned ty, size_t shared, K kernel) {
  launch3(gx, gy, 1, tx, ty, shared, kernel);
}

/* One-dimensional blocks of `threads`. */
template <typename K>
static void launch(unsigned gx, unsigned gy, unsigned threads, size_t shared, K kernel) {
  launch(gx, gy, threads, 1u, shared, kernel);
}

/* Runs the test body twice: warps in lockstep with copies landing as late as allowed (a read
 * before its wait shows), then warps skewed with copies landing at once (a refill of a buffer
 * before every warp is done reading it shows). */
/* Sets the schedule for every emulator of the program (lockstep with late copies, or skewed
 * with copies landing at once; the globals are one for the program) and says which. */
static void emu_schedule(bool skewed) {
  cg_mma::g_cp_early = g_emu_skew = skewed;
  printf("== %s\n", skewed ? "warps skewed, cp.async copies landing at once"
                           : "warps in lockstep, cp.async copies landing as late as allowed");
}

template <typename F> static void emu_both_ways(F body) {
  for (int second = 0; second < 2; second++) {
    emu_schedule(second != 0);
    const long long mats = g_bank_mats, extra = g_bank_extra;
    body();
    printf("shared-memory banks: %lld 8x8 matrices loaded, %lld extra passes (conflicts)\n",
           g_bank_mats - mats, g_bank_extra - extra);
    /* the kernels run so (fprop, wgrad, upconv) lay out their tiles against conflicts */
    CG_TEST_CHECK(g_bank_extra == extra, "%lld extra shared-memory passes: the tiles' layout "
                  "has bank conflicts", g_bank_extra - extra);
  }
  cg_mma::g_cp_early = g_emu_skew = false; /* back to lockstep, without a line */
}

/* Runs run(T(), &c) for every case c of cases under both schedules (emu_both_ways), with T
 * the element type of c.dt (bf16 or fp16). */
template <typename C, typename F> static void emu_run_cases(const C &cases, F run) {
  emu_both_ways([&] {
    for (const auto &c : cases) {
      if (c.dt == CG_DT_BF16)
        run(__nv_bfloat16(), &c);
      else
        run(__half(), &c);
    }
  });
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
    for (size_t i = 0; i < v.size(); i++) p[i] = v[i]; /* (memcpy: a GCC 12 false warning) */
  }
};

#endif
