/* tiler.h: whole images through the network by overlapping tiles of the model's size, their
 * logits blended and made final row by row at each image's own size. `predict` runs every
 * image of its input this way, and training's validation with --val-mode whole every image of
 * the validation set (tiler.c has the rules).
 *
 * An image enters as the network's view of it: RGB8 ih x iw (the image itself, or scaled, as
 * predict --resize scales it). Tiles th x tw are cut row-major from origins spread evenly over
 * it (cg_tiler_origins), featurised exactly as training samples, and their logits blended with a
 * tent weight; each final row of the blend goes, scaled back to the image's own h x w when that
 * differs (bilinear, PyTorch's F.interpolate with align_corners=False), to the image's row
 * function. cg_tiler_run drives the backend over a stream of images a batch of tiles at a time,
 * across image boundaries. */
#ifndef CG_TILER_H
#define CG_TILER_H

#include <signal.h> /* sig_atomic_t */
#include <stdint.h>

#include "backend.h"
#include "model.h"

typedef struct cg_tiler cg_tiler_t;

/* Output row y (0..h-1) of an image made final: its blended logits, w*k floats (K = 1: the
 * logit), valid during the call. ctx: the image's (cg_tiler_open). */
typedef void (*cg_tiler_row_fn)(void *ctx, int y, const float *logits);

/* Tile origins along an axis of length L for tiles of T: one centred tile when L <= T (its
 * outside reflected); else n = ceil((L - T) / stride) + 1 origins from 0 to L - T spread evenly,
 * stride = floor(T (1 - overlap)) >= 1, so neighbours overlap by at least the overlap. Returns
 * n; org (n entries) may be NULL to count. */
int cg_tiler_origins(int L, int T, double overlap, int *org);

/* An image to tile: rgb (ih*iw*3, taken over: freed by cg_tiler_close), whose final rows go to
 * row(ctx, ...) at h x w, k logits a pixel, tiles th x tw overlapping by at least overlap. */
cg_tiler_t *cg_tiler_open(uint8_t *rgb, int ih, int iw, int h, int w, int k, int th, int tw,
                          double overlap, cg_tiler_row_fn row, void *ctx);
void cg_tiler_close(cg_tiler_t *t); /* NULL-safe */
void *cg_tiler_ctx(const cg_tiler_t *t);

/* Where cg_tiler_run takes its images from and gives them back. */
typedef struct {
  /* The next image (cg_tiler_open), or NULL when there is none left. */
  cg_tiler_t *(*next)(void *ctx);
  /* t is through: complete (every row given to its row function), or not (a stop came before
   * its last tile); the callee closes it. */
  void (*end)(void *ctx, cg_tiler_t *t, int complete);
  void *ctx;
  const volatile sig_atomic_t *stop; /* non-zero: no further batch (NULL: never) */
  int flip; /* test-time flip: each tile also goes through mirrored left-right (the next batch
               slot), and its logits are the mean of the tile's and the mirror's mirrored back */
  void (*step)(void *ctx); /* called before each step (a watchdog beat); NULL: none */
} cg_tiler_feed_t;

/* Every tile of feed's images through ops/be, n tiles a step in batch slot 0 (padding of weight
 * 0 fills the last step; with feed->flip a tile and its mirror take two slots, n >= 2): uploaded,
 * eval_step, fetched, get_logits, blended; each image ended as its last tile comes back. The
 * backend must hold batches of n tiles of m's size. */
void cg_tiler_run(const cg_backend_ops_t *ops, cg_backend_t *be, const cg_model_t *m, int n,
                  const cg_tiler_feed_t *feed);

#endif
