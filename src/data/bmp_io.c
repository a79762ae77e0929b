/* bmp_io.c: Windows BMP files by our own decoder (see bmp_io.h).
 *
 * parse() reads the file header, the info header, the bit fields and the palette, and checks
 * every size before anything is allocated. Uncompressed rows are read where they lie (a seek
 * per row: bottom-up files store the last row first), so memory is a row; RLE is decoded whole
 * into an index buffer (its runs may skip about the image), then handed out row by row. */
#include "bmp_io.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_CORE 12 /* OS/2 1.x: 16-bit sides, BGR palette entries */

/* The info header sizes read (bmp_io.h). */
static int known_header(uint32_t n) {
  return n == HDR_CORE || n == 40 || n == 52 || n == 56 || n == 64 || n == 108 || n == 124;
}

int cg_bmp_sniff(const uint8_t *p, size_t n) {
  if (n < 2 || p[0] != 'B' || p[1] != 'M') return 0;
  if (n < 18) return 1;
  return known_header((uint32_t)p[14] | (uint32_t)p[15] << 8 | (uint32_t)p[16] << 16 |
                      (uint32_t)p[17] << 24);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t le16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

enum { C_RGB = 0, C_RLE8 = 1, C_RLE4 = 2, C_FIELDS = 3, C_JPEG = 4, C_PNG = 5 };

typedef struct {
  int w, h, topdown, bits;
  uint32_t comp;
  int shift[3];      /* 32 bits: the byte offsets (x 8) of R, G, B in a pixel */
  int r565;          /* 16 bits: 5-6-5 fields, else 5-5-5 */
  uint8_t pal[256][3]; /* RGB; entries past the palette's end are the gray ramp */
  long offset;       /* of the pixel data */
  size_t stride;     /* bytes a stored row, padded to 4 */
} bmp_t;

/* What a read that came short says. */
static const char *short_read(FILE *f) {
  return ferror(f) ? strerror(errno ? errno : EIO) : "unexpected end of file (truncated)";
}

#define FAIL(...)                                                                              \
  do {                                                                                         \
    char why_[256];                                                                            \
    snprintf(why_, sizeof why_, __VA_ARGS__);                                                  \
    snprintf(err, errlen, "%s: BMP decode failed: %s", path, why_);                            \
    return -1;                                                                                 \
  } while (0)

/* A bit-field mask of 32 bits a pixel: its byte's shift, or -1 for a mask that is not one whole
 * byte. */
static int byte_shift(uint32_t m) {
  for (int s = 0; s < 32; s += 8)
    if (m == 0xffu << s) return s;
  return -1;
}

/* The bit fields of a 16-, 24- or 32-bit file into b (m: R, G, B masks). */
static int take_fields(bmp_t *b, const uint32_t m[3], const char *path, char *err,
                       size_t errlen) {
  if (b->bits == 16) {
    if (m[0] == 0xf800 && m[1] == 0x7e0 && m[2] == 0x1f) b->r565 = 1;
    else if (!(m[0] == 0x7c00 && m[1] == 0x3e0 && m[2] == 0x1f))
      FAIL("16-bit fields R %#x G %#x B %#x: only 5-6-5 and 5-5-5 are read", m[0], m[1], m[2]);
    return 0;
  }
  if (b->bits == 24) {
    if (!(m[0] == 0xff0000 && m[1] == 0xff00 && m[2] == 0xff))
      FAIL("24-bit fields R %#x G %#x B %#x: only BGR is read", m[0], m[1], m[2]);
    return 0;
  }
  if (b->bits != 32) FAIL("bit fields at %d bits a pixel", b->bits);
  if (!m[0] && !m[1] && !m[2]) return 0; /* none given: BGRX, as Pillow reads it */
  for (int c = 0; c < 3; c++)
    if ((b->shift[c] = byte_shift(m[c])) < 0)
      FAIL("32-bit fields R %#x G %#x B %#x: each must be one whole byte", m[0], m[1], m[2]);
  return 0;
}

/* The headers and the palette of the open file f into b, every size checked. */
static int parse(FILE *f, const char *path, int64_t max_pixels, cg_png_as_t as, bmp_t *b,
                 char *err, size_t errlen) {
  memset(b, 0, sizeof *b);
  b->shift[0] = 16, b->shift[1] = 8, b->shift[2] = 0; /* BGRX */
  for (int i = 0; i < 256; i++) b->pal[i][0] = b->pal[i][1] = b->pal[i][2] = (uint8_t)i;
  uint8_t hd[14 + 124 + 12];
  size_t got = fread(hd, 1, 18, f);
  if (got < 2 || hd[0] != 'B' || hd[1] != 'M') {
    if (got == 0 && !ferror(f)) {
      snprintf(err, errlen, "%s: not a BMP file (empty: 0 bytes)", path);
      return -1;
    }
    FAIL("%s", got < 2 ? short_read(f) : "no 'BM' signature");
  }
  if (got < 18) FAIL("%s in the file header", short_read(f));
  const uint32_t hs = le32(hd + 14);
  if (!known_header(hs)) FAIL("an info header of %u bytes, not one of BMP's", hs);
  if (fread(hd + 18, 1, hs - 4, f) != hs - 4) FAIL("%s in the info header", short_read(f));
  const uint8_t *ih = hd + 14;
  int64_t w, h;
  if (hs == HDR_CORE) {
    w = le16(ih + 4);
    h = le16(ih + 6);
    b->bits = (int)le16(ih + 10);
    b->comp = C_RGB;
  } else {
    w = (int32_t)le32(ih + 4);
    h = (int32_t)le32(ih + 8);
    b->bits = (int)le16(ih + 14);
    b->comp = le32(ih + 16);
  }
  if (h < 0) {
    h = -h;
    b->topdown = 1;
  }
  if (w <= 0 || h <= 0) FAIL("the image is %lldx%lld pixels", (long long)w, (long long)h);
  if (w > CG_PNG_MAX_SIDE || h > CG_PNG_MAX_SIDE)
    FAIL("the image is %lldx%lld pixels, over the limit of %d pixels a side", (long long)w,
         (long long)h, CG_PNG_MAX_SIDE);
  char why[256];
  if (cg_image_over_limit((uint64_t)w, (uint64_t)h, max_pixels, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", path, why);
    return -1;
  }
  b->w = (int)w;
  b->h = (int)h;
  const int bits = b->bits;
  if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
    FAIL("%d bits a pixel (1, 4, 8, 16, 24 or 32 are read)", bits);
  if (b->comp == C_JPEG || b->comp == C_PNG)
    FAIL("a %s stream inside the BMP (compression %u): save it as a plain %s or BMP",
         b->comp == C_JPEG ? "JPEG" : "PNG", b->comp, b->comp == C_JPEG ? "JPEG" : "PNG");
  if (hs == 64 && b->comp > C_RLE4) FAIL("OS/2 compression %u", b->comp);
  if ((b->comp == C_RLE8 && bits != 8) || (b->comp == C_RLE4 && bits != 4) ||
      (b->comp == C_FIELDS && bits <= 8) || b->comp > C_FIELDS)
    FAIL("compression %u at %d bits a pixel", b->comp, bits);
  if (as == CG_PNG_AS_LABEL && bits > 8) { /* the file is fine: it cannot hold ids */
    snprintf(err, errlen, "%s: an RGB mask: class ids (--num-classes >= 2, --ignore-index) need "
             "a palette BMP (8 bits a pixel or fewer) or a gray or palette PNG", path);
    return -1;
  }
  size_t pos = 14 + hs;
  if (b->comp == C_FIELDS) {
    uint32_t m[3];
    if (hs == 40) { /* the masks follow the header (OS/2's 64 has no bit fields: refused) */
      if (fread(hd + 14 + hs, 1, 12, f) != 12) FAIL("%s in the bit fields", short_read(f));
      for (int c = 0; c < 3; c++) m[c] = le32(hd + 14 + hs + 4 * c);
      pos += 12;
    } else {
      for (int c = 0; c < 3; c++) m[c] = le32(ih + 40 + 4 * c);
    }
    if (take_fields(b, m, path, err, errlen)) return -1;
  }
  const uint32_t used = hs == HDR_CORE ? 0 : le32(ih + 32);
  const uint64_t colors = used ? used : 1ull << (bits <= 8 ? bits : 0);
  if (bits <= 8) {
    if (colors > 65536) FAIL("a palette of %llu colours", (unsigned long long)colors);
    const int esz = hs == HDR_CORE ? 3 : 4;
    int n = colors < (1u << bits) ? (int)colors : 1 << bits; /* the rest: never indexed */
    /* a pixel offset inside the palette cuts it there (OS/2 1.x has no count of its colours:
     * its 2^bits entries may be fewer in the file); the rest is the gray ramp */
    const uint64_t at = le32(hd + 10);
    if (at > pos && at < pos + (uint64_t)esz * n) n = (int)((at - pos) / esz);
    uint8_t e[4];
    for (int i = 0; i < n; i++) {
      if (fread(e, 1, (size_t)esz, f) != (size_t)esz) FAIL("%s in the palette", short_read(f));
      b->pal[i][0] = e[2];
      b->pal[i][1] = e[1];
      b->pal[i][2] = e[0];
    }
  }
  uint64_t off = le32(hd + 10);
  if (off == pos && bits <= 8) off += 4 * colors; /* a writer that left the palette out */
  if (off == 0) /* a writer that left it 0: right after the palette, as Pillow reads it */
    off = pos + (bits <= 8 ? (uint64_t)(hs == HDR_CORE ? 3 : 4) * colors : 0);
  if (off < 14 + (uint64_t)hs || off > (uint64_t)LONG_MAX / 2)
    FAIL("pixel data at offset %llu, inside the headers", (unsigned long long)off);
  b->offset = (long)off;
  b->stride = ((size_t)b->w * (size_t)bits + 31) / 32 * 4;
  return 0;
}

/* Row y of idx (w indices, or the RGB row at rgb when idx is NULL) as `as` asks, into out. */
static void convert(const bmp_t *b, const uint8_t *idx, const uint8_t *rgb, cg_png_as_t as,
                    uint8_t *out) {
  for (int x = 0; x < b->w; x++) {
    if (idx && as == CG_PNG_AS_RGB) memcpy(out + 3 * x, b->pal[idx[x]], 3);
    else if (idx) out[x] = as == CG_PNG_AS_MASK ? idx[x] > 0 : idx[x];
    else if (as == CG_PNG_AS_RGB) memcpy(out + 3 * x, rgb + 3 * x, 3);
    else out[x] = rgb[3 * x] || rgb[3 * x + 1] || rgb[3 * x + 2];
  }
}

/* A stored row (b->stride bytes at s) into w indices (bits <= 8) or w RGB pixels. */
static void unpack(const bmp_t *b, const uint8_t *s, uint8_t *idx, uint8_t *rgb) {
  const int w = b->w;
  switch (b->bits) {
  case 1:
    for (int x = 0; x < w; x++) idx[x] = s[x >> 3] >> (7 - (x & 7)) & 1;
    break;
  case 4:
    for (int x = 0; x < w; x++) idx[x] = x & 1 ? s[x >> 1] & 15 : s[x >> 1] >> 4;
    break;
  case 8: memcpy(idx, s, (size_t)w); break;
  case 16: /* Pillow's BGR;15 and BGR;16 unpackers: v * 255 / max, truncated */
    for (int x = 0; x < w; x++) {
      const uint32_t v = le16(s + 2 * x);
      if (b->r565) {
        rgb[3 * x] = (uint8_t)((v >> 11 & 31) * 255 / 31);
        rgb[3 * x + 1] = (uint8_t)((v >> 5 & 63) * 255 / 63);
      } else {
        rgb[3 * x] = (uint8_t)((v >> 10 & 31) * 255 / 31);
        rgb[3 * x + 1] = (uint8_t)((v >> 5 & 31) * 255 / 31);
      }
      rgb[3 * x + 2] = (uint8_t)((v & 31) * 255 / 31);
    }
    break;
  case 24:
    for (int x = 0; x < w; x++) {
      rgb[3 * x] = s[3 * x + 2];
      rgb[3 * x + 1] = s[3 * x + 1];
      rgb[3 * x + 2] = s[3 * x];
    }
    break;
  default: /* 32 */
    for (int x = 0; x < w; x++) {
      const uint32_t v = le32(s + 4 * x);
      for (int c = 0; c < 3; c++) rgb[3 * x + c] = (uint8_t)(v >> b->shift[c]);
    }
  }
}

/* RLE8 / RLE4 pixel data of f into idx (w * h indices, zeroed; stored rows: bottom-up unless
 * b->topdown), as the format's runs, skips and ends say. */
static int rle_decode(FILE *f, const bmp_t *b, uint8_t *idx, char *why, size_t whylen) {
  const int rle4 = b->comp == C_RLE4, w = b->w, h = b->h;
  int x = 0, y = 0; /* y: the stored row */
  uint8_t buf[256];
  while (y < h) {
    const int n = getc(f), c = getc(f);
    if ((n == EOF || c == EOF) && y == h - 1 && x >= w && !ferror(f))
      break; /* the last row filled, no end marker after it: Pillow stops at w x h pixels too */
    if (n == EOF || c == EOF) {
      snprintf(why, whylen, "%s at stored row %d of %d", short_read(f), y + 1, h);
      return -1;
    }
    uint8_t *row = idx + (size_t)(b->topdown ? y : h - 1 - y) * (size_t)w;
    if (n > 0) { /* a run of n pixels: c, or c's two nibbles in turn */
      for (int i = 0; i < n && x < w; i++, x++)
        row[x] = (uint8_t)(!rle4 ? c : i & 1 ? c & 15 : c >> 4);
      continue;
    }
    if (c == 0) { /* end of line */
      x = 0;
      y++;
    } else if (c == 1) { /* end of bitmap */
      break;
    } else if (c == 2) { /* delta: right dx, up (on to later stored rows) dy */
      const int dx = getc(f), dy = getc(f);
      if (dx == EOF || dy == EOF) {
        snprintf(why, whylen, "%s in a delta", short_read(f));
        return -1;
      }
      x = dx > w - x ? w : x + dx; /* past the row's end: nothing more lands in it (an int
                                      summed over millions of deltas would wrap) */
      y += dy;                     /* the loop ends at h */
    } else { /* absolute: c pixels as stored, padded to a 16-bit word */
      const size_t bytes = rle4 ? ((size_t)c + 1) / 2 : (size_t)c;
      if (fread(buf, 1, bytes + (bytes & 1), f) != bytes + (bytes & 1)) {
        snprintf(why, whylen, "%s in an absolute run at stored row %d", short_read(f), y + 1);
        return -1;
      }
      for (int i = 0; i < c && x < w; i++, x++)
        row[x] = !rle4 ? buf[i] : i & 1 ? buf[i >> 1] & 15 : buf[i >> 1] >> 4;
    }
  }
  return 0;
}

int cg_bmp_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                     char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  bmp_t *b = malloc(sizeof *b);
  int rc = b ? parse(f, path, max_pixels, as, b, err, errlen) : -1;
  if (!b) snprintf(err, errlen, "%s: out of memory", path);
  if (!rc) {
    *h = b->h;
    *w = b->w;
  }
  free(b);
  fclose(f);
  return rc;
}

int cg_bmp_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                     const cg_png_sink_t *sink, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  bmp_t *b = malloc(sizeof *b);
  if (!b) {
    fclose(f);
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  int rc = parse(f, path, max_pixels, as, b, err, errlen);
  const size_t w = rc ? 0 : (size_t)b->w;
  const int rle = !rc && (b->comp == C_RLE8 || b->comp == C_RLE4);
  uint8_t *stored = NULL, *idx = NULL, *rgb = NULL, *out = NULL;
  char why[300] = "";
  int sink_said = 0; /* the caller's refusal: "PATH: why", not a decode failure */
  if (!rc) {
    stored = rle ? NULL : malloc(b->stride);
    idx = rle ? calloc(w, (size_t)b->h) : malloc(w);
    rgb = malloc(3 * w);
    out = malloc(3 * w);
    if ((!rle && !stored) || !idx || !rgb || !out) {
      snprintf(why, sizeof why, "out of memory for a %zux%d image", w, b->h);
      rc = -1;
    }
  }
  if (!rc && sink->begin && sink->begin(sink->ctx, b->h, b->w, why, sizeof why))
    rc = sink_said = -1;
  if (!rc && fseek(f, b->offset, SEEK_SET) != 0) {
    snprintf(why, sizeof why, "seek to the pixel data: %s", strerror(errno));
    rc = -1;
  }
  if (!rc && rle) rc = rle_decode(f, b, idx, why, sizeof why);
  for (int y = 0; !rc && y < b->h; y++) {
    const uint8_t *ix = rle ? idx + (size_t)y * w : idx;
    if (!rle) {
      const long at = b->offset + (long)((size_t)(b->topdown ? y : b->h - 1 - y) * b->stride);
      if (fseek(f, at, SEEK_SET) != 0 || fread(stored, 1, b->stride, f) != b->stride) {
        snprintf(why, sizeof why, "%s at row %d of %d", short_read(f), y + 1, b->h);
        rc = -1;
        break;
      }
      unpack(b, stored, idx, rgb);
    }
    convert(b, b->bits <= 8 ? ix : NULL, rgb, as, out);
    if (sink->row(sink->ctx, y, out, why, sizeof why)) rc = sink_said = -1;
  }
  if (rc && why[0])
    snprintf(err, errlen, "%s: %s%s", path, sink_said ? "" : "BMP decode failed: ", why);
  free(stored);
  free(idx);
  free(rgb);
  free(out);
  free(b);
  fclose(f);
  return rc;
}
