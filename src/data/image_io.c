/* image_io.c: PNG, JPEG, GIF, TIFF or BMP by the first bytes (image_io.h). A file that starts like
 * none of them is refused here, saying so and what it looks like, rather than by the PNG reader
 * ("not a PNG" for an image that could as well have been a JPEG). */
#include "image_io.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>  /* AT_SYMLINK_NOFOLLOW */
#include <limits.h> /* INT_MAX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "bmp_io.h"
#include "gif_io.h"
#include "jpeg_io.h"
#include "log.h" /* cg_malloc, CG_FATAL */
#include "tiff_io.h"

int cg_image_is_jpeg(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  uint8_t sig[3];
  const size_t got = fread(sig, 1, sizeof sig, f);
  fclose(f);
  return cg_jpeg_sniff(sig, got);
}

const char *cg_image_orientation_text(int o) {
  static const char *const text[9] = {"", "", "mirrored left to right",
                                      "turned 180 degrees", "mirrored top to bottom",
                                      "mirrored along its main diagonal",
                                      "turned 90 degrees clockwise",
                                      "mirrored along its other diagonal",
                                      "turned 90 degrees counter-clockwise"};
  return o >= 0 && o <= 8 ? text[o] : "";
}

void cg_image_size_mismatch(const char *image, cg_exif_t exif, int h, int w, int mh, int mw,
                            char *err, size_t errlen) {
  int o = 0, fh, fw;
  char tmp[256], why[400] = "";
  /* a JPEG's header (anything else fails to read as one) */
  const int swapped = mh == w && mw == h && mh != mw &&
                      !cg_jpeg_read_header(image, 0, CG_EXIF_STORED, &fh, &fw, &o, tmp,
                                           sizeof tmp);
  if (swapped && o >= 5 && exif == CG_EXIF_APPLY)
    snprintf(why, sizeof why, " (sides swapped: --exif-orientation apply reads the image turned "
             "as its EXIF orientation %d says, %s, and the mask fits its stored pixels: "
             "--exif-orientation stored reads them so)", o, cg_image_orientation_text(o));
  else if (swapped && o >= 5)
    snprintf(why, sizeof why, " (sides swapped: its EXIF orientation %d says a viewer shows it %s, "
             "as the mask was drawn, and it is read as stored, as by PIL without "
             "ImageOps.exif_transpose: --exif-orientation apply reads it turned, or save it "
             "upright once with exiftran -ai)", o, cg_image_orientation_text(o));
  else if (swapped)
    snprintf(why, sizeof why, " (sides swapped)");
  snprintf(err, errlen, "mask is %dx%d but its image %s is %dx%d%s", mw, mh, image, w, h, why);
}

/* What a file starting with p[0..n) may be, for the message (NULL: no idea). */
static const char *guess(const uint8_t *p, size_t n) {
  if (n >= 2 && !memcmp(p, "BM", 2)) return "a BMP with a header of an unknown size";
  if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return "a WebP";
  if (n >= 12 && !memcmp(p + 4, "ftyp", 4)) return "a HEIC or AVIF";
  if (n >= 1 && p[0] == '<') return "HTML or SVG text";
  return NULL;
}

typedef enum { K_PNG, K_JPEG, K_GIF, K_TIFF, K_BMP } kind_t;

/* The file's format by its first bytes (K_PNG also for one unreadable or cut inside a
 * signature: the reader says which), or -1 for none of them, with the reason in err. */
