/* colors.c: the `colors-to-ids` command — masks that name their classes by RGB colours (ISPRS
 * Potsdam and Vaihingen, DeepGlobe Land Cover, CamVid) turned into the class-id masks train
 * reads, once, before training: what mmsegmentation's dataset converters do for those sets.
 *
 * One process, no MPI. The files are converted in parallel (OpenMP, a file a thread), each
 * written atomically (png_io.h); a file that cannot be converted is named with the reason and
 * the others are still written. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colors.h"

#include "atomic_file.h" /* cg_afile_check: an output that holds data is refused */
#include "cli.h"         /* cg_cli_defaults: --max-image-pixels' default */
#include "config.h"
#include "image_io.h" /* cg_image_list_dir, cg_image_read_rgb, cg_image_is_jpeg */
#include "log.h"
#include "opts.h"   /* cg_opts_parse */
#include "path.h"   /* cg_path_same_file, cg_path_mkdir_p */
#include "png_io.h" /* cg_png_write, cg_png_write_indexed */

#define COLORS_MAX 4096 /* lines of a --colors FILE */
#define ERRORS_SHOWN 10 /* failed files named one by one */

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
} colormap_t;

static void colors_help(FILE *f, long long max_pixels) {
  fprintf(f,
          "usage: cogpu-dist colors-to-ids --colors FILE --in DIR --out DIR [--unknown ID]\n"
          "                                [--gray] [--max-image-pixels N]\n"
          "\n"
          "Turns masks whose pixels name their class by an RGB colour (ISPRS Potsdam and\n"
          "Vaihingen, DeepGlobe Land Cover, CamVid) into the class-id masks train reads:\n"
          "OUT/NAME.png for every IN/NAME.png, .gif, .tif or .tiff, an 8-bit palette PNG whose\n"
          "pixel values are the class ids and whose palette holds the classes' colours, so the\n"
          "masks still look as they did, and a run on them writes its predictions in the same\n"
          "colours. Run it once before training, as mmsegmentation's dataset converters.\n"
          "\n"
          "  --colors FILE  the classes' colours, a line each: R G B ID (0..255 each; the rest of\n"
          "                 the line, a class name, is ignored; '#' starts a comment). Several\n"
          "                 colours may give one id. scripts/datasets/ has ISPRS's and\n"
          "                 DeepGlobe's\n"
          "  --in DIR       the colour masks (PNG: RGB, RGBA, palette, 8 or 16 bit; GIF; TIFF).\n"
          "                 JPEGs are refused: their colours are not exact\n"
          "  --out DIR      where the id masks go (made if missing); not --in\n"
          "  --unknown ID   a colour FILE does not list becomes ID (255: the ignore label of a\n"
          "                 K-class run); default: such a pixel fails its file, named with its\n"
          "                 place and colour\n"
          "  --gray         write 8-bit gray PNGs (the ids alone, no palette)\n"
          "  --max-image-pixels N\n"
          "                 refuse a mask of more pixels (from its header; default %lld)\n"
          "  --help         this text\n"
          "\n"
          "Exit codes: 0 every file converted; 2 a bad flag, FILE or input file (named; the\n"
          "others are written); 1 an output that cannot be written.\n",
          max_pixels);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "cogpu-dist colors-to-ids: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see cogpu-dist colors-to-ids --help)\n");
  va_end(ap);
  return CG_EXIT_USAGE;
}

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

/* --colors FILE into m, sorted by colour. 0, or -1 with err naming FILE:LINE. */
static int read_colors(const char *path, colormap_t *m, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "--colors: cannot open '%.900s': %s", path, strerror(errno));
    return -1;
  }
  char line[1024];
  int ln = 0, rc = 0;
  m->n = 0;
  m->maxid = -1;
  memset(m->pal, 0, sizeof m->pal);
  uint8_t named[256] = {0};
  while (!rc && fgets(line, sizeof line, f)) {
    ln++;
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    const char *p = line;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (!*p) continue;
    int v[4];
    for (int k = 0; k < 4 && !rc; k++) rc = read_byte(&p, &v[k]);
    if (rc) {
      snprintf(err, errlen, "--colors %.900s:%d: not 'R G B ID' (four values 0..255)", path, ln);
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
    if (!named[v[3]]++) memcpy(m->pal + 3 * v[3], (uint8_t[3]){(uint8_t)v[0], (uint8_t)v[1],
                                                              (uint8_t)v[2]}, 3);
    if (v[3] > m->maxid) m->maxid = v[3];
  }
  fclose(f);
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
  return 0;
}

