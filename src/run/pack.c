/* pack.c: the `pack` command — image directories (PNG, JPEG) to a .cgds shard (cgds.h).
 *
 * Flags are parsed here, on the shared option engine (opts.h), rather than by cli.c because pack
 * shares none of train's options and runs as a single process. SIGINT/SIGTERM set a flag that
 * cg_cgds_pack polls before each record, so an interrupted pack stops promptly (exit 128 + the
 * signal: 130, 143), removes its temporary file and commits nothing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"

#include "atomic_file.h" /* cg_afile_check: --out before any work */
#include "cgds.h"
#include "fit.h" /* CG_FIT_WHOLE_MAX_ASPECT: the squeeze warning */
#include "cli.h"
#include "config.h"
#include "log.h"
#include "opts.h" /* cg_opts_parse: the options, as every command line */
#include "path.h" /* cg_path_same_file: --out is not --list */

static volatile sig_atomic_t pack_cancel; /* set by the signal handler only */

static void on_signal(int sig) { pack_cancel = sig; }

static void pack_help(FILE *f, int size, long long max_pixels) {
  fprintf(f,
          "usage: cogpu-dist pack (--images DIR --masks DIR | --list FILE) --out FILE.cgds\n"
          "                       [--image-size N] [--store square|whole]\n"
          "                       [--exif-orientation stored|apply]\n"
          "                       [--encoding raw|jpeg|png] [--quality Q]\n"
          "                       [--num-classes K] [--ignore-index I] [--label-map SPEC]\n"
          "                       [--max-image-pixels N]\n"
          "\n"
          "Packs DIR/NAME.png (or .jpg, .jpeg, .gif, .tif, .tiff, .bmp) images and their masks,\n"
          "or the pairs a --list names, into one .cgds shard for `train --data FILE.cgds`: each\n"
          "pair is fitted to N x N (shorter side scaled to N, bilinear for images and nearest\n"
          "for masks, then centre-cropped), or kept whole (--store whole), and stored with a\n"
          "CRC32 per record. The file appears complete or not at all.\n"
          "\n"
          "  --images DIR       directory of input images (*.png: gray, RGB, RGBA, palette; 8/16\n"
          "                     bit; *.jpg, *.jpeg: baseline or progressive, gray, YCbCr, CMYK;\n"
          "                     *.gif: the first frame; *.tif, *.tiff: the first page; *.bmp)\n"
          "  --masks DIR        directory of masks with the same names, PNG, GIF, TIFF or BMP\n"
          "                     (gray value or palette index > 0, or a non-black RGB colour =\n"
          "                     foreground; binary masks may be JPEGs, foreground where gray >=\n"
          "                     128)\n"
          "  --list FILE        instead of --images and --masks: a text file of IMAGE MASK lines\n"
          "                     (two paths separated by spaces, or a tab when a name holds\n"
          "                     spaces; relative to FILE's directory; '#' starts a comment line),\n"
          "                     as `train --data FILE` reads it\n"
          "  --out FILE         the shard to write (replaced atomically)\n"
          "  --image-size N     side (--store whole: shorter side) of the stored samples,\n"
          "                     2..8192 (default %d)\n"
          "  --store S          square (default): the fitted N x N squares, as validation sees\n"
          "                     them; a wide image's sides are not kept, so training crops see\n"
          "                     only its centre (pack warns). whole: each image whole, its\n"
          "                     shorter side scaled to N (a 2048x1024 photo at N = 256: 512x256;\n"
          "                     shard version 5), so that training crops reach every part of\n"
          "                     it, as from the files; a side longer than 64 x N (or 32768)\n"
          "                     is squeezed to that (its aspect not kept)\n"
          "  --encoding E       how records are stored (default raw):\n"
          "                       raw   decoded pixels: no decoding when training, ~4 bytes a pixel\n"
          "                       jpeg  images as JPEG at --quality (an input JPEG already of the\n"
          "                             record's size is stored as it is), masks as PNG: smallest,\n"
          "                             lossy images\n"
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
          "  --label-map SPEC   the masks' stored values turned into class ids before they are\n"
          "                     stored, as `train --label-map` does: reduce-zero (0 = ignore,\n"
          "                     v = v - 1: ADE20K) or a file of FROM TO lines ('* TO': the rest)\n"
          "  --exif-orientation E\n"
          "                     stored (default): a JPEG image's pixels as stored; apply: as its\n"
          "                     EXIF orientation turns them in a viewer (as train's flag). The\n"
          "                     shard holds them turned but does not say so: give predict (or\n"
          "                     train, whose checkpoints tell predict) --exif-orientation apply\n"
          "  --max-image-pixels N\n"
          "                     refuse an image of more pixels (width x height, from its header,\n"
          "                     before anything is allocated; default %lld, Pillow's\n"
          "                     decompression-bomb limit)\n"
          "  --help             this text\n",
          size, max_pixels);
}

