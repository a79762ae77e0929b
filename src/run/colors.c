/* colors.c: the `colors-to-ids` command — masks that name their classes by RGB colours (ISPRS
 * Potsdam and Vaihingen, DeepGlobe Land Cover) turned into the class-id masks train reads, once,
 * before training: what mmsegmentation's dataset converters are for.
 *
 * One process, no MPI. The files are converted in parallel (OpenMP, a file a thread), each
 * written atomically (png_io.h); a file that cannot be converted is named with the reason and
 * the others are still written. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colors.h"

#include <omp.h>

#include "cli.h" /* cg_cli_defaults: --max-image-pixels' default */
#include "config.h"
#include "image_io.h" /* cg_image_list_dir, cg_image_read_rgb, cg_image_is_jpeg */
#include "log.h"
#include "opts.h"     /* cg_opts_parse */
#include "pairlist.h" /* cg_text_file_read: the --colors FILE */
#include "path.h"     /* cg_path_same_file, cg_path_mkdir_p */
#include "png_io.h"   /* cg_png_write, cg_png_write_indexed */

#define COLORS_MAX 4096           /* lines of a --colors FILE */
#define COLORS_FILE_MAX (1 << 20) /* its bytes: 4096 lines are under 100 KB */
#define ERRORS_SHOWN 10           /* failed files named one by one */

typedef struct {
  uint32_t key; /* r << 16 | g << 8 | b */
  uint8_t id;
  int line;
} color_t;

typedef struct {
  color_t c[COLORS_MAX];
  int n;
  int maxid;          /* the largest id listed */
  uint8_t pal[768];   /* each id's colour: its first line's; black for an id not listed */
  uint8_t has[256];   /* ids listed */
  int tol;            /* --tolerance: a colour within tol of a listed one on every channel */
} colormap_t;

static void colors_help(FILE *f, long long max_pixels) {
  fprintf(f,
          "usage: cogpu-dist colors-to-ids --colors FILE --in DIR --out DIR [--unknown ID]\n"
          "                                [--tolerance T] [--rename A:B] [--gray] [--threads N]\n"
          "                                [--max-image-pixels N]\n"
          "\n"
          "Turns masks whose pixels name their class by an RGB colour (ISPRS Potsdam and\n"
          "Vaihingen, DeepGlobe Land Cover, ...) into the class-id masks train reads:\n"
          "OUT/NAME.png for every IN/NAME.png, .gif, .tif, .tiff or .bmp, an 8-bit palette PNG\n"
          "whose pixel values are the class ids and whose palette holds the classes' colours,\n"
          "so the masks still look as they did, and a run on them writes its predictions in\n"
          "the same colours. Run it once before training (what mmsegmentation's dataset\n"
          "converters are for); files already in OUT are replaced.\n"
          "\n"
          "  --colors FILE  the classes' colours, a line each: R G B ID (0..255 each), then\n"
          "                 optionally a class name (not a number; ignored); '#' starts a\n"
          "                 comment. Several colours may give one id. scripts/datasets/ has\n"
          "                 ISPRS's, DeepGlobe's and MSRC-21's\n"
          "  --in DIR       the colour masks (PNG: RGB, RGBA (alpha ignored), palette, 8 or 16\n"
          "                 bit; GIF and TIFF: the first frame; BMP). JPEGs are refused: their\n"
          "                 colours are not exact\n"
          "  --out DIR      where the id masks go (made if missing); not --in\n"
          "  --unknown ID   a colour FILE does not list becomes ID (255: the ignore label of a\n"
          "                 K-class run; counted); default: such a pixel fails its file, named\n"
          "                 with its place and colour\n"
          "  --tolerance T  a colour within T of a listed one on every channel is that one\n"
          "                 (0..127; listed colours closer than 2T + 1 are refused); 127 on a\n"
          "                 legend of 0/255 channels thresholds each at 128, as DeepGlobe's\n"
          "                 README asks of its masks, whose values are not exactly 0 and 255\n"
          "                 (default 0: exact)\n"
          "  --rename A:B   an input whose name (without its extension) ends in A is written as\n"
          "                 that name with B in place of A, so it pairs with its image under\n"
          "                 train --data DIR: --rename _label:_RGB for ISPRS Potsdam\n"
          "                 (_label_noBoundary:_RGB for its eroded-boundary labels),\n"
          "                 _mask:_sat for DeepGlobe; files whose names do not end in A (its\n"
          "                 NAME_sat.jpg images, beside the masks) are left alone (said)\n"
          "  --gray         write 8-bit gray PNGs (the ids alone, no palette)\n"
          "  --threads N    files converted at once (each holds its image: 4 bytes a pixel);\n"
          "                 default: the cores this process may use\n"
          "  --max-image-pixels N\n"
          "                 refuse a mask of more pixels (from its header; default %lld)\n"
          "  --help         this text\n"
          "\n"
          "Exit codes: 0 every file converted; 2 a bad flag (an --out that cannot be made\n"
          "included), FILE or input file (each named; the others are written); 1 an output\n"
          "file that cannot be written.\n",
          max_pixels);
}

