/* ckpt.c: checkpoint files (format and rules in ckpt.h): writing, rotation, the pointer files,
 * the directory lock, reading and the resume order. `inspect` is ckpt_inspect.c.
 *
 * The payload CRC is computed before anything is written, so the header goes out first and
 * the file is written front to back (no seek back: works on pipes-like file systems too).
 * The reader checks what is cheap first (size, magic, version, header CRC, shape) and reads
 * the payload only for a file that could be used; a payload is never trusted before its CRC
 * has been compared, and the caller is told to discard the arrays otherwise. */
#include "ckpt.h"
#include "ckpt_impl.h" /* cg_ckpt_read_header, cg_ckpt_resume_order: shared with inspect */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h> /* flock: one run per checkpoint directory */
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomic_file.h"
#include "crc32.h"
#include "guard.h" /* cg_guard_signal: a stop signal ends the wait for a lock */
#include "le.h"
#include "log.h"
#include "path.h" /* cg_path_mkdir_p */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint payload is written as the host's floats: a little-endian host is assumed"
#endif

#define CHUNK_FLOATS (1u << 18) /* 1 MiB per read while streaming the payload */

static void put_f32(uint8_t *p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  cg_le_put_u32(p, u);
}
static float get_f32(const uint8_t *p) {
  uint32_t u = cg_le_get_u32(p);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static void put_f64(uint8_t *p, double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  cg_le_put_u64(p, u);
}
static double get_f64(const uint8_t *p) {
  uint64_t u = cg_le_get_u64(p);
  double d;
  memcpy(&d, &u, 8);
  return d;
}

void cg_ckpt_shape_str(const cg_ckpt_shape_t *s, char *buf, size_t len) {
  char k[32] = "";
  if (s->nclass != 1) snprintf(k, sizeof k, ", %d classes", s->nclass);
  snprintf(buf, len, "in %d, base %d, depth %d, %dx%d%s, %llu parameters", s->in_c, s->base,
           s->depth, s->height, s->width, k, (unsigned long long)s->nparams);
}

void cg_ckpt_path(const char *dir, int64_t step, char *buf, size_t len) {
  snprintf(buf, len, "%s/ckpt-%010lld.cgck", dir, (long long)step);
}

static int shape_eq(const cg_ckpt_shape_t *a, const cg_ckpt_shape_t *b) {
  return a->in_c == b->in_c && a->base == b->base && a->depth == b->depth &&
         a->height == b->height && a->width == b->width && a->nparams == b->nparams &&
         a->nclass == b->nclass;
}

/* Byte offsets of the header's fields (the table in ckpt.h): encode_header and decode_header
 * are their only users but for the reader's checks of what decode_header does not keep (the
 * header's length and CRC, the trailers' lengths and CRCs). */
enum {
  HDR_MAGIC = 0, HDR_VERSION = 8, HDR_HEADER_BYTES = 12,
  HDR_IN_C = 16, HDR_BASE = 20, HDR_DEPTH = 24, HDR_HEIGHT = 28, HDR_WIDTH = 32,
  HDR_PRECISION = 36, HDR_NPARAMS = 40,
  HDR_STEP = 48, HDR_EPOCH = 56, HDR_EPOCH_SAMPLES = 64, HDR_STEPS_PER_EPOCH = 72,
  HDR_TRAIN_SAMPLES = 80, HDR_RANKS = 88, HDR_BATCH = 92, HDR_SEED = 96,
  HDR_OPT_T = 104, HDR_TOTAL_STEPS = 112, HDR_LOSS_SCALE = 120, HDR_SCALE_GOOD_STEPS = 128,
  HDR_SKIPPED_STEPS = 136, HDR_LR = 144, HDR_UNIX_TIME = 152,
  HDR_PAYLOAD_BYTES = 160, HDR_PAYLOAD_CRC = 168, HDR_RUN_ID = 172,
  HDR_NCLASS = 180, HDR_IGNORE_INDEX = 184, HDR_NPAL = 188, HDR_PALETTE_CRC = 192, /* v >= 3 */
  HDR_SETTINGS_BYTES = 196, HDR_SETTINGS_CRC = 200,                               /* v >= 4 */
  HDR_VAL_HAVE = 204, HDR_VAL_STEP = 208, HDR_VAL_LOSS = 216, HDR_VAL_IOU = 224,  /* v >= 4 */
  HDR_UNIX_NSEC = 232,                                                            /* v >= 4 */
  HDR_EMA = 236,                                                                  /* v >= 5 */
  HDR_CRC = 252 /* CRC32 of the bytes before it */
};

/* ema: the payload holds the training weights after v (cg_ckpt_write's train), whatever
 * in->ema says. */
static void encode_header(const cg_ckpt_info_t *in, int ema, uint64_t payload_bytes,
                          uint32_t payload_crc, uint8_t *h) {
  memset(h, 0, CG_CKPT_HEADER_BYTES);
  memcpy(h + HDR_MAGIC, CG_CKPT_MAGIC, 8);
  cg_le_put_u32(h + HDR_VERSION, CG_CKPT_VERSION);
  cg_le_put_u32(h + HDR_HEADER_BYTES, CG_CKPT_HEADER_BYTES);
  cg_le_put_u32(h + HDR_IN_C, (uint32_t)in->shape.in_c);
  cg_le_put_u32(h + HDR_BASE, (uint32_t)in->shape.base);
  cg_le_put_u32(h + HDR_DEPTH, (uint32_t)in->shape.depth);
  cg_le_put_u32(h + HDR_HEIGHT, (uint32_t)in->shape.height);
  cg_le_put_u32(h + HDR_WIDTH, (uint32_t)in->shape.width);
  cg_le_put_u32(h + HDR_PRECISION, (uint32_t)in->precision);
  cg_le_put_u64(h + HDR_NPARAMS, in->shape.nparams);
  cg_le_put_u64(h + HDR_STEP, (uint64_t)in->step);
  cg_le_put_u64(h + HDR_EPOCH, (uint64_t)in->epoch);
  cg_le_put_u64(h + HDR_EPOCH_SAMPLES, (uint64_t)in->epoch_samples);
  cg_le_put_u64(h + HDR_STEPS_PER_EPOCH, (uint64_t)in->steps_per_epoch);
  cg_le_put_u64(h + HDR_TRAIN_SAMPLES, (uint64_t)in->train_samples);
  cg_le_put_u32(h + HDR_RANKS, (uint32_t)in->ranks);
  cg_le_put_u32(h + HDR_BATCH, (uint32_t)in->batch);
  cg_le_put_u64(h + HDR_SEED, in->seed);
  cg_le_put_u64(h + HDR_OPT_T, (uint64_t)in->opt_t);
  cg_le_put_u64(h + HDR_TOTAL_STEPS, (uint64_t)in->total_steps);
  put_f32(h + HDR_LOSS_SCALE, in->loss_scale);
  cg_le_put_u64(h + HDR_SCALE_GOOD_STEPS, (uint64_t)in->scale_good_steps);
  cg_le_put_u64(h + HDR_SKIPPED_STEPS, (uint64_t)in->skipped_steps);
  put_f64(h + HDR_LR, in->lr);
  cg_le_put_u64(h + HDR_UNIX_TIME, (uint64_t)in->unix_time);
  cg_le_put_u64(h + HDR_PAYLOAD_BYTES, payload_bytes);
  cg_le_put_u32(h + HDR_PAYLOAD_CRC, payload_crc);
  cg_le_put_u64(h + HDR_RUN_ID, in->run_id);
  cg_le_put_u32(h + HDR_NCLASS, (uint32_t)in->shape.nclass);
  /* a class id is never the ignore label: such a value (0 of a zeroed struct) means none */
  const int ign = in->ignore_index >= in->shape.nclass ? in->ignore_index : -1;
  cg_le_put_u32(h + HDR_IGNORE_INDEX, (uint32_t)ign);
  cg_le_put_u32(h + HDR_NPAL, (uint32_t)in->npal);
  cg_le_put_u32(h + HDR_PALETTE_CRC, cg_crc32(0, in->palette, 3 * (size_t)in->npal));
  const size_t sb = strnlen(in->settings, CG_CKPT_SETTINGS_MAX - 1);
  cg_le_put_u32(h + HDR_SETTINGS_BYTES, (uint32_t)sb);
  cg_le_put_u32(h + HDR_SETTINGS_CRC, cg_crc32(0, in->settings, sb));
  cg_le_put_u32(h + HDR_UNIX_NSEC, in->unix_nsec < 1000000000u ? in->unix_nsec : 0);
  if (in->have_val) {
    cg_le_put_u32(h + HDR_VAL_HAVE, 1);
    cg_le_put_u64(h + HDR_VAL_STEP, (uint64_t)in->val_step);
    put_f64(h + HDR_VAL_LOSS, in->val_loss);
    put_f64(h + HDR_VAL_IOU, in->val_iou);
  }
  cg_le_put_u32(h + HDR_EMA, ema ? 1 : 0);
  cg_le_put_u32(h + HDR_CRC, cg_crc32(0, h, HDR_CRC));
}

static void decode_header(const uint8_t *h, cg_ckpt_info_t *o) {
  memset(o, 0, sizeof *o);
  o->version = cg_le_get_u32(h + HDR_VERSION);
  o->shape.in_c = (int)cg_le_get_u32(h + HDR_IN_C);
  o->shape.base = (int)cg_le_get_u32(h + HDR_BASE);
  o->shape.depth = (int)cg_le_get_u32(h + HDR_DEPTH);
  o->shape.height = (int)cg_le_get_u32(h + HDR_HEIGHT);
  o->shape.width = (int)cg_le_get_u32(h + HDR_WIDTH);
  o->precision = (int)cg_le_get_u32(h + HDR_PRECISION);
  o->shape.nparams = cg_le_get_u64(h + HDR_NPARAMS);
  o->shape.nclass = 1; /* versions 1 and 2: binary */
  o->ignore_index = -1;
  if (o->version >= 3) {
    o->shape.nclass = (int)cg_le_get_u32(h + HDR_NCLASS);
    o->ignore_index = (int)(int32_t)cg_le_get_u32(h + HDR_IGNORE_INDEX);
    o->npal = (int)cg_le_get_u32(h + HDR_NPAL);
  }
  if (o->version >= 4) {
    /* 0 in files written before it */
    o->unix_nsec = cg_le_get_u32(h + HDR_UNIX_NSEC) % 1000000000u;
    o->have_val = cg_le_get_u32(h + HDR_VAL_HAVE) == 1;
    if (o->have_val) {
      o->val_step = (int64_t)cg_le_get_u64(h + HDR_VAL_STEP);
      o->val_loss = get_f64(h + HDR_VAL_LOSS);
      o->val_iou = get_f64(h + HDR_VAL_IOU);
    }
  }
  if (o->version >= 5) { /* 0 or 1; anything else is out of range (header_out_of_range) */
    const uint32_t ema = cg_le_get_u32(h + HDR_EMA);
    o->ema = ema <= 1 ? (int)ema : 2;
  }
  o->step = (int64_t)cg_le_get_u64(h + HDR_STEP);
  o->epoch = (int64_t)cg_le_get_u64(h + HDR_EPOCH);
  o->epoch_samples = (int64_t)cg_le_get_u64(h + HDR_EPOCH_SAMPLES);
  o->steps_per_epoch = (int64_t)cg_le_get_u64(h + HDR_STEPS_PER_EPOCH);
  o->train_samples = (int64_t)cg_le_get_u64(h + HDR_TRAIN_SAMPLES);
  o->ranks = (int)cg_le_get_u32(h + HDR_RANKS);
  o->batch = (int)cg_le_get_u32(h + HDR_BATCH);
  o->seed = cg_le_get_u64(h + HDR_SEED);
  o->opt_t = (int64_t)cg_le_get_u64(h + HDR_OPT_T);
  o->total_steps = (int64_t)cg_le_get_u64(h + HDR_TOTAL_STEPS);
  o->loss_scale = get_f32(h + HDR_LOSS_SCALE);
  o->scale_good_steps = (int64_t)cg_le_get_u64(h + HDR_SCALE_GOOD_STEPS);
  o->skipped_steps = (int64_t)cg_le_get_u64(h + HDR_SKIPPED_STEPS);
  o->lr = get_f64(h + HDR_LR);
  o->unix_time = (int64_t)cg_le_get_u64(h + HDR_UNIX_TIME);
  o->payload_bytes = cg_le_get_u64(h + HDR_PAYLOAD_BYTES);
  o->payload_crc = cg_le_get_u32(h + HDR_PAYLOAD_CRC);
  o->run_id = o->version >= 2 ? cg_le_get_u64(h + HDR_RUN_ID) : 0;
}

int64_t cg_ckpt_map_position(const cg_ckpt_info_t *in, int64_t ntrain, int64_t global,
                             int64_t spe, int *exact) {
  *exact = (int64_t)in->ranks * in->batch == global && in->train_samples == ntrain;
  if (*exact) return in->step;
  int64_t epoch = in->epoch, seen = in->epoch_samples;
  if (seen >= ntrain) {
    epoch++;
    seen = 0;
  }
  return epoch * spe + seen / global;
}

uint64_t cg_ckpt_new_run_id(void) {
  uint64_t id = 0;
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (read(fd, &id, sizeof id) != (ssize_t)sizeof id) id = 0;
    close(fd);
  }
  if (!id) { /* no /dev/urandom: the clock and the process (splitmix64 of both) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    id = z ^ (z >> 31);
  }
  return id ? id : 1;
}

/* One integer field against [lo, hi]: 0, or -1 with "NAME out of range: V, allowed LO..HI" in
 * buf. */
static int field_bad(const char *name, long long v, long long lo, long long hi, char *buf,
                     size_t len) {
  if (v >= lo && v <= hi) return 0;
  snprintf(buf, len, "%s out of range: %lld, allowed %lld..%lld", name, v, lo, hi);
  return -1;
}

/* The bounds every header field must satisfy (the ranges the command line accepts, with room):
 * a file with a valid CRC can still carry numbers no run wrote, and they would overflow the
 * position arithmetic. Returns 0, or -1 with the first field out of range, its value and its
 * bounds in buf ("base out of range: 2048, allowed 1..1024"). */
static int header_out_of_range(const cg_ckpt_info_t *in, char *buf, size_t len) {
  const long long kSteps = 1LL << 50;   /* --steps allows 1e15 */
  const long long kSamples = 1LL << 40; /* --train-samples allows 1e12 */
  const cg_ckpt_shape_t *s = &in->shape;
  /* the model's bounds are train's (--model-base, --model-depth, --image-size): no run makes
   * another, and predict sizes its tiles and buffers from them */
  const int lo_ignore = s->nclass > 1 ? s->nclass : 2; /* an ignore label is no class id */
  if (field_bad("in_c", s->in_c, 1, 4096, buf, len) ||
      field_bad("base", s->base, 1, 1024, buf, len) ||
      field_bad("depth", s->depth, 1, CG_MAX_DEPTH, buf, len) ||
      field_bad("height", s->height, 2, 8192, buf, len) ||
      field_bad("width", s->width, 2, 8192, buf, len) ||
      field_bad("nparams", (long long)(s->nparams > (1ULL << 41) ? (1ULL << 41) : s->nparams), 1,
                1LL << 40, buf, len) ||
      field_bad("nclass", s->nclass, 1, 255, buf, len) ||
      field_bad("ignore_index", in->ignore_index, -1, 255, buf, len) ||
      (in->ignore_index >= 0 &&
       field_bad("ignore_index", in->ignore_index, lo_ignore, 255, buf, len)) ||
      field_bad("npal", in->npal, 0, 256, buf, len) ||
      field_bad("ema", in->ema, 0, 1, buf, len) ||
      field_bad("precision", in->precision, 0, 2, buf, len) ||
      field_bad("step", in->step, 0, kSteps, buf, len) ||
      field_bad("epoch", in->epoch, 0, kSteps, buf, len) ||
      field_bad("train_samples", in->train_samples, 1, kSamples, buf, len) ||
      field_bad("epoch_samples", in->epoch_samples, 0, in->train_samples, buf, len) ||
      field_bad("steps_per_epoch", in->steps_per_epoch, 1, kSteps, buf, len) ||
      field_bad("ranks", in->ranks, 1, 1 << 24, buf, len) ||
      field_bad("batch", in->batch, 1, 1 << 26, buf, len) || /* --batch x --grad-accum */
      field_bad("opt_t", in->opt_t, 0, kSteps, buf, len) ||
      field_bad("total_steps", in->total_steps, 0, kSteps, buf, len) ||
      field_bad("scale_good_steps", in->scale_good_steps, 0, kSteps, buf, len) ||
      field_bad("skipped_steps", in->skipped_steps, 0, kSteps, buf, len))
    return -1;
  if (!(in->loss_scale > 0) || !(in->loss_scale < 3.0e38f)) {
    snprintf(buf, len, "loss_scale out of range: %g, allowed (0, 3e38)", (double)in->loss_scale);
    return -1;
  }
  if (!(in->lr >= 0 && in->lr <= 1e6)) {
    snprintf(buf, len, "lr out of range: %g, allowed 0..1e6", in->lr);
    return -1;
  }
  return 0;
}

/* ---- directory helpers ------------------------------------------------------------------- */

static const char *base_name(const char *path) {
  const char *b = strrchr(path, '/');
  return b ? b + 1 : path;
}


int cg_ckpt_prepare_dir(const char *dir, const char *flag, char *err, size_t errlen) {
  if (!dir[0]) {
    snprintf(err, errlen, "%s: empty path", flag);
    return -1;
  }
  if (cg_path_mkdir_p(dir) != 0) {
    snprintf(err, errlen, "%s: cannot create directory '%.300s': %s", flag, dir, strerror(errno));
    return -1;
  }
  char probe[4200];
  snprintf(probe, sizeof probe, "%s/.cgck-probe.XXXXXX", dir);
  int fd = mkstemp(probe);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create files in '%.300s': %s", flag, dir, strerror(errno));
    return -1;
  }
  close(fd);
  unlink(probe);
  return 0;
}

/* The holder's line of a lock file ("pid P on HOST since T"), and whether HOST is not this one. */
static int lock_holder(int fd, char *who, size_t len) {
  const ssize_t n = pread(fd, who, len - 1, 0);
  who[n > 0 ? n : 0] = 0;
  who[strcspn(who, "\n")] = 0;
  char host[128] = "", me[128] = "";
  long pid;
  if (sscanf(who, "pid %ld on %127s", &pid, host) != 2 || gethostname(me, sizeof me - 1) != 0)
    return 0;
  return strcmp(host, me) != 0;
}

static void remove_stale_temps(const char *dir);

int cg_ckpt_lock_dir(const char *dir, const char *flag, char *err, size_t errlen) {
  char path[4200];
  snprintf(path, sizeof path, "%s/.cogpu-dist.lock", dir);
  /* never through a symbolic link planted there: the file is truncated below */
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open its lock '%.300s' (%s): no lock against a second "
             "run", flag, path, strerror(errno));
    return -2;
  }
  /* A holder on another host may be a node that died: on NFS its lock lasts until the file
   * server's lease for it ends (about 90 s), so a job requeued elsewhere waits that long. */
  char who[256] = "";
  for (int waited = 0;; waited += 2) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    const int e = errno;
    if (e != EWOULDBLOCK) {
      snprintf(err, errlen, "%s %.300s: no lock against a second run (%s)", flag, dir,
               strerror(e));
      close(fd);
      return -2;
    }
    const int remote = lock_holder(fd, who, sizeof who);
    const int sig = cg_guard_signal(NULL); /* a stop signal ends the wait */
    if (!remote || waited >= 120 || sig) {
      snprintf(err, errlen, "%s %.300s is in use by another run (%s%s): two runs in one "
               "directory would replace each other's checkpoints; wait for it to end, or choose "
               "another %s", flag, dir, who[0] ? who : "its holder unknown",
               !sig                    ? remote ? ", still after 120 s" : ""
               : sig == CG_GUARD_MAX_TIME ? ", stopped waiting by --max-time"
                                          : ", stopped waiting by a signal", flag);
      close(fd);
      return -1;
    }
    if (!waited)
      fprintf(stderr, "cogpu-dist: %s %s is locked by %s, on another host: waiting up to 120 s "
              "(a node that died keeps its lock until its lease ends)\n", flag, dir, who);
    sleep(2);
  }
  char host[128] = "?", line[320];
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  const time_t now = time(NULL);
  struct tm tm;
  char when[32] = "?";
  if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  const int k = snprintf(line, sizeof line, "pid %ld on %s since %s\n", (long)getpid(), host,
                         when);
  /* who holds it: a hint for a refused run only, so a failed write is no error; never into a
   * file with other names (a hard link planted there) */
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 && ftruncate(fd, 0) == 0) {
    const ssize_t w = pwrite(fd, line, (size_t)k, 0);
    (void)w;
  }
  remove_stale_temps(dir); /* no other writer at work here now (on this node, at least) */
  return fd;
}

