/* synth.h: the built-in synthetic dataset. */
#ifndef CG_SYNTH_H
#define CG_SYNTH_H

#include <stdint.h>

/* Image `index` of the synthetic dataset: 1..5 random shapes (circles, ellipses, rotated
 * rectangles) with varied texture and brightness over a textured, noisy background; the mask
 * is the union of the shapes. Pure function of (seed, index, h, w). */
void cg_synth_sample(uint64_t seed, int64_t index, int h, int w, uint8_t *rgb, uint8_t *mask);

/* The same scene layout with a K-class mask: background 0, a shape's class 1 + (kind + 3 *
 * texture) % (K - 1) from its drawn kind (circle, ellipse, rectangle) and texture (flat,
 * stripes, checker, speckle), so K = 4 is class = 1 + kind; the shape is then painted with
 * texture (class - 1) % 4, which gives a class a local look besides its outline. Later shapes
 * over earlier ones. With ignore >= 0 about half of the shapes get an ignore band: their pixels
 * within 1.5 px of their own border are labelled ignore. nclass 1: exactly cg_synth_sample. */
void cg_synth_sample_k(uint64_t seed, int64_t index, int h, int w, int nclass, int ignore,
                       uint8_t *rgb, uint8_t *mask);

#endif
