/* fuzz_util.c: memfd inputs, scratch directories and the CRC fixers (see fuzz_util.h). */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32.h"
#include "le.h"

static void die(const char *what) {
  fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
  abort();
}

void cg_fuzz_file_open(cg_fuzz_file_t *f, const char *name) {
  f->fd = memfd_create(name, 0);
  if (f->fd < 0) die("memfd_create");
  snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
}

void cg_fuzz_file_put(cg_fuzz_file_t *f, const uint8_t *data, size_t n) {
  if (ftruncate(f->fd, 0)) die("ftruncate");
  size_t done = 0;
  while (done < n) {
    ssize_t k = pwrite(f->fd, data + done, n - done, (off_t)done);
    if (k <= 0) die("pwrite");
    done += (size_t)k;
  }
}

/* ---- scratch directories ------------------------------------------------------------------ */

static char g_dirs[8][256];
static int g_ndirs;

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  remove(p);
  return 0;
}

static void rm_dirs(void) {
  for (int i = 0; i < g_ndirs; i++) nftw(g_dirs[i], rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

const char *cg_fuzz_tmpdir(const char *tag) {
  if (g_ndirs == 8) abort();
  struct stat st;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
    base = "/dev/shm";
  char *d = g_dirs[g_ndirs];
  snprintf(d, sizeof g_dirs[0], "%s/cgfuzz-%s.XXXXXX", base, tag);
  if (!mkdtemp(d)) die("mkdtemp");
  if (g_ndirs++ == 0) atexit(rm_dirs);
  return d;
}

void cg_fuzz_write_file(const char *dir, const char *name, const uint8_t *data, size_t n) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die(p);
  size_t done = 0;
  while (done < n) {
    ssize_t k = write(fd, data + done, n - done);
    if (k <= 0) die("write");
    done += (size_t)k;
  }
  close(fd);
}

FILE *cg_fuzz_devnull(int quiet_stdout) {
  FILE *f = fopen("/dev/null", "w");
  if (!f) die("/dev/null");
  if (quiet_stdout) {
    fflush(stdout);
    if (dup2(fileno(f), STDOUT_FILENO) < 0) die("dup2");
  }
  return f;
}

char *cg_fuzz_strndup(const uint8_t *data, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, data, n);
  s[n] = 0;
  return s;
}

/* ---- CRC fixers --------------------------------------------------------------------------- */

/* The layouts are those of src/data/cgds.h, src/run/ckpt.h and the PNG specification. */

static int put_crc(uint8_t *at, uint32_t crc) {
  if (cg_le_get_u32(at) == crc) return 0;
  cg_le_put_u32(at, crc);
  return 1;
}

int cg_fuzz_fix_cgds(uint8_t *b, size_t n) {
  if (n < 64) return 0;
  int changed = 0;
  const uint64_t count = cg_le_get_u64(b + 16), table = cg_le_get_u64(b + 40);
  uint64_t fbytes = cg_le_get_u64(b + 48);
  if (table <= n) {
    /* record CRCs first: they live in the table, which the index CRC covers; entries are 32
     * bytes in version 1, 48 from version 2 */
    const uint64_t es = cg_le_get_u32(b + 4) == 1 ? 32 : 48, fit = (n - table) / es;
    for (uint64_t i = 0; i < count && i < fit; i++) {
      uint8_t *e = b + table + i * es;
      const uint64_t off = cg_le_get_u64(e), len = cg_le_get_u64(e + 8);
      if (len <= n && off <= n - len) changed |= put_crc(e + 16, cg_crc32(0, b + off, (size_t)len));
    }
    if (fbytes > n) fbytes = n;
    if (table <= fbytes)
      changed |= put_crc(b + 56, cg_crc32(0, b + table, (size_t)(fbytes - table)));
  }
  changed |= put_crc(b + 60, cg_crc32(0, b, 60));
  return changed;
}

int cg_fuzz_fix_ckpt(uint8_t *b, size_t n) {
  if (n < 256) return 0;
  /* version 3: the payload (payload_bytes at 160), then the palette trailer (npal at 188,
   * its CRC at 192); when the header's sizes do not fit, everything after it is the payload */
  uint64_t pb = 0;
  for (int i = 7; i >= 0; i--) pb = pb << 8 | b[160 + i];
  const uint32_t npal = (uint32_t)b[188] | (uint32_t)b[189] << 8 | (uint32_t)b[190] << 16 |
                        (uint32_t)b[191] << 24;
  int changed;
  if (pb <= n - 256 && npal <= 256 && 3 * (uint64_t)npal <= n - 256 - pb) {
    changed = put_crc(b + 168, cg_crc32(0, b + 256, (size_t)pb));
    changed |= put_crc(b + 192, cg_crc32(0, b + 256 + pb, 3 * (size_t)npal));
  } else {
    changed = put_crc(b + 168, cg_crc32(0, b + 256, n - 256));
  }
  changed |= put_crc(b + 252, cg_crc32(0, b, 252));
  return changed;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int cg_fuzz_fix_png(uint8_t *b, size_t n) {
  int changed = 0;
  size_t at = 8; /* after the signature */
  while (at <= n && n - at >= 12) {
    const uint32_t len = be32(b + at);
    if (len > n - at - 12) break;
    const uint32_t crc = cg_crc32(0, b + at + 4, (size_t)len + 4);
    uint8_t *c = b + at + 8 + len;
    if (be32(c) != crc) {
      c[0] = (uint8_t)(crc >> 24);
      c[1] = (uint8_t)(crc >> 16);
      c[2] = (uint8_t)(crc >> 8);
      c[3] = (uint8_t)crc;
      changed = 1;
    }
    at += (size_t)len + 12;
  }
  return changed;
}

void cg_fuzz_both(const uint8_t *data, size_t n, int (*fix)(uint8_t *, size_t),
              void (*fn)(const uint8_t *, size_t)) {
  fn(data, n);
  uint8_t *copy = malloc(n ? n : 1);
  if (!copy) abort();
  memcpy(copy, data, n);
  if (fix(copy, n)) fn(copy, n);
  free(copy);
}
