/* feat.h: the CPU feature channels and packing into the NHWC network input.
 *
 * A raw sample is an RGB image (h*w*3 bytes, interleaved) and a mask (h*w bytes, 0/1).
 * The network input has C = 3 + F channels per pixel, F = CG_NFEAT feature channels:
 *   channel 0..2  (rgb/255 - 0.5) / 0.25
 *   channel 3     Sobel gradient magnitude of the gray image g = (0.299 R + 0.587 G + 0.114 B)/255
 *                 (3x3 kernels, borders replicated)
 *   channel 4     local variance of g over a 5x5 window (borders replicated) x CG_VAR_SCALE
 * cuda/kernels_feat.cu computes the same channels on the device. */
#ifndef CG_FEAT_H
#define CG_FEAT_H

#include <stdint.h>

#define CG_NFEAT 2
#define CG_VAR_SCALE 16.0f

/* Gray image (h*w floats in [0,1]) of an RGB image. */
void cg_feat_gray(const uint8_t *rgb, int h, int w, float *gray);
/* Sobel magnitude and 5x5 local variance (already x CG_VAR_SCALE) of a gray image. */
void cg_feat_sobel(const float *gray, int h, int w, float *out);
void cg_feat_localvar(const float *gray, int h, int w, float *out);

/* Pack one sample into the network input x (h*w*(3+nfeat) floats, NHWC): normalised RGB and,
 * if nfeat == CG_NFEAT, the two features (computed here; scratch = 3*h*w floats). nfeat 0
 * packs RGB only (the GPU computes the features itself in --split gpu, issue 5). */
void cg_pack_input(const uint8_t *rgb, int h, int w, int nfeat, float *scratch, float *x);

#endif
