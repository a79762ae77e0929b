/* test_pillow.c: the trainer reads a data set's files as a PyTorch pipeline does. Pillow
 * (Debian's python3-pil: tests/pillow_fixtures.py) writes PNG, JPEG, GIF and TIFF files of
 * every colour type, depth and compression it can, and answers for each what
 * np.array(Image.open(f).convert("RGB")), the binary mask and the class ids are (also for the
 * TIFF layouts only libtiff writes: tiff_layouts.c, tiles, planes, MinIsWhite ...); every answer
 * must equal what image_io.h reads from the same file, byte for byte:
 *   - images through cg_image_read_rows (what the loader and predict decode) and
 *     cg_image_read_rgb; JPEGs also with CG_EXIF_APPLY against ImageOps.exif_transpose (EXIF
 *     orientations 1..8);
 *   - masks through cg_image_read_mask_rows as CG_PNG_AS_MASK (Pillow's value > 0; a JPEG's
 *     gray >= 128; a colour file's RGB > 0) and as CG_PNG_AS_LABEL (the value; a colour file, a
 *     JPEG or a value over 255 must fail, naming the file), the size readers agreeing.
 * Skipped (77) when /usr/bin/python3 has no Pillow or numpy (scripts/common.sh installs them). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image_io.h"
#include "png_io.h"
#include "testutil.h"
#include "tiff_layouts.h" /* the TIFF layouts Pillow does not write */

#ifndef CG_TEST_SOURCE_DIR
#define CG_TEST_SOURCE_DIR "tests"
#endif

static char root[64];

typedef struct {
  int skip, err; /* the answer is "SKIP why" or "ERR why" */
  int h, w;
  uint8_t *px;
  char why[256];
} answer_t;

/* Reads DIR/STEM.KIND as pillow_fixtures.py wrote it; 0 or -1 when it is not there. */
static int read_answer(const char *stem, const char *kind, int ch, answer_t *a) {
  char p[512], line[240];
  snprintf(p, sizeof p, "%s/%s.%s", root, stem, kind);
  memset(a, 0, sizeof *a);
  FILE *f = fopen(p, "rb");
  if (!f || !fgets(line, sizeof line, f)) {
    if (f) fclose(f);
    return -1;
  }
  line[strcspn(line, "\n")] = 0;
  if (!strncmp(line, "SKIP", 4) || !strncmp(line, "ERR", 3)) {
    a->skip = line[0] == 'S';
    a->err = line[0] == 'E';
    snprintf(a->why, sizeof a->why, "%s", line);
    fclose(f);
    return 0;
  }
  int ok = sscanf(line, "%d %d", &a->h, &a->w) == 2 && a->h > 0 && a->w > 0;
  const size_t n = ok ? (size_t)a->h * a->w * ch : 0;
  a->px = ok ? malloc(n) : NULL;
  ok = ok && a->px && fread(a->px, 1, n, f) == n;
  fclose(f);
  return ok ? 0 : -1;
}

typedef struct {
  uint8_t *px;
  int h, w, ch, next;
} grab_t;

static int grab_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  (void)why, (void)whylen;
  grab_t *g = ctx;
  g->h = h;
  g->w = w;
  g->px = malloc((size_t)h * w * g->ch);
  return 0;
}

static int grab_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  grab_t *g = ctx;
  if (y != g->next++) return snprintf(why, whylen, "row %d out of order", y), -1;
  memcpy(g->px + (size_t)y * g->w * g->ch, px, (size_t)g->w * g->ch);
  return 0;
}

/* The first pixel where got and want differ, as "(x, y) channel c: got G, want W". */
static void first_diff(const uint8_t *got, const uint8_t *want, int h, int w, int ch, char *buf,
                       size_t len) {
  for (size_t i = 0; i < (size_t)h * w * ch; i++)
    if (got[i] != want[i]) {
      const size_t px = i / ch;
      snprintf(buf, len, "(%zu, %zu) channel %zu: got %d, want %d", px % w, px / w, i % ch,
               got[i], want[i]);
      return;
    }
  snprintf(buf, len, "none");
}