#define usage_error(...) cg_cli_tool_error("colors-to-ids", __VA_ARGS__)

static int cmp_key(const void *a, const void *b) {
  const uint32_t x = ((const color_t *)a)->key, y = ((const color_t *)b)->key;
  return x < y ? -1 : x > y;
}

/* A value 0..255 at *p (spaces before it skipped); 0 with *p past it, or -1. */
static int read_byte(const char **p, int *v) {
  while (**p == ' ' || **p == '\t') (*p)++;
  if (**p < '0' || **p > '9') return -1;
  char *end;
  errno = 0;
  const long x = strtol(*p, &end, 10);
  if (errno || x > 255 || (*end && *end != ' ' && *end != '\t' && *end != '\n' && *end != '\r'))
    return -1;
  *v = (int)x;
  *p = end;
  return 0;
}

/* The largest difference of two colours' channels. */
static int chan_dist(uint32_t a, uint32_t b) {
  int d = 0;
  for (int s = 0; s < 24; s += 8) {
    const int x = (int)((a >> s) & 255) - (int)((b >> s) & 255);
    if (abs(x) > d) d = abs(x);
  }
  return d;
}

/* --colors FILE into m, sorted by colour (tol: m->tol, checked against the colours' spacing).
 * 0, or -1 with err naming FILE:LINE. */
static int read_colors(const char *path, int tol, colormap_t *m, char *err, size_t errlen) {
  char *base, why[1200];
  const char *text;
  if (cg_text_file_read(path, COLORS_FILE_MAX, &base, &text, why, sizeof why)) {
    snprintf(err, errlen, "--colors %s", why);
    return -1;
  }
  char line[1024];
  int ln = 0, rc = 0;
  size_t len;
  m->n = 0;
  m->maxid = -1;
  m->tol = tol;
  memset(m->pal, 0, sizeof m->pal);
  memset(m->has, 0, sizeof m->has);
  for (const char *s; !rc && (s = cg_text_next_line(&text, &len)) != NULL;) {
    ln++;
    if (len >= sizeof line) {
      snprintf(err, errlen, "--colors %.900s:%d: a line over %zu bytes", path, ln,
               sizeof line - 1);
      rc = -1;
      break;
    }
    memcpy(line, s, len);
    line[len] = 0;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    const char *p = line;
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) continue;
    int v[4];
    for (int k = 0; k < 4 && !rc; k++) rc = read_byte(&p, &v[k]);
    while (*p == ' ' || *p == '\t') p++;
    if (!rc && ((*p >= '0' && *p <= '9') || *p == '+' || *p == '-')) rc = -1; /* R G B A ID? */
    if (rc) {
      snprintf(err, errlen, "--colors %.900s:%d: not 'R G B ID [name]' (four values 0..255, "
               "then a name that is not a number)", path, ln);
      break;
    }
    if (m->n == COLORS_MAX) {
      snprintf(err, errlen, "--colors %.900s:%d: more than %d colours", path, ln, COLORS_MAX);
      rc = -1;
      break;
    }
    color_t *c = &m->c[m->n++];
    c->key = (uint32_t)v[0] << 16 | (uint32_t)v[1] << 8 | (uint32_t)v[2];
    c->id = (uint8_t)v[3];
    c->line = ln;
    if (!m->has[v[3]]) { /* the palette: an id's first colour */
      m->has[v[3]] = 1;
      for (int k = 0; k < 3; k++) m->pal[3 * v[3] + k] = (uint8_t)v[k];
    }
    if (v[3] > m->maxid) m->maxid = v[3];
  }
  free(base);
  if (rc) return -1;
  if (!m->n) {
    snprintf(err, errlen, "--colors %.900s: no colours in it", path);
    return -1;
  }
  qsort(m->c, (size_t)m->n, sizeof m->c[0], cmp_key);
  for (int i = 0; i + 1 < m->n; i++)
    if (m->c[i].key == m->c[i + 1].key) {
      const uint32_t k = m->c[i].key;
      snprintf(err, errlen, "--colors %.900s:%d: the colour %u %u %u is on line %d too", path,
               m->c[i].line > m->c[i + 1].line ? m->c[i].line : m->c[i + 1].line, k >> 16,
               (k >> 8) & 255, k & 255,
               m->c[i].line < m->c[i + 1].line ? m->c[i].line : m->c[i + 1].line);
      return -1;
    }
  for (int i = 0; tol && i < m->n; i++) /* within 2 tol on every channel: a colour near both */
    for (int j = i + 1; j < m->n; j++)
      if (chan_dist(m->c[i].key, m->c[j].key) <= 2 * tol) {
        snprintf(err, errlen, "--tolerance %d: the colours of --colors %.900s:%d and :%d are "
                 "within %d of each other on every channel: a colour near both would be either",
                 tol, path, m->c[i].line, m->c[j].line, 2 * tol);
        return -1;
      }
  return 0;
}