static int sniff(const char *path, char *err, size_t errlen) {
  static const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  FILE *f = fopen(path, "rb");
  if (!f) return K_PNG;
  uint8_t p[18];
  const size_t n = fread(p, 1, sizeof p, f);
  fclose(f);
  if (cg_jpeg_sniff(p, n)) return K_JPEG;
  if (cg_gif_sniff(p, n)) return K_GIF;
  if (cg_tiff_sniff(p, n)) return K_TIFF;
  if (cg_bmp_sniff(p, n)) return K_BMP;
  if (n > 0 && !memcmp(p, png, n < 8 ? n : 8)) return K_PNG;
  if (n > 0 && n < 3 && p[0] == 0xFF && (n == 1 || p[1] == 0xD8)) return K_JPEG;
  /* cut inside the signature: the reader says "truncated" */
  if (n > 0 && n < 6 && (!memcmp(p, "GIF87a", n) || !memcmp(p, "GIF89a", n))) return K_GIF;
  if (n > 0 && n < 4 && (!memcmp(p, "II*", n) || !memcmp(p, "MM\0", n))) return K_TIFF;
  if (n == 0) {
    snprintf(err, errlen, "%s: not a PNG, JPEG, GIF, TIFF or BMP file (empty: 0 bytes)", path);
    return -1;
  }
  char start[4 * 4 + 1] = ""; /* the first 4 bytes, printable or as \xNN */
  for (size_t i = 0, k = 0; i < n && i < 4; i++)
    k += (size_t)snprintf(start + k, sizeof start - k, isprint(p[i]) ? "%c" : "\\x%02X", p[i]);
  const char *g = guess(p, n);
  snprintf(err, errlen, "%s: not a PNG, JPEG, GIF, TIFF or BMP file (starts with '%s'%s%s%s)",
           path, start, g ? ": " : "", g ? g : "", g ? "?" : "");
  return -1;
}

const char *const cg_image_exts[] = {".png", ".jpg", ".jpeg", ".gif", ".tif", ".tiff", ".bmp",
                                     NULL};

int cg_image_has_ext(const char *name, size_t *stem) {
  const size_t n = strlen(name);
  if (n == 0 || name[0] == '.') return 0;
  for (size_t i = 0; cg_image_exts[i]; i++) {
    const size_t e = strlen(cg_image_exts[i]);
    if (n > e && strcasecmp(name + n - e, cg_image_exts[i]) == 0) {
      if (stem) *stem = n - e;
      return 1;
    }
  }
  return 0;
}

int cg_image_read_size(const char *path, int64_t max_pixels, cg_exif_t exif, int *h, int *w,
                       int *orient, char *err, size_t errlen) {
  if (orient) *orient = 0;
  switch (sniff(path, err, errlen)) {
  case K_PNG: return cg_png_read_size(path, max_pixels, h, w, err, errlen);
  case K_JPEG: return cg_jpeg_read_header(path, max_pixels, exif, h, w, orient, err, errlen);
  case K_GIF: return cg_gif_read_size(path, max_pixels, CG_PNG_AS_RGB, h, w, err, errlen);
  case K_TIFF: return cg_tiff_read_size(path, max_pixels, CG_PNG_AS_RGB, h, w, err, errlen);
  case K_BMP: return cg_bmp_read_size(path, max_pixels, CG_PNG_AS_RGB, h, w, err, errlen);
  default: return -1;
  }
}

/* Hands the file's size and the decoding scale out before the caller's begin. */
typedef struct {
  const cg_png_sink_t *inner;
  int *full_h, *full_w, *scale;
  const cg_jpeg_read_t *jpeg; /* NULL: another format (its size as decoded, scale 8) */
} outer_t;

static int outer_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  outer_t *o = ctx;
  if (o->full_h) *o->full_h = o->jpeg ? o->jpeg->full_h : h;
  if (o->full_w) *o->full_w = o->jpeg ? o->jpeg->full_w : w;
  if (o->scale) *o->scale = o->jpeg ? o->jpeg->scale : 8;
  return o->inner->begin ? o->inner->begin(o->inner->ctx, h, w, why, whylen) : 0;
}

static int outer_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  outer_t *o = ctx;
  return o->inner->row(o->inner->ctx, y, px, why, whylen);
}

int cg_image_read_rows(const char *path, int64_t max_pixels, int min_side, cg_exif_t exif,
                       const cg_png_sink_t *sink, int *full_h, int *full_w, int *scale,
                       char *err, size_t errlen) {
  const int kind = sniff(path, err, errlen);
  if (kind < 0) return -1;
  cg_jpeg_read_t r = {.max_pixels = max_pixels, .min_side = min_side, .exif = exif};
  outer_t o = {sink, full_h, full_w, scale, kind == K_JPEG ? &r : NULL};
  const cg_png_sink_t s = {outer_begin, outer_row, &o};
  switch (kind) {
  case K_JPEG: return cg_jpeg_read_rows(path, NULL, 0, &r, &s, err, errlen);
  case K_GIF: return cg_gif_read_rows(path, max_pixels, CG_PNG_AS_RGB, &s, err, errlen);
  case K_TIFF: return cg_tiff_read_rows(path, max_pixels, CG_PNG_AS_RGB, &s, err, errlen);
  case K_BMP: return cg_bmp_read_rows(path, max_pixels, CG_PNG_AS_RGB, &s, err, errlen);
  default: return cg_png_read_rows(path, max_pixels, CG_PNG_AS_RGB, &s, err, errlen);
  }
}

