/* cgds.c: the .cgds shard — reader source over mmap and the atomic writer (format in cgds.h).
 *
 * Encoded records (versions 2 and 3) are decoded by load(), i.e. in the loader's helper threads,
 * from the mapping (jpeg_io.h / png_io.h over memory) straight into the sample: a JPEG or PNG
 * part must decode to exactly the header's h x w.
 *
 * The reader trusts nothing it has not checked: at open the header, its CRC, the file length,
 * the table and names (and their CRC) and every entry's range; at load the record's CRC and
 * that the file has not been shortened under the mapping since (reading past the end of a
 * mapped file would be SIGBUS, not an error message). Offsets, CRCs and names are copied out
 * of the mapping at open, so later writes to the file cannot redirect a read.
 *
 * The writer decodes chunks of records in parallel (OpenMP) and writes them in index order, so
 * the file does not depend on the thread count.
 *
 * Both sides go through the same named offsets and header struct (encode_header, decode_header),
 * so the writer and the reader cannot disagree on where a field lies. */
#include "cgds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "crc32.h"
#include "fit.h" /* the fitting rule, crop windows and whole-image sizes */
#include "image_io.h"
#include "jpeg_io.h"
#include "le.h"
#include "log.h"
#include "png_io.h"

/* ---- the format: named offsets, and the header that the writer and the reader share ------ */

/* Header fields (cgds.h), in bytes from the start of the file. */
enum {
  HDR_MAGIC = 0,
  HDR_VERSION = 4,
  HDR_HEADER_BYTES = 8,
  HDR_FLAGS = 12,
  HDR_COUNT = 16,
  HDR_H = 24,
  HDR_W = 28,
  HDR_CHANNELS = 32,
  HDR_ENCODING = 36,
  HDR_TABLE = 40,
  HDR_FILE_BYTES = 48,
  HDR_INDEX_CRC = 56,
  HDR_CRC = 60 /* covers [0, HDR_CRC) */
};
/* Record table entry fields, from the entry's start ([v1]: up to ENT_IMAGE_BYTES). */
enum {
  ENT_OFFSET = 0,
  ENT_LENGTH = 8,
  ENT_CRC = 16,
  ENT_NAME_LEN = 20,
  ENT_NAME_OFFSET = 24,
  ENT_IMAGE_BYTES = 32,
  ENT_IMAGE_ENC = 36,
  ENT_MASK_ENC = 37,
  ENT_RESERVED16 = 38,
  ENT_RESERVED64 = 40, /* versions 2 to 4: zero */
  ENT_REC_H = 40,      /* version 5: the record's size */
  ENT_REC_W = 44
};
/* Version 3's labels block fields. */
enum { LAB_MAGIC = 0, LAB_NCLASS = 4, LAB_IGNORE = 8, LAB_NPAL = 12, LAB_PALETTE = 16,
       LAB_MAP = 784 /* version 4 */ };

_Static_assert(HDR_CRC + 4 == CG_CGDS_HEADER_BYTES, "header layout");
_Static_assert(ENT_IMAGE_BYTES == CG_CGDS_ENTRY_BYTES_V1, "version 1 entry layout");
_Static_assert(ENT_RESERVED64 + 8 == CG_CGDS_ENTRY_BYTES, "entry layout");
_Static_assert(LAB_PALETTE + 768 == CG_CGDS_LABELS_BYTES, "labels block layout");
_Static_assert(LAB_MAP + 512 == CG_CGDS_LABELS_BYTES_V4, "version 4 labels block layout");

/* The header's fields as numbers. The magic is not among them: the reader checks it before
 * anything else, the writer always writes CG_CGDS_MAGIC. */
typedef struct {
  uint32_t version, header_bytes, flags;
  uint64_t count;
  uint32_t h, w, channels, encoding;
  uint64_t table, file_bytes; /* table_offset, file_bytes */
  uint32_t index_crc;
} cgds_header_t;

/* The CG_CGDS_HEADER_BYTES bytes at h: magic, hd's fields and header_crc. */
static void encode_header(const cgds_header_t *hd, uint8_t *h) {
  memset(h, 0, CG_CGDS_HEADER_BYTES);
  memcpy(h + HDR_MAGIC, CG_CGDS_MAGIC, 4);
  cg_le_put_u32(h + HDR_VERSION, hd->version);
  cg_le_put_u32(h + HDR_HEADER_BYTES, hd->header_bytes);
  cg_le_put_u32(h + HDR_FLAGS, hd->flags);
  cg_le_put_u64(h + HDR_COUNT, hd->count);
  cg_le_put_u32(h + HDR_H, hd->h);
  cg_le_put_u32(h + HDR_W, hd->w);
  cg_le_put_u32(h + HDR_CHANNELS, hd->channels);
  cg_le_put_u32(h + HDR_ENCODING, hd->encoding);
  cg_le_put_u64(h + HDR_TABLE, hd->table);
  cg_le_put_u64(h + HDR_FILE_BYTES, hd->file_bytes);
  cg_le_put_u32(h + HDR_INDEX_CRC, hd->index_crc);
  cg_le_put_u32(h + HDR_CRC, cg_crc32(0, h, HDR_CRC));
}

/* h's fields into hd, unchecked: check_header decides what they may be. */
static void decode_header(const uint8_t *h, cgds_header_t *hd) {
  hd->version = cg_le_get_u32(h + HDR_VERSION);
  hd->header_bytes = cg_le_get_u32(h + HDR_HEADER_BYTES);
  hd->flags = cg_le_get_u32(h + HDR_FLAGS);
  hd->count = cg_le_get_u64(h + HDR_COUNT);
  hd->h = cg_le_get_u32(h + HDR_H);
  hd->w = cg_le_get_u32(h + HDR_W);
  hd->channels = cg_le_get_u32(h + HDR_CHANNELS);
  hd->encoding = cg_le_get_u32(h + HDR_ENCODING);
  hd->table = cg_le_get_u64(h + HDR_TABLE);
  hd->file_bytes = cg_le_get_u64(h + HDR_FILE_BYTES);
  hd->index_crc = cg_le_get_u32(h + HDR_INDEX_CRC);
}

/* Bytes of a table entry, and of the labels block at the end (0: none), in a version. */
static size_t entry_bytes(uint32_t version) {
  return version == 1 ? CG_CGDS_ENTRY_BYTES_V1 : CG_CGDS_ENTRY_BYTES;
}
static size_t labels_bytes(uint32_t version) {
  return version >= 4 ? CG_CGDS_LABELS_BYTES_V4 : version == 3 ? CG_CGDS_LABELS_BYTES : 0;
}

/* ---- reader ----------------------------------------------------------------------------- */