/* fopen(path, "rb") of a regular file only: a FIFO or device named as a checkpoint, best or last
 * would block the reader or never end. NULL with errno (EINVAL: not a regular file). */
static FILE *open_regular(const char *path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return NULL;
  struct stat st;
  const int stated = fstat(fd, &st) == 0, reg = stated && S_ISREG(st.st_mode);
  int fl = -1;
  if (!reg || (fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    const int e = stated && !reg ? EINVAL : errno;
    close(fd);
    errno = e;
    return NULL;
  }
  FILE *f = fdopen(fd, "rb");
  if (!f) close(fd);
  return f;
}

/* Parses "ckpt-<digits>.cgck"; returns the step or -1. */
static int64_t name_step(const char *name) {
  if (strncmp(name, "ckpt-", 5) != 0) return -1;
  const char *p = name + 5, *q = p;
  while (*q >= '0' && *q <= '9') q++;
  if (q == p || q - p > 18 || strcmp(q, ".cgck") != 0) return -1;
  return strtoll(p, NULL, 10);
}

/* A temporary of this directory's writers (cg_afile_temp_base): of a checkpoint, DIR/best,
 * DIR/last or DIR/history.jsonl; or a probe of cg_ckpt_prepare_dir (".cgck-probe.XXXXXX").
 * Nothing else is ever taken for one. */
static int is_writer_temp(const char *name) {
  char base[256];
  if (strlen(name) > 250 || !cg_afile_temp_base(name, base, sizeof base)) return 0;
  return name_step(base) >= 0 || !strcmp(base, "best") || !strcmp(base, "last") ||
         !strcmp(base, "history.jsonl") || !strcmp(base, "cgck-probe");
}

/* A writer killed mid-write (SIGKILL, a second signal, a node that died) leaves its temporary
 * behind, as large as a checkpoint; the next holder of the directory's lock removes them (only
 * regular files of the writers' own pattern) and says so. Only those untouched for
 * STALE_TEMP_S: where the lock is node-local (Lustre localflock, BeeGFS) a writer on another
 * node may be at work on its own temporary. */
#define STALE_TEMP_S 600
static void remove_stale_temps(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  const time_t now = time(NULL);
  int n = 0;
  double bytes = 0;
  char first[300] = "";
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (!is_writer_temp(de->d_name) ||
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        now - st.st_mtime < STALE_TEMP_S)
      continue;
    if (unlinkat(dirfd(d), de->d_name, 0) != 0) {
      cg_log_warn("%s: cannot remove the stale temporary %s: %s", dir, de->d_name,
                  strerror(errno));
      continue;
    }
    if (!n++) snprintf(first, sizeof first, "%s", de->d_name);
    bytes += (double)st.st_size;
  }
  closedir(d);
  if (n)
    cg_log_info("%s: removed %d stale temporary file(s) of an interrupted checkpoint write "
                "(%s%s, %.1f MB in all), left by a run killed while writing", dir, n, first,
                n > 1 ? ", ..." : "", bytes / 1e6);
}

