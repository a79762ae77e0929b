/* export.c: `cogpu-dist export` (checkpoint -> safetensors) and `cogpu-dist import`
 * (safetensors -> a step-0 checkpoint for fine-tuning). See export.h for the file.
 *
 * One table (tensor_t) maps every parameter tensor of the PyTorch module to its layer in
 * model.h's flat buffer and says how its layout differs; export and import walk the same table
 * in opposite directions, so export -> import -> export is bitwise by construction (the header
 * is a function of the model and the metadata import keeps). Import refuses, naming the tensor,
 * any file that is not exactly that table: a missing or extra name, another dtype or shape,
 * offsets outside the data or of the wrong length; and one holding a weight that is not finite. */
#include "export.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h> /* strcasecmp: FILE.ONNX too */
#include <sys/stat.h>
#include <time.h>
#include <unistd.h> /* close: the --out lock */

#include "atomic_file.h" /* cg_afile_*: the output written whole or not at all */
#include "ckpt.h"        /* cg_ckpt_find/read/write: the checkpoint side */
#include "classnames.h"  /* cg_classnames_json_list: the run's names in and out of metadata */
#include "feat.h"        /* CG_NFEAT: the model's 3 + 2 input channels */
#include "json.h"        /* cg_json_parse: the header on import, the settings on export */
#include "le.h"          /* cg_le_put_u64 / get_u64: the header length */
#include "log.h"         /* CG_EXIT_USAGE */
#include "model.h"       /* cg_model_build: layers and the flat parameter layout */
#include "opts.h"        /* cg_opts_parse: the options, as every command line */

#define FORMAT_NAME "cogpu-unet"
#define FORMAT_VERSION 1
#define MAX_HEADER_BYTES (64u << 20) /* far above any UNet's header; bounds a hostile N */

typedef struct {
  char name[48];
  int layer;      /* index into cg_model_t.layers */
  int is_bias;
  int ndim;
  int64_t shape[4];
  size_t numel;
} tensor_t;

typedef struct {
  int n;
  tensor_t t[2 * CG_MAX_LAYERS];
} table_t;

/* Sort key of a C layer name in state_dict order: enc by level, then up, dec, head. */
static int torch_name(const char *cname, char *out, size_t len, int *key) {
  int l, k;
  if (sscanf(cname, "enc%d.conv%d", &l, &k) == 2) {
    snprintf(out, len, "enc.%d.conv%d", l, k);
    *key = 0 * 10000 + l * 10 + k;
  } else if (sscanf(cname, "dec%d.conv%d", &l, &k) == 2) {
    snprintf(out, len, "dec.%d.conv%d", l, k);
    *key = 2 * 10000 + l * 10 + k;
  } else if (sscanf(cname, "dec%d.up", &l) == 1) {
    snprintf(out, len, "up.%d", l);
    *key = 1 * 10000 + l * 10;
  } else if (!strcmp(cname, "head")) {
    snprintf(out, len, "head");
    *key = 3 * 10000;
  } else {
    return -1;
  }
  return 0;
}

static void table_build(const cg_model_t *m, table_t *tb) {
  int order[CG_MAX_LAYERS], keys[CG_MAX_LAYERS], n = 0;
  char base[32];
  for (int i = 0; i < m->nlayers; i++) {
    if (m->layers[i].op == CG_OP_POOL) continue;
    int key;
    int named = torch_name(m->layers[i].name, base, sizeof base, &key);
    CG_ASSERT(named == 0);
    int j = n++;
    while (j > 0 && keys[j - 1] > key) { /* insertion sort: a few dozen layers */
      keys[j] = keys[j - 1];
      order[j] = order[j - 1];
      j--;
    }
    keys[j] = key;
    order[j] = i;
  }
  tb->n = 0;
  for (int j = 0; j < n; j++) {
    const cg_layer_t *L = &m->layers[order[j]];
    int key;
    torch_name(L->name, base, sizeof base, &key);
    for (int b = 0; b < 2; b++) {
      tensor_t *t = &tb->t[tb->n++];
      memset(t, 0, sizeof *t);
      snprintf(t->name, sizeof t->name, "%s.%s", base, b ? "bias" : "weight");
      t->layer = order[j];
      t->is_bias = b;
      if (b) {
        t->ndim = 1;
        t->shape[0] = L->cout;
      } else if (L->op == CG_OP_CONV) { /* OIHW */
        t->ndim = 4;
        t->shape[0] = L->cout, t->shape[1] = L->cin, t->shape[2] = L->k, t->shape[3] = L->k;
      } else { /* ConvTranspose2d: (in, out, kh, kw) */
        t->ndim = 4;
        t->shape[0] = L->cin, t->shape[1] = L->cout, t->shape[2] = 2, t->shape[3] = 2;
      }
      t->numel = b ? L->b_len : L->w_len;
    }
  }
}

