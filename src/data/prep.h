/* prep.h: the network input of a batch from mixed CPU/GPU-split sources, on the CPU — the CPU
 * backend's twin of cg_k_prep_input (cuda/kernels_feat.h), so the work split also runs there
 * (the "GPU" share of the samples is then prepared on the compute threads). */
#ifndef CG_PREP_H
#define CG_PREP_H

#include <stdint.h>

/* out = the 5-channel fp32 NHWC input (n*h*w*5 floats, layout of feat.h) of n samples:
 *   samples [0, n_cpu)  copied from x (n_cpu*h*w*5 floats, already packed by cg_pack_input);
 *                       x may be NULL when n_cpu == 0, and may equal out (then nothing moves);
 *                       otherwise x and out must not overlap;
 *   samples [n_cpu, n)  packed here from rgb (n - n_cpu RGB8 images of h*w*3 bytes) with
 *                       cg_pack_input; rgb may be NULL when n_cpu == n.
 * scratch: 3*h*w floats (cg_pack_input's). The caller owns every buffer. */
void cg_prep_input_cpu(const float *x, int n_cpu, const uint8_t *rgb, int n, int h, int w,
                       float *out, float *scratch);

#endif