/* The id of colour key (exact, or with m->tol the listed colour within it), or -1 when m lists
 * none; *near: matched within the tolerance only. */
static int lookup(const colormap_t *m, uint32_t key, int *near) {
  *near = 0;
  int lo = 0, hi = m->n - 1;
  while (lo <= hi) {
    const int mid = (lo + hi) / 2;
    if (m->c[mid].key == key) return m->c[mid].id;
    if (m->c[mid].key < key) lo = mid + 1;
    else hi = mid - 1;
  }
  for (int i = 0; m->tol && i < m->n; i++) /* at most one is that close (read_colors) */
    if (chan_dist(m->c[i].key, key) <= m->tol) {
      *near = 1;
      return m->c[i].id;
    }
  return -1;
}

/* Where a colour that matched nothing lies: "; the listed colour R G B (line L) is D from it
 * on every channel: --tolerance D matches it", when one is within NEAR_MISS (a mask written
 * not quite in the listed colours), else "". A channel one low is also what a 16-bit mask
 * widened by v << 8 reads as (its samples are scaled, round(v x 255 / 65535): 255 << 8 reads
 * 254), which the hint says then. */
#define NEAR_MISS 3
static void near_hint(const colormap_t *m, uint32_t key, char *buf, size_t len) {
  int best = 256, at = -1;
  for (int i = 0; i < m->n; i++) {
    const int d = chan_dist(m->c[i].key, key);
    if (d < best) best = d, at = i;
  }
  buf[0] = 0;
  if (at < 0 || best > NEAR_MISS) return;
  const uint32_t k = m->c[at].key;
  snprintf(buf, len, "; the listed colour %u %u %u (line %d) is within %d of it on every channel: "
           "--tolerance %d matches it%s", k >> 16, k >> 8 & 255, k & 255, m->c[at].line, best, best,
           best == 1 ? " (16-bit samples are read as round(v x 255 / 65535): a 16-bit mask "
                       "widened by v << 8 reads a channel of 129..255 one lower)" : "");
}

typedef struct {
  const colormap_t *map;
  int unknown;        /* the id of a colour not listed; -1: a failure */
  int gray;
  int64_t max_pixels;
  const char *out;
  const char *from, *to; /* --rename A:B (NULL: none) */
} job_t;

/* What one mask gave: its pixels mapped by --unknown and by --tolerance; the first unlisted
 * colour (when unlisted > 0). */
typedef struct {
  int64_t unlisted, near;
  uint32_t first;
} tally_t;

/* Whether stem ends in a. */
static int ends_in(const char *stem, const char *a) {
  const size_t n = strlen(stem), k = strlen(a);
  return n >= k && !strcmp(stem + n - k, a);
}

/* OUT/NAME.png for input in: its stem, with --rename's suffix swapped. */
static void out_path(const job_t *j, const char *in, char *path, size_t len) {
  char stem[512];
  cg_image_stem(in, stem, sizeof stem);
  const size_t n = strlen(stem), a = j->from ? strlen(j->from) : 0;
  if (j->from && ends_in(stem, j->from))
    snprintf(path, len, "%s/%.*s%s.png", j->out, (int)(n - a), stem, j->to);
  else
    snprintf(path, len, "%s/%s.png", j->out, stem);
}

