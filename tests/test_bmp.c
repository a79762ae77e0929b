/* test_bmp.c: BMP decoding (bmp_io.c) where Pillow cannot be the judge, and hostile files.
 * test_pillow.c compares every layout Pillow reads right (its writer's files, RLE8, RLE4, a
 * top-down file, a short palette, OS/2 headers, 16- and 32-bit fields) with Pillow byte for byte.
 *
 *  - RLE, written here byte by byte with the values worked out by hand: an RLE4 literal run of
 *    an odd count (3 bytes for 5 pixels, padded to a word; Pillow 9.4 reads only 2), a delta
 *    (skipped pixels are index 0), a run past the row's end (cut there; Pillow spills it into
 *    the next row), an end of bitmap before the last rows (index 0 below it), deltas far past
 *    the row's end (held there), a last row filled with no end marker after it;
 *  - a pixel data offset of 0 (after the palette, as Pillow reads it);
 *  - image_io.c picks BMP by content (a BMP named .png), and lists .bmp files;
 *  - refusals naming the file, before any pixel is read where the header says enough: a side
 *    over 32768, a header over --max-image-pixels (no allocation: the RSS is not measured here,
 *    nothing is allocated before the check), 0 width, 2 bits a pixel, a JPEG stream inside,
 *    RLE8 at 4 bits, a 32-bit field mask across bytes, class ids from a 24-bit file, pixel data
 *    inside the headers, an unknown header size (image_io.c: not one of the formats), a file cut
 *    in its header, palette, rows and RLE data ("truncated"), an empty file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bmp_io.h"
#include "image_io.h"
#include "testutil.h"

static char dir[64], path[128];

/* Appends n little-endian bytes of v. */
static size_t put(uint8_t *b, size_t at, uint32_t v, int n) {
  for (int i = 0; i < n; i++) b[at + (size_t)i] = (uint8_t)(v >> (8 * i));
  return at + (size_t)n;
}

/* A Windows 3 BMP: 40-byte header, ncolors palette entries (gray ramp 0, 10, 20, ...), data. */
static size_t make(uint8_t *b, int32_t w, int32_t h, int bits, uint32_t comp, int ncolors,
                   const uint8_t *data, size_t n) {
  const uint32_t off = 14 + 40 + 4 * (uint32_t)ncolors;
  size_t at = 0;
  b[at++] = 'B';
  b[at++] = 'M';
  at = put(b, at, off + (uint32_t)n, 4);
  at = put(b, at, 0, 4);
  at = put(b, at, off, 4);
  at = put(b, at, 40, 4);
  at = put(b, at, (uint32_t)w, 4);
  at = put(b, at, (uint32_t)h, 4);
  at = put(b, at, 1, 2);
  at = put(b, at, (uint32_t)bits, 2);
  at = put(b, at, comp, 4);
  at = put(b, at, (uint32_t)n, 4);
  at = put(b, at, 2835, 4);
  at = put(b, at, 2835, 4);
  at = put(b, at, (uint32_t)ncolors, 4);
  at = put(b, at, 0, 4);
  for (int i = 0; i < ncolors; i++) at = put(b, at, (uint32_t)(10 * i) * 0x010101u, 4);
  memcpy(b + at, data, n);
  return at + n;
}

static void save(const char *name, const uint8_t *b, size_t n) {
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  CG_TEST_CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "write %s", path);
}

typedef struct {
  uint8_t px[64];
  int h, w, next;
} grab_t;

static int grab_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  grab_t *g = ctx;
  if (h * w > 64) return snprintf(why, whylen, "too large"), -1;
  g->h = h;
  g->w = w;
  return 0;
}

static int grab_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  grab_t *g = ctx;
  if (y != g->next++) return snprintf(why, whylen, "row %d out of order", y), -1;
  memcpy(g->px + (size_t)y * (size_t)g->w, px, (size_t)g->w);
  return 0;
}

