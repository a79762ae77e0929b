/* gif_io.c: the first frame of a GIF through giflib (see gif_io.h).
 *
 * giflib reads through our input function, so a short read is told apart from a read error
 * (giflib's own message for both is "Failed to read from given file"), and its errors come back
 * as codes, never printed. The screen and frame sizes are checked before the frame's index
 * buffer is allocated; the buffer is the frame's, and the screen's rows are composed from it
 * one at a time. */
#include "gif_io.h"

#include <string.h>

int cg_gif_sniff(const uint8_t *p, size_t n) {
  return n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6));
}

#ifdef COGPU_HAVE_GIF

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <gif_lib.h>

typedef struct {
  FILE *f;
  int eof, eno; /* a short read: the end of the file, or errno of a failed read */
} input_t;

static int on_read(GifFileType *g, GifByteType *buf, int n) {
  input_t *in = g->UserData;
  const size_t got = fread(buf, 1, (size_t)n, in->f);
  if (got < (size_t)n) {
    if (ferror(in->f)) in->eno = errno ? errno : EIO;
    else in->eof = 1;
  }
  return (int)got;
}

/* giflib's reason for code, or ours where the input function knows better. */
static const char *reason(const input_t *in, int code) {
  if (in->eno) return strerror(in->eno);
  if (in->eof) return "unexpected end of file (truncated)"; /* giflib's code says what was cut */
  const char *s = GifErrorString(code);
  return s ? s : "unknown giflib error";
}

/* The limits png_io.c applies to an IHDR, on a GIF's w x h (the screen, then the frame). */
static int check_size(const char *path, const char *what, uint64_t w, uint64_t h,
                      int64_t max_pixels, char *err, size_t errlen) {
  if (w == 0 || h == 0) {
    snprintf(err, errlen, "%s: GIF decode failed: the %s is %llux%llu pixels", path, what,
             (unsigned long long)w, (unsigned long long)h);
    return -1;
  }
  if (w > CG_PNG_MAX_SIDE || h > CG_PNG_MAX_SIDE) {
    snprintf(err, errlen, "%s: GIF decode failed: the %s is %llux%llu pixels, over the limit "
             "of %d a side", path, what, (unsigned long long)w, (unsigned long long)h,
             CG_PNG_MAX_SIDE);
    return -1;
  }
  char why[256];
  if (cg_image_over_limit(w, h, max_pixels, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", path, why);
    return -1;
  }
  return 0;
}

/* Opens path and reads the header (screen descriptor, global colour map). */
static GifFileType *open_gif(const char *path, FILE **fp, input_t *in, char *err,
                             size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return NULL;
  }
  const int c = getc(f);
  if (c == EOF) {
    if (ferror(f)) snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
    else snprintf(err, errlen, "%s: not a GIF file (empty: 0 bytes)", path);
    fclose(f);
    return NULL;
  }
  ungetc(c, f);
  *in = (input_t){f, 0, 0};
  int code = 0;
  GifFileType *g = DGifOpen(in, on_read, &code);
  if (!g) {
    if (code == D_GIF_ERR_NOT_GIF_FILE && !in->eof)
      snprintf(err, errlen, "%s: not a GIF file", path);
    else snprintf(err, errlen, "%s: GIF decode failed: %s", path, reason(in, code));
    fclose(f);
    return NULL;
  }
  *fp = f;
  return g;
}

static void close_gif(GifFileType *g, FILE *f) {
  int code;
  DGifCloseFile(g, &code); /* frees giflib's state; the FILE is ours */
  fclose(f);
}

/* Reads the records before the first image descriptor, keeping the transparent index of a
 * graphics control extension (-1: none). 0 with the frame described in g->Image, or -1. */
static int find_frame(GifFileType *g, const input_t *in, const char *path, int *transparent,
                      char *err, size_t errlen) {
  *transparent = -1;
  for (;;) {
    GifRecordType type;
    if (DGifGetRecordType(g, &type) == GIF_ERROR) break;
    if (type == IMAGE_DESC_RECORD_TYPE) {
      if (DGifGetImageDesc(g) == GIF_ERROR) break;
      return 0;
    }
    if (type == TERMINATE_RECORD_TYPE) {
      snprintf(err, errlen, "%s: GIF decode failed: the file holds no image", path);
      return -1;
    }
    if (type != EXTENSION_RECORD_TYPE) continue; /* giflib rejects unknown records itself */
    int code;
    GifByteType *ext;
    if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) break;
    if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4) {
      GraphicsControlBlock gcb;
      if (DGifExtensionToGCB(ext[0], ext + 1, &gcb) == GIF_OK)
        *transparent = gcb.TransparentColor;
    }
    while (ext)
      if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto failed;
  }
failed:
  snprintf(err, errlen, "%s: GIF decode failed: %s", path, reason(in, g->Error));
  return -1;
}

/* The screen's and the first frame's checks, from the headers: 0 with the frame described in
 * g->Image and *transparent set (find_frame), or -1. */
