/* pack.c: the `pack` command — image directories (PNG, JPEG) to a .cgds shard (cgds.h).
 *
 * Flags are parsed here rather than by cli.c because pack shares none of train's options and
 * runs as a single process. SIGINT/SIGTERM set a flag that cg_cgds_pack polls between chunks
 * of records, so an interrupted pack still removes its temporary file. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h" /* cg_afile_check: --out before any work */
#include "cgds.h"
#include "cli.h"
#include "config.h"
#include "log.h"

static volatile sig_atomic_t pack_cancel; /* set by the signal handler only */

static void on_signal(int sig) {
  (void)sig;
  pack_cancel = 1;
}

static void pack_help(FILE *f, int size, long long max_pixels) {
  fprintf(f,
          "usage: cogpu-dist pack --images DIR --masks DIR --out FILE.cgds [--image-size N]\n"
          "                       [--encoding raw|jpeg|png] [--quality Q]\n"
          "                       [--num-classes K] [--ignore-index I] [--max-image-pixels N]\n"
          "\n"
          "Packs DIR/NAME.png (or NAME.jpg, NAME.jpeg) images and their NAME.png masks into one\n"
          ".cgds shard for `train --data FILE.cgds`: each pair is fitted to N x N (shorter side\n"
          "scaled to N, bilinear for images and nearest for masks, then centre-cropped) and stored\n"
          "with a CRC32 per record. The file appears complete or not at all.\n"
          "\n"
          "  --images DIR       directory of input images (*.png: gray, RGB, RGBA, palette; 8/16\n"
          "                     bit; *.jpg, *.jpeg: baseline or progressive, gray, YCbCr, CMYK)\n"
          "  --masks DIR        directory of PNG masks with the same names (gray value or palette\n"
          "                     index > 0, or a non-black RGB colour = foreground)\n"
          "  --out FILE         the shard to write (replaced atomically)\n"
          "  --image-size N     side of the stored samples, 2..8192 (default %d)\n"
          "  --encoding E       how records are stored (default raw):\n"
          "                       raw   decoded pixels: no decoding when training, ~4 bytes a pixel\n"
          "                       jpeg  images as JPEG at --quality (an input JPEG already N x N is\n"
          "                             stored as it is), masks as PNG: smallest, lossy images\n"
          "                       png   images and masks as PNG: lossless\n"
          "                     encoded records are decoded by the loader's helper threads\n"
          "  --quality Q        JPEG quality for --encoding jpeg, 1..100 (default 90)\n"
          "  --num-classes K    masks hold class ids 0..K-1 (gray values or palette indices),\n"
          "                     stored as they are, for `train --num-classes K`; 1 (default):\n"
          "                     binary, pixel > 0 = foreground. The shard records K, the ignore\n"
          "                     label and a palette of the masks: train must give the same\n"
          "                     --num-classes and --ignore-index\n"
          "  --ignore-index I   the ignore label the masks may hold besides the classes, >= K\n"
          "                     (default 255 when K >= 2; -1: none)\n"
          "  --max-image-pixels N\n"
          "                     refuse an image of more pixels (width x height, from its header,\n"
          "                     before anything is allocated; default %lld, Pillow's\n"
          "                     decompression-bomb limit)\n"
          "  --help             this text\n",
          size, max_pixels);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cogpu-dist pack: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see cogpu-dist pack --help)\n");
  va_end(ap);
  return CG_EXIT_USAGE;
}