typedef struct {
  cg_source_t base;
  char *path;
  int fd;
  const uint8_t *map;
  size_t len;
  uint64_t rec_bytes; /* raw records: h*w*4 */
  uint32_t version;
  uint64_t *off, *rlen; /* rlen: version 2's record lengths */
  uint32_t *crc;
  uint32_t *ibytes;   /* bytes of the image part */
  uint32_t *rh, *rw;  /* version 5: each record's size (whole images); NULL: base.h x base.w */
  uint8_t *ienc, *menc;
  char *names;     /* every name, NUL-terminated, back to back */
  size_t *name_at; /* start of name i in names */
  const char **name_ptr; /* base.names */
  int nclass, ignore;    /* the mask values allowed (cg_cgds_set_labels): < nclass, ignore */
  int packed_nclass, packed_ignore; /* version 3's labels block (packed_nclass 0: none) */
  uint8_t palette[768];  /* version 3: the masks' palette (base.palette) */
  char map_table[CG_LABELMAP_TABLE_LEN]; /* version 4: pack's --label-map ("": none) */
} cgds_source_t;

/* Rows of an encoded part into a fixed h x w buffer: the decoded size must be exactly that. */
typedef struct {
  uint8_t *out;
  int h, w, bpp, take; /* take: bytes kept per pixel of each bpp-byte input pixel (mask: 1 of 3) */
} part_t;

static int part_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  part_t *p = ctx;
  if (h != p->h || w != p->w) {
    snprintf(why, whylen, "decodes to %dx%d, the record is %dx%d", w, h, p->w, p->h);
    return -1;
  }
  return 0;
}

static int part_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  (void)why;
  (void)whylen;
  part_t *p = ctx;
  uint8_t *o = p->out + (size_t)y * p->w * p->take;
  if (p->take == p->bpp) memcpy(o, px, (size_t)p->w * p->bpp);
  else
    for (int x = 0; x < p->w; x++) o[x] = px[(size_t)x * p->bpp];
  return 0;
}

/* A part over the pixel limit in a shard: the limit is the record size, not --max-image-pixels,
 * so the decoders' hint to raise that flag is replaced by what is wrong. Returns -1. */
static int part_too_large(const cgds_source_t *cs, int h, int w, char *err, size_t errlen) {
  char *hint = strstr(err, " (a decompression bomb?");
  if (hint && cs->rh)
    snprintf(hint, errlen - (size_t)(hint - err), " (the record is %dx%d: this one is damaged)",
             w, h);
  else if (hint)
    snprintf(hint, errlen - (size_t)(hint - err), " (the shard's records are %dx%d: this one is "
             "damaged)", w, h);
  return -1;
}

/* The stored size of record index. */
static void rec_size(const cgds_source_t *cs, int64_t index, int *h, int *w) {
  *h = cs->rh ? (int)cs->rh[index] : cs->base.h;
  *w = cs->rw ? (int)cs->rw[index] : cs->base.w;
}

/* Decodes record index (its bytes at rec, CRC checked) into rgb and mask, of its stored size. */
static int decode_record(cgds_source_t *cs, int64_t index, const uint8_t *rec, uint8_t *rgb,
                         uint8_t *mask, char *err, size_t errlen) {
  int rh, rw;
  rec_size(cs, index, &rh, &rw);
  const size_t px = (size_t)rh * rw;
  const uint64_t ib = cs->version == 1 ? px * 3 : cs->ibytes[index];
  const uint8_t ie = cs->version == 1 ? CG_CGDS_RAW : cs->ienc[index];
  const uint8_t me = cs->version == 1 ? CG_CGDS_RAW : cs->menc[index];
  const uint64_t mb = (cs->version == 1 ? cs->rec_bytes : cs->rlen[index]) - ib;
  char label[1200]; /* names the part in decoding errors */
  snprintf(label, sizeof label, "%s: record %lld (%s): image", cs->path, (long long)index,
           cs->names + cs->name_at[index]);
  const int64_t limit = (int64_t)px; /* the part must be exactly h x w: nothing larger decodes */
  part_t pi = {rgb, rh, rw, 3, 3};
  const cg_png_sink_t si = {part_begin, part_row, &pi};
  if (ie == CG_CGDS_RAW) memcpy(rgb, rec, px * 3);
  else if (ie == CG_CGDS_JPEG) {
    cg_jpeg_read_t jr = {.max_pixels = limit}; /* in memory: as stored (packed turned) */
    if (cg_jpeg_read_rows(label, rec, ib, &jr, &si, err, errlen))
      return part_too_large(cs, rh, rw, err, errlen);
  } else if (cg_png_read_rows_mem(label, rec, ib, limit, CG_PNG_AS_RGB, &si, err, errlen))
    return part_too_large(cs, rh, rw, err, errlen);
  if (me == CG_CGDS_RAW) {
    memcpy(mask, rec + ib, px);
    return 0;
  }
  /* an 8-bit gray PNG read as RGB: R = G = B = the stored byte, whatever it means */
  snprintf(label, sizeof label, "%s: record %lld (%s): mask", cs->path, (long long)index,
           cs->names + cs->name_at[index]);
  part_t pm = {mask, rh, rw, 3, 1};
  const cg_png_sink_t sm = {part_begin, part_row, &pm};
  if (cg_png_read_rows_mem(label, rec + ib, mb, limit, CG_PNG_AS_RGB, &sm, err, errlen))
    return part_too_large(cs, rh, rw, err, errlen);
  return 0;
}

/* Every value of record index's mask (n pixels) a class id or the ignore label. */
static int check_mask(const cgds_source_t *cs, int64_t index, const uint8_t *mask, size_t n,
                      char *err, size_t errlen) {
  const char *name = cs->names + cs->name_at[index];
  const int nclass = cs->nclass > 1 ? cs->nclass : 2; /* binary: 0 and 1 */
  for (size_t i = 0; i < n; i++)
    if (mask[i] >= nclass && mask[i] != cs->ignore) {
      if (cs->nclass > 1)
        snprintf(err, errlen, "%s: record %lld (%s): mask value %d is not a class id of "
                 "--num-classes %d (0..%d) nor the ignore label %d", cs->path, (long long)index,
                 name, mask[i], cs->nclass, cs->nclass - 1, cs->ignore);
      else
        snprintf(err, errlen, "%s: record %lld (%s): mask value %d is not 0 or 1", cs->path,
                 (long long)index, name, mask[i]);
      return -1;
    }
  return 0;
}

/* The bytes of record index in the map, checked: the file still holds them, and their CRC is
 * the table's. NULL with the message naming the record. */