int cg_image_read_rgb(const char *path, int64_t max_pixels, cg_exif_t exif, uint8_t **rgb,
                      int *h, int *w, char *err, size_t errlen) {
  cg_png_whole_t t = {NULL, 3, 0, 0};
  const cg_png_sink_t s = {cg_png_whole_begin, cg_png_whole_row, &t};
  if (cg_image_read_rows(path, max_pixels, 0, exif, &s, NULL, NULL, NULL, err, errlen)) {
    free(t.px);
    return -1;
  }
  *rgb = t.px;
  *h = t.h;
  *w = t.w;
  return 0;
}

/* ---- masks ------------------------------------------------------------------------------ */

/* A JPEG mask's RGB rows to 0/1 rows for the caller's sink. */
typedef struct {
  const cg_png_sink_t *inner;
  uint8_t *row;
  int w;
} jmask_t;

static int jmask_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  jmask_t *j = ctx;
  if (!(j->row = malloc((size_t)w))) {
    snprintf(why, whylen, "out of memory for a mask row");
    return -1;
  }
  j->w = w;
  return j->inner->begin ? j->inner->begin(j->inner->ctx, h, w, why, whylen) : 0;
}

static int jmask_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  jmask_t *j = ctx;
  for (int x = 0; x < j->w; x++, px += 3)
    j->row[x] = (19595 * px[0] + 38470 * px[1] + 7471 * px[2] + 0x8000) >> 16 >= 128;
  return j->inner->row(j->inner->ctx, y, j->row, why, whylen);
}

/* The mask's format (sniff), or -1 (err) for a JPEG read as labels or a file that is none of
 * them. */
static int mask_kind(const char *path, cg_png_as_t as, char *err, size_t errlen) {
  const int kind = sniff(path, err, errlen);
  if (kind == K_JPEG && as == CG_PNG_AS_LABEL) {
    snprintf(err, errlen, "%s: a JPEG mask: its lossy compression changes the values, and class "
             "ids (--num-classes K >= 2, --ignore-index, --label-map) need a PNG, GIF, TIFF or "
             "BMP (binary masks may be JPEG: foreground where gray >= 128)", path);
    return -1;
  }
  return kind;
}

int cg_image_read_mask_rows(const char *path, int64_t max_pixels, cg_png_as_t as,
                            const cg_png_sink_t *sink, char *err, size_t errlen) {
  switch (mask_kind(path, as, err, errlen)) {
  case K_PNG: return cg_png_read_rows(path, max_pixels, as, sink, err, errlen);
  case K_GIF: return cg_gif_read_rows(path, max_pixels, as, sink, err, errlen);
  case K_TIFF: return cg_tiff_read_rows(path, max_pixels, as, sink, err, errlen);
  case K_BMP: return cg_bmp_read_rows(path, max_pixels, as, sink, err, errlen);
  case K_JPEG: break;
  default: return -1;
  }
  jmask_t j = {sink, NULL, 0};
  const cg_png_sink_t s = {jmask_begin, jmask_row, &j};
  cg_jpeg_read_t r = {.max_pixels = max_pixels};
  const int rc = cg_jpeg_read_rows(path, NULL, 0, &r, &s, err, errlen);
  free(j.row);
  return rc;
}

int cg_image_read_mask_size(const char *path, int64_t max_pixels, cg_png_as_t as, int *h, int *w,
                            char *err, size_t errlen) {
  switch (mask_kind(path, as, err, errlen)) {
  case K_PNG: return cg_png_read_size_as(path, max_pixels, as, h, w, err, errlen);
  case K_JPEG: return cg_jpeg_read_size(path, max_pixels, h, w, err, errlen);
  case K_GIF: return cg_gif_read_size(path, max_pixels, as, h, w, err, errlen);
  case K_TIFF: return cg_tiff_read_size(path, max_pixels, as, h, w, err, errlen);
  case K_BMP: return cg_bmp_read_size(path, max_pixels, as, h, w, err, errlen);
  default: return -1;
  }
}