/* The id of colour key, or -1 when m does not list it. */
static int lookup(const colormap_t *m, uint32_t key) {
  int lo = 0, hi = m->n - 1;
  while (lo <= hi) {
    const int mid = (lo + hi) / 2;
    if (m->c[mid].key == key) return m->c[mid].id;
    if (m->c[mid].key < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

typedef struct {
  const colormap_t *map;
  int unknown;        /* the id of a colour not listed; -1: a failure */
  int gray;
  int64_t max_pixels;
  const char *out;
} job_t;

/* One mask: read, mapped, written. 0; 2 with err for a bad input (its pixels, its format); 1
 * with err when the output cannot be written. *unlisted: pixels --unknown mapped. */
static int convert(const job_t *j, const char *in, int64_t *unlisted, char *err,
                   size_t errlen) {
  *unlisted = 0;
  if (cg_image_is_jpeg(in)) {
    snprintf(err, errlen, "%.900s: a JPEG: its colours are not exact (lossy), so they cannot "
             "name classes; convert the lossless originals", in);
    return 2;
  }
  uint8_t *rgb = NULL;
  int h = 0, w = 0;
  if (cg_image_read_rgb(in, j->max_pixels, &rgb, &h, &w, err, errlen)) return 2;
  const size_t n = (size_t)h * w;
  uint8_t *ids = cg_malloc(n, "class ids");
  uint32_t last = 0xFFFFFFFFu;
  int last_id = -1, rc = 0;
  for (size_t i = 0; i < n; i++) {
    const uint8_t *p = rgb + 3 * i;
    const uint32_t key = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    if (key != last) { /* runs of one colour are the rule */
      last = key;
      last_id = lookup(j->map, key);
    }
    if (last_id < 0 && j->unknown < 0) {
      snprintf(err, errlen, "%.900s: pixel (x %zu, y %zu) has the colour %u %u %u, which "
               "--colors does not list (give it a line, or --unknown ID)", in, i % (size_t)w,
               i / (size_t)w, p[0], p[1], p[2]);
      rc = 2;
      break;
    }
    if (last_id < 0) (*unlisted)++;
    ids[i] = (uint8_t)(last_id < 0 ? j->unknown : last_id);
  }
  free(rgb);
  if (!rc) {
    char stem[512], path[4200], why[1024];
    cg_image_stem(in, stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s.png", j->out, stem);
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

typedef struct {
  const char *colors, *in, *out;
  int unknown, gray;
  int64_t max_pixels;
} copts_t;

#define CO(f) CG_OPT_FIELD(copts_t, f)
static const cg_opt_t k_colors_opts[] = {
    {"colors", CG_OPT_PTR, CO(colors), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "required"},
    {"in", CG_OPT_PTR, CO(in), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    {"out", CG_OPT_PTR, CO(out), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"},
    CG_OPT_ROW_NUM(INT, "unknown", CO(unknown), 0, 255, 0, "ID", "unlisted colours' id"),
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
  colormap_t *map = cg_malloc(sizeof *map, "colours");
  char **files = NULL;
  int nfiles = 0, code = 0;
  if (read_colors(o.colors, map, err, sizeof err) ||
      cg_image_list_dir("--in", o.in, "written to", &files, &nfiles, err, sizeof err)) {
    code = usage_error("%s", err);
  } else if (!nfiles) {
    code = usage_error("--in %s: no PNG, GIF or TIFF mask in it", o.in);
  } else if (cg_path_mkdir_p(o.out) != 0) {
    code = usage_error("--out: cannot create directory '%.900s': %s", o.out, strerror(errno));
  } else if (cg_path_same_file(o.in, o.out)) {
    code = usage_error("--out: '%s' is the --in directory: its masks would be replaced", o.out);
  }
  for (int i = 0; !code && i < nfiles; i++) { /* an output name that holds data: refused */
    char stem[512], path[4200];
    cg_image_stem(files[i], stem, sizeof stem);
    snprintf(path, sizeof path, "%s/%s.png", o.out, stem);
    if (cg_afile_check("--out", path, CG_AFILE_REPLACE, err, sizeof err))
      code = usage_error("%s", err);
  }
  if (code) {
    for (int i = 0; i < nfiles; i++) free(files[i]);
    free(files);
    free(map);
    return code;
  }
  const job_t job = {map, o.unknown, o.gray, o.max_pixels, o.out};
  int *rcs = cg_calloc((size_t)nfiles, sizeof(int), "results");
  char **why = cg_calloc((size_t)nfiles, sizeof(char *), "messages");
  int64_t unlisted = 0;
  const double t0 = cg_now();
#pragma omp parallel for schedule(dynamic) reduction(+ : unlisted)
  for (int i = 0; i < nfiles; i++) {
    char e[2048] = "";
    int64_t u = 0;
    rcs[i] = convert(&job, files[i], &u, e, sizeof e);
    unlisted += u;
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
  printf("colors-to-ids: %d of %d mask(s) of %s -> %s as %s PNGs of class ids 0..%d (%d "
         "colour(s) of %s)", done, nfiles, o.in, o.out, o.gray ? "gray" : "palette",
         map->maxid, map->n, o.colors);
  if (o.unknown >= 0)
    printf("; %lld pixel(s) of colours it does not list -> %d", (long long)unlisted, o.unknown);
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
  free(map);
  fflush(stdout);
  return failed_writes ? 1 : bad ? CG_EXIT_USAGE : 0;
}