static void check_file(const char *name) {
  char path[512], stem[256], err[1024], diff[128];
  snprintf(path, sizeof path, "%s/%s", root, name);
  snprintf(stem, sizeof stem, "%.*s", (int)(strrchr(name, '.') - name), name);
  static const struct {
    const char *kind;
    int ch;
    cg_png_as_t as;
    cg_exif_t exif;
  } ways[] = {{"rgb", 3, CG_PNG_AS_RGB, CG_EXIF_STORED},
              {"mask", 1, CG_PNG_AS_MASK, CG_EXIF_STORED},
              {"label", 1, CG_PNG_AS_LABEL, CG_EXIF_STORED},
              {"turned", 3, CG_PNG_AS_RGB, CG_EXIF_APPLY}};
  for (size_t k = 0; k < sizeof ways / sizeof *ways; k++) {
    answer_t a;
    if (read_answer(stem, ways[k].kind, ways[k].ch, &a)) {
      CG_TEST_CHECK(0, "%s: no answer %s.%s from pillow_fixtures.py", name, stem, ways[k].kind);
      continue;
    }
    if (a.skip) continue;
    grab_t g = {NULL, 0, 0, ways[k].ch, 0};
    const cg_png_sink_t sink = {grab_begin, grab_row, &g};
    int h = 0, w = 0, rc, src;
    err[0] = 0;
    if (ways[k].as == CG_PNG_AS_RGB) {
      src = cg_image_read_size(path, 0, ways[k].exif, &h, &w, NULL, err, sizeof err);
      rc = cg_image_read_rows(path, 0, 0, ways[k].exif, &sink, NULL, NULL, NULL, err, sizeof err);
    } else {
      src = cg_image_read_mask_size(path, 0, ways[k].as, &h, &w, err, sizeof err);
      rc = cg_image_read_mask_rows(path, 0, ways[k].as, &sink, err, sizeof err);
    }
    if (a.err) {
      CG_TEST_CHECK(rc && strstr(err, name), "%s as %s: read, but Pillow's answer is '%s'",
                    name, ways[k].kind, a.why);
      /* the refusals that a header shows come from the size reader already (not a value over
       * 255, which only the pixels show) */
      if (!strstr(a.why, "over 255"))
        CG_TEST_CHECK(src, "%s as %s: the header reader accepts it (%s)", name, ways[k].kind,
                      a.why);
    } else {
      CG_TEST_CHECK(src == 0 && h == a.h && w == a.w, "%s as %s: size %dx%d, Pillow %dx%d: %s",
                    name, ways[k].kind, w, h, a.w, a.h, err);
      CG_TEST_CHECK(rc == 0 && g.h == a.h && g.w == a.w && g.next == a.h,
                    "%s as %s: decode: %s", name, ways[k].kind, err);
      if (rc == 0 && g.h == a.h && g.w == a.w) {
        first_diff(g.px, a.px, a.h, a.w, ways[k].ch, diff, sizeof diff);
        CG_TEST_CHECK(!strcmp(diff, "none"), "%s as %s: differs from Pillow at %s", name,
                      ways[k].kind, diff);
      }
      if (ways[k].as == CG_PNG_AS_RGB) { /* the whole-image reader (predict) agrees */
        uint8_t *rgb = NULL;
        rc = cg_image_read_rgb(path, 0, ways[k].exif, &rgb, &h, &w, err, sizeof err);
        CG_TEST_CHECK(rc == 0 && h == a.h && w == a.w && !memcmp(rgb, a.px, (size_t)h * w * 3),
                      "%s: cg_image_read_rgb differs from Pillow: %s", name, err);
        free(rgb);
      }
    }
    free(g.px);
    free(a.px);
  }
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(p);
}

int main(void) {
  if (system("/usr/bin/python3 -c 'import PIL, numpy' 2> /dev/null") != 0) {
    printf("SKIP: /usr/bin/python3 has no Pillow or numpy (apt-get install python3-pil)\n");
    return CG_TEST_SKIP;
  }
  snprintf(root, sizeof root, "/tmp/cg_pillow_XXXXXX");
  if (!mkdtemp(root)) {
    perror("mkdtemp");
    return 1;
  }
  CG_TEST_CHECK(cg_test_tiff_layouts(root) == 0, "writing the libtiff layouts");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/pillow_fixtures.py %s", CG_TEST_SOURCE_DIR,
           root);
  CG_TEST_CHECK(system(cmd) == 0, "%s failed", cmd);
  char mf[128], line[256];
  snprintf(mf, sizeof mf, "%s/MANIFEST", root);
  FILE *f = fopen(mf, "r");
  int n = 0;
  while (f && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (!line[0]) continue;
    check_file(line);
    n++;
  }
  if (f) fclose(f);
  CG_TEST_CHECK(n >= 50, "only %d files from pillow_fixtures.py", n);
  printf("%d files compared with Pillow\n", n);
  if (!cg_test_failures) nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  else printf("files kept in %s\n", root);
  return cg_test_done("test_pillow");
}
