/* test_shards.c: encoded .cgds shards (issue 13: `pack --encoding raw|jpeg|png`, version 2;
 * version 3 adds the labels block).
 *
 * One directory of mixed inputs (PNG and JPEG images of several sizes, PNG masks) is packed at
 * 32 x 32 four ways: raw (version 2), raw written as version 1 (the old layout), png and jpeg.
 *  - version 1 still reads, and gives the very bytes of the version-2 raw shard;
 *  - the png shard decodes to exactly the raw shard's pixels and masks (lossless);
 *  - the jpeg shard's masks are exact; each re-encoded image is exactly what our encoder (q 90)
 *    + decoder make of the raw shard's pixels, and within mean |diff| <= 5 levels of them (4:2:0
 *    chroma costs most at the hard disc edges);
 *  - an input JPEG of exactly 32 x 32 is stored as its own bytes;
 *  - the jpeg shard is several times smaller than raw;
 *  - a corrupt JPEG record whose CRCs were recomputed fails at load naming the shard, record
 *    and name; a record CRC mismatch still does;
 *  - the pack options are checked (version 1 is raw only). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cgds.h"
#include "crc32.h"
#include "jpeg_io.h"
#include "le.h"
#include "png_io.h"
#include "source.h"
#include "testutil.h"

#define S 32

static char root[64];

static char *at(char *buf, size_t n, const char *rel) {
  snprintf(buf, n, "%s/%s", root, rel);
  return buf;
}

static int contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  uint8_t *p = malloc(*n ? *n : 1);
  if (fread(p, 1, *n, f) != *n) *n = 0;
  fclose(f);
  return p;
}

static void spit(const char *path, const uint8_t *p, size_t n) {
  FILE *f = fopen(path, "wb");
  fwrite(p, 1, n, f);
  fclose(f);
}

/* Smooth image with a disc: like a photo for the JPEG codec; its mask is the disc. */
static void make_pair(int h, int w, int seed, uint8_t *rgb, uint8_t *mask) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *q = rgb + ((size_t)y * w + x) * 3;
      const int dx = x - w / 2, dy = y - h / 3, in = dx * dx + dy * dy < (h * w) / 10;
      q[0] = (uint8_t)(x * 200 / w + seed * 10);
      q[1] = (uint8_t)(y * 200 / h);
      q[2] = (uint8_t)(in ? 220 : 40 + seed);
      mask[(size_t)y * w + x] = in ? 255 : 0;
    }
}

static void make_inputs(const char *dir) {
  char p[256], err[512];
  snprintf(p, sizeof p, "%s/images", dir);
  mkdir(dir, 0755);
  mkdir(p, 0755);
  snprintf(p, sizeof p, "%s/masks", dir);
  mkdir(p, 0755);
  static const struct {
    const char *name;
    int h, w, jpeg;
  } in[] = {{"p0", 40, 50, 0}, {"p1", 32, 32, 0}, {"p2", 64, 48, 0}, {"j3", 32, 32, 1},
            {"j4", 60, 80, 1}, {"p5", 33, 31, 0}};
  for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
    const size_t px = (size_t)in[i].h * in[i].w;
    uint8_t *rgb = malloc(px * 3), *mask = malloc(px);
    make_pair(in[i].h, in[i].w, (int)i, rgb, mask);
    snprintf(p, sizeof p, "%s/images/%s.%s", dir, in[i].name, in[i].jpeg ? "jpg" : "png");
    int rc = in[i].jpeg ? cg_jpeg_write(p, rgb, in[i].h, in[i].w, 85, err, sizeof err)
                        : cg_png_write(p, rgb, in[i].h, in[i].w, CG_PNG_RGB8, err, sizeof err);
    CG_TEST_CHECK(rc == 0, "%s", err);
    snprintf(p, sizeof p, "%s/masks/%s.png", dir, in[i].name);
    CG_TEST_CHECK(cg_png_write(p, mask, in[i].h, in[i].w, CG_PNG_GRAY8, err, sizeof err) == 0,
                  "%s", err);
    free(rgb);
    free(mask);
  }
}

typedef struct {
  int64_t n;
  uint8_t *rgb, *mask; /* n samples */
  uint64_t bytes;
} loaded_t;

