/* predict.c: `cogpu-dist predict` — run a trained model on whole images at their own size.
 *
 *   mpirun -np N cogpu-dist predict --checkpoint FILE|DIR --input DIR --output DIR [--masks DIR]
 *
 * Every rank loads the checkpoint and takes every N-th image (data-parallel). An image is read
 * at the scale training saw its images at (--resize: its shorter side scaled to the model's
 * size as training fits images, or as it is) and predicted by sliding-window tiles of the
 * model's size, their logits blended and scaled back to the image's size (tiler.h). The class of
 * a pixel: K = 1, blended logit > 0 (written 0/255); K >= 2, the argmax of the K blended logits
 * (first max wins), written as the class id (8-bit gray) or, when the checkpoint carries the
 * training masks' palette, as a palette PNG with that palette. --save-probs writes
 * NAME.probs.npy beside the mask. With --masks, the counts (binary tp/fp/fn/tn, or a K x K
 * confusion matrix without the ignore pixels) are taken over every pixel of every image at full
 * resolution and summed over ranks; --scores-out writes each image's own figures (gathered to
 * rank 0), --confusion-out the summed counts. Memory per open image: the network's view of it
 * (RGB8), its classes, plus the blended logits of one tile height of rows. */
#include <dirent.h>
#include <fcntl.h> /* AT_SYMLINK_NOFOLLOW */
#include <limits.h> /* PATH_MAX: realpath */
#include <signal.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h> /* strcasecmp: a score file named as an output mask */
#include <sys/stat.h>
#include <unistd.h> /* rmdir */

#include "atomic_file.h"    /* cg_afile_*: every output file replaced whole or not at all */
#include "backend_choose.h" /* cg_backend_choose: auto|cpu|cuda */
#include "ckpt.h"           /* cg_ckpt_read, cg_ckpt_find: the checkpoint (FILE or newest in DIR) */
#include "classnames.h"     /* cg_classnames_from_json: the run's --class-names (settings) */
#include "cpu_layers.h"     /* cg_cpu_class_of: a pixel's class, as every step's mask */
#include "feat.h"           /* cg_pack_input: a tile's input exactly as training makes it */
#include "fit.h"            /* cg_fit_pair, cg_fit_view_size: an image scaled as training fits it */
#include "image_io.h"       /* cg_image_read_*: PNG, JPEG, GIF or TIFF images, by content */
#include "json.h"           /* cg_json_parse: the run's --label-map and names in the checkpoint */
#include "le.h"             /* cg_le_put_u32: the .npy payload, little-endian */
#include "log.h"
#include "metrics.h"        /* cg_confusion_*: binary IoU, Dice, accuracy */
#include "model.h"
#include "opts.h"           /* cg_opts_parse: the options, as every command line */
#include "pairlist.h"       /* cg_pairlist_read: --input LIST */
#include "path.h"           /* cg_path_same_file: a score file that is an input or an output */
#include "preflight.h"      /* cg_preflight_*: will a batch of tiles fit in memory */
#include "png_io.h"         /* reading images and masks, writing masks */
#include "predict.h"
#include "rng.h"            /* cg_fnv1a: the ranks' inputs compared by hash */
#include "source.h"         /* cg_source_spec_kind: --input DIR or LIST */
#include "tiler.h"          /* cg_tiler_*: the images by overlapping tiles, blended */
#include "topo.h"

#define PREDICT_DEFAULT_OVERLAP 0.5
#define PREDICT_MAX_SIDE 16384 /* --resize S at most */
#define PREDICT_MAX_SCALES 8   /* --scales: at most this many factors */

typedef struct {
  char checkpoint[1024], input[1024], output[1024], masks[1024];
  char backend[8];
  int batch;
  int64_t max_pixels; /* --max-image-pixels */
  double overlap;     /* --tile-overlap */
  int save_probs;     /* --save-probs */
  int overlay;        /* --overlay: NAME.overlay.png, the prediction drawn over the image */
  double alpha;       /* --overlay-alpha */
  char scores_out[1024]; /* --scores-out FILE: one CSV row of scores per image ("" = none) */
  char confusion_out[1024]; /* --confusion-out FILE: the confusion matrix as CSV ("" = none) */
  char class_names[CG_CLASSNAMES_LEN]; /* --class-names LIST|FILE|none ("" = the run's) */
  cg_classnames_t names; /* --class-names parsed (check_inputs) */
  int flip;           /* --flip: test-time flip (tiler.h) */
  char **list_masks;  /* --input LIST of IMAGE MASK lines: image i's mask (else NULL) */
  char **dir_masks;   /* --masks DIR: image i's mask there, found at start-up (else NULL) */
  char label_map[1024]; /* --label-map SPEC for the ground truth */
  cg_labelmap_t map;    /* parsed once the checkpoint's classes are known (has_map) */
  int has_map;
  char resize[24];      /* --resize auto|fit|native|S */
  int side;             /* resolved (resolve_resize): the shorter side the network sees an image
                           at, in pixels; 0: the image as it is (native) */
  char side_why[400];   /* how --resize auto decided, for the banner */
  char scales_arg[256]; /* --scales F[,F...] */
  double scale[PREDICT_MAX_SCALES]; /* parsed: factors of the --resize side */
  int nscale;
  char exif_arg[8];     /* --exif-orientation stored|apply ("" = the run's) */
  cg_exif_t exif;       /* resolved (resolve_exif) */
} popts_t;

static void usage(FILE *f) {
  fprintf(f,
          "usage: mpirun -np N cogpu-dist predict --checkpoint FILE|DIR --input DIR|LIST\n"
          "         --output DIR [--masks DIR] [--backend auto|cpu|cuda] [--batch N]\n"
          "         [--resize auto|fit|native|S] [--scales F[,F...]] [--tile-overlap F] [--flip]\n"
          "         [--save-probs] [--overlay [--overlay-alpha A]] [--max-image-pixels N]\n"
          "         [--label-map SPEC] [--scores-out FILE] [--confusion-out FILE]\n"
          "         [--class-names LIST|FILE|none] [--exif-orientation E]\n"
          "  runs the model of a checkpoint on every image of the --input directory (*.png, *.jpg,\n"
          "  *.jpeg, *.gif, *.tif, *.tiff, *.bmp in any letter case), or every image a text LIST\n"
          "  names (IMAGE or IMAGE MASK lines, as train --data LIST reads them; its masks are\n"
          "  scored as --masks ones), at the scale training saw its images at (--resize), and\n"
          "  writes NAME.png (the image's name without its extension) of the image's size to the\n"
          "  --output directory (not one holding the input or masks): binary models 8-bit gray\n"
          "  0/255; K-class models the class ids as 8-bit gray, or as a palette PNG with the\n"
          "  training masks' palette when the checkpoint has one.\n"
          "  Tiling: sliding windows of the model's (training) size, origins spread evenly so that\n"
          "  neighbours overlap by at least F of a tile, the last tile at the edge; a side shorter\n"
          "  than a tile is padded by mirror reflection. Each pixel's logits are the mean over the\n"
          "  tiles covering it weighted by a tent, (1 + distance to the tile's nearest vertical\n"
          "  edge) x (1 + the same horizontally); the class is logit > 0 (K = 1) or the argmax.\n"
          "  --resize       the scale the network sees an image at [auto]. fit: the image scaled\n"
          "                 so that its shorter side is the model's size N (as validation and\n"
          "                 --crop off fit training images; crops zoom in from there), tiled,\n"
          "                 and the logits scaled back to the image's size (bilinear, as\n"
          "                 F.interpolate with align_corners=False); native: the image as it\n"
          "                 is; S: its shorter side scaled to S pixels (1..%d; fit and S keep\n"
          "                 the aspect, the scaled size within --max-image-pixels); auto:\n"
          "                 fit when the run's training images had shorter sides other than N\n"
          "                 (the checkpoint records them), native when they were all N or the\n"
          "                 checkpoint does not say (a shard's, or an older build's)\n"
          "  --checkpoint   a checkpoint file; DIR/best or DIR/last, the checkpoint that pointer\n"
          "                 file names (best: the best validation figure); or a directory: its\n"
          "                 newest valid checkpoint, as train --resume DIR picks it\n"
          "  --masks DIR    ground-truth masks DIR/NAME.png (or .gif, .tif, .tiff, .bmp; binary\n"
          "                 ones also .jpg, .jpeg), all found before any work: prints IoU, Dice\n"
          "                 and pixel accuracy (K >= 2: per-class IoU, Dice and accuracy, the\n"
          "                 classes named by the run's (or predict's) --class-names, mIoU,\n"
          "                 accuracy, mAcc; the checkpoint's ignore label left out) over every\n"
          "                 pixel, counts summed over ranks\n"
          "  --scores-out FILE  with the ground truth: each image's own scores as CSV, a row an\n"
          "                 image in the inputs' order: name,pixels,iou,dice,acc (K >= 2:\n"
          "                 name,pixels,miou,acc,macc and iou_C (iou_NAME with the run's or\n"
          "                 predict's --class-names) for each class; empty where not defined),\n"
          "                 the three lowest IoU (mIoU) named; written by rank 0, whole or not\n"
          "                 at all (not written: a warning and exit 1, or a stopped predict's\n"
          "                 code); a stopped predict writes the rows of the images it finished\n"
          "  --confusion-out FILE  with the ground truth: the pixel counts summed over every\n"
          "                 image as CSV, a row per truth class, a column per predicted one,\n"
          "                 headed by the class names (as the table) or the ids (binary:\n"
          "                 background, foreground); the ignore label left out; not written by\n"
          "                 a stopped predict (its counts are partial)\n"
          "  --class-names LIST|FILE|none  the classes' names in the tables and score files,\n"
          "                 as train's flag takes them [the run's, from the checkpoint; none: the\n"
          "                 ids]\n"
          "  --backend      auto (cuda when usable), cpu or cuda [auto]; computes in fp32\n"
          "  --batch        tiles per step per rank, 1..4096 [8]; at most the rank's tiles\n"
          "                 (with --flip a tile and its mirror count two: an odd N runs N - 1,\n"
          "                 and at least 2)\n"
          "  --scales F[,F...]  test-time scales: the image predicted at each factor of the\n"
          "                 --resize side (native: of its own shorter side), 1 to %d factors of\n"
          "                 0.1..8, and the logits, each scaled back to the image's size,\n"
          "                 averaged (mmsegmentation averages probabilities) [1]; more than one\n"
          "                 holds the image's h x w x K logits while they come (counted\n"
          "                 before any work: the largest image's must fit in memory)\n"
          "  --flip         test-time flip: each tile also goes through mirrored left-right,\n"
          "                 and its logits are the mean of the two (the mirror's mirrored\n"
          "                 back), before the blend; twice the work\n"
          "  --tile-overlap F  least overlap of neighbouring tiles, 0..0.9 [%.1f]\n"
          "  --save-probs   also writes NAME.probs.npy: a NumPy .npy file (version 1.0), float32\n"
          "                 little-endian, C order, shape [H, W, K]: the per-class softmax\n"
          "                 probabilities of the blended logits, at the image's size (K = 1: one\n"
          "                 channel, the sigmoid probability of the foreground); numpy.load\n"
          "                 reads it\n"
          "  --overlay      also writes NAME.overlay.png: the image with each pixel's predicted\n"
          "                 class colour blended in, (1 - A) image + A colour, truncated to 8\n"
          "                 bits (mmsegmentation's SegLocalVisualizer, without its labels); the\n"
          "                 colours are the training masks' palette when the checkpoint has one,\n"
          "                 else PASCAL VOC's colour map (class 0 black, 1 dark red, 2 green)\n"
          "  --overlay-alpha A  --overlay: the colour's weight, 0..1 [0.5]\n"
          "  --max-image-pixels N  an image of more pixels (width x height, from its header) is\n"
          "                 refused before anything is allocated, and so is an image whose\n"
          "                 --resize view has more [%lld, Pillow's bomb limit]\n"
          "  --label-map SPEC  the ground truth's values turned into class ids before they are\n"
          "                 scored, as train --label-map does [the run's, from the checkpoint;\n"
          "                 none: the values are the ids]\n"
          "  --exif-orientation E  stored: a JPEG's pixels as stored; apply: as its EXIF\n"
          "                 orientation turns them in a viewer (its output and overlay\n"
          "                 then have the turned size), as train's flag [the run's]\n",
          PREDICT_MAX_SIDE, PREDICT_MAX_SCALES, PREDICT_DEFAULT_OVERLAP,
          (long long)CG_PNG_DEFAULT_MAX_PIXELS);
}