static const uint8_t *checked_record(cgds_source_t *cs, int64_t index, char *err,
                                     size_t errlen) {
  const char *name = cs->names + cs->name_at[index];
  const uint64_t off = cs->off[index], n = cs->version == 1 ? cs->rec_bytes : cs->rlen[index];
  struct stat st;
  if (fstat(cs->fd, &st)) {
    snprintf(err, errlen, "%s: record %lld (%s): %s", cs->path, (long long)index, name,
             strerror(errno));
    return NULL;
  }
  if ((uint64_t)st.st_size < off + n) {
    snprintf(err, errlen, "%s: record %lld (%s): truncated: the file is now %lld bytes, the record "
             "ends at %llu", cs->path, (long long)index, name, (long long)st.st_size,
             (unsigned long long)(off + n));
    return NULL;
  }
  const uint8_t *rec = cs->map + off;
  uint32_t crc = cg_crc32(0, rec, n);
  if (crc != cs->crc[index]) {
    snprintf(err, errlen, "%s: record %lld (%s): CRC mismatch (stored %08x, computed %08x)",
             cs->path, (long long)index, name, cs->crc[index], crc);
    return NULL;
  }
  return rec;
}

/* Record index through win (NULL: the fitting rule's centred square) at h x w: a record of
 * that size without a window is decoded straight into rgb and mask; otherwise the whole record
 * (raw: in place in the map; else decoded into a buffer) is resampled, as a file is. */
static int cgds_load_win(cg_source_t *s, int64_t index, const cg_crop_t *win, uint8_t *rgb,
                         uint8_t *mask, char *err, size_t errlen) {
  cgds_source_t *cs = (cgds_source_t *)s;
  /* rgb NULL: the window's mask alone; mask NULL: its image alone */
  CG_ASSERT(index >= 0 && index < s->count && (rgb || win) && (mask || win));
  const char *name = cs->names + cs->name_at[index];
  const uint8_t *rec = checked_record(cs, index, err, errlen);
  if (!rec) return -1;
  int rh, rw;
  rec_size(cs, index, &rh, &rw);
  const size_t rpx = (size_t)rh * rw;
  if (!win && rh == s->h && rw == s->w) {
    if (decode_record(cs, index, rec, rgb, mask, err, errlen)) return -1;
    return check_mask(cs, index, mask, rpx, err, errlen);
  }
  const int raw = cs->version == 1 || (cs->ienc[index] == CG_CGDS_RAW && cs->menc[index] ==
                                                                             CG_CGDS_RAW);
  uint8_t *tmp = NULL;
  const uint8_t *wr = rec, *wm = rec + 3 * rpx;
  if (!raw) {
    if (!(tmp = malloc(4 * rpx))) { /* a bad sample, not the end of the job */
      snprintf(err, errlen, "%s: record %lld (%s): out of memory for its %dx%d pixels", cs->path,
               (long long)index, name, rw, rh);
      return -1;
    }
    wr = tmp;
    wm = tmp + 3 * rpx;
    if (decode_record(cs, index, rec, tmp, tmp + 3 * rpx, err, errlen)) {
      free(tmp);
      return -1;
    }
  }
  int rc = check_mask(cs, index, wm, rpx, err, errlen);
  if (!rc && win) {
    double x0, y0, side;
    cg_crop_px(win, rh, rw, &x0, &y0, &side);
    if (rgb) cg_resample_rgb(wr, rh, rw, x0, y0, side, side, rgb, s->h, s->w);
    if (mask)
      cg_resample_mask_pad(wm, rh, rw, x0, y0, side, side, mask, s->h, s->w, (uint8_t)win->pad);
  } else if (!rc) {
    cg_fit_square(wr, wm, rh, rw, s->h, rgb, mask);
  }
  free(tmp);
  return rc;
}

static int cgds_load(cg_source_t *s, int64_t index, uint8_t *rgb, uint8_t *mask, char *err,
                     size_t errlen) {
  return cgds_load_win(s, index, NULL, rgb, mask, err, errlen);
}

int cg_cgds_record_size(const cg_source_t *s, int64_t index, int *h, int *w) {
  if (strcmp(s->ops->kind, "cgds") || index < 0 || index >= s->count) return -1;
  rec_size((const cgds_source_t *)s, index, h, w);
  return 0;
}

void cg_cgds_set_labels(cg_source_t *s, int nclass, int ignore) {
  cgds_source_t *cs = (cgds_source_t *)s;
  cs->nclass = nclass > 1 ? nclass : 1;
  cs->ignore = ignore >= (nclass > 1 ? nclass : 2) ? ignore : -1;
}

int cg_cgds_labels(const cg_source_t *s, int *nclass, int *ignore) {
  const cgds_source_t *cs = (const cgds_source_t *)s;
  if (!cs->packed_nclass) return 0;
  *nclass = cs->packed_nclass;
  *ignore = cs->packed_ignore;
  return 1;
}

int cg_cgds_label_map(const cg_source_t *s, const char **table) {
  if (strcmp(s->ops->kind, "cgds")) return 0; /* not a shard: nothing packed */
  const cgds_source_t *cs = (const cgds_source_t *)s;
  if (!cs->map_table[0]) return 0;
  *table = cs->map_table;
  return 1;
}

/* Version 4's label map at b: 512 zero bytes (none) or a table cg_labelmap_from_table reads. */
static int read_map(cgds_source_t *cs, const uint8_t *b, const char *path, char *err,
                    size_t errlen) {
  int zero = 1;
  for (int i = 0; i < 512; i++) zero &= b[i] == 0;
  if (zero) return 0;
  cg_labelmap_t m;
  memcpy(cs->map_table, b, 512);
  cs->map_table[512] = 0;
  if (cg_labelmap_from_table(cs->map_table, "", &m) == 0) return 0;
  cs->map_table[0] = 0;
  snprintf(err, errlen, "%s: corrupt labels block (label map)", path);
  return -1;
}

/* Version 3's labels block at b (inside the checked index area), and version 4's map. */
static int read_labels(cgds_source_t *cs, const uint8_t *b, const char *path, char *err,
                       size_t errlen) {
  const uint32_t k = cg_le_get_u32(b + LAB_NCLASS), npal = cg_le_get_u32(b + LAB_NPAL);
  const int32_t ig = (int32_t)cg_le_get_u32(b + LAB_IGNORE);
  const int lo = k > 1 ? (int)k : 2;
  if (memcmp(b + LAB_MAGIC, CG_CGDS_LABELS_MAGIC, 4) || k < 1 || k > 255 ||
      !(ig == -1 || (ig >= lo && ig <= 255)) || npal > 256) {
    snprintf(err, errlen, "%s: corrupt labels block (classes %u, ignore label %d, palette of "
             "%u)", path, k, (int)ig, npal);
    return -1;
  }
  if (cs->version >= 4 && read_map(cs, b + LAB_MAP, path, err, errlen)) return -1;
  cs->packed_nclass = (int)k;
  cs->packed_ignore = (int)ig;
  memcpy(cs->palette, b + LAB_PALETTE, 3 * (size_t)npal);
  cs->base.npal = (int)npal;
  cs->base.palette = npal ? cs->palette : NULL;
  return 0;
}