/* The names --overwrite-checkpoints sets aside: the earlier run's files in DIR. */
static int is_run_file(const char *name) {
  return name_step(name) >= 0 || !strcmp(name, "best") || !strcmp(name, "last") ||
         !strcmp(name, "history.jsonl");
}

/* Makes DIR/previous-<UTC time>[-K] (relative to the open directory dfd) into sub. */
static int make_aside_dir(int dfd, const char *dir, char *sub, size_t sublen, char *err,
                          size_t errlen) {
  const time_t now = time(NULL);
  struct tm tm;
  char stamp[32] = "unknown-time", cand[64];
  if (gmtime_r(&now, &tm)) strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  for (int k = 1; k < 1000; k++) {
    if (k == 1) snprintf(cand, sizeof cand, "previous-%s", stamp);
    else snprintf(cand, sizeof cand, "previous-%s-%d", stamp, k);
    if (mkdirat(dfd, cand, 0777) == 0) {
      snprintf(sub, sublen, "%s/%s", dir, cand);
      return 0;
    }
    if (errno != EEXIST) break;
  }
  snprintf(err, errlen, "%s: cannot create %s: %s", dir, cand, strerror(errno));
  return -1;
}

/* Moves names[0..n) of the open directory dfd (dir) into a new DIR/previous-<UTC time>/ (its
 * path into sub), then fsyncs dfd: durable before anything takes their place. *moved counts
 * the files moved. 0, or -1 with err. */