static int pack_and_load(const char *dir, const char *out, cg_cgds_enc_t enc, int version,
                         loaded_t *l) {
  char im[256], mk[256], err[1024];
  snprintf(im, sizeof im, "%s/images", dir);
  snprintf(mk, sizeof mk, "%s/masks", dir);
  const cg_cgds_pack_opts_t o = {S, CG_PNG_DEFAULT_MAX_PIXELS, enc, 90, version, 1, -1, NULL, 0,
                                 CG_EXIF_STORED};
  cg_cgds_stats_t st;
  int rc = cg_cgds_pack_opts(im, mk, out, &o, NULL, &st, err, sizeof err);
  CG_TEST_CHECK(rc == CG_CGDS_OK, "pack %d v%d: %s", (int)enc, version, err);
  if (rc) return -1;
  cg_source_t *s = cg_source_open(out, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "open %s: %s", out, err);
  if (!s) return -1;
  l->n = s->count;
  l->bytes = st.bytes;
  l->rgb = malloc((size_t)s->count * S * S * 3);
  l->mask = malloc((size_t)s->count * S * S);
  for (int64_t i = 0; i < s->count; i++) {
    rc = cg_source_load(s, i, l->rgb + (size_t)i * S * S * 3, l->mask + (size_t)i * S * S, err,
                        sizeof err);
    CG_TEST_CHECK(rc == 0, "load %s record %lld: %s", out, (long long)i, err);
  }
  cg_source_destroy(s);
  return 0;
}

/* Recomputes the record CRCs, the index CRC and the header CRC of a version-2 shard. */
static void fix_crcs(uint8_t *b, size_t n) {
  const uint64_t count = cg_le_get_u64(b + 16), table = cg_le_get_u64(b + 40);
  for (uint64_t i = 0; i < count; i++) {
    uint8_t *e = b + table + i * CG_CGDS_ENTRY_BYTES;
    cg_le_put_u32(e + 16, cg_crc32(0, b + cg_le_get_u64(e), (size_t)cg_le_get_u64(e + 8)));
  }
  cg_le_put_u32(b + 56, cg_crc32(0, b + table, n - table));
  cg_le_put_u32(b + 60, cg_crc32(0, b, 60));
}