/* ---- input files ------------------------------------------------------------------------- */

/* --input LIST: the images (and with IMAGE MASK lines, the masks: o->list_masks) in the
 * list's order. The list names the ground truth, so --masks is refused beside it. */
static int read_input_list(popts_t *o, char ***files, int *nfiles, char *err, size_t errlen) {
  if (o->masks[0]) {
    snprintf(err, errlen, "--masks: --input '%.800s' is a list, which names the masks itself "
             "(IMAGE MASK lines)", o->input);
    return -1;
  }
  cg_pairlist_t pl;
  if (cg_pairlist_read(o->input, CG_PAIRLIST_MASKS_OPTIONAL, &pl, err, errlen)) return -1;
  if (pl.n > 100000000) {
    snprintf(err, errlen, "--input: %lld images: at most 100,000,000", (long long)pl.n);
    cg_pairlist_free(&pl);
    return -1;
  }
  *files = pl.image;
  *nfiles = (int)pl.n;
  o->list_masks = pl.has_masks ? pl.mask : NULL;
  if (!pl.has_masks) free(pl.mask);
  for (int64_t i = 0; i < pl.n; i++) free(pl.name[i]);
  free(pl.name);
  free(pl.line);
  return 0;
}

/* -1 with why --input is neither a directory nor a list: missing, an image, UTF-16 text... */
static int input_not_found(const char *in, char *err, size_t errlen) {
  struct stat st;
  const char *what = NULL;
  if (stat(in, &st) == 0 && S_ISREG(st.st_mode) && cg_pairlist_sniff(in, &what)) what = NULL;
  if (stat(in, &st))
    snprintf(err, errlen, "--input '%.900s': %s", in, strerror(errno));
  else
    snprintf(err, errlen, "--input '%.900s' is %s, not a directory of images nor a text list of "
             "IMAGE or IMAGE MASK lines", in, what ? what : cg_afile_kind(st.st_mode));
  return -1;
}

/* Rank 0: --output made if needed, and a directory where masks can be written as every output
 * is (a temporary renamed into place: cg_afile_check's probe), so that a file, /proc or a
 * read-only place is refused before any work, not mask by mask after it. */
static int made_output; /* check_output_dir made --output: a refused job removes it (if empty) */

static int check_output_dir(const char *out, char *err, size_t errlen) {
  struct stat st;
  if (mkdir(out, 0755) == 0) made_output = 1;
  else if (errno != EEXIST) {
    snprintf(err, errlen, "--output: cannot create '%.900s': %s", out, strerror(errno));
    return -1;
  }
  if (stat(out, &st)) {
    snprintf(err, errlen, "--output '%.900s': %s", out, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "--output '%.900s' is %s, not a directory", out,
             cg_afile_kind(st.st_mode));
    return -1;
  }
  char probe[1100];
  snprintf(probe, sizeof probe, "%s/.cogpu-predict-check", out);
  return cg_afile_check("--output", probe, CG_AFILE_REPLACE, err, errlen);
}

/* path's directory into dir (with its last slash; "." when it has none); returns its name. */
static const char *split_dir(const char *path, char *dir, size_t len) {
  const char *slash = strrchr(path, '/');
  snprintf(dir, len, "%.*s", slash ? (int)(slash - path) + 1 : 1, slash ? path : ".");
  return slash ? slash + 1 : path;
}

/* 1 when a and b name the same file: the same one, or (not made yet) the same name in the same
 * directory. */
static int same_target(const char *a, const char *b) {
  if (cg_path_same_file(a, b)) return 1;
  char da[4096], db[4096];
  const char *na = split_dir(a, da, sizeof da), *nb = split_dir(b, db, sizeof db);
  return !strcmp(na, nb) && cg_path_same_file(da, db);
}

/* --scores-out and --confusion-out (rank 0 writes them; the other ranks check the ground truth
 * alone): there is ground truth; each can be written (after --output is made, so that a file
 * in it is checked in place); neither is the other, the --input list, --output itself or a
 * file in --output named as predict's outputs are (*.png, *.npy). 0 or -1 with err. */
static int check_score_files(const popts_t *o, int is_list, int rank, char *err, size_t errlen) {
  const char *const scored[2][2] = {{"--scores-out", o->scores_out},
                                    {"--confusion-out", o->confusion_out}};
  for (int i = 0; i < 2; i++) {
    const char *flag = scored[i][0], *path = scored[i][1];
    if (!path[0]) continue;
    if (!o->masks[0] && !o->list_masks) {
      snprintf(err, errlen, "%s: scores against the ground truth, and there is none (give "
               "--masks DIR, or an --input list of IMAGE MASK lines)", flag);
      return -1;
    }
    if (rank) continue;
    if (cg_afile_check(flag, path, CG_AFILE_REPLACE, err, errlen)) return -1;
    char dir[4096];
    const char *base = split_dir(path, dir, sizeof dir);
    const size_t n = strlen(base);
    const int like_output = (n > 4 && (!strcasecmp(base + n - 4, ".png") ||
                                       !strcasecmp(base + n - 4, ".npy")));
    const char *why = is_list && cg_path_same_file(path, o->input)
                          ? "the --input list (it would be replaced)"
                      : strcmp(o->label_map, "reduce-zero") && strcmp(o->label_map, "none") &&
                              cg_path_same_file(path, o->label_map)
                          ? "the --label-map file being read"
                      : strcmp(o->class_names, "none") && cg_path_same_file(path, o->class_names)
                          ? "the --class-names file being read"
                      : i && o->scores_out[0] && same_target(path, o->scores_out)
                          ? "the --scores-out file too (one would replace the other)"
                      : like_output && cg_path_same_file(dir, o->output)
                          ? "in --output and named as predict's outputs are (*.png, *.npy)"
                          : NULL;
    if (why) {
      snprintf(err, errlen, "%s '%.400s' is %s; give another file", flag, path, why);
      return -1;
    }
  }
  return 0;
}

/* Rank 0, --input LIST: -1 when --output is the directory of a listed image or mask (the
 * masks written there as NAME.png could replace them). */
static int output_holds_listed(const popts_t *o, char **files, int nfiles, char *err,
                               size_t errlen) {
  struct stat so, sd;
  if (stat(o->output, &so)) return 0;
  for (int k = 0; k < 2 * nfiles; k++) {
    const char *f = k < nfiles ? files[k] : o->list_masks ? o->list_masks[k - nfiles] : NULL;
    if (!f) break;
    char dir[4096];
    split_dir(f, dir, sizeof dir);
    if (stat(dir, &sd) == 0 && sd.st_dev == so.st_dev && sd.st_ino == so.st_ino) {
      snprintf(err, errlen, "--output '%.400s' is the directory of %.400s, which --input names: "
               "the predicted masks would be written among the data; give another directory",
               o->output, f);
      return -1;
    }
  }
  return 0;
}

static void free_inputs(popts_t *o, char **files, int nfiles) {
  for (int i = 0; i < nfiles; i++) {
    free(files[i]);
    if (o->list_masks) free(o->list_masks[i]);
    if (o->dir_masks) free(o->dir_masks[i]);
  }
  free(files);
  free(o->list_masks);
  free(o->dir_masks);
  o->list_masks = o->dir_masks = NULL;
}

/* --masks DIR: each image's mask, DIR/STEM with an image extension in any letter case (as train
 * pairs them; a JPEG is a binary mask), into o->dir_masks before any work, so that a missing
 * one is named at start-up (with how many more are missing), not after the others were
 * written. */
static int find_dir_masks(popts_t *o, char **files, int nfiles, char *err, size_t errlen) {
  char **names = NULL;
  int n = 0;
  if (cg_image_list_dir("--masks", o->masks, NULL, &names, &n, err, errlen)) return -1;
  qsort(names, (size_t)n, sizeof *names, cg_image_cmp_stem); /* searched by stem below */
  o->dir_masks = cg_calloc((size_t)(nfiles ? nfiles : 1), sizeof(char *), "masks");
  int missing = 0, first = -1;
  for (int i = 0; i < nfiles; i++) {
    char key[1024];
    cg_image_stem(files[i], key, sizeof key);
    int lo = 0, hi = n - 1, at = -1;
    while (lo <= hi && at < 0) {
      const int mid = (lo + hi) / 2;
      char st[1024];
      cg_image_stem(names[mid], st, sizeof st);
      const int c = strcmp(key, st);
      if (!c) at = mid;
      else if (c < 0) hi = mid - 1;
      else lo = mid + 1;
    }
    if (at >= 0) o->dir_masks[i] = strdup(names[at]);
    else if (!missing++) first = i;
    if (at >= 0 && !o->dir_masks[i]) CG_FATAL("out of memory");
  }
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  if (!missing) return 0;
  char stem[1024], p[2200];
  cg_image_stem(files[first], stem, sizeof stem);
  for (int k = 0; cg_image_exts[k]; k++) { /* there, but no regular file (a FIFO would block) */
    struct stat st;
    snprintf(p, sizeof p, "%s/%s%s", o->masks, stem, cg_image_exts[k]);
    if (stat(p, &st) == 0 && !S_ISREG(st.st_mode)) {
      snprintf(err, errlen, "--masks: %.900s: %s, not a regular file", p,
               cg_afile_kind(st.st_mode));
      return -1;
    }
  }
  snprintf(err, errlen,
           "--masks %.300s: no mask %.200s.png (or " CG_IMAGE_EXTS_ALT ") for %.300s%s", o->masks,
           stem, files[first], missing > 1 ? " (and more images without a mask)" : "");
  return -1;
}