static int move_aside(int dfd, const char *dir, const char *const *names, int n, char *sub,
                      size_t sublen, int *moved, char *err, size_t errlen) {
  int rc = make_aside_dir(dfd, dir, sub, sublen, err, errlen);
  for (int i = 0; i < n && rc == 0; i++) {
    char to[640]; /* previous-<stamp>[-K]/NAME */
    snprintf(to, sizeof to, "%.300s/%.300s", base_name(sub), names[i]);
    if (renameat(dfd, names[i], dfd, to) != 0) {
      snprintf(err, errlen, "%s: cannot move %s into %s: %s (%d of %d files moved)", dir,
               names[i], sub, strerror(errno), *moved, n);
      rc = -1;
    } else {
      ++*moved;
    }
  }
  if (rc == 0 && *moved && fsync(dfd) != 0) {
    snprintf(err, errlen, "%s: fsync: %s", dir, strerror(errno));
    rc = -1;
  }
  return rc;
}

int cg_ckpt_set_aside(const char *dir, char *sub, size_t sublen, int *moved, char *err,
                      size_t errlen) {
  *moved = 0;
  sub[0] = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
    return -1;
  }
  /* the names first: renaming entries while readdir walks the directory may skip some */
  char **names = NULL;
  int n = 0, cap = 0, rc = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    struct stat st;
    if (!is_run_file(de->d_name) ||
        fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(st.st_mode))
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(names, sizeof *names * (size_t)cap);
      if (!nn) CG_FATAL("out of memory listing %s", dir);
      names = nn;
    }
    const size_t len = strlen(de->d_name) + 1;
    names[n] = cg_malloc(len, "file name");
    memcpy(names[n++], de->d_name, len);
  }
  if (n) rc = move_aside(dirfd(d), dir, (const char *const *)names, n, sub, sublen, moved, err,
                         errlen);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  closedir(d);
  return rc;
}

typedef struct {
  char *path;
  int64_t step;
} entry_t;

static int by_step_desc(const void *a, const void *b) {
  const entry_t *x = a, *y = b;
  return x->step < y->step ? 1 : x->step > y->step ? -1 : 0;
}

int cg_ckpt_list(const char *dir, char ***paths, int64_t **steps, int *n, char *err,
                 size_t errlen) {
  *paths = NULL;
  *steps = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
    return -1;
  }
  entry_t *e = NULL;
  int cnt = 0, cap = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    int64_t s = name_step(de->d_name);
    if (s < 0) continue;
    if (cnt == cap) {
      cap = cap ? 2 * cap : 16;
      entry_t *ne = realloc(e, sizeof *e * (size_t)cap);
      if (!ne) CG_FATAL("out of memory listing %s", dir);
      e = ne;
    }
    size_t len = strlen(dir) + strlen(de->d_name) + 2;
    e[cnt].path = cg_malloc(len, "checkpoint path");
    snprintf(e[cnt].path, len, "%s/%s", dir, de->d_name);
    e[cnt].step = s;
    cnt++;
  }
  closedir(d);
  if (cnt) qsort(e, (size_t)cnt, sizeof *e, by_step_desc);
  *paths = cg_malloc(sizeof(char *) * (size_t)(cnt ? cnt : 1), "checkpoint list");
  *steps = cg_malloc(sizeof(int64_t) * (size_t)(cnt ? cnt : 1), "checkpoint list");
  for (int i = 0; i < cnt; i++) {
    (*paths)[i] = e[i].path;
    (*steps)[i] = e[i].step;
  }
  free(e);
  *n = cnt;
  return 0;
}

void cg_ckpt_list_free(char **paths, int64_t *steps, int n) {
  if (paths)
    for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
  free(steps);
}

/* ---- reader ------------------------------------------------------------------------------ */

/* What a header of n bytes (at most CG_CKPT_HEADER_BYTES) is, on its own bytes only: the first
 * of not a checkpoint (CG_CKPT_EMAGIC), too short (CG_CKPT_ETRUNC), a version this build does
 * not read (CG_CKPT_EVERSION) and a CRC mismatch (CG_CKPT_ECORRUPT), else CG_CKPT_OK. This order
 * is the reader's: it decides which message a damaged file gets. */