static void cgds_destroy(cg_source_t *s) {
  cgds_source_t *cs = (cgds_source_t *)s;
  if (cs->map) munmap((void *)cs->map, cs->len);
  if (cs->fd >= 0) close(cs->fd);
  free(cs->path);
  free(cs->off);
  free(cs->rlen);
  free(cs->crc);
  free(cs->ibytes);
  free(cs->rh);
  free(cs->rw);
  free(cs->ienc);
  free(cs->menc);
  free(cs->names);
  free(cs->name_at);
  free(cs->name_ptr);
  free(cs);
}

/* Record index as it is stored (cg_source_load_whole). */
static int cgds_whole(cg_source_t *s, int64_t index, int *oh, int *ow, uint8_t *rgb,
                      uint8_t *mask, char *err, size_t errlen) {
  cgds_source_t *cs = (cgds_source_t *)s;
  CG_ASSERT(index >= 0 && index < s->count);
  rec_size(cs, index, oh, ow);
  if (!rgb) return 0;
  const uint8_t *rec = checked_record(cs, index, err, errlen);
  if (!rec || decode_record(cs, index, rec, rgb, mask, err, errlen)) return -1;
  return check_mask(cs, index, mask, (size_t)*oh * *ow, err, errlen);
}

/* no full op: records are stored scaled, with no full-size mask (cg_source_load_full: -2) */
static const cg_source_ops_t cgds_ops = {"cgds", cgds_load, cgds_destroy, cgds_load_win,
                                         cgds_whole, NULL};

/* The version-2 fields of entry i: known encodings, part sizes that fit the record and match
 * the raw sizes where raw. */
static int check_entry_v2(cgds_source_t *cs, uint64_t i, const uint8_t *e, uint64_t len,
                          const char *path, char *err, size_t errlen) {
  uint64_t px = (uint64_t)cs->base.h * cs->base.w;
  if (cs->version >= 5) { /* a whole image: its shorter side is the header's size */
    const uint32_t h = cg_le_get_u32(e + ENT_REC_H), w = cg_le_get_u32(e + ENT_REC_W);
    const uint32_t lo = h < w ? h : w, hi = h < w ? w : h;
    if (lo != (uint32_t)cs->base.h || hi > CG_PNG_MAX_SIDE ||
        hi > (uint64_t)CG_FIT_WHOLE_MAX_ASPECT * lo) {
      snprintf(err, errlen, "%s: record %llu: bad entry (record %ux%u, the shard's shorter side "
               "is %d)", path, (unsigned long long)i, w, h, cs->base.h);
      return -1;
    }
    cs->rh[i] = h;
    cs->rw[i] = w;
    px = (uint64_t)h * w;
  }
  const uint32_t ib = cg_le_get_u32(e + ENT_IMAGE_BYTES);
  const uint8_t ie = e[ENT_IMAGE_ENC], me = e[ENT_MASK_ENC];
  const uint64_t mb = len >= ib ? len - ib : 0;
  const int ok = (ie == CG_CGDS_RAW || ie == CG_CGDS_JPEG || ie == CG_CGDS_PNG) &&
                 (me == CG_CGDS_RAW || me == CG_CGDS_PNG) && e[ENT_RESERVED16] == 0 &&
                 e[ENT_RESERVED16 + 1] == 0 &&
                 (cs->version >= 5 || cg_le_get_u64(e + ENT_RESERVED64) == 0) &&
                 ib >= 1 && len > ib && (ie != CG_CGDS_RAW || ib == px * 3) &&
                 (me != CG_CGDS_RAW || mb == px);
  if (!ok) {
    snprintf(err, errlen, "%s: record %llu: bad entry (image %u bytes, encoding %u, mask "
             "encoding %u, record %llu bytes)", path, (unsigned long long)i, ib, ie, me,
             (unsigned long long)len);
    return -1;
  }
  cs->rlen[i] = len;
  cs->ibytes[i] = ib;
  cs->ienc[i] = ie;
  cs->menc[i] = me;
  return 0;
}

/* The open's steps below return 0, or -1 with "PATH: reason" in err; what they have set in cs
 * by then is freed by cgds_destroy. */
#define OPEN_FAIL(...)                    \
  do {                                    \
    snprintf(err, errlen, __VA_ARGS__);   \
    return -1;                            \
  } while (0)

/* Opens path and maps the whole of it read-only into cs (fd, map, len): a regular file that is
 * not empty. */
static int map_file(cgds_source_t *cs, const char *path, char *err, size_t errlen) {
  cs->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (cs->fd < 0) OPEN_FAIL("%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(cs->fd, &st)) OPEN_FAIL("%s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) OPEN_FAIL("%s: not a regular file", path);
  if (st.st_size == 0) OPEN_FAIL("%s: empty file, not a .cgds shard", path);
  cs->len = (size_t)st.st_size;
  void *m = mmap(NULL, cs->len, PROT_READ, MAP_PRIVATE, cs->fd, 0);
  if (m == MAP_FAILED) {
    cs->len = 0;
    OPEN_FAIL("%s: mmap failed: %s", path, strerror(errno));
  }
  cs->map = m;
  return 0;
}

/* The header of the size-byte file mapped at h, decoded into hd and checked against the file:
 * magic, length, CRCs, version, sizes and where the table lies. The order of the checks decides
 * which message a damaged file gets (tests/test_sources.c): keep it. */