static int cmp_path(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 when every pixel's channels are equal: a gray mask, likely of ids already. */
static int all_gray(const uint8_t *rgb, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (rgb[3 * i] != rgb[3 * i + 1] || rgb[3 * i] != rgb[3 * i + 2]) return 0;
  return 1;
}

/* One mask: read, mapped, written. 0; 2 with err for a bad input (its pixels, its format); 1
 * with err when the output cannot be written. */
static int convert(const job_t *j, const char *in, tally_t *t, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  if (cg_image_is_jpeg(in)) {
    snprintf(err, errlen, "%.900s: a JPEG: its colours are not exact (lossy), so they cannot "
             "name classes; convert the lossless originals", in);
    return 2;
  }
  uint8_t *rgb = NULL;
  int h = 0, w = 0;
  if (cg_image_read_rgb(in, j->max_pixels, CG_EXIF_STORED, &rgb, &h, &w, err, errlen)) return 2;
  const size_t n = (size_t)h * w;
  uint8_t *ids = cg_malloc(n, "class ids");
  uint32_t last = 0xFFFFFFFFu;
  int last_id = -1, last_near = 0, rc = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = rgb + 3 * i;
    const uint32_t key = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    if (key != last) { /* runs of one colour are the rule */
      last = key;
      last_id = lookup(j->map, key, &last_near);
    }
    if (last_id < 0 && j->unknown < 0) {
      char hint[400];
      near_hint(j->map, key, hint, sizeof hint);
      snprintf(err, errlen, "%.900s: pixel (x %zu, y %zu) has the colour %u %u %u, which "
               "--colors does not list (give it a line, --tolerance T or --unknown ID)%s%s", in,
               i % (size_t)w, i / (size_t)w, p[0], p[1], p[2], hint,
               all_gray(rgb, n) ? "; the mask is gray: if its values are class ids already, "
                                  "train reads it as it is" : "");
      rc = 2;
      break;
    }
    if (last_id < 0 && !t->unlisted) t->first = key;
    t->unlisted += last_id < 0;
    t->near += last_near;
    ids[i] = (uint8_t)(last_id < 0 ? j->unknown : last_id);
  }
  free(rgb);
  if (!rc) {
    char path[4200], why[1024];
    out_path(j, in, path, sizeof path);
    const int npal = (j->unknown > j->map->maxid ? j->unknown : j->map->maxid) + 1;
    const int wr = j->gray ? cg_png_write(path, ids, h, w, CG_PNG_GRAY8, why, sizeof why)
                           : cg_png_write_indexed(path, ids, h, w, j->map->pal, npal, why,
                                                  sizeof why);
    if (wr) {
      snprintf(err, errlen, "%.1000s", why);
      rc = 1;
    }
  }
  free(ids);
  return rc;
}

/* For --unknown's summary: the first unlisted colour of the first file that had one (firsts[i]:
 * file i's, -1 none), with near_hint's words when a listed colour is close to it. */
static void print_near_miss(const colormap_t *m, char **files, const int64_t *firsts, int n) {
  for (int i = 0; i < n; i++) {
    if (firsts[i] < 0) continue;
    const uint32_t k = (uint32_t)firsts[i];
    char hint[400];
    near_hint(m, k, hint, sizeof hint);
    if (hint[0]) printf(" (the first, %u %u %u in %s%s)", k >> 16, k >> 8 & 255, k & 255,
                        files[i], hint);
    return;
  }
}

/* "0..5 and 255": the ids m lists (and unknown, >= 0), as runs. */
static void ids_text(const colormap_t *m, int unknown, char *buf, size_t len) {
  uint8_t has[256];
  memcpy(has, m->has, sizeof has);
  if (unknown >= 0) has[unknown] = 1;
  size_t k = 0;
  buf[0] = 0;
  int runs = 0;
  for (int i = 0; i < 256; i++) {
    if (!has[i] || (i > 0 && has[i - 1])) continue;
    int e = i;
    while (e + 1 < 256 && has[e + 1]) e++;
    if (k < len) k += (size_t)snprintf(buf + k, len - k, "%s%d", runs++ ? ", " : "", i);
    if (e > i && k < len) k += (size_t)snprintf(buf + k, len - k, "..%d", e);
  }
}

