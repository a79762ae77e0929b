/* augment.h: the random augmentations of one training sample: flips, crop windows, colour
 * jitter and rotations.
 *
 * Every decision comes from an rng.h stream keyed by (seed, epoch, index) (CG_RNG_AUG: flips
 * and crop windows; CG_RNG_JITTER, CG_RNG_ROTATE, CG_RNG_CROP: their own), so a sample is
 * augmented the same whatever thread, rank or batch prepares it. */
#ifndef CG_AUGMENT_H
#define CG_AUGMENT_H

#include <stdint.h>

#include "fit.h" /* cg_crop_t */

/* The flips cg_augment_flip may make (--flip), each with probability 1/2 from its own bit of
 * one draw: the transpose (square samples only), then the horizontal mirror, then the vertical.
 * CG_FLIP_HV is --flip on (torchvision's RandomHorizontalFlip and RandomVerticalFlip, 0.5
 * each); CG_FLIP_H alone mmsegmentation's RandomFlip(prob=0.5) for scenes with an up and a down;
 * CG_FLIP_D4 draws each of the square's 8 symmetries (the rotations by multiples of 90 degrees
 * and their mirrors) with probability 1/8, as albumentations' D4. The bits of H and V are the
 * same in every mode, so a sample that --flip on mirrors is mirrored by the other modes that
 * allow it. */
enum { CG_FLIP_H = 1, CG_FLIP_V = 2, CG_FLIP_T = 4, CG_FLIP_HV = 3, CG_FLIP_D4 = 7 };

/* In-place random flips of one sample of h x w (h == w when mode has CG_FLIP_T) among those of
 * mode, decided by (seed, epoch, index). */
void cg_augment_flip(uint64_t seed, int64_t epoch, int64_t index, int h, int w, uint8_t *rgb,
                     uint8_t *mask, int mode);

/* The random crop window of one sample (fit.h): scale uniform in [lo, hi] (0 < lo <= hi <= 4:
 * --crop-scale), the origin uniform over the room left (u, v uniform in [0, 1)). Decided by
 * the CG_RNG_AUG stream of (seed, epoch, index), drawing after the one draw cg_augment_flip
 * makes, so the flips are the same with or without crops. The loader takes it over the whole
 * file where it can (cg_source_load_win). */
#define CG_CROP_SCALE_DEFAULT_LO 0.75
cg_crop_t cg_augment_window(uint64_t seed, int64_t epoch, int64_t index, double lo, double hi);

/* --crop-cat-max R: mmsegmentation's RandomCrop(cat_max_ratio=R). A window whose mask has a
 * single label, or one label on R or more of its labelled pixels (those not the ignore label),
 * is moved: its side kept, a new place drawn; after CG_CROP_CAT_TRIES refused windows the next
 * is taken unchecked (mmsegmentation's loop of 10). */
#define CG_CROP_CAT_TRIES 10
/* win's place for try t (1..CG_CROP_CAT_TRIES): u, v drawn afresh, the t-th pair of the
 * CG_RNG_CROP stream of (seed, epoch, index). */
void cg_augment_window_again(uint64_t seed, int64_t epoch, int64_t index, int t, cg_crop_t *win);
/* Whether a crop's mask of n pixels passes: more than one label among the pixels that are not
 * ignore (-1: none), and every label's count below ratio of them (ratio >= 1: always). */
int cg_augment_cat_ok(const uint8_t *mask, size_t n, int ignore, double ratio);

/* --color-jitter B:C:S:H: torchvision's ColorJitter(brightness=B, contrast=C, saturation=S,
 * hue=H) on a uint8 image tensor (transforms/functional_tensor.py of torchvision 0.14, the
 * arithmetic in float32 as there: _blend, rgb_to_grayscale's 0.2989/0.587/0.114 truncated to
 * uint8, _rgb2hsv/_hsv2rgb, results truncated to uint8). Factors uniform in [max(0, 1 - B),
 * 1 + B] (C, S alike) and [-H, H] (H <= 0.5); a 0 range is left out; the four applied in a random
 * order (its randperm). Images only: masks do not change. */
typedef struct {
  double b, c, s, h; /* the ranges; all 0: off */
} cg_jitter_t;
typedef struct {
  int order[4];    /* 0 brightness, 1 contrast, 2 saturation, 3 hue, in the order applied */
  int on[4];       /* by the same index: applied */
  float factor[4]; /* by the same index */
} cg_jitter_draw_t;
/* The draw of one sample: the CG_RNG_JITTER stream of (seed, epoch, index). */
cg_jitter_draw_t cg_augment_jitter_draw(uint64_t seed, int64_t epoch, int64_t index,
                                        const cg_jitter_t *j);
/* Applies a draw to rgb (h x w RGB8, in place). */
void cg_augment_jitter_apply(const cg_jitter_draw_t *d, int h, int w, uint8_t *rgb);

/* --rotate D[:P]: a rotation of the sample about its centre by an angle uniform in [-D, D]
 * degrees, made with probability P (torchvision's RandomRotation(degrees=D), bilinear for the
 * image and nearest for the mask; like mmsegmentation's RandomRotate(prob=P, degree=D)). The
 * draw of one sample: the CG_RNG_ROTATE stream of (seed, epoch, index); 0 when it is not
 * rotated (or D is 0). */
#define CG_ROTATE_MAX_DEG 180.0
double cg_augment_rotate_draw(uint64_t seed, int64_t epoch, int64_t index, double deg,
                              double prob);
/* Rotates rgb (h x w RGB8) and mask (h x w) in place by angle degrees, counter-clockwise as the
 * picture is seen (torchvision's sign), the size kept: torchvision.transforms.functional.rotate
 * of uint8 tensors (its float32 steps: the affine grid, grid_sample with align_corners=False,
 * the fill blend, torch.round), bilinear with fill pad_rgb for the image, nearest with fill
 * pad_mask for the mask. The corners the rotated sample leaves are that padding. angle 0 changes
 * nothing. tmp: h*w*4 bytes of scratch. */
void cg_augment_rotate_apply(double angle, int h, int w, uint8_t *rgb, uint8_t *mask,
                             uint8_t pad_rgb, uint8_t pad_mask, uint8_t *tmp);

#endif
