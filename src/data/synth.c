/* synth.c: the built-in synthetic segmentation dataset (cg_synth_sample, see synth.h).
 *
 * An image is a pure function of (seed, index, h, w): a background (base colour, linear
 * shading, a weak large-scale texture) with 1..5 shapes (circles, ellipses, rotated rectangles)
 * painted over it, each with its own colour and texture (flat, stripes, checker, speckle), then
 * pixel noise on everything. The mask is the union of the shapes.
 *
 * Everything is integer arithmetic: coordinates in 1/16 pixel, directions as Q12 unit vectors
 * from the rational parametrisation of the circle (no sin/cos), noise from a per-pixel hash.
 * So the bytes do not depend on the compiler, its FP contraction, libm or the machine.
 *
 * Positions scale with h and w, sizes and texture periods with s = sqrt(h*w), so one
 * (seed, index) is the same scene at every resolution and the foreground fraction does not
 * depend on the aspect ratio. Shapes contrast with the background: flat shapes strongly in
 * colour, textured ones less in colour but with a texture far stronger than the background's,
 * which the Sobel and local-variance channels see. That keeps the task learnable by a small
 * UNet yet not solvable by a colour threshold alone. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "synth.h"
#include "log.h"
#include "rng.h"

#define SUB 16      /* sub-pixel units per pixel */
#define UNIT 4096   /* 1.0 of a unit vector */
#define MAX_SHAPES 5

enum { SH_CIRCLE, SH_ELLIPSE, SH_RECT };
enum { TX_FLAT, TX_STRIPES, TX_CHECKER, TX_SPECKLE };

typedef struct {
  int32_t c, s; /* Q12 */
} dir_t;

typedef struct {
  int kind, tex;
  int32_t cx, cy;  /* centre, 1/16 px */
  int32_t a, b;    /* semi-axes (ellipse), half-sides (rectangle), radius a (circle); 1/16 px */
  dir_t rot;       /* shape frame */
  dir_t tdir;      /* stripe normal */
  int32_t period;  /* texture period, 1/16 px */
  uint32_t density; /* speckle: second colour where a hash byte < density */
  int c1[3], c2[3];
  uint64_t key;    /* speckle hash key */
} shape_t;

/* Uniform integer in [lo, hi]. */
static int32_t rand_range(cg_rng_t *r, int32_t lo, int32_t hi) {
  return lo + (int32_t)cg_rng_below(r, (uint32_t)(hi - lo + 1));
}

/* A Q12 unit vector at a random angle, all directions possible: ((1-t^2), 2t)/(1+t^2) covers
 * (-90, 90) degrees exactly in integers; a random quarter turn and sign cover the rest. */
static dir_t rand_dir(cg_rng_t *r) {
  const int64_t T = 1024;
  int64_t t = rand_range(r, -(int32_t)T, (int32_t)T);
  int64_t den = T * T + t * t;
  dir_t d = {(int32_t)((T * T - t * t) * UNIT / den), (int32_t)(2 * t * T * UNIT / den)};
  uint64_t bits = cg_rng_next(r);
  if (bits & 1) d = (dir_t){-d.s, d.c};
  if (bits & 2) d = (dir_t){-d.c, -d.s};
  return d;
}

static int clamp255(int v) { return v < 0 ? 0 : (v > 255 ? 255 : v); }
static int iabs(int v) { return v < 0 ? -v : v; }

/* q mod p in [0, p) for a coordinate q in 1/16 px: callers keep |q| < 2^16 (images up to
 * 4096 px) and every period is >= 3 px, so UNIT*p >= 4096*48 makes q + UNIT*p positive. */
static int32_t wrap(int32_t q, int32_t p) { return (q + UNIT * p) % p; }

/* Contrasting colour for a shape over background colour bg: L1 distance >= dmin. */
static void pick_colour(cg_rng_t *r, const int bg[3], int dmin, int c[3]) {
  for (int tries = 0; tries < 16; tries++) {
    int d = 0;
    for (int k = 0; k < 3; k++) {
      c[k] = rand_range(r, 0, 255);
      d += iabs(c[k] - bg[k]);
    }
    if (d >= dmin) return;
  }
  /* Rare fallback: push every channel away from the background. */
  for (int k = 0; k < 3; k++) c[k] = bg[k] < 128 ? bg[k] + dmin / 3 + 10 : bg[k] - dmin / 3 - 10;
}