/* ---- options ----------------------------------------------------------------------------- */

/* predict's options, on the engine every command line uses (opts.h): the same number rules,
 * range messages and empty-path refusal as train's. --help is usage() above. */
#define PO(f) CG_OPT_FIELD(popts_t, f)
static const cg_opt_t k_popts[] = {
    {"checkpoint", CG_OPT_STR, PO(checkpoint), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE|DIR",
     "required"},
    {"input", CG_OPT_STR, PO(input), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR|LIST", "required"},
    {"output", CG_OPT_STR, PO(output), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"masks", CG_OPT_STR, PO(masks), 0, 0, 0, NULL, 0, "DIR", "masks to score against"},
    {"backend", CG_OPT_STR, PO(backend), 0, 0, 0, "auto|cpu|cuda", 0, "B", "backend"},
    {"save-probs", CG_OPT_FLAG, PO(save_probs), 0, 1, 0, NULL, 0, "", "probabilities too"},
    {"overlay", CG_OPT_FLAG, PO(overlay), 0, 1, 0, NULL, 0, "", "the prediction over the image"},
    {"overlay-alpha", CG_OPT_DBL, PO(alpha), 0, 1, 0, NULL, 0, "A", "the overlay's weight"},
    {"scores-out", CG_OPT_STR, PO(scores_out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE",
     "each image's scores as CSV"},
    {"confusion-out", CG_OPT_STR, PO(confusion_out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE",
     "the confusion matrix as CSV"},
    {"class-names", CG_OPT_STR, PO(class_names), 0, 0, CG_OPT_REQUIRED, NULL, 0, "LIST|FILE",
     "the classes' names"},
    {"flip", CG_OPT_FLAG, PO(flip), 0, 1, 0, NULL, 0, "", "test-time flip"},
    {"scales", CG_OPT_STR, PO(scales_arg), 0, 0, CG_OPT_REQUIRED, NULL, 0, "F[,F...]",
     "test-time scales"},
    {"batch", CG_OPT_INT, PO(batch), 1, 4096, 0, NULL, 0, "N", "tiles per forward pass"},
    {"tile-overlap", CG_OPT_DBL, PO(overlap), 0, 0.9, 0, NULL, 0, "F", "tile overlap"},
    {"max-image-pixels", CG_OPT_I64, PO(max_pixels), 1, 1073741824, 0, NULL, 0, "N",
     "pixel limit"},
    {"label-map", CG_OPT_STR, PO(label_map), 0, 0, CG_OPT_REQUIRED, NULL, 0, "SPEC",
     "mask values to class ids"},
    {"resize", CG_OPT_STR, PO(resize), 0, 0, CG_OPT_REQUIRED, NULL, 0, "auto|fit|native|S",
     "the scale images are predicted at"},
    {"exif-orientation", CG_OPT_STR, PO(exif_arg), 0, 0, CG_OPT_REQUIRED, "stored|apply", 0, "E",
     "a JPEG's EXIF orientation applied or not"},
};

/* --scales F[,F...]: 1 to PREDICT_MAX_SCALES factors in [0.1, 8] (default 1). */
static int parse_scales(popts_t *o, char *err, size_t errlen) {
  o->nscale = 0;
  const char *s = o->scales_arg; /* "1" unless given ("" given is refused below) */
  for (;;) {
    char *end = NULL;
    const size_t plain = strspn(s, "0123456789.eE+-"); /* no hex, inf or nan, as other flags */
    const double v = (*s >= '0' && *s <= '9') || *s == '.' ? strtod(s, &end) : NAN;
    if (!end || end == s || end > s + plain || !(v >= 0.1 && v <= 8) || (*end && *end != ',') ||
        o->nscale == PREDICT_MAX_SCALES) {
      snprintf(err, errlen, "--scales: '%s' is not 1 to %d factors of 0.1..8 separated by "
               "commas (e.g. 0.75,1,1.25)", o->scales_arg, PREDICT_MAX_SCALES);
      return -1;
    }
    o->scale[o->nscale++] = v;
    if (!*end) return 0;
    s = end + 1;
  }
}

static int parse(int argc, char **argv, popts_t *o, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  snprintf(o->backend, sizeof o->backend, "auto");
  o->batch = 8;
  o->max_pixels = CG_PNG_DEFAULT_MAX_PIXELS;
  o->overlap = PREDICT_DEFAULT_OVERLAP;
  o->alpha = -1; /* not given: 0.5 */
  snprintf(o->resize, sizeof o->resize, "auto");
  snprintf(o->scales_arg, sizeof o->scales_arg, "1");
  const cg_opts_set_t set = {k_popts, sizeof k_popts / sizeof k_popts[0], 0, o, 0};
  const int rc = cg_opts_parse(&set, 1, argc - 1, argv + 1, "predict", "cogpu-dist predict", err,
                               errlen);
  if (rc) return rc; /* 1: --help, which cg_predict_run prints */
  if (!o->checkpoint[0] || !o->input[0] || !o->output[0]) {
    snprintf(err, errlen, "predict needs --checkpoint FILE|DIR, --input DIR|LIST and --output DIR");
    return -1;
  }
  char *end = NULL;
  const long side = strtol(o->resize, &end, 10);
  const int number = o->resize[0] >= '0' && o->resize[0] <= '9' && end && !*end;
  if (number && (side < 1 || side > PREDICT_MAX_SIDE)) {
    snprintf(err, errlen, "--resize: %s is out of range; give a shorter side of 1..%d pixels, "
             "or auto, fit or native", o->resize, PREDICT_MAX_SIDE);
    return -1;
  }
  if (!number && strcmp(o->resize, "auto") && strcmp(o->resize, "fit") &&
      strcmp(o->resize, "native")) {
    snprintf(err, errlen, "--resize: '%s' is not auto, fit, native or a shorter side in pixels",
             o->resize);
    return -1;
  }
  o->side = number ? (int)side : 0;
  if (o->alpha >= 0 && !o->overlay) {
    snprintf(err, errlen, "--overlay-alpha: the weight of --overlay's colours; give --overlay");
    return -1;
  }
  if (o->alpha < 0) o->alpha = 0.5;
  return parse_scales(o, err, errlen);
}

/* --exif-orientation: as given, else the run's (its checkpoint's settings; stored before the
 * flag existed). */
static void resolve_exif(popts_t *o, const cg_ckpt_info_t *info) {
  char jerr[128], run[8] = "stored";
  cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
  if (j && j->type == CG_JSON_OBJ)
    snprintf(run, sizeof run, "%s", cg_json_str(j, "exif-orientation", "stored"));
  cg_json_free(j);
  o->exif = !strcmp(o->exif_arg[0] ? o->exif_arg : run, "apply") ? CG_EXIF_APPLY
                                                                 : CG_EXIF_STORED;
}

/* --resize: o->side for fit (the model's size) and auto, and o->side_why for the banner. auto
 * predicts at the scale the run's training saw its images at: a run whose images had shorter
 * sides other than its --image-size N fitted them (scaled the shorter side to N), so each image
 * is scaled that way here too (fit); a run on N-sided images (tiles cut at N, synthetic data)
 * trained at the files' own scale (native). A checkpoint that does not record its images' sides
 * (a shard's records, builds before 2026-12-06) is predicted natively, as those builds did. */
static void resolve_resize(popts_t *o, const cg_ckpt_info_t *info, const cg_model_t *m) {
  const int n = m->height;
  if (!strcmp(o->resize, "fit")) o->side = n;
  if (strcmp(o->resize, "auto")) return;
  char jerr[128];
  cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
  const char *sides = j && j->type == CG_JSON_OBJ ? cg_json_str(j, "data-sides", "") : "";
  int lo = 0, hi = 0;
  if (sscanf(sides, "%d:%d", &lo, &hi) != 2 || lo < 1 || hi < lo) {
    snprintf(o->side_why, sizeof o->side_why, "the checkpoint does not record the sizes of its "
             "training images (a shard's, or a build before 2026-12-06): native resolution; "
             "--resize fit scales each image's shorter side to %d, as training fitted images",
             n);
  } else if (lo == n && hi == n) {
    snprintf(o->side_why, sizeof o->side_why, "the run trained on images whose shorter side "
             "was its --image-size %d, at their own scale: native resolution", n);
  } else {
    o->side = n;
    snprintf(o->side_why, sizeof o->side_why, "the run fitted its training images (shorter "
             "sides %d..%d) to --image-size %d: each image scaled so that its shorter side is "
             "%d, its logits scaled back to its size (--resize native: full resolution)", lo, hi,
             n, n);
  }
  cg_json_free(j);
}

int cg_predict_parse_args(int argc, char **argv, char *err, size_t errlen) {
  popts_t o;
  return parse(argc, argv, &o, err, errlen);
}

/* ---- checks before anything large is allocated ------------------------------------------- */

static void report_skip(void *ctx, const char *line) {
  if (*(const int *)ctx == 0) cg_log_warn("--checkpoint: %s", line); /* rank 0 speaks */
}

/* --checkpoint FILE, DIR/best or DIR/last, or DIR: its newest valid checkpoint (cg_ckpt_resolve,
 * as --resume DIR), whose path then replaces it in o->checkpoint. Verifies the CRCs; info gets
 * the header. */
static int resolve_checkpoint(popts_t *o, int rank, cg_ckpt_info_t *info, char *err,
                              size_t errlen) {
  char path[1024], why[1200];
  if (cg_ckpt_resolve(o->checkpoint, info, path, sizeof path, report_skip, &rank, why,
                      sizeof why)) {
    snprintf(err, errlen, "--checkpoint: %.1000s", why);
    return -1;
  }
  snprintf(o->checkpoint, sizeof o->checkpoint, "%s", path);
  return 0;
}

/* The run's --label-map from the checkpoint's settings: its table, as the run read it (not the
 * file as it is now). o->map and o->has_map set when the run had a map; -1 with err when the
 * table is malformed. */
static int run_label_map(popts_t *o, const cg_ckpt_info_t *info, int rank, char *err,
                         size_t errlen) {
  char jerr[128];
  cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
  const int obj = j && j->type == CG_JSON_OBJ;
  const char *spec = obj ? cg_json_str(j, "label-map", "") : "";
  const char *table = obj ? cg_json_str(j, "label-map-table", "") : "";
  const char *what = spec[0] ? spec : "(pack's, from the shard the run trained on)";
  int rc = 0;
  if (table[0] && cg_labelmap_from_table(table, what, &o->map)) {
    snprintf(err, errlen, "--checkpoint %.800s: its --label-map table is malformed (--label-map "
             "SPEC or none replaces it)", o->checkpoint);
    rc = -1;
  }
  o->has_map = !rc && table[0];
  if (o->has_map && rank == 0)
    cg_log_info("predict: the ground truth is mapped by the run's --label-map %s (--label-map "
                "none: its values are the class ids)", what);
  cg_json_free(j);
  return rc;
}

/* How the ground truth's values become class ids: --label-map SPEC, none, or the run's. */
static int resolve_label_map(popts_t *o, const cg_ckpt_info_t *info, const cg_model_t *model,
                             int rank, char *err, size_t errlen) {
  const int truth = o->masks[0] || o->list_masks;
  if (!strcmp(o->label_map, "none")) return 0;
  if (o->label_map[0] && !truth) {
    snprintf(err, errlen, "--label-map: maps the ground truth, and there is none (give --masks "
             "DIR, or an --input list of IMAGE MASK lines)");
    return -1;
  }
  if (!o->label_map[0]) return truth ? run_label_map(o, info, rank, err, errlen) : 0;
  if (cg_labelmap_parse(o->label_map, model->nclass, info->ignore_index, &o->map, err, errlen))
    return -1;
  o->has_map = 1;
  return 0;
}

static int scan_rank(const popts_t *o, char **files, int nfiles, const cg_model_t *m,
                     const cg_comm_t *c, int cap, int *tiles, int64_t *max_px, int *turned,
                     int *turned_o, char *err, size_t errlen); /* tiling, below */

/* The checks made before anything large is allocated, each rank for itself: the checkpoint's
 * header and model, the input files, the output directory (rank 0 makes it) and the backend.
 * 0, or -1 with err (a usage error). */
static int check_inputs(popts_t *o, const cg_comm_t *c, cg_ckpt_info_t *info, cg_model_t *model,
                        char ***files, int *nfiles, cg_backend_choice_t *bk, char *err,
                        size_t errlen) {
  if (resolve_checkpoint(o, c->rank, info, err, errlen)) return -1;
  if (cg_ckpt_model(o->checkpoint, info, model, err, errlen)) return -1;
  resolve_resize(o, info, model);
  resolve_exif(o, info);
  if (info->shape.in_c != 3 + CG_NFEAT) {
    snprintf(err, errlen, "checkpoint has %d input channels; this build feeds %d",
             info->shape.in_c, 3 + CG_NFEAT);
    return -1;
  }
  struct stat so, si;
  const int is_dir = stat(o->input, &si) == 0 && S_ISDIR(si.st_mode); /* "synthetic" too */
  const int is_list = !is_dir && cg_source_spec_kind(o->input) == CG_SPEC_LIST;
  if (!is_dir && !is_list) return input_not_found(o->input, err, errlen);
  if (is_list ? read_input_list(o, files, nfiles, err, errlen)
              : cg_image_list_dir("--input", o->input, "predicted to", files, nfiles, err, errlen))
    return -1;
  if (*nfiles == 0) {
    snprintf(err, errlen, "--input: no image files (*.png, *.jpg, *.jpeg, *.gif, *.tif, *.tiff, "
             "*.bmp) "
             "in '%.900s'", o->input);
    return -1;
  }
  if (!is_list && o->masks[0] && find_dir_masks(o, *files, *nfiles, err, errlen)) return -1;
  for (int i = 0; o->overlay && i < *nfiles; i++) { /* NAME.overlay's mask: another's overlay */
    char stem[1024];
    cg_image_stem((*files)[i], stem, sizeof stem);
    const size_t n = strlen(stem), sfx = strlen(".overlay");
    if (n > sfx && !strcmp(stem + n - sfx, ".overlay")) {
      snprintf(err, errlen, "--overlay: the mask of %.600s would be %.300s.png, the name of an "
               "overlay; rename the image or predict it without --overlay", (*files)[i], stem);
      return -1;
    }
  }
  if (resolve_label_map(o, info, model, c->rank, err, errlen)) return -1;
  if (o->class_names[0] && strcmp(o->class_names, "none")) { /* none: the ids */
    char why[768];
    if (!o->masks[0] && !o->list_masks) {
      snprintf(err, errlen, "--class-names: names the classes of the scores against the ground "
               "truth, and there is none (give --masks DIR, or an --input list of IMAGE MASK "
               "lines)");
      return -1;
    }
    if (cg_classnames_parse(o->class_names, model->nclass, &o->names, why, sizeof why)) {
      snprintf(err, errlen, "--class-names: %s", why);
      return -1;
    }
  }
  if (c->rank == 0 && check_output_dir(o->output, err, errlen)) return -1;
  if (check_score_files(o, is_list, c->rank, err, errlen)) return -1;
  /* the masks written as STEM.png would replace the images or the ground truth there (rank 0
   * has made the directory; the verdict is shared): --input, --masks, and the masks of a
   * training layout DIR/images + DIR/masks even when --masks is not given */
  if (c->rank == 0 && is_list && output_holds_listed(o, *files, *nfiles, err, errlen)) return -1;
  const char *const same_as[2][2] = {{o->input, "--input"}, {o->masks, "--masks"}};
  for (int k = 0; c->rank == 0 && k < 2; k++)
    if (same_as[k][0][0] && stat(o->output, &so) == 0 && stat(same_as[k][0], &si) == 0 &&
        so.st_dev == si.st_dev && so.st_ino == si.st_ino) {
      snprintf(err, errlen, "--output '%.400s' is the %s directory: the predicted masks would "
               "replace its files; give another directory", o->output, same_as[k][1]);
      return -1;
    }
  char in_real[PATH_MAX], masks_dir[PATH_MAX + 8];
  if (c->rank == 0 && !is_list && realpath(o->input, in_real)) {
    char *slash = strrchr(in_real, '/');
    if (slash && !strcmp(slash + 1, "images")) {
      snprintf(masks_dir, sizeof masks_dir, "%.*s/masks", (int)(slash - in_real), in_real);
      if (stat(o->output, &so) == 0 && stat(masks_dir, &si) == 0 && so.st_dev == si.st_dev &&
          so.st_ino == si.st_ino) {
        snprintf(err, errlen, "--output '%.400s' is the masks directory beside --input's "
                 "images: the predicted masks would replace the ground truth; give another "
                 "directory", o->output);
        return -1;
      }
    }
  }
  /* fp32 for predictions; each rank takes its own GPU or none (no collectives in the steps) */
  if (cg_backend_choose(o->backend, "fp32", NULL, NULL, bk, err, errlen)) return -1;
  /* this rank's tiles at most; with --flip a tile and its mirror take two of the batch */
  const int per = o->flip ? 2 : 1;
  const int cap = o->batch / per > 0 ? o->batch / per : 1;
  int tiles, turned, orient;
  int64_t max_px = 0;
  if (scan_rank(o, *files, *nfiles, model, c, cap, &tiles, &max_px, &turned, &orient, err,
                errlen))
    return -1;
  /* read as stored, a photo a viewer turns may be what the run trained on turned (a shard
   * packed with --exif-orientation apply records no setting) */
  if (turned >= 0 && o->exif == CG_EXIF_STORED && c->rank == 0)
    cg_log_warn("predict: JPEG inputs carry an EXIF orientation that turns them in a viewer (the "
                "first here, %s: %d, shown %s); they are read as stored (%s): if the run "
                "trained on them turned (train or pack --exif-orientation apply), give "
                "--exif-orientation apply", (*files)[turned], orient,
                cg_image_orientation_text(orient),
                o->exif_arg[0] ? "--exif-orientation stored" : "the run's setting");
  o->batch = per * tiles;
  /* the cpu backend holds a batch of tiles of the checkpoint's size in host memory: a tile side
   * of thousands needs tens of GiB, refused here rather than by the kernel's OOM killer (a CUDA
   * backend's allocation failure is its own clear error); several --scales add an image's
   * h x w x K summed logits (the rank's largest image; the host holds them on any backend) */
  const double gib = 1024.0 * 1024.0 * 1024.0, host = cg_preflight_host_available();
  const cg_preflight_t est = cg_preflight_estimate_eval(model, o->batch);
  const double sums = o->nscale > 1 ? (double)max_px * model->nclass * sizeof(float) : 0;
  const double need = (bk->is_cuda ? 0 : est.host) + sums;
  const int share = c->local_size > 0 ? c->local_size : 1;
  if (host > 0 && need * share > host) {
    snprintf(err, errlen, "--checkpoint %.400s: tiles of %dx%d, --batch %d%s: not enough host "
             "memory: at least %.1f GiB per rank (activations %.1f GiB, the --scales sums of the "
             "largest image %.1f GiB) x %d rank(s) on this node, and %.1f GiB is available: "
             "lower --batch or the --scales, or run fewer ranks per node", o->checkpoint,
             model->height, model->width, o->batch, bk->is_cuda ? " (on the GPU)" : "",
             need / gib, bk->is_cuda ? 0.0 : est.acts / gib, sums / gib, share, host / gib);
    return -1;
  }
  return 0;
}

/* ---- tiling ------------------------------------------------------------------------------ */

/* The size *ih x *iw the network sees an h x w image at for --scales factor f: its own (native
 * and f = 1), or scaled so that its shorter side is f x (o->side, or native its own shorter
 * side), rounded, the aspect kept. */
static void net_size(const popts_t *o, int h, int w, double f, int *ih, int *iw) {
  *ih = h;
  *iw = w;
  const int shorter = h < w ? h : w;
  if (o->side <= 0 && f == 1.0) return;
  long long side = llround((o->side > 0 ? o->side : shorter) * f);
  if (side < 1) side = 1;
  if (side > (1 << 30)) side = 1 << 30;
  /* the aspect kept, no clamp: a view over the pixel limit is refused (view_over_limit) */
  cg_fit_view_size(h, w, (int)side, ih, iw);
}

/* A view of ih x iw of image path over --max-image-pixels: 1 with err naming the file. */
static int view_over_limit(const popts_t *o, const char *path, int ih, int iw, char *err,
                           size_t errlen) {
  if ((int64_t)ih * iw <= o->max_pixels) return 0;
  snprintf(err, errlen, "%.800s: scaled by --resize %s%s to %dx%d, more pixels than "
           "--max-image-pixels %lld", path, o->resize, o->nscale > 1 ? " --scales" : "", iw, ih,
           (long long)o->max_pixels);
  return 1;
}

/* One pass over the headers of this rank's images (files r, r + R, ...), before any work:
 * every scaled view (--resize, --scales) within --max-image-pixels (-1 with err naming the file:
 * over the limit, it would otherwise end the job after the masks before it were written), and
 * the tiles counted up to `cap` into *tiles: the backend's batch need not be larger (a few small
 * images at --batch 32 would otherwise push mostly padding through every step), and the largest
 * image's pixels into *max_px; the first image with an EXIF orientation (a JPEG a viewer turns)
 * into *turned (-1: none) and its orientation into *turned_o. Every mode reads every header,
 * --resize native too: a file that cannot be read or is over the limit ends the job here, not
 * after the masks before it. */
static int scan_rank(const popts_t *o, char **files, int nfiles, const cg_model_t *m,
                     const cg_comm_t *c, int cap, int *tiles, int64_t *max_px, int *turned,
                     int *turned_o, char *err, size_t errlen) {
  int n = 0;
  *turned = -1;
  *turned_o = 0;
  for (int f = c->rank; f < nfiles; f += c->size) {
    int h, w, orient = 0;
    if (cg_image_read_size(files[f], o->max_pixels, o->exif, &h, &w, &orient, err, errlen))
      return -1;
    if (orient > 1 && *turned < 0) {
      *turned = f;
      *turned_o = orient;
    }
    if ((int64_t)h * w > *max_px) *max_px = (int64_t)h * w;
    for (int s = 0; s < o->nscale; s++) {
      int ih, iw;
      net_size(o, h, w, o->scale[s], &ih, &iw);
      if (view_over_limit(o, files[f], ih, iw, err, errlen)) return -1;
      const int64_t t = (int64_t)cg_tiler_origins(iw, m->width, o->overlap, NULL) *
                        cg_tiler_origins(ih, m->height, o->overlap, NULL);
      n = t >= cap - n ? cap : n + (int)t;
    }
  }
  *tiles = n > 0 ? n : 1;
  return 0;
}

/* ---- outputs ----------------------------------------------------------------------------- */

/* Counts over ranks: binary tp fp fn tn, images, failed writes; then K x K (truth x pred). */
typedef struct {
  int k, ignore;
  cg_confusion_t bin;
  int64_t images, failures, probs_failures; /* masks, and .probs.npy files, not written */
  int64_t overlay_failures;                 /* .overlay.png files not written */
  int64_t *confk; /* k*k, K >= 2 */
  int64_t *img;   /* --scores-out, K >= 2: one image's k*k counts */
  char **rows;    /* --scores-out: the CSV row of each input this rank scored (else NULL) */
} ptally_t;

/* Opens NAME.probs.npy and writes its header: NumPy format 1.0, '<f4', C order, [h, w, k]. */
static cg_afile_t *probs_open(const char *path, int h, int w, int k, char *err, size_t errlen) {
  char hdr[160];
  int n = snprintf(hdr, sizeof hdr,
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }", h, w, k);
  const int total = (10 + n + 1 + 63) / 64 * 64; /* magic, version, length, dict, '\n' */
  memset(hdr + n, ' ', (size_t)(total - 10 - n));
  hdr[total - 10 - 1] = '\n';
  const uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(total - 10),
                           (uint8_t)((total - 10) >> 8)};
  cg_afile_t *f = cg_afile_open(path, err, errlen);
  if (!f) return NULL;
  cg_afile_write(f, pre, sizeof pre);
  cg_afile_write(f, hdr, (size_t)(total - 10));
  return f;
}

/* Appends the probabilities of w pixels' logits l (w*k): softmax, or the sigmoid for k = 1. */
static void probs_row(cg_afile_t *f, const float *l, int w, int k) {
  uint8_t buf[4 * 256];
  float pr[256];
  for (int x = 0; x < w; x++) {
    const float *lq = l + (size_t)x * k;
    if (k == 1) {
      pr[0] = (float)(1.0 / (1.0 + exp(-(double)lq[0])));
    } else {
      double mx = lq[0], s = 0;
      for (int c = 1; c < k; c++) mx = lq[c] > mx ? lq[c] : mx;
      for (int c = 0; c < k; c++) s += exp((double)lq[c] - mx);
      for (int c = 0; c < k; c++) pr[c] = (float)(exp((double)lq[c] - mx) / s);
    }
    for (int c = 0; c < k; c++) {
      uint32_t u;
      memcpy(&u, &pr[c], 4);
      cg_le_put_u32(buf + 4 * c, u);
    }
    cg_afile_write(f, buf, 4 * (size_t)k);
  }
}

/* ---- one image: tiles and blending ------------------------------------------------------- */

/* One image being predicted: what becomes of its final rows, the classes (h*w) and the
 * probabilities (--save-probs). Each --scales factor is a tiling of its own (tiler.h), opened
 * in turn; with more than one, their rows are summed in acc and made final when the last one
 * is through. */
typedef struct {
  int file, h, w, k;
  int scales, ended;   /* tilings opened so far, and ended */
  float *acc;          /* --scales with several factors: h*w*k, the sum of their rows */
  uint8_t *cls;        /* h*w: the class of each final row */
  char *probs_path;    /* --save-probs: OUT/NAME.probs.npy; NULL otherwise */
  cg_afile_t *probs;   /* that file being written, opened with the first final row (so that an
                          image holds a descriptor only while its rows come: a batch of many
                          small images does not hold one each); NULL before and after */
  char probs_err[1200];/* why the probabilities could not be written ("" = fine) */
} pimg_t;

/* The network's view of file at --scales factor f (read as training reads it: cg_fit_pair
 * scales it from the file, a JPEG at a DCT scale): *rgb (ih*iw*3) and its size, from p's size
 * (its header, read when p was opened); or -1 with err, also when the file is no longer of that
 * size (cg_fit_pair's expected size). */
static int load_net_rgb(const popts_t *o, const char *path, const pimg_t *p, double f,
                        uint8_t **rgb, int *ih, int *iw, char *err, size_t errlen) {
  net_size(o, p->h, p->w, f, ih, iw);
  if (*ih == p->h && *iw == p->w) { /* native, or already at the scale */
    int h, w;
    if (cg_image_read_rgb(path, o->max_pixels, o->exif, rgb, &h, &w, err, errlen)) return -1;
    if (h == p->h && w == p->w) return 0;
    free(*rgb); /* the file was replaced while predict ran */
    *rgb = NULL;
    snprintf(err, errlen, "%.800s: changed while being predicted (now %dx%d, was %dx%d)", path,
             w, h, p->w, p->h);
    return -1;
  }
  if (view_over_limit(o, path, *ih, *iw, err, errlen)) return -1; /* replaced since the scan */
  *rgb = cg_malloc((size_t)*ih * *iw * 3, "scaled image");
  const cg_fit_opts_t fo = {.size = *ih < *iw ? *ih : *iw, .max_pixels = o->max_pixels,
                            .expect_h = p->h, .expect_w = p->w, .out_h = *ih, .out_w = *iw,
                            .exif = o->exif};
  return cg_fit_pair(path, NULL, &fo, *rgb, NULL, NULL, NULL, err, errlen);
}

/* Output row y's logits l (w*k) made final (the tiler's row function): the class of each pixel
 * (K = 1: logit > 0; else the first argmax), and its probabilities with --save-probs. */
static void final_row(void *ctx, int y, const float *l) {
  pimg_t *p = ctx;
  const int k = p->k;
  uint8_t *cls = p->cls + (size_t)y * p->w;
  for (int x = 0; x < p->w; x++) cls[x] = cg_cpu_class_of(l + (size_t)x * k, k);
  if (p->probs_path && y == 0)
    p->probs = probs_open(p->probs_path, p->h, p->w, p->k, p->probs_err, sizeof p->probs_err);
  if (p->probs) probs_row(p->probs, l, p->w, k);
}

/* A final row of one of several --scales tilings: added to the sum. */
static void sum_row(void *ctx, int y, const float *l) {
  pimg_t *p = ctx;
  float *a = p->acc + (size_t)y * p->w * p->k;
  for (size_t q = 0; q < (size_t)p->w * p->k; q++) a[q] += l[q];
}

/* The rows of several --scales tilings, all through: their mean made final. */
static void final_rows_of_sum(pimg_t *p, int nscale) {
  const size_t n = (size_t)p->w * p->k;
  for (int y = 0; y < p->h; y++) {
    float *a = p->acc + (size_t)y * n;
    for (size_t q = 0; q < n; q++) a[q] /= (float)nscale;
    final_row(p, y, a);
  }
}

/* The tiling of p at its next --scales factor. */
static cg_tiler_t *pimg_next_tiler(pimg_t *p, const popts_t *o, char **files,
                                   const cg_model_t *m) {
  char err[1024];
  uint8_t *rgb = NULL;
  int ih, iw;
  if (load_net_rgb(o, files[p->file], p, o->scale[p->scales], &rgb, &ih, &iw, err, sizeof err))
    cg_die(CG_EXIT_USAGE, "predict: %s", err);
  p->scales++;
  return cg_tiler_open(rgb, ih, iw, p->h, p->w, p->k, m->height, m->width, o->overlap,
                       o->nscale > 1 ? sum_row : final_row, p);
}

/* Image `file` to predict (its tilings come from pimg_next_tiler). */
static pimg_t *pimg_open(const popts_t *o, char **files, int file, const cg_model_t *m) {
  pimg_t *p = cg_calloc(1, sizeof *p, "image");
  char err[1024];
  if (cg_image_read_size(files[file], o->max_pixels, o->exif, &p->h, &p->w, NULL, err,
                         sizeof err))
    cg_die(CG_EXIT_USAGE, "predict: %s", err);
  p->file = file;
  p->k = m->nclass;
  p->cls = cg_malloc((size_t)p->h * p->w, "classes");
  if (o->nscale > 1)
    p->acc = cg_calloc((size_t)p->h * p->w * p->k, sizeof(float), "logits of the scales");
  if (o->save_probs) {
    char stem[1024], path[2200]; /* --output (1024) / NAME (1024).probs.npy */
    cg_image_stem(files[file], stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s.probs.npy", o->output, stem);
    p->probs_path = cg_malloc(strlen(path) + 1, "path");
    memcpy(p->probs_path, path, strlen(path) + 1);
  }
  return p;
}

static void pimg_close(pimg_t *p) {
  if (!p) return;
  cg_afile_abort(p->probs);
  free(p->probs_path);
  free(p->acc);
  free(p->cls);
  free(p);
}

/* Reading a ground-truth mask row by row into a buffer of its image's size. */
typedef struct {
  int h, w, k, ignore;
  uint8_t *m;
  const cg_labelmap_t *map; /* --label-map (NULL: none) */
  const char *image;        /* its image's path */
  cg_exif_t exif;           /* how it was read */
} truth_sink_t;

static int truth_begin(void *ctx, int h, int w, char *why, size_t whylen) {
  truth_sink_t *t = ctx;
  if (h != t->h || w != t->w) {
    cg_image_size_mismatch(t->image, t->exif, t->h, t->w, h, w, why, whylen);
    return -1;
  }
  t->m = cg_malloc((size_t)h * w, "mask");
  return 0;
}

/* As training reads masks (cg_fit_pair): the --label-map first; K >= 2, class ids or the
 * ignore label; binary with an ignore label, that label kept and other values > 0 made 1. */
static int truth_row(void *ctx, int y, const uint8_t *px, char *why, size_t whylen) {
  truth_sink_t *t = ctx;
  uint8_t *r = t->m + (size_t)y * t->w;
  memcpy(r, px, (size_t)t->w);
  if (t->k == 1 && t->ignore < 0 && !t->map) return 0; /* read as 0/1 */
  for (int x = 0; x < t->w; x++) {
    const int stored = r[x];
    if (t->map) {
      if (t->map->to[stored] < 0) {
        snprintf(why, whylen, "mask value %d at x %d, y %d is not in --label-map %s", stored, x,
                 y, t->map->spec);
        return -1;
      }
      r[x] = (uint8_t)t->map->to[stored];
    }
    if (r[x] == t->ignore) continue;
    if (t->k == 1) {
      r[x] = r[x] > 0;
    } else if (r[x] >= t->k) { /* the message, stored value and all, made here only */
      char ign[48] = "", was[128] = "";
      if (r[x] != stored)
        snprintf(was, sizeof was, " (stored %d, mapped by --label-map %s)", stored,
                 t->map->spec);
      if (t->ignore >= 0) snprintf(ign, sizeof ign, " nor the ignore label %d", t->ignore);
      snprintf(why, whylen, "mask value %d%s at x %d, y %d is not a class id of the model's "
               "--num-classes %d (0..%d)%s", r[x], was, x, y, t->k, t->k - 1, ign);
      return -1;
    }
  }
  return 0;
}

/* The ground truth of p at its size (class ids, the ignore label; binary: 0/1), or NULL with
 * a message naming the file. */
static uint8_t *load_truth(const popts_t *o, char **files, const pimg_t *p, int ignore,
                           char *err, size_t errlen) {
  const char *path = o->list_masks ? o->list_masks[p->file] : o->dir_masks[p->file];
  truth_sink_t t = {p->h,          p->w, p->k, ignore, NULL, o->has_map ? &o->map : NULL,
                    files[p->file], o->exif};
  const cg_png_sink_t sink = {truth_begin, truth_row, &t};
  const cg_png_as_t as = p->k == 1 && ignore < 0 && !o->has_map ? CG_PNG_AS_MASK
                                                                : CG_PNG_AS_LABEL;
  struct stat st; /* a FIFO there would block the read forever */
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%.900s: %s, not a regular file", path, cg_afile_kind(st.st_mode));
    return NULL;
  }
  if (cg_image_read_mask_rows(path, o->max_pixels, as, &sink, err, errlen)) {
    free(t.m);
    return NULL;
  }
  return t.m;
}

/* Each ground-truth mask of this rank's images (files r, r + R, ...) read whole as the
 * scoring will read it, before any work: a missing or unreadable mask, a JPEG of class ids, a
 * mask of another size than its image or a value that is no class id is named before the
 * first mask is written, not after (masks are small beside the network's work on their
 * images). 0, or -1 with err. */
static int check_truth(const popts_t *o, char **files, int nfiles, int k, int ignore,
                       const cg_comm_t *c, char *err, size_t errlen) {
  for (int i = c->rank; (o->list_masks || o->dir_masks) && i < nfiles; i += c->size) {
    pimg_t p = {.file = i, .k = k};
    if (cg_image_read_size(files[i], o->max_pixels, o->exif, &p.h, &p.w, NULL, err, errlen))
      return -1;
    uint8_t *truth = load_truth(o, files, &p, ignore, err, errlen);
    if (!truth) {
      char *why = strdup(err);
      snprintf(err, errlen, "%s: %s", o->list_masks ? "ground truth" : "--masks",
               why ? why : "out of memory");
      free(why);
      return -1;
    }
    free(truth);
  }
  return 0;
}

/* --overlay: path (STEM.overlay.png) gets image's pixels with the class colours of cls (k = 1:
 * 0 or 255) blended in, (1 - alpha) v + alpha colour truncated, as mmsegmentation's
 * SegLocalVisualizer draws a prediction (in double, its numpy float64). 0, or -1 with err. */
static int write_overlay(const popts_t *o, const char *image, const pimg_t *p, const uint8_t *cls,
                         const cg_ckpt_info_t *info, const char *path, char *err, size_t errlen) {
  uint8_t *rgb = NULL;
  int h = 0, w = 0;
  if (cg_image_read_rgb(image, o->max_pixels, o->exif, &rgb, &h, &w, err, errlen)) return -1;
  if (h != p->h || w != p->w) { /* the file changed while predict ran */
    snprintf(err, errlen, "%s: now %dx%d, predicted at %dx%d", image, w, h, p->w, p->h);
    free(rgb);
    return -1;
  }
  uint8_t pal[768];
  cg_png_voc_palette(pal);
  if (p->k > 1 && info->npal >= p->k) memcpy(pal, info->palette, 3 * (size_t)info->npal);
  const double a = o->alpha, keep = 1.0 - a;
  const size_t px = (size_t)h * w;
  for (size_t q = 0; q < px; q++) {
    const uint8_t *col = pal + 3 * (p->k == 1 ? cls[q] != 0 : cls[q]);
    for (int ch = 0; ch < 3; ch++)
      rgb[3 * q + ch] = (uint8_t)((double)rgb[3 * q + ch] * keep + (double)col[ch] * a);
  }
  const int rc = cg_png_write(path, rgb, h, w, CG_PNG_RGB8, err, errlen);
  free(rgb);
  return rc;
}

/* A CSV field of a figure: "%.6f", or empty where it is not defined. */
static void csv_num(FILE *f, int defined, double v) {
  if (defined) fprintf(f, ",%.6f", v);
  else fputc(',', f);
}

/* --scores-out: the CSV row (malloc'd, no line end) of an image named stem, of its counts
 * (binary: one; K >= 2: ck, k x k): NAME,pixels,iou,dice,acc or NAME,pixels,miou,acc,macc and
 * each class's IoU. A name holding a comma, a quote or a line end is quoted, as RFC 4180. */
static char *score_row(const char *stem, int k, const cg_confusion_t *one, const int64_t *ck) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  CG_ASSERT(f != NULL);
  if (strpbrk(stem, ",\"\r\n")) {
    fputc('"', f);
    for (const char *s = stem; *s; s++) fprintf(f, *s == '"' ? "\"\"" : "%c", *s);
    fputc('"', f);
  } else {
    fputs(stem, f);
  }
  if (k == 1) {
    const int64_t px = one->tp + one->fp + one->fn + one->tn;
    fprintf(f, ",%lld", (long long)px);
    csv_num(f, px > 0, cg_confusion_iou(one));
    csv_num(f, px > 0, cg_confusion_dice(one));
    csv_num(f, px > 0, cg_confusion_acc(one));
  } else {
    int64_t px = 0;
    for (int i = 0; i < k * k; i++) px += ck[i];
    fprintf(f, ",%lld", (long long)px);
    csv_num(f, px > 0, cg_confk_miou(ck, k));
    csv_num(f, px > 0, cg_confk_acc(ck, k));
    csv_num(f, px > 0, cg_confk_macc(ck, k));
    for (int c = 0; c < k; c++) {
      double iou, dice;
      const int present = cg_confk_class(ck, k, c, &iou, &dice, NULL, NULL);
      csv_num(f, present, iou);
    }
  }
  fclose(f);
  return buf;
}

/* p with every row final, counted against the truth with --masks, written as NAME.png
 * (and NAME.probs.npy committed, NAME.overlay.png written). */
static void pimg_finish(pimg_t *p, const popts_t *o, char **files, const cg_ckpt_info_t *info,
                        ptally_t *t) {
  const size_t px = (size_t)p->h * p->w;
  const int k = p->k;
  uint8_t *cls = p->cls;
  char err[2400], stem[1024], path[2200];
  cg_image_stem(files[p->file], stem, sizeof stem);
  if (o->masks[0] || o->list_masks) {
    uint8_t *truth = load_truth(o, files, p, t->ignore, err, sizeof err);
    if (!truth) cg_die(CG_EXIT_USAGE, "predict: %s: %s", o->list_masks ? "ground truth" : "--masks",
                       err);
    cg_confusion_t one = {0};
    if (k == 1) {
      cg_confusion_add_ignore(&one, cls, truth, px, t->ignore);
      cg_confusion_merge(&t->bin, &one);
    } else if (t->rows) { /* the image's own counts, then the total's (exact: integers) */
      memset(t->img, 0, sizeof(int64_t) * (size_t)k * k);
      cg_confk_add(t->img, k, cls, truth, px, t->ignore);
      cg_confk_merge(t->confk, t->img, k);
    } else {
      cg_confk_add(t->confk, k, cls, truth, px, t->ignore);
    }
    free(truth);
    if (t->rows) t->rows[p->file] = score_row(stem, k, &one, t->img);
  }
  snprintf(path, sizeof path, "%s/%s.png", o->output, stem);
  int rc; /* the mask's */
  if (k == 1) {
    for (size_t q = 0; q < px; q++) cls[q] = cls[q] ? 255 : 0;
    rc = cg_png_write(path, cls, p->h, p->w, CG_PNG_GRAY8, err, sizeof err);
  } else if (info->npal >= k) { /* the training masks were palette PNGs: the same palette */
    rc = cg_png_write_indexed(path, cls, p->h, p->w, info->palette, info->npal, err, sizeof err);
  } else {
    rc = cg_png_write(path, cls, p->h, p->w, CG_PNG_GRAY8, err, sizeof err);
  }
  if (rc) {
    cg_log_warn("%s", err);
    t->failures++;
  } else if (o->save_probs) { /* the mask is written: only its probabilities can fail now */
    int prc;
    if (p->probs) {
      prc = cg_afile_commit(p->probs, err, sizeof err);
      p->probs = NULL; /* freed by the commit, whatever its outcome */
    } else {
      snprintf(err, sizeof err, "%s", p->probs_err);
      prc = -1;
    }
    if (prc) {
      cg_log_warn("%s", err);
      t->probs_failures++;
    }
  }
  if (!rc && o->overlay) { /* the mask written (its probabilities' failure is counted apart) */
    snprintf(path, sizeof path, "%s/%s.overlay.png", o->output, stem);
    if (write_overlay(o, files[p->file], p, cls, info, path, err, sizeof err)) {
      cg_log_warn("--overlay: %s", err);
      t->overlay_failures++;
    }
  }
  t->images++;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* The hidden temporaries ".STEM.png.XXXXXX", ".STEM.probs.npy.XXXXXX" and
 * ".STEM.overlay.png.XXXXXX" (cg_afile_temp_base) of this run's images left in out by a predict
 * that was killed (a second Ctrl-C, SIGKILL, a fatal error): removed, with a notice, before any
 * is written again. Other images' are left: another predict may be writing them into out. */
static void remove_partials(const char *out, char **files, int nfiles) {
  DIR *d = opendir(out);
  if (!d) return;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    char base[1100], stem[1024];
    struct stat st;
    if (!cg_afile_temp_base(e->d_name, base, sizeof base) ||
        fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
      continue;
    const size_t bl = strlen(base);
    for (int i = 0; i < nfiles; i++) {
      cg_image_stem(files[i], stem, sizeof stem);
      const size_t sl = strlen(stem);
      const int ours = bl > sl && !memcmp(base, stem, sl) &&
                       (!strcmp(base + sl, ".png") || !strcmp(base + sl, ".probs.npy") ||
                        !strcmp(base + sl, ".overlay.png"));
      if (ours && unlinkat(dirfd(d), e->d_name, 0) == 0) {
        removed++;
        break;
      }
    }
  }
  closedir(d);
  if (removed)
    cg_log_info("predict: removed %d partial file(s) an interrupted predict left in %s", removed,
                out);
}

/* SIGINT/SIGTERM: the signal, set by the handler only. predict_all stops at the next batch;
 * every mask already written is complete (each file is replaced atomically). */
static volatile sig_atomic_t predict_stop;

static void on_stop(int sig) { predict_stop = sig; }

/* What predict_all's feed needs: this rank's files r, r + R, ... and where they go. */
typedef struct {
  const popts_t *o;
  char **files;
  int nfiles, next_k;
  const cg_model_t *model;
  const cg_ckpt_info_t *info;
  const cg_comm_t *c;
  ptally_t *t;
  pimg_t *cur; /* the image whose tilings are being opened (NULL: the next file's turn) */
} pfeed_t;

static cg_tiler_t *feed_next(void *ctx) {
  pfeed_t *f = ctx;
  if (!f->cur || f->cur->scales == f->o->nscale) {
    const int file = f->c->rank + f->next_k * f->c->size;
    if (file >= f->nfiles) return NULL;
    f->next_k++;
    f->cur = pimg_open(f->o, f->files, file, f->model);
  }
  return pimg_next_tiler(f->cur, f->o, f->files, f->model);
}

/* A tiling through: its image written and counted when it was the last of its scales, all
 * complete; a stop inside one writes nothing of its image. */
static void feed_end(void *ctx, cg_tiler_t *tl, int complete) {
  pfeed_t *f = ctx;
  pimg_t *p = cg_tiler_ctx(tl);
  cg_tiler_close(tl);
  if (complete && ++p->ended < f->o->nscale) return; /* its other scales are still to come */
  if (complete && p->acc) final_rows_of_sum(p, f->o->nscale);
  if (complete) pimg_finish(p, f->o, f->files, f->info, f->t);
  if (p == f->cur) f->cur = NULL;
  pimg_close(p);
}

/* Every tile of this rank's images through the backend (cg_tiler_run); images are finished
 * (written, counted) as their last tile comes back. */
static void predict_all(const cg_backend_ops_t *ops, cg_backend_t *be, const popts_t *o,
                        char **files, int nfiles, const cg_model_t *model,
                        const cg_ckpt_info_t *info, const cg_comm_t *c, ptally_t *t) {
  pfeed_t f = {o, files, nfiles, 0, model, info, c, t, NULL};
  const cg_tiler_feed_t feed = {feed_next, feed_end, &f, &predict_stop, o->flip, NULL};
  cg_tiler_run(ops, be, model, o->batch, &feed);
  if (f.cur && f.cur->ended == f.cur->scales) pimg_close(f.cur); /* stopped between its scales */
}

/* Rank 0's summary of the counts summed over ranks. */
static void print_metrics(const ptally_t *t, const char *const *names) {
  if (t->k == 1) {
    printf("predict: IoU %.6f  Dice %.6f  accuracy %.6f  (%lld images, full resolution)\n",
           cg_confusion_iou(&t->bin), cg_confusion_dice(&t->bin), cg_confusion_acc(&t->bin),
           (long long)t->images);
    return;
  }
  const int k = t->k;
  cg_confk_print_table("predict: ", "predict: ", 5, t->confk, k, names, 6);
  printf("predict: mIoU %.6f  mDice %.6f  accuracy %.6f  mAcc %.6f  (%lld images, full "
         "resolution%s)\n",
         cg_confk_miou(t->confk, k), cg_confk_mdice(t->confk, k), cg_confk_acc(t->confk, k),
         cg_confk_macc(t->confk, k), (long long)t->images,
         t->ignore >= 0 ? ", ignore label left out" : "");
}

/* The run's --class-names from the checkpoint's settings into n (none when it had none); a
 * malformed list is warned about and left out (names only label the table). */
static void run_class_names(const cg_ckpt_info_t *info, int k, cg_classnames_t *n) {
  char jerr[128], why[1024];
  memset(n, 0, sizeof *n);
  cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
  if (cg_classnames_from_json(j, "class-names", k, n, why, sizeof why))
    cg_log_warn("predict: the checkpoint's --class-names are left out: %s", why);
  cg_json_free(j);
}

/* --scores-out: the rows of every rank (index, tab, row, NUL each) gathered to rank 0 and
 * written there, in the inputs' order under a header, the images with the lowest figure
 * (IoU; K >= 2 mIoU) named. Collective. 0, or on rank 0 -1 when the file could not be written
 * (warned about). */
static int write_scores(const popts_t *o, const ptally_t *t, int nfiles, const char *const *names,
                        const cg_comm_t *c) {
  char *mine = NULL;
  size_t mn = 0;
  FILE *f = open_memstream(&mine, &mn);
  CG_ASSERT(f != NULL);
  for (int i = 0; i < nfiles; i++)
    if (t->rows[i]) fprintf(f, "%d\t%s%c", i, t->rows[i], 0);
  fclose(f);
  /* MPI counts are ints: rows of about 2 GB in all (a million images of 255 classes) do not go
   * in one gather; rank 0 says so rather than abort */
  const int root = c->rank == 0, len = mn < INT_MAX ? (int)mn : -1;
  int *lens = root ? cg_calloc((size_t)c->size, sizeof(int), "score lengths") : NULL;
  int *displs = root ? cg_calloc((size_t)c->size, sizeof(int), "score offsets") : NULL;
  CG_CHECK_MPI(MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, c->world));
  int64_t total = 0;
  int fits = 1;
  for (int r = 0; root && r < c->size; r++) {
    displs[r] = (int)(total < INT_MAX ? total : 0);
    fits &= lens[r] >= 0;
    total += lens[r] >= 0 ? lens[r] : INT_MAX;
  }
  fits &= total < INT_MAX;
  CG_CHECK_MPI(MPI_Bcast(&fits, 1, MPI_INT, 0, c->world));
  char *all = root && fits ? cg_malloc((size_t)total + 1, "scores") : NULL;
  if (fits)
    CG_CHECK_MPI(MPI_Gatherv(mine, len, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, c->world));
  free(mine);
  free(lens);
  free(displs);
  if (!root) return 0;
  if (!fits) {
    cg_log_warn("--scores-out: the rows of %d images take %lld bytes or more, beyond one gather "
                "(2 GB): not written; predict the images in parts", nfiles, (long long)total);
    return -1;
  }
  const char **row = cg_calloc((size_t)nfiles, sizeof *row, "score rows");
  for (char *s = all; s < all + total; s += strlen(s) + 1) {
    char *tab = strchr(s, '\t');
    const long i = strtol(s, NULL, 10);
    CG_ASSERT(tab && i >= 0 && i < nfiles);
    row[i] = tab + 1;
  }
  char err[1400];
  int rc = -1, scored = 0;
  cg_afile_t *out = cg_afile_open(o->scores_out, err, sizeof err);
  if (out) {
    char *head = NULL;
    size_t hn = 0;
    FILE *h = open_memstream(&head, &hn);
    CG_ASSERT(h != NULL);
    fprintf(h, "name,pixels,%s", t->k == 1 ? "iou,dice,acc" : "miou,acc,macc");
    for (int c2 = 0; t->k > 1 && c2 < t->k; c2++)
      if (names) fprintf(h, ",iou_%s", names[c2]);
      else fprintf(h, ",iou_%d", c2);
    fputc('\n', h);
    fclose(h);
    cg_afile_write(out, head, hn);
    free(head);
    for (int i = 0; i < nfiles; i++)
      if (row[i]) {
        cg_afile_write(out, row[i], strlen(row[i]));
        cg_afile_write(out, "\n", 1);
        scored++;
      }
    rc = cg_afile_commit(out, err, sizeof err);
  }
  if (rc) {
    cg_log_warn("--scores-out: %s", err);
  } else {
    printf("predict: the scores of %d image(s) -> %s", scored, o->scores_out);
    /* the lowest three of the figure after the name and the pixel count (a quoted name ends
     * at the row's last quote: no other field holds one) */
    int low[3] = {-1, -1, -1};
    double lv[3] = {0, 0, 0};
    for (int i = 0; i < nfiles; i++) {
      if (!row[i]) continue;
      const char *end = row[i][0] == '"' ? strrchr(row[i], '"') + 1 : strchr(row[i], ',');
      const char *fig = strchr(end + 1, ','); /* end is the comma after the name */
      if (!fig || fig[1] == ',' || !fig[1]) continue; /* not defined: no pixel scored */
      const double v = strtod(fig + 1, NULL);
      for (int j = 0; j < 3; j++)
        if (low[j] < 0 || v < lv[j]) {
          for (int m = 2; m > j; m--) low[m] = low[m - 1], lv[m] = lv[m - 1];
          low[j] = i, lv[j] = v;
          break;
        }
    }
    for (int j = 0; j < 3 && low[j] >= 0; j++) { /* control bytes of a name shown as '?' */
      const char *r = row[low[j]];
      const char *end = r[0] == '"' ? strrchr(r, '"') + 1 : strchr(r, ',');
      printf("%s", j ? ", " : "; the lowest: ");
      for (const char *q = r; q < end; q++) putchar((unsigned char)*q < 0x20 ? '?' : *q);
      printf(" %.4f", lv[j]);
    }
    printf("%s\n", low[0] < 0 ? "" : t->k == 1 ? " (IoU)" : " (mIoU)");
  }
  free(row);
  free(all);
  return rc;
}

/* --confusion-out (rank 0): the counts summed over ranks as CSV, a row per truth class and a
 * column per predicted one, headed by the classes' names (binary: background, foreground).
 * 0, or -1 when the file could not be written (warned about). */
static int write_confusion(const popts_t *o, const ptally_t *t, const char *const *names) {
  const int k = t->k > 1 ? t->k : 2;
  const int64_t bin[4] = {t->bin.tn, t->bin.fp, t->bin.fn, t->bin.tp};
  const int64_t *ck = t->k > 1 ? t->confk : bin;
  static const char *const bnames[2] = {"background", "foreground"};
  if (t->k == 1) names = bnames;
  char *buf = NULL, err[1400];
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  CG_ASSERT(f != NULL);
  fputs("truth\\predicted", f);
  for (int c = 0; c < k; c++)
    if (names) fprintf(f, ",%s", names[c]);
    else fprintf(f, ",%d", c);
  fputc('\n', f);
  for (int r = 0; r < k; r++) {
    if (names) fputs(names[r], f);
    else fprintf(f, "%d", r);
    for (int c = 0; c < k; c++) fprintf(f, ",%lld", (long long)ck[r * k + c]);
    fputc('\n', f);
  }
  fclose(f);
  const int rc = cg_afile_save(o->confusion_out, buf, n, err, sizeof err);
  free(buf);
  if (rc) cg_log_warn("--confusion-out: %s", err);
  else printf("predict: the confusion matrix (%d x %d, a row per truth class) -> %s\n", k, k,
              o->confusion_out);
  return rc;
}

/* Every rank must predict from the same images, checkpoint and ground-truth map (each reads
 * its own copy: a node's listing or checkpoint directory may differ): their hashes are compared
 * with rank 0's. 0, or on rank 0 -1 with err naming the first rank that differs and what. */
static int check_same_inputs(const popts_t *o, char **files, int nfiles,
                             const cg_ckpt_info_t *info, const cg_comm_t *c, char *err,
                             size_t errlen) {
  if (c->size == 1) return 0;
  uint64_t h[3] = {cg_fnv1a(CG_FNV1A_INIT, &nfiles, sizeof nfiles), 0, 0};
  for (int i = 0; i < nfiles; i++) {
    h[0] = cg_fnv1a(h[0], files[i], strlen(files[i]) + 1);
    const char *m = o->list_masks ? o->list_masks[i] : o->dir_masks ? o->dir_masks[i] : "";
    h[0] = cg_fnv1a(h[0], m, strlen(m) + 1);
  }
  const uint64_t ck[3] = {(uint64_t)info->step, info->run_id, info->payload_crc};
  h[1] = cg_fnv1a(CG_FNV1A_INIT, ck, sizeof ck);
  h[2] = o->has_map ? cg_fnv1a(CG_FNV1A_INIT, o->map.to, sizeof o->map.to) : 1;
  uint64_t *all = cg_malloc(sizeof(uint64_t) * 3 * (size_t)c->size, "input hashes");
  CG_CHECK_MPI(MPI_Allgather(h, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, c->world));
  static const char *const what[3] = {
      "other --input images or masks (a listing that differs between nodes)",
      "another checkpoint (a --checkpoint DIR whose newest file differs between nodes)",
      "another ground-truth --label-map (a map file that differs between nodes)"};
  int rc = 0; /* rank 0 says it; cg_comm_report_errors ends every rank */
  for (int r = 1; c->rank == 0 && r < c->size && !rc; r++)
    for (int k = 0; k < 3 && !rc; k++)
      if (all[3 * r + k] != all[k]) {
        snprintf(err, errlen, "rank %d reads %s than rank 0: every rank must predict the same "
                 "inputs", r, what[k]);
        rc = -1;
      }
  free(all);
  return rc;
}

/* The backend of this rank with the checkpoint's weights. */
static cg_backend_t *open_backend(const cg_backend_choice_t *bk, const cg_model_t *model,
                                  const popts_t *o, cg_topo_t *topo, const cg_comm_t *c,
                                  const float *params, cg_buckets_t *bkts) {
  const cg_topo_plan_t *pl = cg_topo_plan(topo);
  cg_buckets_plan(model, 0, bkts);
  cg_backend_cfg_t bc = {0};
  bc.batch = o->batch;
  bc.precision = bk->precision;
  bc.threads = pl->ncpus;
  bc.device = pl->gpu >= 0 ? pl->gpu : c->local_rank;
  bc.buckets = bkts;
  bc.fault_nan_step = -1;
  bc.nclass = model->nclass;
  bc.ignore_index = -1; /* no loss is used: the logits are what predict wants */
  bc.dice_weight = 1.0f;
  cg_backend_t *be = NULL;
  char err[1024];
  if (bk->ops->create(model, &bc, &be, err, sizeof err))
    CG_FATAL("backend %s: %s", bk->ops->name, err);
  bk->ops->set_params(be, params);
  return be;
}

int cg_predict_run(int argc, char **argv, cg_comm_t *c) {
  popts_t o;
  char err[1024] = "";
  int rc = parse(argc, argv, &o, err, sizeof err);
  if (rc == 1) {
    if (c->rank == 0) usage(stdout);
    return 0;
  }
  cg_ckpt_info_t info;
  cg_model_t model;
  cg_backend_choice_t bk;
  char **files = NULL;
  int nfiles = 0;
  if (!rc) rc = check_inputs(&o, c, &info, &model, &files, &nfiles, &bk, err, sizeof err);
  const int failed = cg_comm_any(c, rc != 0); /* the checks below are for a job that can run */
  if (!failed) rc = check_same_inputs(&o, files, nfiles, &info, c, err, sizeof err);
  if (!failed && !rc)
    rc = check_truth(&o, files, nfiles, model.nclass, info.ignore_index, c, err, sizeof err);
  if (cg_comm_report_errors(c, rc ? err : NULL)) { /* each distinct reason once, by rank 0 */
    if (made_output) rmdir(o.output); /* a refused job leaves no directory it made */
    free_inputs(&o, files, nfiles);
    return CG_EXIT_USAGE;
  }
  if (c->rank == 0) remove_partials(o.output, files, nfiles);
  CG_CHECK_MPI(MPI_Barrier(c->world)); /* the output directory exists for every rank */
  float *params = cg_malloc(sizeof(float) * model.nparams, "weights");
  float *mm = cg_malloc(sizeof(float) * model.nparams, "m");
  float *vv = cg_malloc(sizeof(float) * model.nparams, "v");
  if (cg_ckpt_read(o.checkpoint, &info.shape, NULL, params, mm, vv, NULL, err,
                   sizeof err) != CG_CKPT_OK)
    CG_FATAL("%s", err);
  free(mm);
  free(vv);
  cg_topo_t *topo = cg_topo_create(c, bk.is_cuda ? CG_TOPO_GPU_AUTO : CG_TOPO_GPU_NONE);
  cg_buckets_t bkts;
  cg_backend_t *be = open_backend(&bk, &model, &o, topo, c, params, &bkts);
  /* from here a stop signal ends predict at the next batch; a second one, the default action */
  struct sigaction sa, old_int, old_term;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop;
  sa.sa_flags = SA_RESTART | SA_RESETHAND; /* a mask being written is finished, not cut */
  sigemptyset(&sa.sa_mask);
  predict_stop = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  if (c->rank == 0)
    printf("predict: %d image(s) from %s on %d rank(s), backend %s, model base %d depth %d, "
           "%d class(es), tiles %dx%d overlap %.2f, %d a step%s (checkpoint %s, step %lld)\n",
           nfiles, o.input, c->size, bk.ops->name, info.shape.base, info.shape.depth,
           model.nclass, model.height, model.width, o.overlap, o.batch,
           o.flip ? " (each tile and its mirror: --flip)" : "", o.checkpoint, (long long)info.step);
  if (c->rank == 0 && (o.nscale > 1 || o.scale[0] != 1.0))
    printf("predict: --scales %s: each image at %d scale(s) of the --resize side (native: of "
           "its own shorter side), their logits averaged\n", o.scales_arg, o.nscale);
  if (c->rank == 0 && o.exif == CG_EXIF_APPLY)
    printf("predict: --exif-orientation apply%s: JPEG images read as their EXIF orientation "
           "turns them in a viewer (outputs of the turned size)\n",
           o.exif_arg[0] ? "" : " (the run's)");
  if (c->rank == 0 && o.side_why[0])
    printf("predict: --resize auto: %s\n", o.side_why);
  else if (c->rank == 0 && o.side > 0)
    printf("predict: --resize %s: each image scaled so that its shorter side is %d, its logits "
           "scaled back to its size\n", o.resize, o.side);
  fflush(stdout); /* a log followed while predict runs (tail -f) shows it at once */
  ptally_t t;
  memset(&t, 0, sizeof t);
  t.k = model.nclass;
  t.ignore = info.ignore_index;
  if (t.k > 1) t.confk = cg_calloc((size_t)t.k * t.k, sizeof(int64_t), "confusion");
  if (o.scores_out[0]) {
    t.rows = cg_calloc((size_t)nfiles, sizeof *t.rows, "score rows");
    if (t.k > 1) t.img = cg_calloc((size_t)t.k * t.k, sizeof(int64_t), "image confusion");
  }
  predict_all(bk.ops, be, &o, files, nfiles, &model, &info, c, &t);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  int64_t sums[9] = {t.bin.tp, t.bin.fp, t.bin.fn, t.bin.tn, t.images, t.failures, predict_stop,
                     t.probs_failures, t.overlay_failures};
  cg_comm_sum_i64(c, sums, 9);
  const int stopped = sums[6] != 0 && sums[4] < nfiles; /* images were left undone */
  if (t.k > 1) cg_comm_sum_i64(c, t.confk, t.k * t.k);
  t.bin = (cg_confusion_t){sums[0], sums[1], sums[2], sums[3]};
  t.images = sums[4];
  t.failures = sums[5];
  t.probs_failures = sums[7];
  t.overlay_failures = sums[8];
  /* given, every rank's; else the checkpoint's, read by rank 0 alone (it prints) */
  cg_classnames_t *names = cg_calloc(1, sizeof *names, "class names");
  if (o.class_names[0]) *names = o.names; /* given (none: empty) */
  else if (c->rank == 0) run_class_names(&info, t.k, names); /* rank 0 prints */
  const char *const *nm = names->k ? names->name : NULL;
  if (c->rank == 0) {
    if (t.failures)
      printf("predict: wrote %lld mask(s) to %s; %lld could not be written (see the warnings)\n",
             (long long)(t.images - t.failures), o.output, (long long)t.failures);
    else
      printf("predict: wrote %lld mask(s) to %s\n", (long long)t.images, o.output);
    if (t.probs_failures)
      printf("predict: %lld .probs.npy file(s) could not be written (see the warnings)\n",
             (long long)t.probs_failures);
    if (t.overlay_failures)
      printf("predict: %lld .overlay.png file(s) could not be written (see the warnings)\n",
             (long long)t.overlay_failures);
    if (stopped)
      printf("predict: stopped by a signal before the last image: the %lld mask(s) written are "
             "complete, the others were not written (run again to finish)\n",
             (long long)t.images);
    else if (o.masks[0] || o.list_masks)
      print_metrics(&t, nm);
  }
  /* (a stopped predict's sums are partial: no matrix, as no summary; its rows are complete) */
  const int confusion_failed =
      c->rank == 0 && !stopped && o.confusion_out[0] && write_confusion(&o, &t, nm);
  if (c->rank == 0 && stopped && o.confusion_out[0])
    printf("predict: --confusion-out %s not written: the counts of a stopped predict are "
           "partial\n", o.confusion_out);
  const int scores_failed = t.rows && write_scores(&o, &t, nfiles, nm, c) != 0;
  if (c->rank == 0) fflush(stdout);
  free(names);
  for (int i = 0; t.rows && i < nfiles; i++) free(t.rows[i]);
  free(t.rows);
  free(t.img);
  bk.ops->destroy(be);
  cg_topo_destroy(topo);
  free_inputs(&o, files, nfiles);
  free(params);
  free(t.confk);
  if (stopped) return 128 + (predict_stop ? (int)predict_stop : SIGTERM);
  const int out_failed = scores_failed || confusion_failed;
  return t.failures || t.probs_failures || t.overlay_failures || out_failed ? 1 : 0;
}