static cg_ckpt_status_t header_trusted(const uint8_t *h, size_t n) {
  if (n < 8 || memcmp(h + HDR_MAGIC, CG_CKPT_MAGIC, 8) != 0) return CG_CKPT_EMAGIC;
  if (n < CG_CKPT_HEADER_BYTES) return CG_CKPT_ETRUNC;
  const uint32_t version = cg_le_get_u32(h + HDR_VERSION);
  if (version < 1 || version > CG_CKPT_VERSION) return CG_CKPT_EVERSION;
  if (cg_crc32(0, h, HDR_CRC) != cg_le_get_u32(h + HDR_CRC)) return CG_CKPT_ECORRUPT;
  return CG_CKPT_OK;
}

/* cg_ckpt_read_header (ckpt_impl.h): header_trusted, then decoded. */
int cg_ckpt_read_header(const char *path, cg_ckpt_info_t *in) {
  uint8_t h[CG_CKPT_HEADER_BYTES];
  FILE *f = open_regular(path);
  if (!f) return -1;
  const size_t got = fread(h, 1, sizeof h, f);
  fclose(f);
  if (header_trusted(h, got) != CG_CKPT_OK) return -1;
  decode_header(h, in);
  return 0;
}

/* The run id in path's header, or 0 when the header cannot be read or trusted. */
static uint64_t header_run_id(const char *path) {
  cg_ckpt_info_t in;
  return cg_ckpt_read_header(path, &in) == 0 ? in.run_id : 0;
}

/* The reader's checks of the header of path, a file of fsize bytes whose first hn bytes (at most
 * CG_CKPT_HEADER_BYTES) are h: cheapest first, and in an order that decides which message a
 * damaged file gets: magic, length, version, header CRC, field bounds, the shape (against want,
 * when given), the header's own consistency, the settings trailer's length, the file's length.
 * CG_CKPT_OK with the header in *in and the settings trailer's length in *sbytes, or the first
 * status found with err naming the file. */
static cg_ckpt_status_t check_header(const char *path, const uint8_t *h, size_t hn,
                                     uint64_t fsize, const cg_ckpt_shape_t *want,
                                     cg_ckpt_info_t *in, uint32_t *sbytes, char *err,
                                     size_t errlen) {
  const cg_ckpt_status_t trust = header_trusted(h, hn);
  if (trust == CG_CKPT_EMAGIC) { /* a safetensors file: say how it becomes a checkpoint */
    if (cg_ckpt_is_safetensors(h, hn))
      snprintf(err, errlen, "%s: not a cogpu-dist checkpoint (bad magic): a safetensors file: "
               "make a checkpoint of it with `cogpu-dist import --in %s --out DIR`", path, path);
    else
      snprintf(err, errlen, "%s: not a cogpu-dist checkpoint (bad magic)", path);
    return CG_CKPT_EMAGIC;
  }
  if (trust == CG_CKPT_ETRUNC) {
    snprintf(err, errlen, "%s: truncated: %llu bytes, less than the %d-byte header", path,
             (unsigned long long)fsize, CG_CKPT_HEADER_BYTES);
    return CG_CKPT_ETRUNC;
  }
  decode_header(h, in);
  /* a header of another length is another format, whatever its CRC says */
  const uint32_t hbytes = cg_le_get_u32(h + HDR_HEADER_BYTES);
  if (trust == CG_CKPT_EVERSION) {
    snprintf(err, errlen, "%s: format version %u; this build reads versions 1 to %d", path,
             in->version, CG_CKPT_VERSION);
    return CG_CKPT_EVERSION;
  }
  if (hbytes != CG_CKPT_HEADER_BYTES) {
    snprintf(err, errlen, "%s: format version %u with a header of %u bytes; this build's "
             "headers are %d bytes (another format)", path, in->version, hbytes,
             CG_CKPT_HEADER_BYTES);
    return CG_CKPT_EVERSION;
  }
  if (trust == CG_CKPT_ECORRUPT) {
    snprintf(err, errlen, "%s: corrupt: header CRC mismatch (stored %08x, computed %08x)", path,
             cg_le_get_u32(h + HDR_CRC), cg_crc32(0, h, HDR_CRC));
    return CG_CKPT_ECORRUPT;
  }
  char bad[160];
  if (header_out_of_range(in, bad, sizeof bad)) {
    snprintf(err, errlen, "%s: corrupt: header field %s", path, bad);
    return CG_CKPT_ECORRUPT;
  }
  if (want && !shape_eq(&in->shape, want)) {
    char a[160], b[160];
    cg_ckpt_shape_str(&in->shape, a, sizeof a);
    cg_ckpt_shape_str(want, b, sizeof b);
    snprintf(err, errlen, "%s: another model shape: the checkpoint has %s; this run has %s", path,
             a, b);
    return CG_CKPT_ESHAPE;
  }
  if (in->payload_bytes != (3 + !!in->ema) * in->shape.nparams * sizeof(float) || in->step < 0 ||
      in->epoch < 0 || in->epoch_samples < 0 || in->steps_per_epoch < 1 ||
      in->train_samples < 1 || in->epoch_samples > in->train_samples || in->ranks < 1 ||
      in->batch < 1 || in->opt_t < 0 || !(in->loss_scale > 0)) {
    snprintf(err, errlen, "%s: corrupt: inconsistent header (payload %llu bytes for %llu "
             "parameters, step %lld)", path, (unsigned long long)in->payload_bytes,
             (unsigned long long)in->shape.nparams, (long long)in->step);
    return CG_CKPT_ECORRUPT;
  }
  *sbytes = in->version >= 4 ? cg_le_get_u32(h + HDR_SETTINGS_BYTES) : 0;
  if (*sbytes >= CG_CKPT_SETTINGS_MAX) {
    snprintf(err, errlen, "%s: corrupt: settings trailer of %u bytes (at most %d)", path, *sbytes,
             CG_CKPT_SETTINGS_MAX - 1);
    return CG_CKPT_ECORRUPT;
  }
  const uint64_t want_size =
      CG_CKPT_HEADER_BYTES + in->payload_bytes + 3 * (uint64_t)in->npal + *sbytes;
  if (fsize < want_size) {
    snprintf(err, errlen, "%s: truncated: the file is %llu bytes, its header says %llu", path,
             (unsigned long long)fsize, (unsigned long long)want_size);
    return CG_CKPT_ETRUNC;
  }
  if (fsize > want_size) {
    snprintf(err, errlen, "%s: corrupt: the file is %llu bytes, longer than the %llu its header "
             "says", path, (unsigned long long)fsize, (unsigned long long)want_size);
    return CG_CKPT_ECORRUPT;
  }
  return CG_CKPT_OK;
}

/* Streams the payload at f's position (params, AdamW m, AdamW v and, with a moving average, the
 * training weights: np floats each, narr arrays) through the CRC, into dst[a] when given (NULL:
 * through a scratch chunk, to verify only), and compares the CRC with the header's, `stored`. */
static cg_ckpt_status_t read_payload(FILE *f, const char *path, size_t np, int narr,
                                     float *const dst[4], uint32_t stored, char *err,
                                     size_t errlen) {
  cg_ckpt_status_t st = CG_CKPT_OK;
  float *buf = cg_malloc(sizeof(float) * CHUNK_FLOATS, "checkpoint read buffer");
  uint32_t crc = 0;
  for (int a = 0; a < narr; a++) {
    for (size_t off = 0; off < np; off += CHUNK_FLOATS) {
      size_t k = np - off < CHUNK_FLOATS ? np - off : CHUNK_FLOATS;
      float *p = dst[a] ? dst[a] + off : buf;
      if (fread(p, sizeof(float), k, f) != k) {
        snprintf(err, errlen, "%s: read error in the payload: %s", path,
                 ferror(f) ? strerror(errno) : "unexpected end of file");
        st = feof(f) ? CG_CKPT_ETRUNC : CG_CKPT_EIO;
        goto done;
      }
      crc = cg_crc32(crc, p, k * sizeof(float));
    }
  }
  if (crc != stored) {
    snprintf(err, errlen, "%s: corrupt: payload CRC mismatch (stored %08x, computed %08x)", path,
             stored, crc);
    st = CG_CKPT_ECORRUPT;
  }
done:
  free(buf);
  return st;
}