static void test_encodings(void) {
  char dir[128], p[4][128], err[1024];
  at(dir, sizeof dir, "in");
  make_inputs(dir);
  at(p[0], sizeof p[0], "raw.cgds");
  at(p[1], sizeof p[1], "raw_v1.cgds");
  at(p[2], sizeof p[2], "png.cgds");
  at(p[3], sizeof p[3], "jpeg.cgds");
  loaded_t raw = {0}, v1 = {0}, png = {0}, jpg = {0};
  if (pack_and_load(dir, p[0], CG_CGDS_RAW, 0, &raw) || pack_and_load(dir, p[1], CG_CGDS_RAW, 1, &v1) ||
      pack_and_load(dir, p[2], CG_CGDS_PNG, 0, &png) || pack_and_load(dir, p[3], CG_CGDS_JPEG, 0, &jpg))
    return;
  const size_t nrgb = (size_t)raw.n * S * S * 3, nmask = (size_t)raw.n * S * S;
  size_t n1 = 0;
  uint8_t *b1 = slurp(p[1], &n1);
  CG_TEST_CHECK(n1 > 8 && cg_le_get_u32(b1 + 4) == 1, "the old writer path writes version 1");
  free(b1);
  CG_TEST_CHECK(v1.n == raw.n && !memcmp(v1.rgb, raw.rgb, nrgb) && !memcmp(v1.mask, raw.mask, nmask),
                "version 1 reads as the version-2 raw shard");
  CG_TEST_CHECK(png.n == raw.n && !memcmp(png.rgb, raw.rgb, nrgb) && !memcmp(png.mask, raw.mask, nmask),
                "png shard differs from raw");
  double sum = 0;
  int worst = 0;
  for (size_t i = 0; i < nrgb; i++) {
    const int d = abs(jpg.rgb[i] - raw.rgb[i]);
    sum += d;
    worst = d > worst ? d : worst;
  }
  const double mad = sum / (double)nrgb;
  CG_TEST_CHECK(jpg.n == raw.n && !memcmp(jpg.mask, raw.mask, nmask), "jpeg shard masks differ");
  CG_TEST_CHECK(mad <= 5.0, "jpeg shard: mean |diff| %.3f, worst %d", mad, worst);
  for (int64_t i = 0; i < raw.n; i++) { /* record 0 is j3's own bytes: equal to raw */
    const uint8_t *ri = raw.rgb + (size_t)i * S * S * 3, *ji = jpg.rgb + (size_t)i * S * S * 3;
    uint8_t *want = NULL;
    int h, w;
    char tmp[128];
    at(tmp, sizeof tmp, "re.jpg");
    if (i == 0) {
      CG_TEST_CHECK(!memcmp(ri, ji, S * S * 3), "record 0 (the stored original) differs from raw");
      continue;
    }
    int rc = cg_jpeg_write(tmp, ri, S, S, 90, err, sizeof err) ||
             cg_jpeg_read_rgb(tmp, 0, &want, &h, &w, err, sizeof err);
    CG_TEST_CHECK(rc == 0 && !memcmp(want, ji, S * S * 3),
                  "record %lld: not the decode of its q90 encoding", (long long)i);
    free(want);
  }
  printf("PASS v1 = raw = png bitwise (%lld records); jpeg q90: mean |diff| %.3f, worst %d; "
         "bytes raw %llu v1 %llu png %llu jpeg %llu\n", (long long)raw.n, mad, worst,
         (unsigned long long)raw.bytes, (unsigned long long)v1.bytes, (unsigned long long)png.bytes,
         (unsigned long long)jpg.bytes);
  CG_TEST_CHECK(jpg.bytes * 3 < raw.bytes, "jpeg shard not much smaller: %llu vs %llu",
                (unsigned long long)jpg.bytes, (unsigned long long)raw.bytes);

  /* j3.jpg is 32x32: stored as its own bytes (record 0: names sort j3, j4, p0, ...) */
  size_t nj = 0, ns = 0;
  char jp[256];
  snprintf(jp, sizeof jp, "%s/images/j3.jpg", dir);
  uint8_t *orig = slurp(jp, &nj), *sh = slurp(p[3], &ns);
  const uint64_t table = cg_le_get_u64(sh + 40);
  const uint8_t *e0 = sh + table;
  CG_TEST_CHECK(cg_le_get_u32(e0 + 32) == nj && e0[36] == CG_CGDS_JPEG && e0[37] == CG_CGDS_PNG &&
                    !memcmp(sh + cg_le_get_u64(e0), orig, nj),
                "the 32x32 input JPEG is not stored as its own bytes");
  /* a corrupt JPEG part behind valid CRCs: a decode error naming shard, record and name */
  const uint8_t *e1 = sh + table + CG_CGDS_ENTRY_BYTES;
  uint8_t *rec1 = sh + cg_le_get_u64(e1);
  const uint32_t ib1 = cg_le_get_u32(e1 + 32);
  for (uint32_t k = ib1 / 2; k < ib1 - 2; k++) rec1[k] = (uint8_t)(k * 31);
  fix_crcs(sh, ns);
  char bad[128];
  at(bad, sizeof bad, "badjpeg.cgds");
  spit(bad, sh, ns);
  cg_source_t *s = cg_source_open(bad, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "open: %s", err);
  if (s) {
    uint8_t r[S * S * 3], m[S * S];
    int rc = cg_source_load(s, 1, r, m, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, "badjpeg.cgds: record 1 (j4): image") &&
                      contains(err, "JPEG decode failed"), "corrupt record: '%s'", err);
    printf("corrupt JPEG record: %s\n", err);
    CG_TEST_CHECK(cg_source_load(s, 0, r, m, err, sizeof err) == 0, "record 0: %s", err);
    cg_source_destroy(s);
  }
  /* and without fixing the CRC: the CRC check speaks first */
  rec1[ib1 / 2] ^= 0x55;
  spit(bad, sh, ns);
  s = cg_source_open(bad, S, 1, 0, err, sizeof err);
  if (s) {
    uint8_t r[S * S * 3], m[S * S];
    int rc = cg_source_load(s, 1, r, m, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, "CRC mismatch"), "crc: '%s'", err);
    cg_source_destroy(s);
  }
  /* an entry with an unknown encoding is refused at open */
  uint8_t *e1w = sh + table + CG_CGDS_ENTRY_BYTES;
  e1w[36] = 7;
  fix_crcs(sh, ns);
  spit(bad, sh, ns);
  s = cg_source_open(bad, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "record 1: bad entry"), "bad encoding: '%s'", s ? "opened" : err);
  cg_source_destroy(s);
  free(orig);
  free(sh);

  /* a PNG part whose header claims 30000 x 30000 (CRCs fixed): the limit is the record size,
   * so the message says the record is damaged, not to raise --max-image-pixels */
  size_t np = 0;
  uint8_t *ps = slurp(p[2], &np);
  const uint8_t *pe1 = ps + cg_le_get_u64(ps + 40) + CG_CGDS_ENTRY_BYTES;
  uint8_t *png1 = ps + cg_le_get_u64(pe1);
  for (int k = 16; k < 24; k += 4) png1[k] = 0, png1[k + 1] = 0, png1[k + 2] = 0x75,
                                   png1[k + 3] = 0x30; /* 30000, big-endian */
  fix_crcs(ps, np);
  at(bad, sizeof bad, "bigpng.cgds");
  spit(bad, ps, np);
  s = cg_source_open(bad, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "open: %s", err);
  if (s) {
    uint8_t r[S * S * 3], m[S * S];
    int rc = cg_source_load(s, 1, r, m, err, sizeof err);
    CG_TEST_CHECK(rc && contains(err, "records are") && contains(err, "this one is damaged") &&
                      !contains(err, "--max-image-pixels"), "oversized part: '%s'", err);
    cg_source_destroy(s);
  }
  free(ps);

  /* options */
  char im[256], mk[256];
  snprintf(im, sizeof im, "%s/images", dir);
  snprintf(mk, sizeof mk, "%s/masks", dir);
  const cg_cgds_pack_opts_t o = {S, 0, CG_CGDS_JPEG, 90, 1, 1, -1, NULL, 0, CG_EXIF_STORED};
  CG_TEST_CHECK(cg_cgds_pack_opts(im, mk, p[0], &o, NULL, NULL, err, sizeof err) == CG_CGDS_EINPUT,
                "version 1 with jpeg accepted");
  free(raw.rgb), free(raw.mask), free(v1.rgb), free(v1.mask), free(png.rgb), free(png.mask);
  free(jpg.rgb), free(jpg.mask);
}