/* The file at path read as labels equals want (h rows of w). */
static void expect_labels(const char *what, int h, int w, const uint8_t *want) {
  grab_t g = {{0}, 0, 0, 0};
  const cg_png_sink_t s = {grab_begin, grab_row, &g};
  char err[512] = "";
  const int rc = cg_image_read_mask_rows(path, 0, CG_PNG_AS_LABEL, &s, err, sizeof err);
  CG_TEST_CHECK(rc == 0 && g.h == h && g.w == w && g.next == h, "%s: rc %d %dx%d: %s", what, rc,
                g.w, g.h, err);
  if (rc || g.h != h || g.w != w) return;
  for (int i = 0; i < h * w; i++)
    if (g.px[i] != want[i]) {
      CG_TEST_CHECK(0, "%s: pixel (%d, %d) is %d, want %d", what, i % w, i / w, g.px[i],
                    want[i]);
      return;
    }
  printf("PASS %s\n", what);
}

/* The file at path is refused, as labels (as_label) or as an image, with want in the message. */
static void expect_fail(const char *what, int as_label, const char *want) {
  char err[512] = "";
  grab_t g = {{0}, 0, 0, 0};
  const cg_png_sink_t s = {grab_begin, grab_row, &g};
  int h, w;
  const int rc = as_label ? cg_image_read_mask_rows(path, 1 << 20, CG_PNG_AS_LABEL, &s, err,
                                                    sizeof err)
                          : cg_image_read_size(path, 1 << 20, CG_EXIF_STORED, &h, &w, NULL, err,
                                               sizeof err) ||
                                cg_image_read_rows(path, 1 << 20, 0, CG_EXIF_STORED, &s, NULL,
                                                   NULL, NULL, err, sizeof err);
  CG_TEST_CHECK(rc != 0 && strstr(err, path) && strstr(err, want), "%s: rc %d, '%s', want '%s'",
                what, rc, err, want);
  if (rc && strstr(err, want)) printf("PASS %s: %s\n", what, err);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/cg_bmp_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  uint8_t b[4096];
  size_t n;

  /* RLE4, 5x2 (stored bottom row first): the bottom row a literal run of 5 (1 2 3 4 5: 3 bytes
   * and a pad byte), the top row a run of 7 alternating 6, 7 cut at the row's end */
  const uint8_t rle4[] = {0, 5, 0x12, 0x34, 0x50, 0, 0, 0, 7, 0x67, 0, 0, 0, 1};
  n = make(b, 5, 2, 4, 2, 8, rle4, sizeof rle4);
  save("odd.png", b, n); /* named .png: read by content */
  const uint8_t want4[] = {6, 7, 6, 7, 6, 1, 2, 3, 4, 5};
  expect_labels("RLE4: an odd literal run padded to a word, a run cut at the row's end", 2, 5,
                want4);

  /* RLE8, 4x3: row 0 (bottom) 2 x 9 then a delta of 1 right, 1 up onto row 1 at x 3: one 8; end
   * of line; then end of bitmap before row 2 */
  const uint8_t rle8[] = {2, 9, 0, 2, 1, 1, 1, 8, 0, 0, 0, 1};
  n = make(b, 4, 3, 8, 1, 10, rle8, sizeof rle8);
  save("delta.bmp", b, n);
  const uint8_t want8[] = {0, 0, 0, 0, /* top: after the end of bitmap */
                           0, 0, 0, 8, /* the delta's landing */
                           9, 9, 0, 0};
  expect_labels("RLE8: a delta and an early end of bitmap leave index 0", 3, 4, want8);

  /* RLE8, 4x2: deltas far past the row's end land nowhere (x is held at the end: summed over
   * millions of deltas it wrapped to a negative index, a write before the buffer), then an end
   * of line; the last row filled by runs and no end marker after it (Pillow stops at w x h) */
  uint8_t far[4 * 40 + 16];
  size_t k = 0;
  for (int i = 0; i < 40; i++) {
    far[k++] = 0;
    far[k++] = 2;
    far[k++] = 255;
    far[k++] = 0;
  }
  const uint8_t tail[] = {2, 7, 0, 0, 3, 5, 1, 6};
  memcpy(far + k, tail, sizeof tail);
  k += sizeof tail;
  n = make(b, 4, 2, 8, 1, 8, far, k);
  save("far.bmp", b, n);
  const uint8_t wantf[] = {5, 5, 5, 6, /* the top row: filled, then the file ends */
                           0, 0, 0, 0};
  expect_labels("RLE8: deltas past the row's end land nowhere; no end marker after the last row",
                2, 4, wantf);

  /* uncompressed 8-bit, top-down 3x2 */
  const uint8_t raw[] = {1, 2, 3, 0, 4, 5, 6, 0};
  n = make(b, 3, -2, 8, 0, 7, raw, sizeof raw);
  save("topdown.bmp", b, n);
  const uint8_t wantr[] = {1, 2, 3, 4, 5, 6};
  expect_labels("8-bit top-down rows, padded to 4 bytes", 2, 3, wantr);
  put(b, 10, 0, 4); /* a pixel data offset of 0: right after the palette, as Pillow reads it */
  save("offset0.bmp", b, n);
  expect_labels("a pixel data offset of 0", 2, 3, wantr);
  char **files = NULL;
  int nfiles = 0;
  char err[512];
  CG_TEST_CHECK(cg_image_list_dir("--images", dir, NULL, &files, &nfiles, err, sizeof err) == 0 &&
                    nfiles == 5, "listed %d files: %s", nfiles, err);
  for (int i = 0; i < nfiles; i++) free(files[i]);
  free(files);

  /* refusals */
  n = make(b, 40000, 2, 8, 0, 2, raw, sizeof raw);
  save("wide.bmp", b, n);
  expect_fail("a side over 32768", 0, "40000x2 pixels, over the limit of 32768 pixels a side");
  n = make(b, 20000, 20000, 24, 0, 0, raw, sizeof raw);
  save("bomb.bmp", b, n);
  expect_fail("a header over --max-image-pixels", 0, "--max-image-pixels");
  n = make(b, 0, 2, 8, 0, 2, raw, sizeof raw);
  save("zero.bmp", b, n);
  expect_fail("0 width", 0, "the image is 0x2 pixels");
  n = make(b, 3, 2, 2, 0, 4, raw, sizeof raw);
  save("bits2.bmp", b, n);
  expect_fail("2 bits a pixel", 0, "2 bits a pixel");
  n = make(b, 3, 2, 24, 4, 0, raw, sizeof raw);
  save("jpeg.bmp", b, n);
  expect_fail("a JPEG inside", 0, "a JPEG stream inside the BMP");
  n = make(b, 3, 2, 4, 1, 4, raw, sizeof raw);
  save("rle8at4.bmp", b, n);
  expect_fail("RLE8 at 4 bits", 0, "compression 1 at 4 bits a pixel");
  n = make(b, 1, 1, 24, 0, 0, raw, 4);
  save("rgb.bmp", b, n);
  expect_fail("class ids from 24 bits", 1, "an RGB mask: class ids");
  n = make(b, 3, 2, 8, 0, 7, raw, sizeof raw);
  put(b, 10, 20, 4); /* the pixel data "at" offset 20, inside the info header */
  save("inside.bmp", b, n);
  expect_fail("pixel data inside the headers", 0, "pixel data at offset 20");
  n = make(b, 3, 2, 8, 0, 7, raw, sizeof raw);
  put(b, 14, 99, 4); /* an info header of 99 bytes */
  save("hdr99.bmp", b, n);
  expect_fail("an unknown header size", 0, "not a PNG, JPEG, GIF, TIFF or BMP file");
  n = make(b, 3, 2, 8, 0, 7, raw, sizeof raw);
  save("cut_rows.bmp", b, n - 2);
  expect_fail("cut in its rows", 0, "truncated) at row 1 of 2");
  save("cut_palette.bmp", b, 14 + 40 + 10);
  expect_fail("cut in its palette", 0, "truncated) in the palette");
  save("cut_header.bmp", b, 30);
  expect_fail("cut in its info header", 0, "truncated) in the info header");
  n = make(b, 5, 2, 4, 2, 8, rle4, sizeof rle4);
  save("cut_rle.bmp", b, n - 6); /* its last row not there at all */
  expect_fail("RLE cut", 0, "truncated) at stored row 2 of 2");
  save("empty.bmp", b, 0);
  expect_fail("an empty file", 0, "empty: 0 bytes");

  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (!cg_test_failures && system(cmd) != 0) return 1;
  return cg_test_done("test_bmp");
}