/* Copies tensor t between the flat buffer and its PyTorch layout: to_torch 1 fills dst (numel
 * floats) from params, 0 fills params from src. */
static void tensor_copy(const cg_model_t *m, const tensor_t *t, float *params, float *torch,
                        int to_torch) {
  const cg_layer_t *L = &m->layers[t->layer];
  if (t->is_bias) {
    if (to_torch) memcpy(torch, params + L->b_off, t->numel * sizeof(float));
    else memcpy(params + L->b_off, torch, t->numel * sizeof(float));
    return;
  }
  float *w = params + L->w_off;
  const size_t k = (size_t)(L->op == CG_OP_CONV ? L->k : 2), ci = L->cin, co = L->cout;
  for (size_t o = 0; o < co; o++)
    for (size_t i = 0; i < ci; i++)
      for (size_t y = 0; y < k; y++)
        for (size_t x = 0; x < k; x++) {
          size_t flat, tt;
          if (L->op == CG_OP_CONV) { /* KRSC [o][y][x][i] <-> OIHW [o][i][y][x] */
            flat = ((o * k + y) * k + x) * ci + i;
            tt = ((o * ci + i) * k + y) * k + x;
          } else { /* [i][y][x][o] <-> (in, out, kh, kw) [i][o][y][x] */
            flat = ((i * k + y) * k + x) * co + o;
            tt = ((i * co + o) * k + y) * k + x;
          }
          if (to_torch) torch[tt] = w[flat];
          else w[flat] = torch[tt];
        }
}

/* ---- export ---------------------------------------------------------------------------- */

typedef struct {
  const char *a, *b; /* export: --checkpoint, --out; import: --in, --out (into argv) */
} eopts_t;

static void export_usage(FILE *f) {
  fprintf(f,
          "usage: cogpu-dist export --checkpoint DIR|FILE --out FILE.safetensors\n"
          "  Writes the weights of a checkpoint (FILE; DIR/best or DIR/last, the one that\n"
          "  pointer file names; or in DIR the one train --resume DIR would load: the newest\n"
          "  run's newest valid one) as a safetensors file with the\n"
          "  model definition (and the run's --class-names: class_names, a comma list) in its\n"
          "  __metadata__; tensor names and layouts are those of\n"
          "  python/cogpu_torch.py's state_dict (README: Export).\n");
}

static void import_usage(FILE *f) {
  fprintf(f,
          "usage: cogpu-dist import --in FILE.safetensors --out DIR\n"
          "  Makes a checkpoint (step 0, fresh optimizer state, the model of the file's\n"
          "  metadata) in DIR, which must hold no checkpoint yet, for train --resume DIR.\n");
}

/* The two required path options of export or import, on the engine every command line uses
 * (opts.h): --name VALUE or --name=VALUE, an empty value refused. Values point into argv.
 * 0, 1 (help shown) or 2 (usage error, printed). */
#define EO(f) CG_OPT_FIELD(eopts_t, f)
static int parse_pair(int argc, char **argv, const cg_opt_t rows[2], eopts_t *o,
                      void (*usage)(FILE *), const char *cmd) {
  char err[512], prog[64];
  snprintf(prog, sizeof prog, "cogpu-dist %s", cmd);
  const cg_opts_set_t set = {rows, 2, 0, o, 0};
  memset(o, 0, sizeof *o);
  const int rc = cg_opts_parse(&set, 1, argc - 1, argv + 1, cmd, prog, err, sizeof err);
  if (rc == 1) usage(stdout);
  if (rc) {
    if (rc < 0) fprintf(stderr, "cogpu-dist: error: %s: %s\n", cmd, err);
    return rc < 0 ? 2 : 1;
  }
  for (int f = 0; f < 2; f++)
    if (!(f ? o->b : o->a)) {
      fprintf(stderr, "cogpu-dist: error: %s: --%s is required\n", cmd, rows[f].name);
      usage(stderr);
      return 2;
    }
  return 0;
}

