/* fuzz_list.c: the list-of-pairs reader (cg_pairlist_read, src/data/pairlist.c) as --data LIST
 * opens it: line splitting (spaces, tabs, comments, CRLF, over-long lines, NUL bytes, UTF-16),
 * paths relative to the list, the unique-name check, skip_bad, and every pair loaded; and the
 * same bytes as a --label-map file (cg_labelmap_parse) and as a --class-names FILE
 * (cg_classnames_parse: accepted names are well formed and their comma list reads back the same).
 *
 * The input is written as DIR/list.txt (a real file: its relative paths resolve in DIR), where
 * Initialize made a few real pairs for lines to name: images/a.png, images/b.jpg, masks/a.png,
 * masks/b.png (same size), and masks/c.png of another size (a bad pair). Even input lengths are
 * opened with skip_bad. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h" // cg_fuzz_tmpdir, cg_fuzz_write_file
#include "classnames.h" // cg_classnames_parse: the same bytes as a --class-names file
#include "jpeg_io.h"   // cg_jpeg_write: the pairs the lines name
#include "labelmap.h"  // cg_labelmap_parse: the same bytes as a --label-map file
#include "png_io.h"
#include "source.h"    // cg_source_open_opts, cg_source_load, cg_source_split

static const char *g_dir;
static char g_list[512];

static void put_png(const char *rel, const uint8_t *px, int h, int w, cg_png_kind_t kind) {
  char p[512], err[256];
  snprintf(p, sizeof p, "%s/%s", g_dir, rel);
  if (cg_png_write(p, px, h, w, kind, err, sizeof err)) abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  g_dir = cg_fuzz_tmpdir("list");
  char p[512], err[256];
  for (const char *d = "images\0masks\0"; *d; d += strlen(d) + 1) {
    snprintf(p, sizeof p, "%s/%s", g_dir, d);
    if (mkdir(p, 0700) && errno != EEXIST) abort();
  }
  uint8_t rgb[12 * 10 * 3], m[12 * 10];
  for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37);
  for (size_t i = 0; i < sizeof m; i++) m[i] = (uint8_t)(i % 3 ? 0 : 255);
  put_png("images/a.png", rgb, 10, 12, CG_PNG_RGB8);
  put_png("masks/a.png", m, 10, 12, CG_PNG_GRAY8);
  put_png("masks/b.png", m, 10, 12, CG_PNG_GRAY8);
  put_png("masks/c.png", m, 12, 10, CG_PNG_GRAY8);
  snprintf(p, sizeof p, "%s/images/b.jpg", g_dir);
  if (cg_jpeg_write(p, rgb, 10, 12, 80, err, sizeof err)) abort();
  snprintf(g_list, sizeof g_list, "%s/list.txt", g_dir);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  cg_fuzz_write_file(g_dir, "list.txt", data, n);
  char err[1024];
  /* the same bytes as a --label-map file: every id it gives is a class id or the ignore label */
  cg_labelmap_t m;
  if (cg_labelmap_parse(g_list, 4, 255, &m, err, sizeof err) == 0)
    for (int v = 0; v < 256; v++)
      if (m.to[v] != -1 && m.to[v] >= 4 && m.to[v] != 255) abort();
  /* as a --class-names FILE of 3 names (odd lengths) or 255: each accepted name 1..48 bytes
   * without a comma, and the comma list parses back to the same names */
  static cg_classnames_t cn, back;
  static char joined[CG_CLASSNAMES_LEN];
  const int k = n & 1 ? 3 : 255;
  if (cg_classnames_parse(g_list, k, &cn, err, sizeof err) == 0) {
    if (cn.k != k) abort();
    for (int c = 0; c < k; c++)
      if (!cn.name[c][0] || strlen(cn.name[c]) > CG_CLASSNAME_MAX || strchr(cn.name[c], ','))
        abort();
    cg_classnames_join(&cn, joined, sizeof joined);
    if (cg_classnames_parse(joined, k, &back, err, sizeof err) || back.k != k) abort();
    for (int c = 0; c < k; c++)
      if (strcmp(cn.name[c], back.name[c])) abort();
  }
  const cg_source_opts_t o = {.size = 8, .max_pixels = 1 << 20, .skip_bad = !(n & 1)};
  cg_source_t *s = cg_source_open_opts(g_list, &o, err, sizeof err);
  if (!s) return 0;
  if (s->count < 1 || s->h != 8 || s->w != 8) abort();
  uint8_t rgb[8 * 8 * 3], mask[8 * 8];
  for (int64_t i = 0; i < s->count && i < 16; i++) {
    const char *name = cg_source_name(s, i);
    if (!name) abort();
    if (cg_source_load(s, i, rgb, mask, err, sizeof err) == 0)
      for (int k = 0; k < 64; k++)
        if (mask[k] > 1) abort(); /* binary masks: 0/1 */
  }
  cg_source_t *tr = NULL, *va = NULL;
  if (s->count >= 2 && cg_source_split(s, 0.5, &tr, &va, err, sizeof err) == 0) {
    if (tr->count + va->count != s->count) abort();
    cg_source_destroy(tr);
    cg_source_destroy(va);
  }
  cg_source_destroy(s);
  return 0;
}
