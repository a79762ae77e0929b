/* augment.h: the random augmentations of one training sample: flips and crop windows.
 *
 * Every decision comes from rng.h's CG_RNG_AUG stream keyed by (seed, epoch, index), so a
 * sample is augmented the same whatever thread, rank or batch prepares it. */
#ifndef CG_AUGMENT_H
#define CG_AUGMENT_H

#include <stdint.h>

#include "fit.h" /* cg_crop_t */

/* In-place random horizontal / vertical flips of one sample, decided by (seed, epoch, index). */
void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask);

/* The random crop window of one sample (fit.h): scale uniform in [lo, hi] (0 < lo <= hi <= 1:
 * --crop-scale), the origin uniform over the room left (u, v uniform in [0, 1)). Decided by
 * the CG_RNG_AUG stream of (seed, epoch, index), drawing after the one draw cg_augment_flip
 * makes, so the flips are the same with or without crops. The loader takes it over the whole
 * file where it can (cg_source_load_win). */
#define CG_CROP_SCALE_DEFAULT_LO 0.75
cg_crop_t cg_augment_window(uint64_t seed, int64_t epoch, int64_t index, double lo, double hi);

#endif