static int check_header(const uint8_t *h, uint64_t size, const char *path, cgds_header_t *hd,
                        char *err, size_t errlen) {
  if (size < 4 || memcmp(h + HDR_MAGIC, CG_CGDS_MAGIC, 4) != 0)
    OPEN_FAIL("%s: not a .cgds shard (bad magic)", path);
  if (size < CG_CGDS_HEADER_BYTES)
    OPEN_FAIL("%s: truncated: %llu bytes, shorter than the %d-byte header", path,
              (unsigned long long)size, CG_CGDS_HEADER_BYTES);
  if (cg_crc32(0, h, HDR_CRC) != cg_le_get_u32(h + HDR_CRC))
    OPEN_FAIL("%s: corrupt header (CRC mismatch)", path);
  decode_header(h, hd);
  if (hd->version < 1 || hd->version > CG_CGDS_VERSION)
    OPEN_FAIL("%s: unsupported version %u (this build reads versions 1 to %u)", path,
              hd->version, CG_CGDS_VERSION);
  if (hd->header_bytes != CG_CGDS_HEADER_BYTES || hd->flags != 0 || hd->channels != 3)
    OPEN_FAIL("%s: unsupported header (header_bytes %u, flags 0x%x, channels %u)", path,
              hd->header_bytes, hd->flags, hd->channels);
  if (hd->h < 1 || hd->w < 1 || hd->h > 65535 || hd->w > 65535 ||
      (hd->version >= 5 && hd->h != hd->w))
    OPEN_FAIL("%s: bad record size %ux%u", path, hd->w, hd->h);
  const uint64_t fbytes = hd->file_bytes, table = hd->table, count = hd->count;
  if (size < fbytes)
    OPEN_FAIL("%s: truncated: %llu bytes, the header says %llu", path, (unsigned long long)size,
              (unsigned long long)fbytes);
  if (size > fbytes)
    OPEN_FAIL("%s: %llu bytes, the header says %llu (trailing data)", path,
              (unsigned long long)size, (unsigned long long)fbytes);
  const uint64_t lbytes = labels_bytes(hd->version), esize = entry_bytes(hd->version);
  if (count < 1 || table < CG_CGDS_HEADER_BYTES || table % 8 || table > fbytes ||
      lbytes > fbytes - table || count > (fbytes - table - lbytes) / esize)
    OPEN_FAIL("%s: corrupt header (count %llu, table at %llu, %llu bytes)", path,
              (unsigned long long)count, (unsigned long long)table, (unsigned long long)fbytes);
  if (cg_crc32(0, h + table, (size_t)(fbytes - table)) != hd->index_crc)
    OPEN_FAIL("%s: corrupt record table or names (CRC mismatch)", path);
  return 0;
}

/* The record table and the names of the file mapped at h, whose header hd has passed
 * check_header, copied into cs: every entry checked (record in range, names back to back in
 * index order), so that nothing is read from the table again. */
static int read_table(cgds_source_t *cs, const uint8_t *h, const cgds_header_t *hd,
                      const char *path, char *err, size_t errlen) {
  const uint64_t count = hd->count, table = hd->table, esize = entry_bytes(hd->version);
  const uint64_t names_start = table + count * esize;
  const uint64_t names_end = hd->file_bytes - labels_bytes(hd->version);
  cs->off = cg_malloc(sizeof(uint64_t) * count, "cgds offsets");
  if (hd->version != 1) {
    cs->rlen = cg_malloc(sizeof(uint64_t) * count, "cgds lengths");
    cs->ibytes = cg_malloc(sizeof(uint32_t) * count, "cgds lengths");
    cs->ienc = cg_malloc(count, "cgds encodings");
    cs->menc = cg_malloc(count, "cgds encodings");
  }
  if (hd->version >= 5) {
    cs->rh = cg_malloc(sizeof(uint32_t) * count, "cgds record sizes");
    cs->rw = cg_malloc(sizeof(uint32_t) * count, "cgds record sizes");
  }
  cs->crc = cg_malloc(sizeof(uint32_t) * count, "cgds crcs");
  cs->name_at = cg_malloc(sizeof(size_t) * count, "cgds names");
  cs->names = cg_malloc((size_t)(names_end - names_start) + count, "cgds names");
  size_t at = 0;
  for (uint64_t i = 0; i < count; i++) {
    const uint8_t *e = h + table + i * esize;
    const uint64_t off = cg_le_get_u64(e + ENT_OFFSET), len = cg_le_get_u64(e + ENT_LENGTH);
    const uint64_t noff = cg_le_get_u64(e + ENT_NAME_OFFSET);
    const uint32_t nlen = cg_le_get_u32(e + ENT_NAME_LEN);
    if (hd->version != 1 && check_entry_v2(cs, i, e, len, path, err, errlen)) return -1;
    if (hd->version == 1 && len != cs->rec_bytes)
      OPEN_FAIL("%s: record %llu: length %llu, expected %llu for %ux%u", path,
                (unsigned long long)i, (unsigned long long)len,
                (unsigned long long)cs->rec_bytes, hd->w, hd->h);
    if (off < CG_CGDS_HEADER_BYTES || off > table || len > table - off)
      OPEN_FAIL("%s: record %llu: offset %llu out of range", path, (unsigned long long)i,
                (unsigned long long)off);
    /* names are back to back in index order: anything else is corruption */
    if (nlen < 1 || nlen > CG_CGDS_MAX_NAME || noff != names_start + (at - i) ||
        noff > names_end || nlen > names_end - noff || memchr(h + noff, 0, nlen))
      OPEN_FAIL("%s: record %llu: bad name entry", path, (unsigned long long)i);
    cs->off[i] = off;
    cs->crc[i] = cg_le_get_u32(e + ENT_CRC);
    cs->name_at[i] = at;
    memcpy(cs->names + at, h + noff, nlen);
    at += nlen;
    cs->names[at++] = 0;
  }
  if (names_start + (at - count) != names_end)
    OPEN_FAIL("%s: corrupt names area (%llu bytes after the last name)", path,
              (unsigned long long)(names_end - (names_start + (at - count))));
  cs->name_ptr = cg_malloc(sizeof(char *) * count, "cgds names");
  for (uint64_t i = 0; i < count; i++) cs->name_ptr[i] = cs->names + cs->name_at[i];
  cs->base.names = cs->name_ptr;
  return 0;
}

cg_source_t *cg_source_cgds(const char *path, char *err, size_t errlen) {
  cgds_source_t *cs = cg_calloc(1, sizeof *cs, "cgds source");
  cs->base.ops = &cgds_ops;
  cs->fd = -1;
  cs->path = strdup(path);
  if (!cs->path) CG_FATAL("out of memory");
  cs->nclass = 1;
  cs->ignore = -1;
  cgds_header_t hd;
  if (map_file(cs, path, err, errlen) || check_header(cs->map, cs->len, path, &hd, err, errlen))
    goto fail;
  cs->version = hd.version;
  cs->base.count = (int64_t)hd.count;
  cs->base.h = (int)hd.h;
  cs->base.w = (int)hd.w;
  cs->rec_bytes = (uint64_t)hd.h * hd.w * 4;
  const size_t lbytes = labels_bytes(hd.version);
  if (lbytes && read_labels(cs, cs->map + (hd.file_bytes - lbytes), path, err, errlen))
    goto fail;
  if (read_table(cs, cs->map, &hd, path, err, errlen)) goto fail;
  return &cs->base;
fail:
  cgds_destroy(&cs->base);
  return NULL;
}

/* ---- writer ----------------------------------------------------------------------------- */

#define PACK_CHUNK 64
#define PACK_CHUNK_BYTES ((size_t)256 << 20) /* the chunk's fitted samples, at most */

typedef struct {
  uint64_t off, len;
  uint32_t crc;
  uint32_t name_len;
  uint32_t ibytes;
  uint8_t ienc, menc;
  uint32_t rh, rw; /* the record's size (version 5) */
} entry_t;