/* The JSON header (unpadded) into a malloc'd string; *len its length. */
static char *header_build(const cg_model_t *m, const table_t *tb, const cg_ckpt_info_t *info,
                          size_t *len) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  CG_ASSERT(f != NULL);
  fprintf(f,
          "{\"__metadata__\":{\"format\":\"%s\",\"format_version\":\"%d\",\"producer\":"
          "\"cogpu-dist %s\",\"in_c\":\"%d\",\"base\":\"%d\",\"depth\":\"%d\",\"nclass\":\"%d\","
          "\"height\":\"%d\",\"width\":\"%d\",\"ignore_index\":\"%d\",\"palette\":\"",
          FORMAT_NAME, FORMAT_VERSION, COGPU_VERSION, m->in_c, m->base, m->depth, m->nclass,
          m->height, m->width, info->ignore_index);
  for (int i = 0; i < 3 * info->npal; i++) fprintf(f, "%02x", info->palette[i]);
  /* the run's --class-names, checked (they hold no quote or backslash), as the comma list */
  char jerr[128], names[CG_CLASSNAMES_LEN];
  cg_json_t *j = info->settings[0] ? cg_json_parse(info->settings, jerr, sizeof jerr) : NULL;
  cg_classnames_json_list(j, "class-names", m->nclass, names);
  if (names[0]) fprintf(f, "\",\"class_names\":\"%s", names);
  cg_json_free(j);
  fprintf(f, "\"}");
  size_t off = 0;
  for (int i = 0; i < tb->n; i++) {
    const tensor_t *t = &tb->t[i];
    fprintf(f, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", t->name);
    for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)t->shape[d]);
    fprintf(f, "],\"data_offsets\":[%zu,%zu]}", off, off + 4 * t->numel);
    off += 4 * t->numel;
  }
  fprintf(f, "}");
  fclose(f);
  *len = n;
  return buf;
}

/* Writes the file through the atomic path. 0 or -1 with err. */
static int safetensors_write(const char *path, const cg_model_t *m, const table_t *tb,
                             const cg_ckpt_info_t *info, float *params, char *err,
                             size_t errlen) {
  size_t hlen;
  char *hdr = header_build(m, tb, info, &hlen);
  size_t padded = (hlen + 7) & ~(size_t)7;
  uint8_t n8[8];
  cg_le_put_u64(n8, padded);
  float *tmp = cg_malloc(sizeof(float) * (m->nparams ? m->nparams : 1), "export tensor");
  cg_afile_t *f = cg_afile_open(path, err, errlen);
  if (!f) goto fail;
  cg_afile_write(f, n8, 8);
  cg_afile_write(f, hdr, hlen);
  for (size_t i = hlen; i < padded; i++) cg_afile_write(f, " ", 1);
  for (int i = 0; i < tb->n; i++) {
    tensor_copy(m, &tb->t[i], params, tmp, 1);
    for (size_t j = 0; j < tb->t[i].numel; j++) { /* little-endian on any host */
      uint32_t u;
      uint8_t b[4];
      memcpy(&u, &tmp[j], 4);
      for (int k = 0; k < 4; k++) b[k] = (uint8_t)(u >> (8 * k));
      cg_afile_write(f, b, 4);
    }
  }
  free(tmp);
  free(hdr);
  return cg_afile_commit(f, err, errlen);
fail:
  free(tmp);
  free(hdr);
  return -1;
}

/* Loads the checkpoint (FILE, DIR/best or DIR/last, or DIR's newest valid one: cg_ckpt_resolve)
 * and its model. 0, or the exit code. */
static int load_checkpoint(const char *src, cg_ckpt_info_t *info, cg_model_t *m, float **params,
                           char *path, size_t pathlen) {
  char err[1200];
  if (cg_ckpt_resolve(src, info, path, pathlen, NULL, NULL, err, sizeof err)) {
    fprintf(stderr, "cogpu-dist: error: export: --checkpoint %s\n", err);
    return CG_EXIT_USAGE;
  }
  if (cg_ckpt_model(path, info, m, err, sizeof err)) {
    fprintf(stderr, "cogpu-dist: error: export: %s\n", err);
    return CG_EXIT_USAGE;
  }
  *params = cg_malloc(sizeof(float) * m->nparams, "weights");
  float *mv = cg_malloc(2 * sizeof(float) * m->nparams, "adamw moments");
  cg_ckpt_status_t st2 =
      cg_ckpt_read(path, &info->shape, NULL, *params, mv, mv + m->nparams, NULL, err, sizeof err);
  free(mv);
  if (st2 != CG_CKPT_OK) {
    fprintf(stderr, "cogpu-dist: error: export: %s\n", err);
    return 1;
  }
  return 0;
}