typedef struct {
  const char *colors, *in, *out, *rename;
  int unknown, gray, tolerance, threads;
  int64_t max_pixels;
} copts_t;

#define CO(f) CG_OPT_FIELD(copts_t, f)
static const cg_opt_t k_colors_opts[] = {
    {"colors", CG_OPT_PTR, CO(colors), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "required"},
    {"in", CG_OPT_PTR, CO(in), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"out", CG_OPT_PTR, CO(out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"rename", CG_OPT_PTR, CO(rename), 0, 0, CG_OPT_REQUIRED, NULL, 0, "A:B", "suffix swap"},
    CG_OPT_ROW_NUM(INT, "unknown", CO(unknown), 0, 255, 0, "ID", "unlisted colours' id"),
    CG_OPT_ROW_NUM(INT, "tolerance", CO(tolerance), 0, 127, 0, "T", "near colours"),
    CG_OPT_ROW_NUM(INT, "threads", CO(threads), 1, 1024, 0, "N", "files at once"),
    CG_OPT_ROW_FLAG("gray", CO(gray), 0, "gray PNGs"),
    CG_OPT_ROW_NUM(I64, "max-image-pixels", CO(max_pixels), 1, 1073741824, 0, "N",
                   "pixel limit"),
};

int cg_colors_main(int argc, char **argv) {
  cg_config_t defaults;
  cg_cli_defaults(&defaults);
  copts_t o = {.unknown = -1, .max_pixels = defaults.max_image_pixels};
  const cg_opts_set_t set = {k_colors_opts, sizeof k_colors_opts / sizeof k_colors_opts[0], 0,
                             &o, 0};
  char err[2048];
  const int prc = cg_opts_parse(&set, 1, argc - 1, argv + 1, "colors-to-ids",
                                "cogpu-dist colors-to-ids", err, sizeof err);
  if (prc == 1) {
    colors_help(stdout, (long long)defaults.max_image_pixels);
    return 0;
  }
  if (prc) {
    fprintf(stderr, "cogpu-dist colors-to-ids: error: %s\n", err);
    return CG_EXIT_USAGE;
  }
  if (!o.colors) return usage_error("--colors FILE is required");
  if (!o.in) return usage_error("--in DIR is required");
  if (!o.out) return usage_error("--out DIR is required");
  char from[256] = "", *to = NULL;
  if (o.rename) {
    const char *colon = strchr(o.rename, ':');
    if (!colon || colon == o.rename || strchr(colon + 1, ':') || strchr(o.rename, '/') ||
        (size_t)(colon - o.rename) >= sizeof from)
      return usage_error("--rename: '%s' is not A:B (two name endings, A not empty, no ':' or "
                         "'/' in them)", o.rename);
    snprintf(from, sizeof from, "%.*s", (int)(colon - o.rename), o.rename);
    to = (char *)colon + 1;
  }
  colormap_t *map = cg_malloc(sizeof *map, "colours");
  char **files = NULL;
  int nfiles = 0, code = 0;
  if (read_colors(o.colors, o.tolerance, map, err, sizeof err) ||
      cg_image_list_dir("--in", o.in, "written to", &files, &nfiles, err, sizeof err)) {
    code = usage_error("%s", err);
  } else if (!nfiles) {
    code = usage_error("--in %s: no PNG, GIF, TIFF or BMP mask in it", o.in);
  } else if (cg_path_mkdir_p(o.out) != 0) {
    code = usage_error("--out: cannot create directory '%.900s': %s", o.out, strerror(errno));
  } else if (cg_path_same_file(o.in, o.out)) {
    code = usage_error("--out: '%s' is the --in directory: its masks would be replaced", o.out);
  }
  const job_t job = {map, o.unknown, o.gray, o.max_pixels, o.out, o.rename ? from : NULL, to};
  if (!code && o.rename) { /* the masks are the files named ...A: DeepGlobe keeps its images,
                              NAME_sat.jpg, beside its masks NAME_mask.png; the others are left */
    int kept = 0, left = 0;
    char stem[512], eg[600] = "";
    for (int i = 0; i < nfiles; i++) {
      cg_image_stem(files[i], stem, sizeof stem);
      if (ends_in(stem, from)) {
        files[kept++] = files[i];
        continue;
      }
      if (!left++) snprintf(eg, sizeof eg, "%.590s", files[i]);
      free(files[i]);
    }
    nfiles = kept;
    if (!nfiles)
      code = usage_error("--rename %s: no file of --in %s has a name ending in %s (e.g. %s): "
                         "nothing to convert", o.rename, o.in, from, eg);
    else if (left)
      printf("colors-to-ids: --rename %s: %d file(s) of %s whose names do not end in %s left "
             "alone (e.g. %s)\n", o.rename, left, o.in, from, eg);
  }
  if (!code && o.rename) { /* it may give two inputs one name (the stems are unique) */
    char **outs = cg_malloc(sizeof(char *) * (size_t)nfiles, "output names");
    for (int i = 0; i < nfiles; i++) {
      char a[4200];
      out_path(&job, files[i], a, sizeof a);
      outs[i] = strdup(a);
      const size_t k = strlen(o.out) + 1; /* "OUT/.png": the lister skips hidden names */
      if (!code && strlen(a) > k && a[k] == '.')
        code = usage_error("--rename %s: %s would be written as %s, a hidden file that train "
                           "and pack do not read", o.rename, files[i], a);
    }
    qsort(outs, (size_t)nfiles, sizeof *outs, cmp_path);
    for (int i = 0; !code && i + 1 < nfiles; i++)
      if (!strcmp(outs[i], outs[i + 1]))
        code = usage_error("--rename %s: two inputs would both be written to %s", o.rename,
                           outs[i]);
    for (int i = 0; i < nfiles; i++) free(outs[i]);
    free(outs);
  }
  if (code) {
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    free(map);
    return code;
  }
  int *rcs = cg_calloc((size_t)nfiles, sizeof(int), "results");
  int64_t *firsts = cg_calloc((size_t)nfiles, sizeof(int64_t), "unlisted colours"); /* -1 none */
  char **why = cg_calloc((size_t)nfiles, sizeof(char *), "messages");
  int64_t unlisted = 0, near = 0;
  const double t0 = cg_now();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) num_threads(threads) reduction(+ : unlisted, near)
  for (int i = 0; i < nfiles; i++) {
    char e[2048] = "";
    tally_t t;
    rcs[i] = convert(&job, files[i], &t, e, sizeof e);
    firsts[i] = !rcs[i] && t.unlisted ? (int64_t)t.first : -1;
    if (!rcs[i]) { /* the files written */
      unlisted += t.unlisted;
      near += t.near;
    }
    if (rcs[i]) why[i] = strdup(e);
  }
  int bad = 0, failed_writes = 0;
  for (int i = 0; i < nfiles; i++) {
    if (!rcs[i]) continue;
    if (bad + failed_writes < ERRORS_SHOWN)
      fprintf(stderr, "cogpu-dist colors-to-ids: error: %s\n", why[i] ? why[i] : "?");
    if (rcs[i] == 2) bad++;
    else failed_writes++;
  }
  const int done = nfiles - bad - failed_writes;
  char ids[1200];
  ids_text(map, o.unknown, ids, sizeof ids);
  printf("colors-to-ids: %d of %d mask(s) of %s -> %s as %s PNGs of class ids %s (%d colour(s) "
         "of %s)", done, nfiles, o.in, o.out, o.gray ? "gray" : "palette", ids, map->n,
         o.colors);
  if (o.tolerance) printf("; %lld pixel(s) within --tolerance %d of a colour", (long long)near,
                          o.tolerance);
  if (o.unknown >= 0)
    printf("; %lld pixel(s) of colours it does not list -> %d", (long long)unlisted, o.unknown);
  print_near_miss(map, files, firsts, nfiles);
  printf(", %.2f s\n", cg_now() - t0);
  if (bad + failed_writes > ERRORS_SHOWN)
    fprintf(stderr, "cogpu-dist colors-to-ids: error: %d more file(s) failed (the first %d are "
            "named above)\n", bad + failed_writes - ERRORS_SHOWN, ERRORS_SHOWN);
  for (int i = 0; i < nfiles; i++) {
    free(files[i]);
    free(why[i]);
  }
  free(files);
  free(why);
  free(rcs);
  free(firsts);
  free(map);
  fflush(stdout);
  return failed_writes ? 1 : bad ? CG_EXIT_USAGE : 0;
}