/* One record of a chunk: the fitted sample (raw), and its encoded bytes when encoded. */
typedef struct {
  uint8_t *bytes; /* encoded record (malloc'ed), or NULL: the raw sample buffer */
  entry_t e;
  int bad;
  uint64_t nclass_px, nignore_px; /* mask pixels of a class other than 0, of the ignore label */
  char err[512];
} slot_t;

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

/* The input file's own bytes when it is a JPEG of exactly rh x rw (no re-encoding loss); NULL
 * otherwise. */
static uint8_t *original_jpeg(cg_source_t *src, int64_t i, int rh, int rw, cg_exif_t exif,
                              size_t *n) {
  const char *path;
  int h, w, fh, fw, orient = 0;
  char why[256];
  /* turned (--exif-orientation apply and an orientation) it is encoded again: a record is read
   * as stored */
  if (cg_source_png_image(src, i, &path, &h, &w) || h != rh || w != rw ||
      !cg_image_is_jpeg(path) ||
      (exif == CG_EXIF_APPLY &&
       (cg_jpeg_read_header(path, 0, CG_EXIF_STORED, &fh, &fw, &orient, why, sizeof why) ||
        orient > 1)))
    return NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  uint8_t *p = NULL;
  long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
  if (len > 0 && len < (1L << 30) && fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)len))) {
    if (fread(p, 1, (size_t)len, f) != (size_t)len) {
      free(p);
      p = NULL;
    }
  }
  fclose(f);
  *n = (size_t)len;
  return p;
}

/* Encodes the fitted sample r (rgb then mask) of record i as o->encoding asks into sl. */
static int encode_record(cg_source_t *src, int64_t i, const uint8_t *r,
                         const cg_cgds_pack_opts_t *o, slot_t *sl) {
  const int rh = (int)sl->e.rh, rw = (int)sl->e.rw;
  const size_t px = (size_t)rh * rw;
  const char *name = cg_source_name(src, i);
  uint8_t *img = NULL, *msk = NULL;
  size_t ni = 0, nm = 0;
  if (o->encoding == CG_CGDS_JPEG) {
    img = original_jpeg(src, i, rh, rw, o->exif, &ni);
    if (!img && cg_jpeg_encode(name, r, rh, rw, o->quality ? o->quality : 90, &img, &ni,
                               sl->err, sizeof sl->err))
      return -1;
  } else if (cg_png_encode(name, r, rh, rw, CG_PNG_RGB8, &img, &ni, sl->err, sizeof sl->err)) {
    return -1;
  }
  if (cg_png_encode(name, r + 3 * px, rh, rw, CG_PNG_GRAY8, &msk, &nm, sl->err,
                    sizeof sl->err) || ni > UINT32_MAX) {
    free(img);
    free(msk);
    return -1;
  }
  sl->bytes = malloc(ni + nm);
  if (!sl->bytes) CG_FATAL("out of memory for an encoded record");
  memcpy(sl->bytes, img, ni);
  memcpy(sl->bytes + ni, msk, nm);
  free(img);
  free(msk);
  sl->e.len = ni + nm;
  sl->e.ibytes = (uint32_t)ni;
  sl->e.ienc = (uint8_t)o->encoding;
  sl->e.menc = CG_CGDS_PNG;
  return 0;
}

/* The size record i is stored at: size x size, or (o->whole) the whole image scaled to a
 * shorter side of size. */
static void stored_size(cg_source_t *src, int64_t i, const cg_cgds_pack_opts_t *o, int *rh,
                        int *rw) {
  const char *path;
  int h, w;
  *rh = *rw = o->size;
  if (o->whole && !cg_source_png_image(src, i, &path, &h, &w))
    cg_fit_whole_size(h, w, o->size, rh, rw);
}

/* Loads (and encodes) records c0 .. c0+m-1 in parallel into slots; each record's fitted sample
 * at buf + i * rec (rec: the largest record's bytes). */
static void make_chunk(cg_source_t *src, int64_t c0, int m, const cg_cgds_pack_opts_t *o,
                       uint8_t *buf, size_t rec, slot_t *slots, volatile sig_atomic_t *cancel) {
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < m; i++) {
    uint8_t *r = buf + (size_t)i * rec;
    slot_t *sl = &slots[i];
    memset(&sl->e, 0, sizeof sl->e);
    sl->bytes = NULL;
    if (cancel && *cancel) { /* interrupted: the rest of the chunk is not worth decoding */
      sl->bad = 1;
      continue;
    }
    int rh, rw;
    stored_size(src, c0 + i, o, &rh, &rw);
    const size_t px = (size_t)rh * rw;
    sl->e.rh = (uint32_t)rh;
    sl->e.rw = (uint32_t)rw;
    sl->bad = o->whole ? cg_source_png_load_whole(src, c0 + i, rh, rw, r, r + 3 * px, sl->err,
                                                  sizeof sl->err)
                       : cg_source_load(src, c0 + i, r, r + 3 * px, sl->err, sizeof sl->err);
    if (sl->bad) continue;
    sl->nclass_px = sl->nignore_px = 0;
    for (size_t p = 0; p < px; p++) {
      const int v = r[3 * px + p];
      sl->nignore_px += v == o->ignore;
      sl->nclass_px += v != 0 && v != o->ignore;
    }
    if (o->encoding == CG_CGDS_RAW) {
      sl->e.len = px * 4;
      sl->e.ibytes = (uint32_t)(px * 3);
    } else if (encode_record(src, c0 + i, r, o, sl)) {
      sl->bad = 1;
      continue;
    }
    sl->e.crc = cg_crc32(0, sl->bytes ? sl->bytes : r, sl->e.len);
  }
}

/* The table entry of record i as version `version` lays it out. */
static void put_entry(uint8_t *e, const entry_t *en, uint64_t noff, int version) {
  cg_le_put_u64(e + ENT_OFFSET, en->off);
  cg_le_put_u64(e + ENT_LENGTH, en->len);
  cg_le_put_u32(e + ENT_CRC, en->crc);
  cg_le_put_u32(e + ENT_NAME_LEN, en->name_len);
  cg_le_put_u64(e + ENT_NAME_OFFSET, noff);
  if (version == 1) return;
  cg_le_put_u32(e + ENT_IMAGE_BYTES, en->ibytes);
  e[ENT_IMAGE_ENC] = en->ienc;
  e[ENT_MASK_ENC] = en->menc; /* the reserved bytes stay zero (the block is calloc'ed) */
  if (version < 5) return;
  cg_le_put_u32(e + ENT_REC_H, en->rh);
  cg_le_put_u32(e + ENT_REC_W, en->rw);
}

/* Version 3's labels block: what the masks hold, as packed (o's classes and ignore label,
 * normalised as cg_cgds_set_labels does), and the masks' palette. */
