/* kernels_feat.h: the GPU side of the CPU/GPU work split — network-input preparation
 * (normalisation + the two feature channels of src/data/feat.h) and confusion counts.
 *
 * The adaptive split hands a fraction of each batch to the GPU: for those samples the host
 * uploads only the augmented RGB8 image (3 bytes a pixel instead of 20) and the GPU computes
 * what cg_pack_input computes on the CPU; the predicted mask may likewise be counted on the
 * GPU (4 integers back per batch instead of h*w bytes per sample).
 *
 * Conventions are those of kernels.h: launchers take the stream last, check shapes (CG_ASSERT),
 * launch, check the launch and never synchronise. All pointers are device pointers. */
#ifndef CG_CUDA_KERNELS_FEAT_H
#define CG_CUDA_KERNELS_FEAT_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_check.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The network input of a batch of n samples, NHWC h x w x cpad of type dt (cpad >= 5:
 * channels 0..4 as src/data/feat.h, zeros in 5..cpad-1), written to d_out (n*h*w*cpad elements,
 * overwritten), from mixed sources:
 *   samples [0, n_cpu)  d_x: fp32 NHWC 5-channel, already prepared on the CPU (cg_pack_input);
 *                       only cast to dt and padded. May be NULL when n_cpu == 0.
 *   samples [n_cpu, n)  d_rgb: n - n_cpu interleaved RGB8 images of h*w*3 bytes; normalised,
 *                       gray, Sobel and 5x5 local variance computed here with replicated
 *                       borders. May be NULL when n_cpu == n.
 * The fp32 result (dt = CG_DT_F32) equals cg_pack_input's bit for bit: the same operations in
 * the same order, no contractions, the variance in double; bf16/f16 are that rounded once.
 * n - n_cpu <= 65535. n == 0 writes nothing. */
void cg_k_prep_input(cg_dtype_t dt, const float *d_x, int n_cpu, const uint8_t *d_rgb, int n,
                     int h, int w, int cpad, void *d_out, cudaStream_t s);

/* Exact confusion counts over the samples i with d_weight[i] > 0 (padding samples, weight 0,
 * are left out), as cg_confusion_add (src/report/metrics.h) summed over those samples: a pixel is
 * positive when its byte is non-zero. d_pred, d_mask: n x hw bytes; d_weight: n floats.
 * d_counts[4] = {tp, fp, fn, tn} is overwritten (not accumulated), so the host can copy it
 * back and add it to its int64 totals. Deterministic (integer two-pass reduction, no atomics);
 * n <= 65535; n == 0 or hw == 0 writes zeros. d_work: cg_k_confusion_work_bytes(n, hw) bytes of
 * scratch (a pure function of the shape; contents need no initialisation; NULL when 0). */
size_t cg_k_confusion_work_bytes(int n, int64_t hw);
void cg_k_confusion(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight, int n,
                    int64_t hw, unsigned long long *d_counts, void *d_work, cudaStream_t s);
/* The same leaving out the pixels whose mask is `ignore` (binary with an ignore label; -1 is
 * cg_k_confusion). */
void cg_k_confusion_ign(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight,
                        int n, int64_t hw, int ignore, unsigned long long *d_counts,
                        void *d_work, cudaStream_t s);

/* K >= 2 classes: d_counts[nclass * nclass] (row = true class, column = predicted) overwritten
 * with the exact counts over the samples with d_weight[i] > 0, leaving out pixels whose mask is
 * `ignore` (-1: none) and, defensively, ids >= nclass (the loader refuses those); the same
 * counts as the helpers' cg_confk_add (src/report/metrics.h). Deterministic (integer sums);
 * no scratch. n <= 65535; n == 0 or hw == 0 writes zeros. */
void cg_k_confusion_k(const uint8_t *d_pred, const uint8_t *d_mask, const float *d_weight, int n,
                      int64_t hw, int nclass, int ignore, unsigned long long *d_counts,
                      cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