int cg_export_main(int argc, char **argv) {
  static const cg_opt_t rows[2] = {
      {"checkpoint", CG_OPT_PTR, EO(a), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR|FILE", "required"},
      {"out", CG_OPT_PTR, EO(b), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "required"}};
  eopts_t o;
  int rc = parse_pair(argc, argv, rows, &o, export_usage, "export");
  if (rc) return rc == 1 ? 0 : CG_EXIT_USAGE;
  const char *vals[2] = {o.a, o.b};
  const size_t ol = strlen(vals[1]);
  if (ol >= 5 && !strcasecmp(vals[1] + ol - 5, ".onnx")) { /* the README's section says ONNX too */
    fprintf(stderr, "cogpu-dist: error: export: --out %s: export writes safetensors, not ONNX: "
            "write FILE.safetensors, then `python3 -m cogpu_torch FILE.safetensors --onnx %s` "
            "(README: Export)\n", vals[1], vals[1]);
    return CG_EXIT_USAGE;
  }
  cg_ckpt_info_t info;
  cg_model_t m;
  float *params = NULL;
  char path[1024], err[1200];
  if (cg_afile_check("--out", vals[1], CG_AFILE_REPLACE, err, sizeof err)) {
    fprintf(stderr, "cogpu-dist: error: export: %s\n", err);
    return CG_EXIT_USAGE;
  }
  rc = load_checkpoint(vals[0], &info, &m, &params, path, sizeof path);
  if (rc) return rc;
  table_t tb;
  table_build(&m, &tb);
  if (safetensors_write(vals[1], &m, &tb, &info, params, err, sizeof err)) {
    fprintf(stderr, "cogpu-dist: error: export: --out: %s\n", err);
    free(params);
    return 1;
  }
  printf("export: %s (step %lld) -> %s: %d tensors, %zu parameters, model base %d depth %d, "
         "%d class(es), %dx%d\n",
         path, (long long)info.step, vals[1], tb.n, m.nparams, m.base, m.depth, m.nclass,
         m.height, m.width);
  free(params);
  return 0;
}

/* ---- import ---------------------------------------------------------------------------- */


/* A metadata integer in [lo, hi]. 0 or -1 with err. */
static int meta_int(const cg_json_t *meta, const char *key, int lo, int hi, int *out, char *err,
                    size_t errlen) {
  const char *s = cg_json_str(meta, key, NULL);
  char *end;
  if (!s) {
    snprintf(err, errlen, "__metadata__ has no string \"%s\"", key);
    return -1;
  }
  errno = 0;
  long v = strtol(s, &end, 10);
  if (!*s || *end || errno || v < lo || v > hi) {
    snprintf(err, errlen, "__metadata__ \"%s\" = \"%.40s\" is not an integer in %d..%d", key, s,
             lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

/* The model definition and palette from the metadata, checked, and (names non-NULL) its
 * class_names. 0 or -1 with err. */
static int meta_read(const cg_json_t *hdr, cg_model_t *m, cg_ckpt_info_t *info, char *names,
                     char *err, size_t errlen) {
  const cg_json_t *meta = cg_json_get(hdr, "__metadata__");
  if (!meta || meta->type != CG_JSON_OBJ) {
    snprintf(err, errlen, "no __metadata__ object: not written by cogpu-dist export");
    return -1;
  }
  const char *fmt = cg_json_str(meta, "format", "");
  if (strcmp(fmt, FORMAT_NAME)) {
    snprintf(err, errlen, "__metadata__ format \"%.40s\", expected \"%s\"", fmt, FORMAT_NAME);
    return -1;
  }
  int ver, in_c, base, depth, nclass, h, w, ign;
  if (meta_int(meta, "format_version", 1, 1 << 20, &ver, err, errlen)) return -1;
  if (ver != FORMAT_VERSION) {
    snprintf(err, errlen, "__metadata__ format_version %d: this build reads version %d", ver,
             FORMAT_VERSION);
    return -1;
  }
  if (meta_int(meta, "in_c", 1, 4096, &in_c, err, errlen) ||
      meta_int(meta, "base", 1, 1024, &base, err, errlen) || /* train's bounds, as ckpt's */
      meta_int(meta, "depth", 1, CG_MAX_DEPTH, &depth, err, errlen) ||
      meta_int(meta, "nclass", 1, CG_MAX_CLASSES, &nclass, err, errlen) ||
      meta_int(meta, "height", 2, 8192, &h, err, errlen) ||
      meta_int(meta, "width", 2, 8192, &w, err, errlen) ||
      meta_int(meta, "ignore_index", -1, 255, &ign, err, errlen))
    return -1;
  if (in_c != 3 + CG_NFEAT) {
    snprintf(err, errlen, "__metadata__ in_c %d: this build's model takes %d input channels",
             in_c, 3 + CG_NFEAT);
    return -1;
  }
  char why[256];
  if (cg_model_build(m, in_c, base, depth, h, w, nclass, why, sizeof why)) {
    snprintf(err, errlen, "__metadata__ describes no valid model: %s", why);
    return -1;
  }
  const int lo = nclass > 1 ? nclass : 2; /* binary masks hold 0 and 1: train's rule */
  if (ign >= 0 && ign < lo) {
    char kind[32] = "binary";
    if (nclass > 1) snprintf(kind, sizeof kind, "%d-class", nclass);
    snprintf(err, errlen, "__metadata__ ignore_index %d is a class id of this %s model (want -1 "
             "for none, or a label >= %d)", ign, kind, lo);
    return -1;
  }
  info->ignore_index = ign;
  const char *pal = cg_json_str(meta, "palette", "");
  size_t pl = strlen(pal);
  if (pl % 6 || pl / 6 > 256) {
    snprintf(err, errlen, "__metadata__ palette: %zu hex digits, expected 6 per entry, <= 256",
             pl);
    return -1;
  }
  info->npal = (int)(pl / 6);
  for (size_t i = 0; i < pl; i++) { /* two hex digits a byte (sscanf's %x takes signs) */
    const char ch = pal[i];
    const int v = ch >= '0' && ch <= '9'   ? ch - '0'
                  : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                  : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                           : -1;
    if (v < 0) {
      snprintf(err, errlen, "__metadata__ palette: not hex at digit %zu", i);
      return -1;
    }
    info->palette[i / 2] = (uint8_t)(i % 2 ? info->palette[i / 2] | v : v << 4);
  }
  if (names) cg_classnames_json_list(meta, "class_names", nclass, names);
  return 0;
}

static void shape_str(const int64_t *s, int nd, char *buf, size_t len) {
  size_t o = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < nd && o < len; d++)
    o += s[d] < 0 ? (size_t)snprintf(buf + o, len - o, "%s?", d ? ", " : "") /* not an index */
                  : (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "", (long long)s[d]);
  if (o < len) snprintf(buf + o, len - o, "]");
}

static int cmp_key(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A key that one object of v (at any depth) holds twice, or NULL. Sorted per object: a hostile
 * header may hold a million keys. */
static const char *json_dup_key(const cg_json_t *v) {
  if (v->type != CG_JSON_OBJ && v->type != CG_JSON_ARR) return NULL;
  const char *dup = NULL;
  if (v->type == CG_JSON_OBJ && v->n > 1) {
    char **k = cg_malloc(sizeof *k * (size_t)v->n, "header keys");
    memcpy(k, v->keys, sizeof *k * (size_t)v->n);
    qsort(k, (size_t)v->n, sizeof *k, cmp_key);
    for (int i = 1; i < v->n && !dup; i++)
      if (!strcmp(k[i - 1], k[i])) dup = k[i];
    free(k);
  }
  for (int i = 0; i < v->n && !dup; i++) dup = json_dup_key(&v->items[i]);
  return dup;
}

/* A JSON number that is an integer in [0, hi] (hi <= 2^53), else -1: no float is converted to
 * an integer type it does not fit. */
static int64_t json_index(const cg_json_t *v, double hi) {
  if (!v || v->type != CG_JSON_NUM || !(v->num >= 0 && v->num <= hi)) return -1;
  const int64_t i = (int64_t)v->num;
  return (double)i == v->num ? i : -1;
}

/* Checks one tensor entry against t: dtype, shape, and data offsets inside the dlen data bytes
 * spanning exactly its elements. 0 with *begin, or -1 with err. */
static int tensor_check(const tensor_t *t, const cg_json_t *e, size_t dlen, size_t *begin,
                        char *err, size_t errlen) {
  const char *dt = cg_json_str(e, "dtype", "?");
  if (strcmp(dt, "F32")) {
    snprintf(err, errlen, "tensor %s: dtype %.20s, expected F32", t->name, dt);
    return -1;
  }
  const cg_json_t *sh = cg_json_get(e, "shape"), *off = cg_json_get(e, "data_offsets");
  int64_t got[8];
  int nd = sh && sh->type == CG_JSON_ARR ? sh->n : -1;
  int same = nd == t->ndim;
  for (int d = 0; d < nd && d < 8; d++) {
    got[d] = json_index(&sh->items[d], 9007199254740992.0);
    if (d < t->ndim && got[d] != t->shape[d]) same = 0;
  }
  if (!same) {
    char a[96], b[96];
    shape_str(t->shape, t->ndim, a, sizeof a);
    if (nd < 0) snprintf(b, sizeof b, "none");
    else shape_str(got, nd < 8 ? nd : 8, b, sizeof b);
    snprintf(err, errlen, "tensor %s: shape %s, the metadata's model needs %s", t->name, b, a);
    return -1;
  }
  const int64_t lo = off && off->type == CG_JSON_ARR && off->n == 2
                         ? json_index(&off->items[0], (double)dlen) : -1;
  const int64_t hi = lo >= 0 ? json_index(&off->items[1], (double)dlen) : -1;
  if (hi < 0 || (uint64_t)(hi - lo) != 4 * (uint64_t)t->numel) {
    snprintf(err, errlen, "tensor %s: data_offsets missing, outside the %zu data bytes or not "
             "%zu bytes long", t->name, dlen, 4 * t->numel);
    return -1;
  }
  *begin = (size_t)lo;
  return 0;
}

/* Copies tensor t's data (little-endian floats at p) into params, in model.h's layout. */
static void tensor_load(const cg_model_t *m, const tensor_t *t, const uint8_t *p, float *params) {
  float *tmp = cg_malloc(sizeof(float) * t->numel, "import tensor");
  for (size_t j = 0; j < t->numel; j++) {
    uint32_t u = cg_le_get_u32(p + 4 * j);
    memcpy(&tmp[j], &u, 4);
  }
  tensor_copy(m, t, params, tmp, 0);
  free(tmp);
}

/* The tensors, each dlen-checked (begin[j] for tb->t[j]), must tile the data section as the
 * format says: no two share a byte, none is left over. 0 or -1 with err. */
static int tensors_tile(const table_t *tb, const size_t *begin, size_t dlen, char *err,
                        size_t errlen) {
  int order[2 * CG_MAX_LAYERS];
  for (int j = 0; j < tb->n; j++) { /* insertion sort by offset: a few dozen tensors */
    int k = j;
    while (k > 0 && begin[order[k - 1]] > begin[j]) {
      order[k] = order[k - 1];
      k--;
    }
    order[k] = j;
  }
  size_t at = 0; /* where the tensors so far end */
  for (int k = 0; k < tb->n; k++) {
    const tensor_t *t = &tb->t[order[k]];
    const size_t b = begin[order[k]];
    if (b < at) {
      snprintf(err, errlen, "tensors %s and %s overlap in the data section",
               tb->t[order[k - 1]].name, t->name);
      return -1;
    }
    if (b > at) {
      snprintf(err, errlen, "data bytes %zu..%zu belong to no tensor (before %s)", at, b - 1,
               t->name);
      return -1;
    }
    at = b + 4 * t->numel;
  }
  if (at != dlen) {
    snprintf(err, errlen, "the data section has %zu bytes, the tensors end at byte %zu", dlen,
             at);
    return -1;
  }
  return 0;
}

/* Every weight of the tensors (begin[j] for tb->t[j] into data, tiled) is finite: a NaN or an
 * infinity gives NaN logits from the first step, and a fine-tuning run would fail its step
 * checks instead of naming the file. 0, or -1 with err naming the tensor and the element (its
 * index in C order, as PyTorch's flatten() numbers it). */
static int tensors_finite(const table_t *tb, const size_t *begin, const uint8_t *data, char *err,
                          size_t errlen) {
  for (int j = 0; j < tb->n; j++)
    for (size_t i = 0; i < tb->t[j].numel; i++) {
      const uint32_t u = cg_le_get_u32(data + begin[j] + 4 * i);
      if ((u & 0x7f800000u) != 0x7f800000u) continue; /* exponent all ones: NaN or infinite */
      snprintf(err, errlen, "tensor %s: element %zu is %s: weights must be finite",
               tb->t[j].name, i, u & 0x7fffffu ? "NaN" : "infinite");
      return -1;
    }
  return 0;
}

int cg_import_parse(const uint8_t *buf, size_t len, cg_model_t *m, cg_ckpt_info_t *info,
                    char *names, float **params, char *err, size_t errlen) {
  *params = NULL;
  if (len < 8) {
    snprintf(err, errlen, "%zu bytes: too short for a safetensors file", len);
    return -1;
  }
  uint64_t n = cg_le_get_u64(buf);
  if (n < 2 || n > MAX_HEADER_BYTES || n > len - 8) {
    snprintf(err, errlen, "header length %llu does not fit the file's %zu bytes: not a "
             "safetensors file", (unsigned long long)n, len);
    return -1;
  }
  char *text = cg_malloc(n + 1, "safetensors header");
  memcpy(text, buf + 8, n);
  text[n] = 0;
  char why[256];
  cg_json_t *hdr = cg_json_parse(text, why, sizeof why);
  free(text);
  if (!hdr || hdr->type != CG_JSON_OBJ) {
    snprintf(err, errlen, "header is not a JSON object%s%s", hdr ? "" : ": ", hdr ? "" : why);
    cg_json_free(hdr);
    return -1;
  }
  /* no key twice in one object, at any depth: JSON readers differ on which one counts (this
   * one takes the first, Python's the last), so the two sides would load different weights */
  const char *dup = json_dup_key(hdr);
  int rc = 0;
  if (dup) {
    snprintf(err, errlen, "%.60s appears twice in one object of the header", dup);
    rc = -1;
  }
  if (!rc) rc = meta_read(hdr, m, info, names, err, errlen);
  table_t tb;
  if (!rc) table_build(m, &tb);
  for (int i = 0; !rc && i < hdr->n; i++) { /* strict: no name the module does not have */
    if (!strcmp(hdr->keys[i], "__metadata__")) continue;
    int j = 0;
    while (j < tb.n && strcmp(tb.t[j].name, hdr->keys[i])) j++;
    if (j == tb.n) {
      snprintf(err, errlen, "unexpected tensor %.60s: not in the metadata's model", hdr->keys[i]);
      rc = -1;
    }
  }
  /* Every tensor is checked against the file before the weights are allocated: the metadata
   * may claim any model, and only a file that holds its bytes gets that much memory. */
  const uint8_t *data = buf + 8 + n;
  const size_t dlen = len - 8 - n;
  size_t begin[2 * CG_MAX_LAYERS];
  for (int j = 0; !rc && j < tb.n; j++) {
    const cg_json_t *e = cg_json_get(hdr, tb.t[j].name);
    if (!e || e->type != CG_JSON_OBJ) {
      snprintf(err, errlen, "missing tensor %s", tb.t[j].name);
      rc = -1;
    } else {
      rc = tensor_check(&tb.t[j], e, dlen, &begin[j], err, errlen);
    }
  }
  if (!rc) rc = tensors_tile(&tb, begin, dlen, err, errlen);
  if (!rc) rc = tensors_finite(&tb, begin, data, err, errlen);
  if (!rc) {
    *params = cg_calloc(m->nparams, sizeof(float), "weights");
    for (int j = 0; j < tb.n; j++) tensor_load(m, &tb.t[j], data + begin[j], *params);
  }
  cg_json_free(hdr);
  return rc;
}

int cg_import_main(int argc, char **argv) {
  static const cg_opt_t rows[2] = {
      {"in", CG_OPT_PTR, EO(a), 0, 0, CG_OPT_REQUIRED, NULL, 0, "FILE", "required"},
      {"out", CG_OPT_PTR, EO(b), 0, 0, CG_OPT_REQUIRED, NULL, 0, "DIR", "required"}};
  eopts_t o;
  int rc = parse_pair(argc, argv, rows, &o, import_usage, "import");
  if (rc) return rc == 1 ? 0 : CG_EXIT_USAGE;
  const char *vals[2] = {o.a, o.b};
  char err[1400], why[1200];
  size_t len;
  uint8_t *buf = (uint8_t *)cg_file_read(vals[0], &len, why, sizeof why);
  if (!buf) {
    fprintf(stderr, "cogpu-dist: error: import: --in %s: %s\n", vals[0], why);
    return CG_EXIT_USAGE;
  }
  cg_model_t m;
  cg_ckpt_info_t info;
  memset(&info, 0, sizeof info);
  float *params = NULL;
  rc = cg_import_parse(buf, len, &m, &info, NULL, &params, why, sizeof why);
  free(buf);
  if (rc) {
    fprintf(stderr, "cogpu-dist: error: import: %s: %s\n", vals[0], why);
    return CG_EXIT_USAGE;
  }
  /* The checkpoint is for train --resume, whose model is --image-size N x N: a checkpoint of
   * another shape no run could resume. cg_import_parse takes it (--init-from uses no size). */
  if (m.height != m.width) {
    fprintf(stderr, "cogpu-dist: error: import: %s: __metadata__ height %d and width %d differ: "
            "train --resume takes square models (--image-size N) only; train --init-from %s "
            "takes the weights at any --image-size\n", vals[0], m.height, m.width, vals[0]);
    free(params);
    return CG_EXIT_USAGE;
  }
  char **paths = NULL;
  int64_t *steps = NULL;
  int nck = 0, lock = -1;
  if (cg_ckpt_prepare_dir(vals[1], "--out", err, sizeof err) ||
      (lock = cg_ckpt_lock_dir(vals[1], "--out", err, sizeof err)) == -1 || /* a run there */
      cg_ckpt_list(vals[1], &paths, &steps, &nck, err, sizeof err)) {
    fprintf(stderr, "cogpu-dist: error: import: %s%s\n", lock == -1 ? "" : "--out: ", err);
    if (lock >= 0) close(lock);
    free(params);
    return CG_EXIT_USAGE;
  }
  if (lock == -2) fprintf(stderr, "cogpu-dist: warning: import: %s\n", err);
  cg_ckpt_list_free(paths, steps, nck);
  char path[1024];
  const char *run_file = NULL; /* import would replace last; best, the history: another run's */
  static const char *const names[] = {"last", "best", "history.jsonl"};
  for (size_t i = 0; i < sizeof names / sizeof *names && !run_file; i++) {
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", vals[1], names[i]);
    if (lstat(path, &st) == 0) run_file = names[i];
  }
  if (nck > 0 || run_file) {
    char what[64];
    if (nck > 0) snprintf(what, sizeof what, "%d checkpoint(s)", nck);
    else snprintf(what, sizeof what, "a file named %s, as a run's", run_file);
    fprintf(stderr, "cogpu-dist: error: import: --out %s already holds %s: import into an empty "
            "directory\n", vals[1], what);
    if (lock >= 0) close(lock);
    free(params);
    return CG_EXIT_USAGE;
  }
  /* Step 0 of a fresh run: what a run with the defaults would write before its first step. */
  info.shape = (cg_ckpt_shape_t){m.in_c, m.base, m.depth, m.height, m.width, m.nparams,
                                 m.nclass};
  info.precision = 0; /* fp32 */
  info.train_samples = 1;
  info.steps_per_epoch = 1;
  info.ranks = 1;
  info.batch = 1;
  info.loss_scale = 1.0f;
  info.unix_time = (int64_t)time(NULL);
  info.run_id = cg_ckpt_new_run_id();
  float *zeros = cg_calloc(m.nparams, sizeof(float), "adamw moments");
  rc = cg_ckpt_write(vals[1], &info, params, zeros, zeros, NULL, 1, path, sizeof path, err,
                     sizeof err);
  if (lock >= 0) close(lock);
  free(zeros);
  free(params);
  if (rc) {
    fprintf(stderr, "cogpu-dist: error: import: %s\n", err);
    return 1;
  }
  printf("import: %s -> %s: %zu parameters, model base %d depth %d, %d class(es), %dx%d\n",
         vals[0], path, m.nparams, m.base, m.depth, m.nclass, m.height, m.width);
  return 0;
}