/* Reads the n-byte trailer `what` (palette, settings) of the checkpoint at f's position into dst
 * and checks it against its CRC; n == 0 is nothing to read. */
static cg_ckpt_status_t read_trailer(FILE *f, const char *path, const char *what, void *dst,
                                     size_t n, uint32_t crc, char *err, size_t errlen) {
  if (n == 0) return CG_CKPT_OK;
  if (fread(dst, 1, n, f) != n) {
    snprintf(err, errlen, "%s: read error in the %s: %s", path, what,
             ferror(f) ? strerror(errno) : "unexpected end of file");
    return feof(f) ? CG_CKPT_ETRUNC : CG_CKPT_EIO;
  }
  if (cg_crc32(0, dst, n) != crc) {
    snprintf(err, errlen, "%s: corrupt: %s CRC mismatch", path, what);
    return CG_CKPT_ECORRUPT;
  }
  return CG_CKPT_OK;
}

cg_ckpt_status_t cg_ckpt_read(const char *path, const cg_ckpt_shape_t *want,
                              cg_ckpt_info_t *info, float *params, float *m, float *v,
                              float *train, char *err, size_t errlen) {
  CG_ASSERT((params && m && v) || (!params && !m && !v && !train));
  CG_ASSERT(!params || want);
  cg_ckpt_status_t st = CG_CKPT_EIO;
  FILE *f = open_regular(path);
  if (!f) {
    snprintf(err, errlen, "%s: cannot open: %s", path, errno == EINVAL ? "not a regular file"
             : strerror(errno));
    return CG_CKPT_EIO;
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0) {
    snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
    goto done;
  }
  const uint64_t fsize = (uint64_t)sb.st_size;
  uint8_t h[CG_CKPT_HEADER_BYTES];
  const size_t hn = fsize < sizeof h ? (size_t)fsize : sizeof h;
  if (fread(h, 1, hn, f) != hn) {
    snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
    goto done;
  }
  cg_ckpt_info_t in;
  uint32_t sbytes = 0;
  st = check_header(path, h, hn, fsize, want, &in, &sbytes, err, errlen);
  if (st != CG_CKPT_OK) goto done;
  float *const dst[4] = {params, m, v, train}; /* into the caller's arrays when given */
  st = read_payload(f, path, (size_t)in.shape.nparams, 3 + in.ema, dst, in.payload_crc, err,
                    errlen);
  if (st != CG_CKPT_OK) goto done;
  st = read_trailer(f, path, "palette", in.palette, 3 * (size_t)in.npal,
                    cg_le_get_u32(h + HDR_PALETTE_CRC), err, errlen);
  if (st != CG_CKPT_OK) goto done;
  st = read_trailer(f, path, "settings", in.settings, sbytes,
                    cg_le_get_u32(h + HDR_SETTINGS_CRC), err, errlen);
  if (st != CG_CKPT_OK) goto done;
  in.settings[sbytes] = 0;
  if (info) *info = in;
done:
  fclose(f);
  return st;
}

/* ---- rotation ---------------------------------------------------------------------------- */

/* Among the checkpoints of run run_id only: removes those of later steps than `step` and all
 * but the `keep` newest others. Another run's files, and files whose header cannot be read,
 * are left alone. */
static void rotate(const char *dir, int64_t step, uint64_t run_id, int keep, int64_t best) {
  char **paths;
  int64_t *steps;
  int n;
  char err[256];
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err) != 0) {
    cg_log_warn("checkpoint rotation: %s", err);
    return;
  }
  int kept = 0;
  for (int i = 0; i < n; i++) {
    if (steps[i] == step) { /* the one just written */
      kept++;
      continue;
    }
    if (steps[i] == best) continue; /* DIR/best's: kept besides the `keep` newest */
    if (header_run_id(paths[i]) != run_id) continue; /* not this lineage's: never ours to remove */
    int drop = steps[i] > step || (steps[i] <= step && kept >= keep);
    if (!drop) {
      kept++;
      continue;
    }
    if (unlink(paths[i]) != 0)
      cg_log_warn("checkpoint rotation: cannot remove %s: %s", paths[i], strerror(errno));
    else if (steps[i] > step)
      cg_log_info("removed %s: a later step of this run's lineage (left by an attempt it "
                  "resumed before)", paths[i]);
  }
  cg_ckpt_list_free(paths, steps, n);
}

/* ---- pointer files: DIR/best, DIR/last ------------------------------------------------------ */

int cg_ckpt_read_pointer(const char *dir, const char *name, char *path, size_t pathlen,
                         int64_t *step, char *metric, size_t metriclen, double *value) {
  char p[4200], file[256] = "", met[32] = "";
  snprintf(p, sizeof p, "%s/%s", dir, name);
  FILE *f = open_regular(p);
  if (!f) return -1;
  long long s = -1;
  double v = 0;
  int got = fscanf(f, "%255s step %lld %31s %lf", file, &s, met, &v);
  fclose(f);
  if (got < 2 || name_step(file) < 0 || s != name_step(file)) return -1;
  snprintf(path, pathlen, "%s/%s", dir, file);
  if (step) *step = s;
  if (metric) snprintf(metric, metriclen, "%s", got == 4 ? met : "");
  if (value) *value = got == 4 ? v : 0;
  return 0;
}

static int write_pointer(const char *dir, const char *name, const char *ckpt, int64_t step,
                         const char *metric, double value) {
  char p[4200], text[512], err[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int n = snprintf(text, sizeof text, "%s\nstep %lld\n", base_name(ckpt), (long long)step);
  if (metric) n += snprintf(text + n, sizeof text - (size_t)n, "%s %.9g\n", metric, value);
  if (cg_afile_save(p, text, (size_t)n, err, sizeof err) != 0) {
    cg_log_warn("checkpoint pointer: %s", err);
    return -1;
  }
  return 0;
}

/* The figure DIR/best is chosen by, of a checkpoint whose header carries its own validation;
 * 0 when it has none (or a figure that is not finite). */
static int best_figure(const cg_ckpt_info_t *in, int by_loss, double *v) {
  if (!in->have_val || in->val_step != in->step) return 0;
  *v = by_loss ? in->val_loss : in->val_iou;
  return isfinite(*v);
}

/* DIR/best chosen afresh among every checkpoint of dir whose header carries its own validation
 * (the best figure; the newest step on a tie), or removed when none does. For when the file it
 * named was replaced or is gone: a pointer must never vouch for weights that were not measured.
 * Returns the step it names afterwards (-1: none). */
static int64_t repick_best(const char *dir, int by_loss, const char *metric) {
  char **paths;
  int64_t *steps;
  int n;
  char err[256], p[4200];
  int64_t bstep = -1;
  double bval = 0;
  const char *bpath = NULL;
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, sizeof err) != 0) n = 0; /* then: none */
  for (int i = 0; i < n; i++) { /* newest step first: a later one wins only when better */
    cg_ckpt_info_t in;
    double v;
    if (cg_ckpt_read_header(paths[i], &in) != 0 || in.step != steps[i] ||
        !best_figure(&in, by_loss, &v))
      continue;
    if (bstep < 0 || (by_loss ? v < bval : v > bval)) {
      bstep = steps[i];
      bval = v;
      bpath = paths[i];
    }
  }
  if (bpath) {
    if (write_pointer(dir, "best", bpath, bstep, metric, bval) != 0) bstep = -1;
  } else {
    snprintf(p, sizeof p, "%s/best", dir);
    if (unlink(p) != 0 && errno != ENOENT)
      cg_log_warn("checkpoint pointer: cannot remove %s: %s", p, strerror(errno));
  }
  cg_ckpt_list_free(paths, steps, n);
  return bstep;
}