int cg_pack_main(int argc, char **argv) {
  cg_config_t defaults;
  cg_cli_defaults(&defaults);
  const char *images = NULL, *masks = NULL, *out = NULL;
  int size = defaults.image_size, quality = 90, quality_given = 0, nclass = 1, ignore = -2;
  int64_t max_pixels = defaults.max_image_pixels;
  cg_cgds_enc_t encoding = CG_CGDS_RAW;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      pack_help(stdout, defaults.image_size, (long long)defaults.max_image_pixels);
      return 0;
    }
    if (strncmp(a, "--", 2) != 0) return usage_error("unexpected argument '%s'", a);
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a) : strlen(a);
    const char *v = eq ? eq + 1 : NULL;
    const char **dst = NULL;
    int is_size = 0, is_pixels = 0, is_enc = 0, is_quality = 0, is_k = 0, is_ign = 0;
    if (nl == 8 && !strncmp(a, "--images", nl)) dst = &images;
    else if (nl == 7 && !strncmp(a, "--masks", nl)) dst = &masks;
    else if (nl == 5 && !strncmp(a, "--out", nl)) dst = &out;
    else if (nl == 12 && !strncmp(a, "--image-size", nl)) is_size = 1;
    else if (nl == 18 && !strncmp(a, "--max-image-pixels", nl)) is_pixels = 1;
    else if (nl == 10 && !strncmp(a, "--encoding", nl)) is_enc = 1;
    else if (nl == 9 && !strncmp(a, "--quality", nl)) is_quality = 1;
    else if (nl == 13 && !strncmp(a, "--num-classes", nl)) is_k = 1;
    else if (nl == 14 && !strncmp(a, "--ignore-index", nl)) is_ign = 1;
    else return usage_error("unknown option '%.*s'", (int)nl, a);
    if (!v) {
      if (i + 1 >= argc) return usage_error("%s: missing value", a);
      v = argv[++i];
    }
    if (!*v) return usage_error("%.*s: empty value", (int)nl, a);
    if (is_size) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || end == v || n < 2 || n > 8192)
        return usage_error("--image-size: '%s' is not an integer in 2..8192", v);
      size = (int)n;
    } else if (is_enc) {
      if (!strcmp(v, "raw")) encoding = CG_CGDS_RAW;
      else if (!strcmp(v, "jpeg")) encoding = CG_CGDS_JPEG;
      else if (!strcmp(v, "png")) encoding = CG_CGDS_PNG;
      else return usage_error("--encoding: '%s' is not one of raw, jpeg, png", v);
    } else if (is_quality) {
      char *end;
      long q = strtol(v, &end, 10);
      if (*end || end == v || q < 1 || q > 100)
        return usage_error("--quality: '%s' is not an integer in 1..100", v);
      quality = (int)q;
      quality_given = 1;
    } else if (is_k || is_ign) {
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || end == v || n < (is_k ? 1 : -1) || n > 255)
        return usage_error("%s: '%s' is not an integer in %s..255", is_k ? "--num-classes" :
                           "--ignore-index", v, is_k ? "1" : "-1");
      *(is_k ? &nclass : &ignore) = (int)n;
    } else if (is_pixels) {
      char *end;
      long long n = strtoll(v, &end, 10);
      if (*end || end == v || n < 1 || n > 1073741824LL)
        return usage_error("--max-image-pixels: '%s' is not an integer in 1..1073741824", v);
      max_pixels = n;
    } else {
      *dst = v;
    }
  }
  if (!images) return usage_error("--images DIR is required");
  if (!masks) return usage_error("--masks DIR is required");
  if (!out) return usage_error("--out FILE.cgds is required");
  if (quality_given && encoding != CG_CGDS_JPEG)
    return usage_error("--quality: only for --encoding jpeg");
  if (ignore == -2) ignore = nclass > 1 ? 255 : -1;
  if (ignore >= 0 && ignore < (nclass > 1 ? nclass : 2))
    return usage_error("--ignore-index: %d is a class id (--num-classes %d)", ignore, nclass);
  char err[1024];
  if (cg_afile_check("--out", out, CG_AFILE_REPLACE, err, sizeof err))
    return usage_error("%s", err);

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  pack_cancel = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  cg_cgds_stats_t st;
  double t0 = cg_now();
  const cg_cgds_pack_opts_t po = {size, max_pixels, encoding, quality, 0, nclass, ignore};
  int rc = cg_cgds_pack_opts(images, masks, out, &po, &pack_cancel, &st, err, sizeof err);
  double dt = cg_now() - t0;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc != CG_CGDS_OK) {
    fprintf(stderr, "cogpu-dist pack: error: %s\n", err);
    return rc == CG_CGDS_EINPUT ? CG_EXIT_USAGE : rc == CG_CGDS_EINTR ? 130 : 1;
  }
  static const char *const enc_name[] = {"raw", "jpeg", "png"};
  char labels[96];
  if (nclass > 1) snprintf(labels, sizeof labels, "%d classes", nclass);
  else snprintf(labels, sizeof labels, "binary masks");
  if (ignore >= (nclass > 1 ? nclass : 2))
    snprintf(labels + strlen(labels), sizeof labels - strlen(labels), ", ignore label %d", ignore);
  printf("packed %lld records of %dx%d into %s: %llu bytes (%.1f MiB, %.1f KiB a record, %s; %s) "
         "in %.2f s\n", (long long)st.records, size, size, out, (unsigned long long)st.bytes,
         (double)st.bytes / (1024.0 * 1024.0),
         st.records ? (double)st.bytes / 1024.0 / (double)st.records : 0.0, enc_name[encoding],
         labels, dt);
  fflush(stdout);
  return 0;
}