/* Version 3 says what its masks hold; version 2 still reads and does not say. */
static void test_labels(void) {
  char dir[128], v3[128], v2[128], bad[128], im[256], mk[256], err[1024];
  at(dir, sizeof dir, "in");
  at(v3, sizeof v3, "labels_v3.cgds");
  at(v2, sizeof v2, "labels_v2.cgds");
  at(bad, sizeof bad, "labels_bad.cgds");
  snprintf(im, sizeof im, "%s/images", dir);
  snprintf(mk, sizeof mk, "%s/masks", dir);
  loaded_t a = {0}, b = {0};
  if (pack_and_load(dir, v3, CG_CGDS_RAW, 0, &a) || pack_and_load(dir, v2, CG_CGDS_RAW, 2, &b))
    return;
  CG_TEST_CHECK(a.n == b.n && !memcmp(a.rgb, b.rgb, (size_t)a.n * S * S * 3) &&
                    !memcmp(a.mask, b.mask, (size_t)a.n * S * S) &&
                    a.bytes == b.bytes + CG_CGDS_LABELS_BYTES,
                "version 2 does not read as version 3 (%llu vs %llu bytes)",
                (unsigned long long)b.bytes, (unsigned long long)a.bytes);
  int k = 0, ig = 0;
  cg_source_t *s = cg_source_open(v3, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s && cg_cgds_labels(s, &k, &ig) == 1 && k == 1 && ig == -1 && s->npal == 0,
                "v3 binary shard: labels %d / %d", k, ig);
  cg_source_destroy(s);
  s = cg_source_open(v2, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(s && cg_cgds_labels(s, &k, &ig) == 0, "a version-2 shard claims labels");
  cg_source_destroy(s);
  /* read as 4 classes: the binary v3 shard is refused at open, the v2 one opens (its records
   * are checked one by one) */
  const cg_source_opts_t k4 = {.size = S, .max_pixels = CG_PNG_DEFAULT_MAX_PIXELS, .nclass = 4,
                               .ignore = 255};
  s = cg_source_open_opts(v3, &k4, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "packed with --num-classes 1 --ignore-index -1, read with "
                               "--num-classes 4 --ignore-index 255"), "v3 as K = 4: '%s'",
                s ? "opened" : err);
  cg_source_destroy(s);
  s = cg_source_open_opts(v2, &k4, err, sizeof err);
  CG_TEST_CHECK(s != NULL, "v2 as K = 4: %s", err);
  cg_source_destroy(s);
  /* K = 3 with ignore 200, packed from 0/255 masks: the pack refuses value 255 */
  const cg_cgds_pack_opts_t o3 = {S, CG_PNG_DEFAULT_MAX_PIXELS, CG_CGDS_RAW, 0, 0, 3, 200, NULL,
                                   0, CG_EXIF_STORED};
  CG_TEST_CHECK(cg_cgds_pack_opts(im, mk, bad, &o3, NULL, NULL, err, sizeof err) ==
                    CG_CGDS_EINPUT && contains(err, "mask value 255"), "K = 3 pack: '%s'", err);
  /* a corrupt labels block behind valid CRCs is refused at open */
  size_t n = 0;
  uint8_t *sh = slurp(v3, &n);
  uint8_t *lb = sh + n - CG_CGDS_LABELS_BYTES;
  CG_TEST_CHECK(!memcmp(lb, CG_CGDS_LABELS_MAGIC, 4), "no labels block at the end");
  cg_le_put_u32(lb + 4, 0); /* 0 classes */
  fix_crcs(sh, n);
  spit(bad, sh, n);
  s = cg_source_open(bad, S, 1, 0, err, sizeof err);
  CG_TEST_CHECK(!s && contains(err, "corrupt labels block"), "0 classes: '%s'", s ? "opened" : err);
  cg_source_destroy(s);
  free(sh);
  printf("PASS version 3 records its labels (binary: 1 / -1) and refuses K = 4; version 2 reads "
         "as version 3 without them\n");
  free(a.rgb), free(a.mask), free(b.rgb), free(b.mask);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(p);
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/cg_shards_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  test_encodings();
  test_labels();
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_shards");
}