static int check_frame(GifFileType *g, const input_t *in, const char *path, int64_t max_pixels,
                       int *transparent, char *err, size_t errlen) {
  const int w = g->SWidth, h = g->SHeight;
  if (check_size(path, "screen", (uint64_t)w, (uint64_t)h, max_pixels, err, errlen) ||
      find_frame(g, in, path, transparent, err, errlen))
    return -1;
  const GifImageDesc *d = &g->Image;
  if (check_size(path, "first frame", (uint64_t)d->Width, (uint64_t)d->Height, max_pixels, err,
                 errlen))
    return -1;
  if (d->Left + d->Width > w || d->Top + d->Height > h) {
    snprintf(err, errlen, "%s: GIF decode failed: the first frame (%dx%d at %d,%d) reaches "
             "outside the %dx%d screen", path, d->Width, d->Height, d->Left, d->Top, w, h);
    return -1;
  }
  return 0;
}

int cg_gif_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                     char *err, size_t errlen) {
  (void)as;
  FILE *f;
  input_t in;
  GifFileType *g = open_gif(path, &f, &in, err, errlen);
  if (!g) return -1;
  int transparent;
  const int rc = check_frame(g, &in, path, max_pixels, &transparent, err, errlen);
  if (!rc) {
    *h = g->SHeight;
    *w = g->SWidth;
  }
  close_gif(g, f);
  return rc;
}

/* The frame's indices, rows in place whatever the interlacing. */
static int read_frame(GifFileType *g, uint8_t *idx, int fw, int fh) {
  static const int first[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
  const int passes = g->Image.Interlace ? 4 : 1;
  for (int p = 0; p < passes; p++)
    for (int y = passes > 1 ? first[p] : 0; y < fh; y += passes > 1 ? step[p] : 1)
      if (DGifGetLine(g, idx + (size_t)y * (size_t)fw, fw) == GIF_ERROR) return -1;
  return 0;
}

/* One screen row out: the fill, with the frame's row over it where the frame covers y. */
static void compose(uint8_t *out, const uint8_t *frame_row, int w, int left, int fw, int fill,
                    cg_png_as_t as, const ColorMapObject *map) {
  uint8_t *ix = as == CG_PNG_AS_RGB ? out + 2 * (size_t)w : out; /* indices, then expanded */
  memset(ix, fill, (size_t)w);
  if (frame_row) memcpy(ix + left, frame_row, (size_t)fw);
  if (as == CG_PNG_AS_MASK)
    for (int x = 0; x < w; x++) out[x] = ix[x] > 0;
  if (as != CG_PNG_AS_RGB) return;
  for (int x = 0; x < w; x++) { /* forward: ix[x] sits at or after out[3x + 2] */
    const int i = ix[x];
    uint8_t r = (uint8_t)i, gr = (uint8_t)i, b = (uint8_t)i; /* past the map: Pillow's gray */
    if (map && i < map->ColorCount) {
      r = map->Colors[i].Red;
      gr = map->Colors[i].Green;
      b = map->Colors[i].Blue;
    }
    out[3 * x] = r;
    out[3 * x + 1] = gr;
    out[3 * x + 2] = b;
  }
}

int cg_gif_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                     const cg_png_sink_t *sink, char *err, size_t errlen) {
  FILE *f;
  input_t in;
  GifFileType *g = open_gif(path, &f, &in, err, errlen);
  if (!g) return -1;
  int rc = -1, transparent;
  uint8_t *idx = NULL, *row = NULL;
  const int w = g->SWidth, h = g->SHeight;
  if (check_frame(g, &in, path, max_pixels, &transparent, err, errlen)) goto out;
  const GifImageDesc *d = &g->Image;
  const int left = d->Left, top = d->Top, fw = d->Width, fh = d->Height;
  char why[256] = "";
  if (sink->begin && sink->begin(sink->ctx, h, w, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", path, why);
    goto out;
  }
  idx = malloc((size_t)fw * (size_t)fh);
  row = malloc((size_t)w * 3);
  if (!idx || !row) {
    snprintf(err, errlen, "%s: out of memory for a %dx%d GIF frame", path, fw, fh);
    goto out;
  }
  if (read_frame(g, idx, fw, fh)) {
    snprintf(err, errlen, "%s: GIF decode failed: %s", path, reason(&in, g->Error));
    goto out;
  }
  const ColorMapObject *map = d->ColorMap ? d->ColorMap : g->SColorMap;
  const int fill = transparent >= 0 ? transparent : 0;
  for (int y = 0; y < h; y++) {
    const uint8_t *fr = y >= top && y < top + fh ? idx + (size_t)(y - top) * (size_t)fw : NULL;
    compose(row, fr, w, left, fw, fill, as, map);
    if (sink->row(sink->ctx, y, row, why, sizeof why)) {
      snprintf(err, errlen, "%s: %s", path, why);
      goto out;
    }
  }
  rc = 0;
out:
  free(idx);
  free(row);
  close_gif(g, f);
  return rc;
}

#else /* !COGPU_HAVE_GIF */

#include <stdio.h>

static int no_gif(const char *path, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: built without giflib (install libgif-dev and rebuild)", path);
  return -1;
}

int cg_gif_read_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                     char *err, size_t errlen) {
  (void)max_pixels, (void)as, (void)h, (void)w;
  return no_gif(path, err, errlen);
}

int cg_gif_read_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                     const cg_png_sink_t *sink, char *err, size_t errlen) {
  (void)max_pixels, (void)as, (void)sink;
  return no_gif(path, err, errlen);
}

#endif