/* After `path` (of info->step) is in place: DIR/best when its validation figure beats the one
 * DIR/best records (or DIR/best is missing), then DIR/last.
 * When DIR/best named the file just replaced (a step written again: a resumed branch, a run
 * started afresh) or a file that is gone, its figure no longer describes that file, and when
 * it was chosen by another metric its figure cannot be compared: best is chosen again from the
 * checkpoints' own figures (repick_best). Returns the step DIR/best
 * names afterwards (-1: none). */
static int64_t update_pointers(const char *dir, const char *path, const cg_ckpt_info_t *in) {
  const int by_loss = in->best_by == CG_CKPT_BEST_LOSS;
  const char *metric = by_loss ? "val_loss" : "val_iou";
  char bpath[4200], bmet[32];
  int64_t bstep = -1;
  double bval = 0;
  struct stat sb;
  const int named = cg_ckpt_read_pointer(dir, "best", bpath, sizeof bpath, &bstep, bmet,
                                         sizeof bmet, &bval) == 0;
  /* also when --best-metric changed on resume: the old figure cannot be compared, and a best
   * left naming a file rotation may then remove would dangle */
  if (named && (bstep == in->step || stat(bpath, &sb) != 0 || strcmp(bmet, metric))) {
    bstep = repick_best(dir, by_loss, metric);
  } else {
    const int have = named;
    double v;
    if (best_figure(in, by_loss, &v) && (!have || (by_loss ? v < bval : v > bval)) &&
        write_pointer(dir, "best", path, in->step, metric, v) == 0)
      bstep = in->step;
  }
  write_pointer(dir, "last", path, in->step, NULL, 0);
  return bstep;
}

/* ---- writer ------------------------------------------------------------------------------ */

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

/* `final` of another run (its header's run id is not `run_id`) is moved into a new
 * DIR/previous-<UTC time>/ before this run's file of the same step takes its name: a run resumed
 * into a directory from a FILE elsewhere (or requeued into one that holds two runs) never
 * replaces another run's checkpoint. 0 when there was nothing to move, or it was moved. */
static int aside_other_run(const char *dir, const char *final, uint64_t run_id, char *err,
                           size_t errlen) {
  cg_ckpt_info_t in;
  if (cg_ckpt_read_header(final, &in) != 0 || !in.run_id || !run_id || in.run_id == run_id)
    return 0;
  const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    return -1;
  }
  char sub[4300];
  const char *name = base_name(final);
  int moved = 0;
  const int rc = move_aside(dfd, dir, &name, 1, sub, sizeof sub, &moved, err, errlen);
  close(dfd);
  if (!rc)
    cg_log_info("%s held another run's checkpoint of this step (run id %016llx): moved to %s, "
                "not replaced", final, (unsigned long long)in.run_id, sub);
  return rc;
}

int cg_ckpt_write(const char *dir, const cg_ckpt_info_t *info, const float *params,
                  const float *m, const float *v, const float *train, int keep, char *path,
                  size_t pathlen, char *err, size_t errlen) {
  CG_ASSERT(dir != NULL && info != NULL && params != NULL && m != NULL && v != NULL && keep >= 1);
  char final[4200];
  cg_ckpt_path(dir, info->step, final, sizeof final);
  if (path) snprintf(path, pathlen, "%s", final);
  const size_t np = (size_t)info->shape.nparams, bytes = np * sizeof(float);
  uint32_t crc = cg_crc32(0, params, bytes);
  crc = cg_crc32(crc, m, bytes);
  crc = cg_crc32(crc, v, bytes);
  if (train) crc = cg_crc32(crc, train, bytes);
  uint8_t hdr[CG_CKPT_HEADER_BYTES];
  encode_header(info, train != NULL, (3 + (train != NULL)) * (uint64_t)bytes, crc, hdr);

  /* A temporary beside the final name, fsynced and renamed over it (atomic_file.h). */
  cg_afile_t *af = cg_afile_open(final, err, errlen);
  if (!af) return -1;
  FILE *f = cg_afile_stream(af);
  if (write_all(f, hdr, sizeof hdr) || write_all(f, params, bytes) || write_all(f, m, bytes) ||
      write_all(f, v, bytes) || (train && write_all(f, train, bytes)) ||
      write_all(f, info->palette, 3 * (size_t)info->npal) ||
      write_all(f, info->settings, strnlen(info->settings, CG_CKPT_SETTINGS_MAX - 1))) {
    snprintf(err, errlen, "%s: write failed: %s (nothing was replaced)", final, strerror(errno));
    cg_afile_abort(af);
    return -1;
  }
  if (aside_other_run(dir, final, info->run_id, err, errlen) != 0) {
    cg_afile_abort(af); /* nothing replaced: the other run's file stays where it is */
    return -1;
  }
  if (cg_afile_commit(af, err, errlen)) return -1;
  const int64_t best = update_pointers(dir, final, info);
  rotate(dir, info->step, info->run_id, keep, best);
  return 0;
}

/* ---- which checkpoint --resume DIR continues ---------------------------------------------- */

/* One file of the directory as the resume order sees it. */
typedef struct {
  int i;           /* index in the list */
  int rank;        /* 0: the newest run (and files whose run cannot be told); 1..: by recency */
  int64_t step;
  uint64_t run_id;
  int64_t t, ns;   /* when it was written: the header's time (the mtime for an unread header) */
} cand_t;

static int newer(const cand_t *x, const cand_t *y) {
  if (x->t != y->t) return x->t > y->t;
  if (x->ns != y->ns) return x->ns > y->ns;
  return x->step > y->step;
}

static int by_rank_time(const void *a, const void *b) {
  const cand_t *x = a, *y = b;
  if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
  return newer(x, y) ? -1 : newer(y, x) ? 1 : 0;
}