static void put_labels(uint8_t *b, const cg_cgds_pack_opts_t *o, const cg_source_t *src,
                       int version) {
  const int k = o->nclass > 1 ? o->nclass : 1;
  const int ig = o->ignore >= (k > 1 ? k : 2) && o->ignore <= 255 ? o->ignore : -1;
  memcpy(b + LAB_MAGIC, CG_CGDS_LABELS_MAGIC, 4);
  cg_le_put_u32(b + LAB_NCLASS, (uint32_t)k);
  cg_le_put_u32(b + LAB_IGNORE, (uint32_t)ig);
  const int npal = src->npal > 0 && src->npal <= 256 ? src->npal : 0;
  cg_le_put_u32(b + LAB_NPAL, (uint32_t)npal);
  if (npal) memcpy(b + LAB_PALETTE, src->palette, 3 * (size_t)npal);
  if (version >= 4 && o->label_map) {
    char table[CG_LABELMAP_TABLE_LEN];
    cg_labelmap_table(o->label_map, table);
    memcpy(b + LAB_MAP, table, 512);
  }
}

/* o's settings, and out_path not a directory: CG_CGDS_OK with *version (0 taken as the current
 * one), or CG_CGDS_EINPUT with the message. Checked before any input is read. */
static int check_pack_opts(const cg_cgds_pack_opts_t *o, const char *out_path, int *version,
                           char *err, size_t errlen) {
  /* version 4 only when it says more than version 3 (older builds still read the rest) */
  *version = o->version ? o->version : o->whole ? 5 : o->label_map ? 4 : 3;
  if (o->label_map && *version < 4) {
    snprintf(err, errlen, "a --label-map needs shard version 4 (it keeps the map)");
    return CG_CGDS_EINPUT;
  }
  if (o->whole && o->size > CG_PNG_MAX_SIDE) {
    snprintf(err, errlen, "whole images: the shorter side %d is over %d", o->size,
             CG_PNG_MAX_SIDE);
    return CG_CGDS_EINPUT;
  }
  if (o->whole != (*version >= 5)) {
    snprintf(err, errlen, "whole images are shard version 5, square records versions 1 to 4");
    return CG_CGDS_EINPUT;
  }
  if (o->size < 1 || o->size > 65535) {
    snprintf(err, errlen, "image size %d out of range", o->size);
    return CG_CGDS_EINPUT;
  }
  if (*version < 1 || *version > (int)CG_CGDS_VERSION ||
      (*version == 1 && o->encoding != CG_CGDS_RAW) ||
      (o->encoding != CG_CGDS_RAW && o->encoding != CG_CGDS_JPEG && o->encoding != CG_CGDS_PNG) ||
      o->quality < 0 || o->quality > 100) {
    snprintf(err, errlen, "unsupported shard version %d / encoding %d / quality %d", *version,
             (int)o->encoding, o->quality);
    return CG_CGDS_EINPUT;
  }
  struct stat st;
  if (stat(out_path, &st) == 0 && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: is a directory", out_path);
    return CG_CGDS_EINPUT;
  }
  return CG_CGDS_OK;
}

/* One pack under way: what its steps share. */
typedef struct {
  cg_source_t *src; /* the input directories */
  const cg_cgds_pack_opts_t *o;
  int version;
  const char *images_dir, *out_path; /* for messages */
  FILE *f;                           /* the temporary beside out_path */
  uint64_t pos;                      /* bytes written to f so far */
  entry_t *ent;                      /* src->count table entries, made by write_records */
  uint64_t names_bytes, nclass_px, nignore_px; /* sums over the records written */
  int64_t not_square;                /* records whose image is not square */
  int64_t squeezed;                  /* (whole) images past the aspect limit */
  int64_t scaled;                    /* records whose image's shorter side is not the size */
  int chunk;                         /* records decoded in parallel, then written */
  uint8_t *buf;                      /* chunk fitted samples, rec bytes each */
  size_t rec;                        /* the largest record's bytes */
  slot_t *slots;                     /* chunk */
  uint8_t *index;                    /* table, names and labels block, made by write_index */
} pack_t;

/* The message of a failed write (errno) to out_path; CG_CGDS_EIO. Call it right after the
 * failure, before anything can change errno. */
static int write_failed(const pack_t *p, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: write failed: %s (nothing was replaced)", p->out_path,
           strerror(errno));
  return CG_CGDS_EIO;
}

/* Zeros up to the next multiple of align; 0 or -1 (errno). */
static int pad_to(pack_t *p, uint64_t align) {
  static const uint8_t zeros[CG_CGDS_ALIGN];
  const size_t pad = (size_t)((align - p->pos % align) % align);
  if (pad && write_all(p->f, zeros, pad)) return -1;
  p->pos += pad;
  return 0;
}

/* Every record in index order, each at a multiple of CG_CGDS_ALIGN, made p->chunk at a time;
 * their entries go to p->ent. cancel is polled before each record is decoded (make_chunk) and
 * before each is written. CG_CGDS_OK, or an error code with err. */
static int write_records(pack_t *p, volatile sig_atomic_t *cancel, char *err, size_t errlen) {
  const int64_t n = p->src->count;
  const size_t rec = p->rec;
  for (int64_t c0 = 0; c0 < n; c0 += p->chunk) {
    const int m = (int)(n - c0 < p->chunk ? n - c0 : p->chunk);
    make_chunk(p->src, c0, m, p->o, p->buf, rec, p->slots, cancel);
    for (int i = 0; i < m; i++) {
      slot_t *sl = &p->slots[i];
      if (cancel && *cancel) {
        snprintf(err, errlen, "%s: interrupted", p->out_path);
        return CG_CGDS_EINTR;
      }
      if (sl->bad) {
        snprintf(err, errlen, "%s", sl->err);
        return CG_CGDS_EINPUT;
      }
      const char *name = cg_source_name(p->src, c0 + i), *ipath;
      int ih, iw;
      size_t nl = strlen(name);
      if (nl < 1 || nl > CG_CGDS_MAX_NAME) {
        snprintf(err, errlen, "%s/%s: name longer than %d bytes", p->images_dir, name,
                 CG_CGDS_MAX_NAME);
        return CG_CGDS_EINPUT;
      }
      if (pad_to(p, CG_CGDS_ALIGN)) return write_failed(p, err, errlen);
      entry_t *e = &p->ent[c0 + i];
      *e = sl->e;
      e->off = p->pos;
      e->name_len = (uint32_t)nl;
      p->names_bytes += nl;
      p->nclass_px += sl->nclass_px;
      p->nignore_px += sl->nignore_px;
      if (!cg_source_png_image(p->src, c0 + i, &ipath, &ih, &iw)) {
        p->not_square += ih != iw;
        p->scaled += (ih < iw ? ih : iw) != p->o->size;
        int kh, kw, sh, sw; /* the aspect kept, and as stored */
        cg_fit_view_size(ih, iw, p->o->size, &kh, &kw);
        cg_fit_whole_size(ih, iw, p->o->size, &sh, &sw);
        p->squeezed += p->o->whole && (kh != sh || kw != sw);
      }
      if (write_all(p->f, sl->bytes ? sl->bytes : p->buf + (size_t)i * rec, sl->e.len))
        return write_failed(p, err, errlen);
      p->pos += sl->e.len;
      free(sl->bytes);
      sl->bytes = NULL;
    }
  }
  return CG_CGDS_OK;
}