#define usage_error(...) cg_cli_tool_error("pack", __VA_ARGS__)

typedef struct {
  const char *images, *masks, *list, *out, *label_map; /* into argv */
  int size, quality, nclass, ignore; /* ignore -2: not given (255 when nclass >= 2, else -1) */
  int64_t max_pixels;
  char encoding[8];
  char store[8];
  char exif[8]; /* --exif-orientation */
} popts_t;

/* pack's options, on the engine every command line uses (opts.h): the same number rules,
 * range messages and empty-path refusal as train's. --help is pack_help() above. */
#define PO(f) CG_OPT_FIELD(popts_t, f)
static const cg_opt_t k_pack_opts[] = {
    {"images", CG_OPT_PTR, PO(images), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"masks", CG_OPT_PTR, PO(masks), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"list", CG_OPT_PTR, PO(list), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "a list of pairs"},
    {"label-map", CG_OPT_PTR, PO(label_map), 0, 0, CG_OPT_REQUIRED, NULL, 0, "SPEC",
     "mask values to class ids"},
    {"out", CG_OPT_PTR, PO(out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "required"},
    CG_OPT_ROW_NUM(INT, "image-size", PO(size), 2, 8192, 0, "N", "side"),
    CG_OPT_ROW_TEXT(STR, "encoding", PO(encoding), "raw|jpeg|png", 0, "E", "record encoding"),
    CG_OPT_ROW_TEXT(STR, "store", PO(store), "square|whole", 0, "S", "record shape"),
    CG_OPT_ROW_TEXT(STR, "exif-orientation", PO(exif), "stored|apply", 0, "E",
                    "a JPEG's EXIF orientation applied or not"),
    CG_OPT_ROW_NUM(INT, "quality", PO(quality), 1, 100, 0, "Q", "JPEG quality"),
    CG_OPT_ROW_NUM(INT, "num-classes", PO(nclass), 1, 255, 0, "K", "classes"),
    CG_OPT_ROW_NUM(INT, "ignore-index", PO(ignore), -1, 255, 0, "I", "ignore label"),
    CG_OPT_ROW_NUM(I64, "max-image-pixels", PO(max_pixels), 1, 1073741824, 0, "N",
                   "pixel limit"),
};

int cg_pack_main(int argc, char **argv) {
  cg_config_t defaults;
  cg_cli_defaults(&defaults);
  popts_t o = {.size = defaults.image_size, .quality = 90, .nclass = 1, .ignore = -2,
               .max_pixels = defaults.max_image_pixels, .encoding = "raw", .store = "square",
               .exif = "stored"};
  const cg_opts_set_t set = {k_pack_opts, sizeof k_pack_opts / sizeof k_pack_opts[0], 0, &o, 0};
  char err[1024];
  const int prc = cg_opts_parse(&set, 1, argc - 1, argv + 1, "pack", "cogpu-dist pack", err,
                                sizeof err);
  if (prc == 1) {
    pack_help(stdout, defaults.image_size, (long long)defaults.max_image_pixels);
    return 0;
  }
  if (prc) {
    fprintf(stderr, "cogpu-dist pack: error: %s\n", err);
    return CG_EXIT_USAGE;
  }
  if (o.list && (o.images || o.masks))
    return usage_error("--list FILE replaces --images and --masks: give one or the other");
  if (!o.list && !o.images) return usage_error("--images DIR (or --list FILE) is required");
  if (!o.list && !o.masks) return usage_error("--masks DIR is required");
  if (!o.out) return usage_error("--out FILE.cgds is required");
  const cg_cgds_enc_t encoding = !strcmp(o.encoding, "jpeg") ? CG_CGDS_JPEG
                                 : !strcmp(o.encoding, "png") ? CG_CGDS_PNG : CG_CGDS_RAW;
  if (encoding != CG_CGDS_JPEG && cg_opts_given(&set, argc - 1, argv + 1, "quality"))
    return usage_error("--quality: only for --encoding jpeg");
  const int nclass = o.nclass;
  const int ignore = o.ignore == -2 ? (nclass > 1 ? 255 : -1) : o.ignore;
  if (ignore >= 0 && ignore < (nclass > 1 ? nclass : 2))
    return usage_error("--ignore-index: %d is a class id (--num-classes %d)", ignore, nclass);
  if (cg_afile_check("--out", o.out, CG_AFILE_REPLACE_SHARD, err, sizeof err))
    return usage_error("%s", err);
  if (o.list && cg_path_same_file(o.out, o.list))
    return usage_error("--out: '%s' is the --list being read", o.out);
  if (o.label_map && !strcmp(o.label_map, "none")) o.label_map = NULL; /* as train's none */
  if (o.label_map && strcmp(o.label_map, "reduce-zero") &&
      cg_path_same_file(o.out, o.label_map))
    return usage_error("--out: '%s' is the --label-map file being read", o.out);
  cg_labelmap_t lm;
  if (o.label_map && cg_labelmap_parse(o.label_map, nclass, ignore, &lm, err, sizeof err))
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
  const int whole = !strcmp(o.store, "whole");
  const cg_cgds_pack_opts_t po = {o.size, o.max_pixels, encoding, o.quality, 0, nclass, ignore,
                                  o.label_map ? &lm : NULL, whole,
                                  !strcmp(o.exif, "apply") ? CG_EXIF_APPLY : CG_EXIF_STORED};
  int rc = cg_cgds_pack_opts(o.list ? o.list : o.images, o.list ? NULL : o.masks, o.out, &po,
                             &pack_cancel, &st, err, sizeof err);
  double dt = cg_now() - t0;
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (rc != CG_CGDS_OK) {
    fprintf(stderr, "cogpu-dist pack: error: %s\n", err);
    return rc == CG_CGDS_EINPUT ? CG_EXIT_USAGE : rc == CG_CGDS_EINTR ? 128 + pack_cancel : 1;
  }
  static const char *const enc_name[] = {"raw", "jpeg", "png"};
  char labels[192];
  if (nclass > 1) snprintf(labels, sizeof labels, "%d classes", nclass);
  else snprintf(labels, sizeof labels, "binary masks");
  if (ignore >= (nclass > 1 ? nclass : 2))
    snprintf(labels + strlen(labels), sizeof labels - strlen(labels), ", ignore label %d", ignore);
  if (o.label_map)
    snprintf(labels + strlen(labels), sizeof labels - strlen(labels), ", mapped by --label-map "
             "%s", lm.spec);
  char shape[64];
  if (whole) snprintf(shape, sizeof shape, "whole images, shorter side %d", o.size);
  else snprintf(shape, sizeof shape, "%dx%d", o.size, o.size);
  printf("packed %lld records of %s into %s: %llu bytes (%.1f MiB, %.1f KiB a record, %s; %s) "
         "in %.2f s\n", (long long)st.records, shape, o.out, (unsigned long long)st.bytes,
         (double)st.bytes / (1024.0 * 1024.0),
         st.records ? (double)st.bytes / 1024.0 / (double)st.records : 0.0, enc_name[encoding],
         labels, dt);
  if (nclass > 1 && st.nignore_px && !st.nclass_px)
    cg_log_warn("pack: every mask holds only 0 and %d, the ignore label (--ignore-index %d%s): "
                "this shard trains no class other than 0. Binary masks saved as 0/255 pack "
                "with --num-classes 1 (a pixel > 0 is foreground)", ignore, ignore,
                o.ignore == -2 ? ", the default with --num-classes 2 or more" : "");
  if (!whole && st.not_square)
    cg_log_warn("pack: %lld of %lld images are not square: the shard keeps their centred "
                "N x N squares, so training crops never see their sides; --store whole keeps "
                "each image whole", (long long)st.not_square, (long long)st.records);
  if (st.squeezed)
    cg_log_warn("pack: %lld of %lld images are longer than %d times their shorter side (or "
                "than %d pixels at that scale): --store whole squeezes such a side to %lld "
                "(their aspect not kept)", (long long)st.squeezed, (long long)st.records,
                CG_FIT_WHOLE_MAX_ASPECT, CG_PNG_MAX_SIDE,
                (long long)CG_FIT_WHOLE_MAX_ASPECT * o.size < CG_PNG_MAX_SIDE
                    ? (long long)CG_FIT_WHOLE_MAX_ASPECT * o.size
                    : (long long)CG_PNG_MAX_SIDE);
  if (st.scaled) /* predict --resize auto reads the sides from a run on image files only */
    printf("pack: %lld of %lld images were scaled (shorter side to %d); a shard keeps no "
           "original sizes, so predict a model trained on it with --resize fit, the scale "
           "training saw them at\n", (long long)st.scaled, (long long)st.records, o.size);
  fflush(stdout);
  return 0;
}
