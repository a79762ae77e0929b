/* pack.c: the `pack` command — PNG directories to a .cgds shard (cgds.h).
 *
 * Flags are parsed here rather than by cli.c because pack shares none of train's options and
 * runs as a single process. SIGINT/SIGTERM set a flag that cg_cgds_pack polls between chunks
 * of records, so an interrupted pack still removes its temporary file. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
          "\n"
          "Packs DIR/NAME.png images and their NAME.png masks into one .cgds shard for\n"
          "`train --data FILE.cgds`: each pair is fitted to N x N (shorter side scaled to N,\n"
          "bilinear for images and nearest for masks, then centre-cropped) and stored raw with a\n"
          "CRC32 per record. The file appears complete or not at all.\n"
          "\n"
          "  --images DIR       directory of input images (*.png: gray, RGB, RGBA, palette; 8/16 bit)\n"
          "  --masks DIR        directory of masks with the same names (pixel > 0 = foreground)\n"
          "  --out FILE         the shard to write (replaced atomically)\n"
          "  --image-size N     side of the stored samples, 2..8192 (default %d)\n"
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
  int size = defaults.image_size;
  int64_t max_pixels = defaults.max_image_pixels;
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
    int is_size = 0, is_pixels = 0;
    if (nl == 8 && !strncmp(a, "--images", nl)) dst = &images;
    else if (nl == 7 && !strncmp(a, "--masks", nl)) dst = &masks;
    else if (nl == 5 && !strncmp(a, "--out", nl)) dst = &out;
    else if (nl == 12 && !strncmp(a, "--image-size", nl)) is_size = 1;
    else if (nl == 18 && !strncmp(a, "--max-image-pixels", nl)) is_pixels = 1;
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

  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  pack_cancel = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  char err[1024];
  cg_cgds_stats_t st;
  double t0 = cg_now();
  int rc = cg_cgds_pack(images, masks, out, size, max_pixels, &pack_cancel, &st, err, sizeof err);
  double dt = cg_now() - t0;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc != CG_CGDS_OK) {
    fprintf(stderr, "cogpu-dist pack: error: %s\n", err);
    return rc == CG_CGDS_EINPUT ? CG_EXIT_USAGE : rc == CG_CGDS_EINTR ? 130 : 1;
  }
  printf("packed %lld records of %dx%d into %s: %llu bytes (%.1f MiB) in %.2f s\n",
         (long long)st.records, size, size, out, (unsigned long long)st.bytes,
         (double)st.bytes / (1024.0 * 1024.0), dt);
  fflush(stdout);
  return 0;
}