/* cg_ckpt_resume_order (ckpt_impl.h). */
void cg_ckpt_resume_order(const char *dir, char **paths, const int64_t *steps, int n,
                          int *order, uint64_t *newest_run) {
  cand_t *c = cg_malloc(sizeof *c * (size_t)(n ? n : 1), "resume order");
  char lpath[4200];
  int64_t lstep = -1;
  const int has_last = cg_ckpt_read_pointer(dir, "last", lpath, sizeof lpath, &lstep, NULL, 0,
                                            NULL) == 0;
  int head = -1;
  for (int i = 0; i < n; i++) {
    cg_ckpt_info_t in;
    struct stat sb;
    c[i] = (cand_t){i, 0, steps[i], 0, 0, 0};
    /* whose it is cannot be told: tried when written */
    if (cg_ckpt_read_header(paths[i], &in) != 0) {
      if (stat(paths[i], &sb) == 0) {
        c[i].t = (int64_t)sb.st_mtim.tv_sec;
        c[i].ns = (int64_t)sb.st_mtim.tv_nsec;
      }
      continue;
    }
    c[i].rank = -1; /* placed below */
    c[i].run_id = in.run_id;
    c[i].t = in.unix_time;
    c[i].ns = in.unix_nsec;
    if (has_last && !strcmp(base_name(paths[i]), base_name(lpath))) head = i;
  }
  /* runs by recency: DIR/last's first, then repeatedly the run of the newest file left */
  *newest_run = 0;
  for (int rank = 0;; rank++) {
    int pick = rank == 0 ? head : -1;
    for (int i = 0; i < n && !(rank == 0 && head >= 0); i++)
      if (c[i].rank == -1 && (pick < 0 || newer(&c[i], &c[pick]))) pick = i;
    if (pick < 0) break;
    if (rank == 0) *newest_run = c[pick].run_id;
    const uint64_t id = c[pick].run_id;
    for (int i = 0; i < n; i++)
      if (c[i].rank == -1 && c[i].run_id == id) c[i].rank = rank;
  }
  qsort(c, (size_t)n, sizeof *c, by_rank_time);
  /* Within the newest run, the file DIR/last names goes first: header times come from the
   * writers' clocks, and a requeued attempt on a node whose clock lags would otherwise lose to
   * its own predecessor. Only a file both written later and of a higher step wins over it (a
   * crash between a checkpoint's rename and the pointer's update). */
  int h = -1, later = 0;
  for (int k = 0; k < n && c[k].rank == 0; k++)
    if (c[k].i == head) h = k;
  for (int k = 0; h > 0 && k < h; k++) later |= newer(&c[k], &c[h]) && c[k].step > c[h].step;
  if (h > 0 && !later) {
    const cand_t keep = c[h];
    memmove(c + 1, c, sizeof *c * (size_t)h);
    c[0] = keep;
  }
  for (int i = 0; i < n; i++) order[i] = c[i].i;
  free(c);
}

int cg_ckpt_find(const char *dir, const cg_ckpt_shape_t *want, cg_ckpt_info_t *info,
                 float *params, float *m, float *v, float *train, char *path, size_t pathlen,
                 void (*report)(void *ctx, const char *line), void *ctx, char *err,
                 size_t errlen) {
  char **paths;
  int64_t *steps;
  int n;
  if (cg_ckpt_list(dir, &paths, &steps, &n, err, errlen) != 0) return -1;
  int *order = cg_malloc(sizeof(int) * (size_t)(n ? n : 1), "resume order");
  uint64_t newest_run = 0;
  cg_ckpt_resume_order(dir, paths, steps, n, order, &newest_run);
  int rc = n ? -1 : 1;
  for (int k = 0; k < n && rc != 0; k++) {
    const int i = order[k];
    char why[1024];
    cg_ckpt_status_t st =
        cg_ckpt_read(paths[i], want, info, params, m, v, train, why, sizeof why);
    if (st == CG_CKPT_OK) {
      snprintf(path, pathlen, "%s", paths[i]);
      rc = 0;
      if (report && k > 0 && info && newest_run && info->run_id != newest_run) {
        char line[1400];
        snprintf(line, sizeof line, "no checkpoint of the newest run in %s (run id %016llx) is "
                 "usable: going on with %s, of another run (run id %016llx)", dir,
                 (unsigned long long)newest_run, paths[i], (unsigned long long)info->run_id);
        report(ctx, line);
      }
    } else if (report) {
      char line[1200];
      snprintf(line, sizeof line, "skipping checkpoint %s%s", why,
               k + 1 < n ? "; trying the next one" : "");
      report(ctx, line);
    }
  }
  if (rc == 1) snprintf(err, errlen, "%s holds no checkpoint (ckpt-*.cgck)", dir);
  else if (rc < 0) snprintf(err, errlen, "%s: none of its %d checkpoint(s) is valid", dir, n);
  free(order);
  cg_ckpt_list_free(paths, steps, n);
  return rc;
}

int cg_ckpt_model(const char *path, const cg_ckpt_info_t *in, cg_model_t *m, char *err,
                  size_t errlen) {
  const cg_ckpt_shape_t *s = &in->shape;
  char why[256];
  if (cg_model_build(m, s->in_c, s->base, s->depth, s->height, s->width, s->nclass, why,
                     sizeof why)) {
    snprintf(err, errlen, "%s: corrupt: inconsistent header: it describes no valid model (%s)",
             path, why);
    return -1;
  }
  if (m->nparams != s->nparams) {
    snprintf(err, errlen, "%s: corrupt: inconsistent header: its model (base %d, depth %d, %d "
             "class(es)) has %zu parameters, the header says %llu", path, s->base, s->depth,
             s->nclass, m->nparams, (unsigned long long)s->nparams);
    return -1;
  }
  return 0;
}

#define CG_CKPT_PATH_MAX 4096

/* The directory of path ("." without one, "/" for a file at the root) into dir; its base name
 * (optional) into name. */
static void split_path(const char *path, char *dir, size_t dirlen, char *name, size_t namelen) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, dirlen, ".");
  else if (slash == path) snprintf(dir, dirlen, "/");
  else snprintf(dir, dirlen, "%.*s", (int)(slash - path), path);
  if (name) snprintf(name, namelen, "%s", slash ? slash + 1 : path);
}

int cg_ckpt_pointer_target(const char *src, char *target, size_t targetlen) {
  char head[8] = {0}, dir[CG_CKPT_PATH_MAX], name[CG_CKPT_PATH_MAX];
  FILE *f = open_regular(src);
  if (!f) return 0;
  const size_t got = fread(head, 1, sizeof head, f);
  fclose(f);
  if (got == sizeof head && !memcmp(head, CG_CKPT_MAGIC, 8)) return 0;
  split_path(src, dir, sizeof dir, name, sizeof name);
  return cg_ckpt_read_pointer(dir, name, target, targetlen, NULL, NULL, 0, NULL) == 0;
}

int cg_ckpt_last_of(const char *ckpt, char *last, size_t lastlen, int64_t *step) {
  char dir[CG_CKPT_PATH_MAX];
  split_path(ckpt, dir, sizeof dir, NULL, 0);
  return cg_ckpt_read_pointer(dir, "last", last, lastlen, step, NULL, 0, NULL);
}

int cg_ckpt_resolve(const char *src, cg_ckpt_info_t *info, char *path, size_t pathlen,
                    void (*report)(void *ctx, const char *line), void *ctx, char *err,
                    size_t errlen) {
  struct stat st;
  if (stat(src, &st) != 0) {
    snprintf(err, errlen, "%s: %s", src, strerror(errno));
    return -1;
  }
  if (S_ISDIR(st.st_mode))
    return cg_ckpt_find(src, NULL, info, NULL, NULL, NULL, NULL, path, pathlen, report, ctx, err,
                        errlen);
  char target[CG_CKPT_PATH_MAX];
  const int ptr = cg_ckpt_pointer_target(src, target, sizeof target);
  snprintf(path, pathlen, "%s", ptr ? target : src);
  char why[CG_CKPT_PATH_MAX + 512];
  if (cg_ckpt_read(path, NULL, info, NULL, NULL, NULL, NULL, why, sizeof why) == CG_CKPT_OK)
    return 0;
  if (ptr) snprintf(err, errlen, "%s names %s, which is not usable: %s", src, target, why);
  else snprintf(err, errlen, "%s", why);
  return -1;
}

int cg_ckpt_header(const char *path, cg_ckpt_info_t *in) { return cg_ckpt_read_header(path, in); }

int cg_ckpt_is_safetensors(const uint8_t *b, size_t n) {
  return n >= 9 && b[8] == '{' && memcmp(b, CG_CKPT_MAGIC, 8) != 0;
}
