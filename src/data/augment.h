/* augment.h: the random augmentations of one training sample: flips and crops.
 *
 * Every decision comes from rng.h's CG_RNG_AUG stream keyed by (seed, epoch, index), so a
 * sample is augmented the same whatever thread, rank or batch prepares it. */
#ifndef CG_AUGMENT_H
#define CG_AUGMENT_H

#include <stdint.h>

/* In-place random horizontal / vertical flips of one sample, decided by (seed, epoch, index). */
void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask);

/* Random crop of one sample, in place: a window of (s*h) x (s*w) pixels, s uniform in
 * [CG_CROP_MIN_SCALE, 1], at a uniform position, resampled back to h x w (bilinear RGB,
 * nearest mask; cg_resample_*). Decided by the CG_RNG_AUG stream of (seed, epoch, index),
 * drawing after the one draw cg_augment_flip makes, so the flips are the same with or
 * without crops. tmp: h*w*4 bytes of scratch. */
#define CG_CROP_MIN_SCALE 0.75
void cg_augment_crop(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask, uint8_t *tmp);

#endif