static void make_shape(cg_rng_t *r, int h, int w, int s, const int bg[3], shape_t *sh) {
  const int32_t S = s * SUB;
  sh->kind = (int)cg_rng_below(r, 3);
  sh->cx = rand_range(r, w * SUB / 10, w * SUB * 9 / 10);
  sh->cy = rand_range(r, h * SUB / 10, h * SUB * 9 / 10);
  int32_t a, b;
  if (sh->kind == SH_CIRCLE) {
    a = b = (int32_t)((int64_t)S * rand_range(r, 115, 250) / 1000);
  } else if (sh->kind == SH_ELLIPSE) {
    a = (int32_t)((int64_t)S * rand_range(r, 125, 320) / 1000);
    b = (int32_t)((int64_t)a * rand_range(r, 400, 1000) / 1000);
  } else {
    a = (int32_t)((int64_t)S * rand_range(r, 100, 260) / 1000);
    b = (int32_t)((int64_t)a * rand_range(r, 450, 1000) / 1000);
  }
  /* At least 2 px, so that tiny images still get visible shapes. */
  sh->a = a < 2 * SUB ? 2 * SUB : a;
  sh->b = b < 2 * SUB ? 2 * SUB : b;
  sh->rot = rand_dir(r);
  if (sh->kind == SH_CIRCLE) sh->rot = (dir_t){UNIT, 0};

  uint32_t t = cg_rng_below(r, 10);
  sh->tex = t < 4 ? TX_FLAT : t < 6 ? TX_STRIPES : t < 8 ? TX_CHECKER : TX_SPECKLE;
  sh->tdir = rand_dir(r);
  int32_t p = (int32_t)((int64_t)S * rand_range(r, 40, 100) / 1000);
  sh->period = p < 3 * SUB ? 3 * SUB : p; /* >= 3 px: a texture, not aliasing */
  sh->density = (uint32_t)rand_range(r, 64, 128);
  sh->key = cg_rng_next(r);

  /* Flat shapes must stand out by colour; textured ones may be closer, their texture shows. */
  pick_colour(r, bg, sh->tex == TX_FLAT ? 150 : 80, sh->c1);
  int mean = (sh->c1[0] + sh->c1[1] + sh->c1[2]) / 3;
  int delta = rand_range(r, 45, 95) * (mean > 127 ? -1 : 1); /* towards the side with room */
  for (int k = 0; k < 3; k++) sh->c2[k] = clamp255(sh->c1[k] + delta);
}

/* Conservative pixel bounding box of a shape, clipped to the image; returns 0 if empty. */
static int shape_bbox(const shape_t *sh, int h, int w, int *x0, int *x1, int *y0, int *y1) {
  int64_t ex, ey;
  if (sh->kind == SH_RECT) {
    ex = ((int64_t)sh->a * iabs(sh->rot.c) + (int64_t)sh->b * iabs(sh->rot.s)) / UNIT;
    ey = ((int64_t)sh->a * iabs(sh->rot.s) + (int64_t)sh->b * iabs(sh->rot.c)) / UNIT;
  } else {
    ex = ey = sh->a > sh->b ? sh->a : sh->b;
  }
  ex = ex / SUB + 2;
  ey = ey / SUB + 2;
  int64_t px = sh->cx / SUB, py = sh->cy / SUB;
  *x0 = (int)(px - ex < 0 ? 0 : px - ex);
  *x1 = (int)(px + ex > w - 1 ? w - 1 : px + ex);
  *y0 = (int)(py - ey < 0 ? 0 : py - ey);
  *y1 = (int)(py + ey > h - 1 ? h - 1 : py + ey);
  return *x0 <= *x1 && *y0 <= *y1;
}

/* Paints a shape; its mask pixels get `label`, or `ignore` within `band` (1/16 px, 0 = none)
 * of its border (inside it: the pixels of the shape shrunk by band are labelled). */