void cg_image_stem(const char *name, char *out, size_t len) {
  const char *slash = strrchr(name, '/');
  if (slash) name = slash + 1;
  const char *dot = strrchr(name, '.');
  size_t n = dot && dot != name ? (size_t)(dot - name) : strlen(name);
  snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), name);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int cg_image_cmp_stem(const void *a, const void *b) {
  char x[512], y[512];
  cg_image_stem(*(char *const *)a, x, sizeof x);
  cg_image_stem(*(char *const *)b, y, sizeof y);
  return strcmp(x, y);
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

int cg_image_list_names(const char *dir, char ***out, size_t *n, char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "%.900s: cannot open directory: %s", dir, strerror(errno));
    return -1;
  }
  size_t cap = 64, k = 0;
  char **v = cg_malloc(sizeof(char *) * cap, "file list");
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (!cg_image_has_ext(e->d_name, NULL)) continue;
    if (e->d_type != DT_REG) { /* a link, or a file system that does not say: stat it */
      if (e->d_type != DT_UNKNOWN && e->d_type != DT_LNK) continue;
      struct stat st;
      const int found = fstatat(dirfd(d), e->d_name, &st, 0) == 0, why = errno;
      if (!found && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) { /* not "missing" later on */
        snprintf(err, errlen, "%.900s/%.200s: a symbolic link to nothing usable (%s)", dir,
                 e->d_name, strerror(why));
        closedir(d);
        free_names(v, k);
        return -1;
      }
      errno = 0; /* stat's, not readdir's: the loop's end tests readdir's */
      if (!found || !S_ISREG(st.st_mode)) continue;
    }
    if (k == cap) {
      cap *= 2;
      char **nv = realloc(v, sizeof(char *) * cap);
      if (!nv) CG_FATAL("out of memory listing %s", dir);
      v = nv;
    }
    if (!(v[k++] = strdup(e->d_name))) CG_FATAL("out of memory listing %s", dir);
    errno = 0;
  }
  const int rerr = errno;
  closedir(d);
  if (rerr) {
    snprintf(err, errlen, "%.900s: cannot read directory: %s", dir, strerror(rerr));
    free_names(v, k);
    return -1;
  }
  *out = v;
  *n = k;
  return 0;
}

int cg_image_list_dir(const char *flag, const char *dir, const char *clash, char ***out, int *n,
                      char *err, size_t errlen) {
  *out = NULL;
  *n = 0;
  char **names, why[1200];
  size_t k;
  if (cg_image_list_names(dir, &names, &k, why, sizeof why)) {
    snprintf(err, errlen, "%s: %s", flag, why);
    return -1;
  }
  if (k > INT_MAX) CG_FATAL("%s: more than %d files", dir, INT_MAX);
  char **v = cg_malloc(sizeof(char *) * (k ? k : 1), "file list");
  for (size_t i = 0; i < k; i++)
    if (asprintf(&v[i], "%s/%s", dir, names[i]) < 0) CG_FATAL("out of memory");
  free_names(names, k);
  *n = (int)k;
  qsort(v, (size_t)*n, sizeof(char *), cg_image_cmp_stem);
  for (int i = 0; i + 1 < *n; i++)
    if (!cg_image_cmp_stem(&v[i], &v[i + 1])) {
      char a[512];
      cg_image_stem(v[i], a, sizeof a);
      const int j = strcmp(v[i], v[i + 1]) < 0 ? i : i + 1; /* named in name order */
      const char *x = v[j] + strlen(dir) + 1, *y = v[2 * i + 1 - j] + strlen(dir) + 1;
      if (clash)
        snprintf(err, errlen, "%s: '%.400s' and '%.400s' would both be %s %.100s.png", flag, x,
                 y, clash, a);
      else
        snprintf(err, errlen, "%s: '%.400s' and '%.400s' are masks of one image (which one?)",
                 flag, x, y);
      for (int j = 0; j < *n; j++) free(v[j]);
      free(v);
      *n = 0;
      return -1;
    }
  qsort(v, (size_t)*n, sizeof(char *), cmp_str);
  *out = v;
  return 0;
}
