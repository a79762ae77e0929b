/* bf16.h: bfloat16 conversions for the gradient all-reduce (--grad-comm bf16), host side.
 *
 * bf16 is the top half of an IEEE fp32 (1 sign, 8 exponent, 7 mantissa bits), kept as its bit
 * pattern in a uint16_t: C11 has no bf16 type and MPI no bf16 datatype. fp32 -> bf16 rounds to
 * nearest, ties to even (as __float2bfloat16_rn on the GPU); a NaN stays a NaN (quiet, same
 * sign) instead of rounding into an infinity; values beyond the largest bf16 round to
 * infinity. bf16 -> fp32 is exact. The CUDA kernels (cuda/gradcast.cu) produce the same bits.
 * Header-only (static inline): the MPI reduction operator and the tests share these. */
#ifndef CG_BF16_H
#define CG_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t cg_bf16_from_f32(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u); /* + half an ulp, minus one unless the kept lsb is odd */
  return (uint16_t)(u >> 16);
}

static inline float cg_bf16_to_f32(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* inout[i] = bf16(fp32(in[i]) + fp32(inout[i])): one rounding per addition, the sum itself in
 * fp32 (exact for two bf16 operands of similar scale). Commutative, bitwise. */
static inline void cg_bf16_sum(const uint16_t *in, uint16_t *inout, size_t n) {
  for (size_t i = 0; i < n; i++)
    inout[i] = cg_bf16_from_f32(cg_bf16_to_f32(in[i]) + cg_bf16_to_f32(inout[i]));
}

#endif