static void paint_shape(const shape_t *sh, int h, int w, uint8_t *rgb, uint8_t *mask,
                        uint8_t label, int32_t band, uint8_t ignore) {
  int x0, x1, y0, y1;
  if (!shape_bbox(sh, h, w, &x0, &x1, &y0, &y1)) return;
  const int64_t c = sh->rot.c, s = sh->rot.s, a = sh->a, b = sh->b;
  const int64_t aa = a * a, bb = b * b, aabb = aa * bb;
  const int64_t ia = a > band ? a - band : 0, ib = b > band ? b - band : 0;
  const int64_t iaa = ia * ia, ibb = ib * ib, iaabb = iaa * ibb;
  const int32_t p = sh->period, half = p / 2;
  for (int y = y0; y <= y1; y++) {
    const int64_t dy = (int64_t)y * SUB + SUB / 2 - sh->cy;
    for (int x = x0; x <= x1; x++) {
      const int64_t dx = (int64_t)x * SUB + SUB / 2 - sh->cx;
      /* Shape frame, 1/16 px; |u|,|v| < 2^15, so u*u*bb stays far inside int64. */
      const int64_t u = (dx * c + dy * s) / UNIT, v = (dy * c - dx * s) / UNIT;
      int inside;
      if (sh->kind == SH_RECT)
        inside = u <= a && u >= -a && v <= b && v >= -b;
      else
        inside = u * u * bb + v * v * aa <= aabb;
      if (!inside) continue;
      int second;
      switch (sh->tex) {
        case TX_STRIPES: {
          int32_t q = (int32_t)((dx * sh->tdir.c + dy * sh->tdir.s) / UNIT);
          second = wrap(q, p) < half;
          break;
        }
        case TX_CHECKER:
          second = ((wrap((int32_t)u, 2 * p) < p) ^ (wrap((int32_t)v, 2 * p) < p));
          break;
        case TX_SPECKLE:
          second = (cg_mix64(sh->key + (uint64_t)y * (uint64_t)w + (uint64_t)x) & 255) <
                   sh->density;
          break;
        default:
          second = 0;
      }
      const int *col = second ? sh->c2 : sh->c1;
      uint8_t *px = rgb + 3 * ((size_t)y * w + x);
      px[0] = (uint8_t)col[0];
      px[1] = (uint8_t)col[1];
      px[2] = (uint8_t)col[2];
      int core = 1;
      if (band) {
        if (sh->kind == SH_RECT)
          core = u <= ia && u >= -ia && v <= ib && v >= -ib;
        else
          core = u * u * ibb + v * v * iaa <= iaabb;
      }
      mask[(size_t)y * w + x] = core ? label : ignore;
    }
  }
}

/* Background: base colour + linear shading + a weak texture (none, waves, checker).
 * Shading and texture phase advance by a constant per pixel along a row, so they are stepped
 * incrementally (in 1/65536 of a level and of a pixel) instead of dividing at every pixel. */
typedef struct {
  int base[3];
  int s;             /* scene scale, px */
  dir_t shade_dir;
  int shade_amp;     /* +-amp levels at distance s/2 from the centre */
  int tex;           /* 0 flat, 1 waves, 2 checker */
  int tex_amp;       /* +-amp levels */
  dir_t tex_dir;     /* wave normal */
  int32_t tex_period; /* 1/16 px */
} background_t;

static void paint_background(const background_t *bg, int h, int w, uint8_t *rgb, uint8_t *mask) {
  /* Shading in 1/65536 level: amp * (d . dir) / (s/2), d in px. */
  const int64_t den = (int64_t)bg->s * SUB / 2 * UNIT;
  const int64_t dshade = (int64_t)SUB * bg->shade_dir.c * bg->shade_amp * 65536 / den;
  /* Floor of a 1/65536 value without right-shifting a negative number. */
  const int64_t FLOOR_OFF = (int64_t)1 << 40;
  /* Waves: phase t in [0, P) of d . dir, in 1/16 px x UNIT; triangle height by a Q32 factor. */
  const int64_t P = (int64_t)bg->tex_period * UNIT;
  const int64_t dt = (int64_t)SUB * bg->tex_dir.c;
  const int64_t tri_k = ((int64_t)2 * bg->tex_amp << 32) / P;
  /* Checker: cells of tex_period; the phase along x steps by SUB in [0, 2 period). */
  const int32_t C = bg->tex_period;
  const int64_t xc = (int64_t)w * SUB / 2, yc = (int64_t)h * SUB / 2;
  const int64_t dx0 = SUB / 2 - xc;
  for (int y = 0; y < h; y++) {
    const int64_t dy = (int64_t)y * SUB + SUB / 2 - yc;
    int64_t shade = (dx0 * bg->shade_dir.c + dy * bg->shade_dir.s) * bg->shade_amp * 65536 / den;
    int64_t t = (dx0 * bg->tex_dir.c + dy * bg->tex_dir.s) % P;
    t += t < 0 ? P : 0;
    int32_t cx = wrap((int32_t)dx0, 2 * C);
    const int row_odd = wrap((int32_t)dy, 2 * C) < C;
    uint8_t *px = rgb + 3 * (size_t)y * w;
    for (int x = 0; x < w; x++) {
      int v = (int)((shade + FLOOR_OFF) >> 16) - (int)(FLOOR_OFF >> 16);
      if (bg->tex == 1) {
        const int64_t a = 2 * t - P;
        v += (int)(((a < 0 ? -a : a) * tri_k) >> 32) - bg->tex_amp;
      } else if (bg->tex == 2) {
        v += ((cx < C) ^ row_odd) ? bg->tex_amp : -bg->tex_amp;
      }
      px[3 * x] = (uint8_t)clamp255(bg->base[0] + v);
      px[3 * x + 1] = (uint8_t)clamp255(bg->base[1] + v);
      px[3 * x + 2] = (uint8_t)clamp255(bg->base[2] + v);
      shade += dshade;
      t += dt;
      t -= t >= P ? P : 0;
      t += t < 0 ? P : 0;
      cx += SUB;
      cx -= cx >= 2 * C ? 2 * C : 0;
    }
  }
  memset(mask, 0, (size_t)h * w);
}

