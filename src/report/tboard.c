/* tboard.c: TensorBoard event files of scalars (tboard.h): TFRecord framing, CRC-32C and the
 * few protocol-buffer fields an Event of a scalar needs, encoded by hand. */
#include "tboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "le.h"
#include "path.h" /* cg_path_mkdir_p */

struct cg_tb {
  FILE *f;
  char *path;
};

uint32_t cg_crc32c(uint32_t crc, const void *p, size_t n) {
  const unsigned char *b = p;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= b[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

static double now_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* ---- protocol buffers: a growing byte buffer and the wire types used -------------------- */

typedef struct {
  unsigned char b[1024];
  size_t n;
  int over; /* did not fit */
} pb_t;

static void pb_bytes(pb_t *m, const void *p, size_t n) {
  if (m->over || n > sizeof m->b - m->n) {
    m->over = 1;
    return;
  }
  memcpy(m->b + m->n, p, n);
  m->n += n;
}

static void pb_varint(pb_t *m, uint64_t v) {
  unsigned char t[10];
  size_t n = 0;
  do {
    t[n] = (unsigned char)(v & 0x7f);
    v >>= 7;
    if (v) t[n] |= 0x80;
    n++;
  } while (v);
  pb_bytes(m, t, n);
}

static void pb_key(pb_t *m, unsigned field, unsigned wire) { pb_varint(m, field << 3 | wire); }

static void pb_double(pb_t *m, unsigned field, double v) { /* wire type 1: 64-bit */
  unsigned char t[8];
  uint64_t u;
  memcpy(&u, &v, 8);
  cg_le_put_u64(t, u);
  pb_key(m, field, 1);
  pb_bytes(m, t, 8);
}

static void pb_float(pb_t *m, unsigned field, float v) { /* wire type 5: 32-bit */
  unsigned char t[4];
  uint32_t u;
  memcpy(&u, &v, 4);
  cg_le_put_u32(t, u);
  pb_key(m, field, 5);
  pb_bytes(m, t, 4);
}

static void pb_len(pb_t *m, unsigned field, const void *p, size_t n) { /* wire type 2 */
  pb_key(m, field, 2);
  pb_varint(m, n);
  pb_bytes(m, p, n);
}

/* ---- TFRecords ---------------------------------------------------------------------------- */

static int write_record(cg_tb_t *t, const pb_t *m) {
  unsigned char h[12], c[4];
  cg_le_put_u64(h, m->n);
  cg_le_put_u32(h + 8, masked(cg_crc32c(0, h, 8)));
  cg_le_put_u32(c, masked(cg_crc32c(0, m->b, m->n)));
  if (fwrite(h, 1, 12, t->f) != 12 || fwrite(m->b, 1, m->n, t->f) != m->n ||
      fwrite(c, 1, 4, t->f) != 4 || fflush(t->f))
    return -1;
  return 0;
}

cg_tb_t *cg_tb_open(const char *dir, int64_t purge_step, char *err, size_t errlen) {
  if (cg_path_mkdir_p(dir)) {
    snprintf(err, errlen, "%s: cannot make the directory: %s", dir, strerror(errno));
    return NULL;
  }
  char host[256] = "host";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  for (char *p = host; *p; p++)
    if (*p == '/') *p = '_';
  const size_t len = strlen(dir) + strlen(host) + 96;
  cg_tb_t *t = calloc(1, sizeof *t);
  char *path = malloc(len);
  if (!t || !path) {
    free(t), free(path);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(path, len, "%s/events.out.tfevents.%lld.%s.%d.cogpu", dir, (long long)now_s(), host,
           (int)getpid());
  t->path = path;
  t->f = fopen(path, "wbx"); /* a new file: never another run's */
  pb_t m = {.n = 0};
  pb_double(&m, 1, now_s());
  pb_len(&m, 3, "brain.Event:2", 13); /* file_version */
  pb_t log = {.n = 0}, ev = {.n = 0};
  pb_key(&log, 1, 0); /* SessionLog.status */
  pb_varint(&log, 1); /* START */
  pb_double(&ev, 1, now_s()); /* Event.wall_time */
  pb_key(&ev, 2, 0);          /* Event.step */
  pb_varint(&ev, (uint64_t)(purge_step > 0 ? purge_step : 0));
  pb_len(&ev, 7, log.b, log.n); /* Event.session_log */
  if (!t->f || write_record(t, &m) || (purge_step >= 0 && write_record(t, &ev))) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    cg_tb_close(t);
    return NULL;
  }
  return t;
}

int cg_tb_scalar(cg_tb_t *t, const char *tag, int64_t step, double value, char *err,
                 size_t errlen) {
  pb_t val = {.n = 0}, sum = {.n = 0}, ev = {.n = 0};
  pb_len(&val, 1, tag, strlen(tag)); /* Summary.Value.tag */
  pb_float(&val, 2, (float)value);   /* Summary.Value.simple_value */
  pb_len(&sum, 1, val.b, val.n);     /* Summary.value */
  pb_double(&ev, 1, now_s());        /* Event.wall_time */
  pb_key(&ev, 2, 0);                 /* Event.step */
  pb_varint(&ev, (uint64_t)step);
  pb_len(&ev, 5, sum.b, sum.n); /* Event.summary */
  if (val.over || sum.over || ev.over) {
    snprintf(err, errlen, "%s: tag too long: %.60s", t->path, tag);
    return -1;
  }
  if (write_record(t, &ev)) {
    snprintf(err, errlen, "%s: write failed: %s", t->path, strerror(errno));
    return -1;
  }
  return 0;
}

const char *cg_tb_path(const cg_tb_t *t) { return t->path; }

void cg_tb_close(cg_tb_t *t) {
  if (!t) return;
  if (t->f) fclose(t->f);
  free(t->path);
  free(t);
}
