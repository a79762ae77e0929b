/* rng.h: counter-based random numbers.
 *
 * Every random decision is a pure function of (seed, purpose, a, b): the shuffle of an epoch,
 * a sample's shapes, its flips, a layer's initial weights. Nothing depends on which thread or
 * rank draws it, so results do not change with the number of helper threads, and N ranks x
 * batch B match 1 rank x batch N*B. The generator is splitmix64 over a keyed counter. */
#ifndef CG_RNG_H
#define CG_RNG_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

enum {
  CG_RNG_INIT = 1,    /* a = layer */
  CG_RNG_SHUFFLE = 2, /* a = epoch */
  CG_RNG_SAMPLE = 3,  /* a = sample index: the synthetic image itself */
  CG_RNG_AUG = 4,     /* a = epoch, b = sample index: flips, crops */
  CG_RNG_JITTER = 5,  /* a = epoch, b = sample index: --color-jitter */
  CG_RNG_ROTATE = 6,  /* a = epoch, b = sample index: --rotate */
  CG_RNG_CROP = 7,    /* a = epoch, b = sample index: --crop-cat-max's new places */
  CG_RNG_TEST = 99
};

typedef struct {
  uint64_t s;
} cg_rng_t;

static inline uint64_t cg_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* FNV-1a over n bytes, chained from h (start from CG_FNV1A_INIT): a hash of names and
 * settings, not a generator. */
#define CG_FNV1A_INIT 0xcbf29ce484222325ULL
static inline uint64_t cg_fnv1a(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = (const unsigned char *)p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

static inline cg_rng_t cg_rng_make(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
  cg_rng_t r;
  uint64_t k = cg_mix64(seed + 0x9E3779B97F4A7C15ULL);
  k = cg_mix64(k ^ (purpose * 0xD1B54A32D192ED03ULL));
  k = cg_mix64(k ^ (a + 0x632BE59BD9B4E019ULL));
  k = cg_mix64(k ^ (b * 0x8CB92BA72F3D8DD7ULL + 1));
  r.s = k;
  return r;
}

static inline uint64_t cg_rng_next(cg_rng_t *r) {
  r->s += 0x9E3779B97F4A7C15ULL;
  return cg_mix64(r->s);
}

/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
static inline float cg_rng_uniform(cg_rng_t *r) {
  return (float)(cg_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for our n). */
static inline uint32_t cg_rng_below(cg_rng_t *r, uint32_t n) {
  return (uint32_t)(((cg_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* Standard normal (Box-Muller, one value per call; computed in double for determinism). */
static inline double cg_rng_normal(cg_rng_t *r) {
  double u1 = ((double)(cg_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
  double u2 = (double)(cg_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