/* Integer square root of h*w: sizes scale with it, so the foreground fraction does not depend
 * on the aspect ratio and circles stay round. */
static int scene_scale(int h, int w) {
  int64_t n = (int64_t)h * w, s = 1;
  while ((s + 1) * (s + 1) <= n) s++;
  return (int)s;
}

void cg_synth_sample(uint64_t seed, int64_t index, int h, int w, uint8_t *rgb, uint8_t *mask) {
  cg_synth_sample_k(seed, index, h, w, 1, -1, rgb, mask);
}

void cg_synth_sample_k(uint64_t seed, int64_t index, int h, int w, int nclass, int ignore,
                       uint8_t *rgb, uint8_t *mask) {
  CG_ASSERT(h >= 1 && w >= 1 && h <= 4096 && w <= 4096);
  CG_ASSERT(nclass >= 1 && nclass <= 255 && ignore <= 255);
  CG_ASSERT(rgb != NULL && mask != NULL);
  cg_rng_t r = cg_rng_make(seed, CG_RNG_SAMPLE, (uint64_t)index, 0);
  const int s = scene_scale(h, w);

  /* ---- background: base colour + linear shading + weak texture ---- */
  background_t bgp;
  for (int k = 0; k < 3; k++) bgp.base[k] = rand_range(&r, 30, 225);
  bgp.s = s;
  bgp.shade_dir = rand_dir(&r);
  bgp.shade_amp = rand_range(&r, 0, 40);
  bgp.tex = (int)cg_rng_below(&r, 3);
  bgp.tex_amp = rand_range(&r, 4, 14);
  bgp.tex_dir = rand_dir(&r);
  int32_t tper = (int32_t)((int64_t)s * SUB * rand_range(&r, 120, 350) / 1000);
  bgp.tex_period = tper < 4 * SUB ? 4 * SUB : tper;
  const int noise_amp = rand_range(&r, 4, 20); /* triangular noise in +-amp levels */
  const uint64_t noise_key = cg_rng_next(&r);
  const int nshapes = 1 + (int)cg_rng_below(&r, MAX_SHAPES);
  shape_t shapes[MAX_SHAPES];
  for (int i = 0; i < nshapes; i++) make_shape(&r, h, w, s, bgp.base, &shapes[i]);
  /* K classes: a shape's class comes from its kind and drawn texture; its texture then follows
   * the class (flat, stripes, checker, speckle by class), so a class has a local look a small
   * UNet learns in a few hundred steps, beside its outline. No extra draw. */
  uint8_t label[MAX_SHAPES];
  for (int i = 0; i < nshapes && nclass > 1; i++) {
    label[i] = (uint8_t)(1 + (shapes[i].kind + 3 * shapes[i].tex) % (nclass - 1));
    shapes[i].tex = (label[i] - 1) % 4;
  }

  paint_background(&bgp, h, w, rgb, mask);

  /* ---- shapes, later ones over earlier ones; the mask is their union (or their classes) ---- */
  for (int i = 0; i < nshapes; i++) {
    const shape_t *sh = &shapes[i];
    if (nclass == 1) {
      paint_shape(sh, h, w, rgb, mask, 1, 0, 0);
      continue;
    }
    /* the band is chosen by a bit of the shape's own key: no extra draw, the scene is the same */
    const int32_t band = ignore >= 0 && ((sh->key >> 17) & 1) ? SUB * 3 / 2 : 0;
    paint_shape(sh, h, w, rgb, mask, label[i], band, (uint8_t)(ignore >= 0 ? ignore : 0));
  }

  /* ---- pixel noise: two hash bytes per channel give a triangular distribution ---- */
  const size_t npx = (size_t)h * w;
  for (size_t i = 0; i < npx; i++) {
    uint64_t z = cg_mix64(noise_key + i * 0x9E3779B97F4A7C15ULL);
    for (int k = 0; k < 3; k++) {
      int t = (int)((z >> (16 * k)) & 255) + (int)((z >> (16 * k + 8)) & 255) - 255;
      rgb[3 * i + k] = (uint8_t)clamp255(rgb[3 * i + k] + t * noise_amp / 256);
    }
  }
}