/* After the records, at a multiple of 8: the table, the names and (version 3) the labels block,
 * made as one block so that index_crc is one pass; sets hd's table, file_bytes and index_crc.
 * CG_CGDS_OK, or CG_CGDS_EIO with err. */
static int write_index(pack_t *p, cgds_header_t *hd, char *err, size_t errlen) {
  const int64_t n = p->src->count;
  const size_t esize = entry_bytes((uint32_t)p->version);
  const size_t lbytes = labels_bytes((uint32_t)p->version);
  if (pad_to(p, 8)) return write_failed(p, err, errlen);
  const uint64_t table = p->pos, names_start = table + (uint64_t)n * esize;
  const size_t iblock = (size_t)n * esize + (size_t)p->names_bytes + lbytes;
  p->index = cg_calloc(iblock, 1, "pack index");
  uint64_t noff = names_start;
  for (int64_t i = 0; i < n; i++) {
    put_entry(p->index + (size_t)i * esize, &p->ent[i], noff, p->version);
    memcpy(p->index + (noff - table), cg_source_name(p->src, i), p->ent[i].name_len);
    noff += p->ent[i].name_len;
  }
  if (lbytes) put_labels(p->index + (noff - table), p->o, p->src, p->version);
  if (write_all(p->f, p->index, iblock)) return write_failed(p, err, errlen);
  hd->table = table;
  hd->file_bytes = table + iblock;
  hd->index_crc = cg_crc32(0, p->index, iblock);
  return CG_CGDS_OK;
}

int cg_cgds_pack_opts(const char *images_dir, const char *masks_dir, const char *out_path,
                      const cg_cgds_pack_opts_t *o, volatile sig_atomic_t *cancel,
                      cg_cgds_stats_t *stats, char *err, size_t errlen) {
  int version;
  int rc = check_pack_opts(o, out_path, &version, err, errlen);
  if (rc) return rc;
  const cg_source_opts_t so = {.size = o->size, .max_pixels = o->max_pixels,
                               .nclass = o->nclass, .ignore = o->ignore,
                               .label_map = o->label_map, .exif = o->exif};
  cg_source_t *src = masks_dir ? cg_source_png_dirs(images_dir, masks_dir, &so, err, errlen)
                               : cg_source_png_list(images_dir, &so, err, errlen);
  if (!src) return CG_CGDS_EINPUT;

  const int64_t n = src->count;
  size_t rec = (size_t)o->size * o->size * 4;
  for (int64_t i = 0; o->whole && i < n; i++) { /* whole images: the largest record */
    int rh, rw;
    stored_size(src, i, o, &rh, &rw);
    if ((size_t)rh * rw * 4 > rec) rec = (size_t)rh * rw * 4;
  }
  pack_t p = {.src = src, .o = o, .version = version, .images_dir = images_dir,
              .out_path = out_path, .rec = rec};
  p.ent = cg_calloc((size_t)n, sizeof(entry_t), "pack entries");
  /* PACK_CHUNK records, fewer when that is over PACK_CHUNK_BYTES (large --image-size; at
   * least one): the bound holds whatever the number of threads (fewer then work) */
  const size_t fit = PACK_CHUNK_BYTES / rec;
  p.chunk = fit >= PACK_CHUNK ? PACK_CHUNK : fit > 1 ? (int)fit : 1;
  p.buf = cg_malloc(rec * (size_t)p.chunk, "pack buffer");
  p.slots = cg_calloc((size_t)p.chunk, sizeof(slot_t), "pack slots");
  cgds_header_t hd = {.version = (uint32_t)version, .header_bytes = CG_CGDS_HEADER_BYTES,
                      .count = (uint64_t)n, .h = (uint32_t)o->size, .w = (uint32_t)o->size,
                      .channels = 3, .encoding = version == 1 ? 0 : (uint32_t)o->encoding};
  uint8_t hdr[CG_CGDS_HEADER_BYTES] = {0}; /* zeros until the index is written */
  rc = CG_CGDS_EIO;
  cg_afile_t *af = cg_afile_open(out_path, err, errlen); /* renamed over out_path at the end */
  if (!af) goto done;
  p.f = cg_afile_stream(af);
  if (write_all(p.f, hdr, sizeof hdr)) {
    rc = write_failed(&p, err, errlen);
    goto done;
  }
  p.pos = sizeof hdr;
  if ((rc = write_records(&p, cancel, err, errlen)) || (rc = write_index(&p, &hd, err, errlen)))
    goto done;
  if (cancel && *cancel) { /* after the last record: nothing is committed */
    snprintf(err, errlen, "%s: interrupted", out_path);
    rc = CG_CGDS_EINTR;
    goto done;
  }
  encode_header(&hd, hdr);
  if (fseek(p.f, 0, SEEK_SET) || write_all(p.f, hdr, sizeof hdr)) {
    rc = write_failed(&p, err, errlen);
    goto done;
  }
  rc = cg_afile_commit(af, err, errlen) ? CG_CGDS_EIO : CG_CGDS_OK;
  af = NULL; /* commit frees it, and removes the temporary on failure */
  if (rc == CG_CGDS_OK && stats) {
    stats->records = n;
    stats->bytes = hd.file_bytes;
    stats->nclass_px = p.nclass_px;
    stats->nignore_px = p.nignore_px;
    stats->not_square = p.not_square;
    stats->squeezed = p.squeezed;
    stats->scaled = p.scaled;
  }
done:
  cg_afile_abort(af); /* removes the temporary of a pack that did not finish */
  for (int i = 0; p.slots && i < p.chunk; i++) free(p.slots[i].bytes);
  free(p.ent);
  free(p.buf);
  free(p.slots);
  free(p.index);
  cg_source_destroy(src);
  return rc;
}

int cg_cgds_pack(const char *images_dir, const char *masks_dir, const char *out_path, int size,
                 int64_t max_pixels, volatile sig_atomic_t *cancel, cg_cgds_stats_t *stats,
                 char *err, size_t errlen) {
  const cg_cgds_pack_opts_t o = {size, max_pixels, CG_CGDS_RAW, 0, 0, 1, -1, NULL, 0,
                                 CG_EXIF_STORED};
  return cg_cgds_pack_opts(images_dir, masks_dir, out_path, &o, cancel, stats, err, errlen);
}
