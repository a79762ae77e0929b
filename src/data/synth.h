/* synth.h: the built-in synthetic dataset. */
#ifndef CG_SYNTH_H
#define CG_SYNTH_H

#include <stdint.h>

/* Image `index` of the synthetic dataset: 1..5 random shapes (circles, ellipses, rotated
 * rectangles) with varied texture and brightness over a textured, noisy background; the mask
 * is the union of the shapes. Pure function of (seed, index, h, w). */
void cg_synth_sample(uint64_t seed, int64_t index, int h, int w, uint8_t *rgb, uint8_t *mask);

#endif
