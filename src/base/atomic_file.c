/* atomic_file.c: temporary file, fsync, rename — the output-file writer (see atomic_file.h).
 *
 * The stream handed to writers is a fopencookie stream over the temporary's descriptor rather
 * than fdopen's, so that whichever way the content is written (fprintf, fwrite, libpng) the
 * errno of the first failed write is kept: a full disk is reported at commit as "No space left
 * on device", not as a bare stdio error flag whose errno later calls have overwritten. */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct cg_afile {
  char *path;       /* the target as given, for messages */
  char *dir;        /* its directory, for messages */
  const char *base; /* its last component (inside path) */
  int dfd;          /* the target's directory; every step is relative to it */
  int dir_sync;     /* dfd was opened for reading, so it can be fsynced */
  int fd;           /* the temporary */
  FILE *stream;
  int werr;         /* errno of the first failed write; 0 none */
  int discard;      /* closing without committing: buffered bytes are dropped, not written */
  char tmp[NAME_MAX + 1];
};

/* "<what>: <errno string>" into err (NULL-safe). */
static void fail(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(char *err, size_t errlen, int e, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < errlen) snprintf(err + n, errlen - (size_t)n, ": %s", strerror(e));
}

/* ---- the stream -------------------------------------------------------------------------- */

static ssize_t cookie_write(void *c, const char *buf, size_t n) {
  cg_afile_t *f = c;
  if (f->discard) return (ssize_t)n;
  for (size_t done = 0; done < n;) {
    ssize_t w = write(f->fd, buf + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (!f->werr) f->werr = w < 0 ? errno : EIO;
      return 0; /* stdio's error flag; the temporary is discarded anyway */
    }
    done += (size_t)w;
  }
  return (ssize_t)n;
}

static int cookie_seek(void *c, off64_t *off, int whence) {
  cg_afile_t *f = c;
  off_t r = lseek(f->fd, (off_t)*off, whence);
  if (r < 0) return -1;
  *off = r;
  return 0;
}

static int cookie_close(void *c) {
  (void)c; /* the descriptor is closed by commit/abort, which check the result */
  return 0;
}

/* ---- naming and opening ------------------------------------------------------------------ */

/* 64 bits for a temporary's name. Unpredictability is a courtesy, not the defence (O_EXCL is):
 * the fallback only has to make repeated collisions unlikely. */
static uint64_t name_bits(const void *salt, int attempt) {
  uint64_t z;
  if (getrandom(&z, sizeof z, GRND_NONBLOCK) == (ssize_t)sizeof z) return z;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  z = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20) ^
      (uint64_t)(uintptr_t)salt ^ ((uint64_t)attempt << 56);
  z += 0x9e3779b97f4a7c15ull; /* splitmix64 */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Opens the directory of f->path into f->dfd. Without read permission on it (write and
 * search only, which is enough to create files) it is opened O_PATH: no directory fsync then. */
static int open_dir(cg_afile_t *f, char *err, size_t errlen) {
  const char *slash = strrchr(f->path, '/');
  f->base = slash ? slash + 1 : f->path;
  if (!f->base[0] || !strcmp(f->base, ".") || !strcmp(f->base, "..")) {
    fail(err, errlen, EISDIR, "%s: not a file name", f->path);
    return -1;
  }
  f->dir = slash ? strndup(f->path, (size_t)(slash - f->path) + (slash == f->path)) : strdup(".");
  if (!f->dir) {
    fail(err, errlen, ENOMEM, "%s", f->path);
    return -1;
  }
  f->dir_sync = 1;
  f->dfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (f->dfd < 0 && errno == EACCES) {
    f->dir_sync = 0;
    f->dfd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  }
  if (f->dfd < 0) {
    fail(err, errlen, errno, "%s: cannot create a temporary file in '%s'", f->path, f->dir);
    return -1;
  }
  return 0;
}

/* Creates ".<base>.XXXXXX" in f->dfd. O_EXCL refuses any existing name, a symlink included,
 * so nothing planted is ever opened; 0666 is masked by the umask as for fopen. */
static int create_temp(cg_afile_t *f, char *err, size_t errlen) {
  static const char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const int keep = NAME_MAX - 8; /* '.', '.', six characters: stay within one name */
  for (int attempt = 0; attempt < 100; attempt++) {
    uint64_t r = name_bits(f, attempt);
    int n = snprintf(f->tmp, sizeof f->tmp, ".%.*s.", keep, f->base);
    for (int i = 0; i < 6; i++, r /= 62) f->tmp[n + i] = kChars[r % 62];
    f->tmp[n + 6] = 0;
    f->fd = openat(f->dfd, f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (f->fd >= 0) return 0;
    if (errno != EEXIST) break;
  }
  const int e = errno;
  f->tmp[0] = 0; /* the name is not ours: never remove it */
  fail(err, errlen, e, "%s: cannot create a temporary file in '%s'", f->path, f->dir);
  return -1;
}

/* Frees f and what it holds; the temporary is removed unless it was renamed (tmp[0] == 0). */
static void destroy(cg_afile_t *f) {
  if (f->stream) {
    f->discard = 1;
    fclose(f->stream);
  }
  if (f->fd >= 0) close(f->fd);
  if (f->tmp[0]) unlinkat(f->dfd, f->tmp, 0);
  if (f->dfd >= 0) close(f->dfd);
  free(f->dir);
  free(f->path);
  free(f);
}

cg_afile_t *cg_afile_open(const char *path, char *err, size_t errlen) {
  cg_afile_t *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    fail(err, errlen, ENOMEM, "%s", path);
    free(f);
    return NULL;
  }
  f->dfd = f->fd = -1;
  if (open_dir(f, err, errlen) || create_temp(f, err, errlen)) goto fail;
  static const cookie_io_functions_t io = {NULL, cookie_write, cookie_seek, cookie_close};
  f->stream = fopencookie(f, "w", io);
  if (!f->stream) {
    fail(err, errlen, errno, "%s: cannot set up the stream", path);
    goto fail;
  }
  return f;
fail:
  destroy(f);
  return NULL;
}

FILE *cg_afile_stream(cg_afile_t *f) { return f->stream; }

int cg_afile_write(cg_afile_t *f, const void *buf, size_t n) {
  return fwrite(buf, 1, n, f->stream) == n ? 0 : -1;
}

/* ---- commit ------------------------------------------------------------------------------ */

int cg_afile_commit(cg_afile_t *f, char *err, size_t errlen) {
  const char *op = NULL;
  int e = 0;
  if (fflush(f->stream) != 0 || ferror(f->stream)) {
    op = "write failed";
    e = f->werr ? f->werr : EIO;
  } else if (fsync(f->fd) != 0) {
    op = "fsync failed";
    e = errno;
  }
  f->discard = 1;
  fclose(f->stream); /* nothing buffered is left; cookie_close cannot fail */
  f->stream = NULL;
  int cl = close(f->fd); /* NFS reports some write errors only here */
  f->fd = -1;
  if (!op && cl != 0) {
    op = "close failed";
    e = errno;
  }
  if (!op && renameat(f->dfd, f->tmp, f->dfd, f->base) != 0) {
    op = "cannot rename the temporary into place";
    e = errno;
  }
  if (op) {
    fail(err, errlen, e, "%s: %s", f->path, op);
    if (err && errlen > strlen(err) + 1)
      strncat(err, " (nothing was replaced)", errlen - strlen(err) - 1);
    destroy(f);
    return -1;
  }
  f->tmp[0] = 0; /* renamed: nothing to remove */
  /* Makes the rename durable. Best effort: the new file is in place already, so a failure here
   * cannot honour "-1 leaves the old file" and some file systems refuse directory fsync. */
  if (f->dir_sync) (void)fsync(f->dfd);
  destroy(f);
  return 0;
}

void cg_afile_abort(cg_afile_t *f) {
  if (f) destroy(f);
}

int cg_afile_save(const char *path, const void *buf, size_t n, char *err, size_t errlen) {
  cg_afile_t *f = cg_afile_open(path, err, errlen);
  if (!f) return -1;
  cg_afile_write(f, buf, n); /* a failure is reported by commit */
  return cg_afile_commit(f, err, errlen);
}

/* ---- checking an output path ------------------------------------------------------------- */

const char *cg_afile_kind(unsigned mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

int cg_afile_temp_base(const char *name, char *base, size_t len) {
  const size_t n = strlen(name);
  if (name[0] != '.' || n < 9 || name[n - 7] != '.') return 0;
  int lower = 0, upper = 0, digit = 0;
  for (size_t i = n - 6; i < n; i++) {
    const char ch = name[i];
    lower |= ch >= 'a' && ch <= 'z';
    upper |= ch >= 'A' && ch <= 'Z';
    digit |= ch >= '0' && ch <= '9';
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')))
      return 0;
  }
  if (lower + upper + digit < 2) return 0;
  snprintf(base, len, "%.*s", (int)(n - 8), name + 1);
  return 1;
}

/* The length of a checkpoint's file name at s ("ckpt-<digits>.cgck", the names checkpoint
 * directories hold, src/run/ckpt.c), or 0. */
static size_t ckpt_name_len(const char *s) {
  if (strncmp(s, "ckpt-", 5) != 0) return 0;
  size_t i = 5;
  while (s[i] >= '0' && s[i] <= '9') i++;
  return i > 5 && !strncmp(s + i, ".cgck", 5) ? i + 5 : 0;
}

#define LOG_HISTORY "a run's validation history (history.jsonl)"
#define LOG_STATS "a run's --stats-out log"

/* What record log of a run's the text at b starts, or NULL: a validation history (history.jsonl,
 * src/run/history.c) or a --stats-out log (src/report/stats.c: a report, or the stop record of
 * a run stopped before its first report), both JSON lines. */
static const char *run_log_kind(const char *b) {
  static const char stop[] = "{\"final\": true, \"stopped\": \"";
  if (!strncmp(b, stop, sizeof stop - 1)) return LOG_STATS;
  if (strncmp(b, "{\"step\": ", 9) != 0) return NULL;
  size_t i = 9;
  while (b[i] >= '0' && b[i] <= '9') i++;
  if (i == 9) return NULL;
  if (!strncmp(b + i, ", \"epoch\": ", 11)) return LOG_HISTORY;
  if (!strncmp(b + i, ", \"total_steps\": ", 17)) return LOG_STATS;
  return NULL;
}

/* 1 when b starts a BMP: "BM", then at 14 an info header size bmp_io.c reads (src/data). */
static int bmp_start(const unsigned char *b, size_t n) {
  if (n < 18 || memcmp(b, "BM", 2) || b[15] || b[16] || b[17]) return 0;
  switch (b[14]) {
  case 12: case 40: case 52: case 56: case 64: case 108: case 124: return 1;
  default: return 0;
  }
}

/* What input data the file at path holds, from its first bytes, or NULL. */
static const char *input_kind(const char *path) {
  unsigned char b[64] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  const size_t n = fread(b, 1, sizeof b - 1, f);
  fclose(f);
  /* DIR/last, DIR/best: "ckpt-<step>.cgck\nstep <step>\n..." (a run resumes through them) */
  const size_t k = ckpt_name_len((const char *)b);
  if (k && !strncmp((const char *)b + k, "\nstep ", 6))
    return "a checkpoint directory's last or best pointer";
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return "a PNG image";
  /* SOI, then a marker a JPEG starts with (APPn, DQT, DHT, SOFn, COM): raw floats
   * (--params-out) starting FF D8 FF are then 2^-8 as likely again */
  if (n >= 4 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff &&
      ((b[3] >= 0xe0 && b[3] <= 0xef) || b[3] == 0xdb || b[3] == 0xc4 || b[3] == 0xfe ||
       (b[3] >= 0xc0 && b[3] <= 0xc2)))
    return "a JPEG image";
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "a GIF image";
  if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "a TIFF image";
  if (bmp_start(b, n)) return "a BMP image";
  if (n >= 8 && !memcmp(b, "CGCKPT\r\n", 8)) return "a cogpu-dist checkpoint";
  if (n >= 4 && !memcmp(b, "CGDS", 4)) return "a .cgds shard";
  return run_log_kind((const char *)b);
}

/* 0 when dir takes what a writer does there: two temporaries of the writers' form
 * (".probe.XXXXXX", which cg_afile_temp_base recognises) are created, one renamed over the
 * other (as a commit renames its temporary over the target) and removed. -1 (errno set) when
 * nothing can be created; -2 when what was created cannot be renamed or removed (an
 * append-only directory), which may leave the probes there. */
static int probe_dir(const char *dir) {
  char p[4200], q[4200];
  snprintf(p, sizeof p, "%s/.probe.XXXXXX", dir);
  snprintf(q, sizeof q, "%s/.probe.XXXXXX", dir);
  int fd = mkostemp(p, O_CLOEXEC);
  if (fd < 0) return -1;
  close(fd);
  if ((fd = mkostemp(q, O_CLOEXEC)) < 0) {
    const int e = errno;
    unlink(p);
    errno = e;
    return -1;
  }
  close(fd);
  int rc = rename(p, q); /* over an existing file, as a commit renames over its target */
  int e = rc ? errno : 0;
  if (rc && unlink(p) != 0) e = errno;
  if (unlink(q) != 0 && !rc) {
    rc = -1;
    e = errno;
  }
  errno = e;
  return rc ? -2 : 0;
}

int cg_afile_check(const char *flag, const char *path, cg_afile_how_t how, char *err,
                   size_t errlen) {
  const size_t n = strlen(path);
  if (!n || path[n - 1] == '/') {
    snprintf(err, errlen, "%s: '%.300s' names no file%s", flag, path, n ? " (it ends in '/')" : "");
    return -1;
  }
  struct stat st;
  const int exists = stat(path, &st) == 0;
  if (exists && S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: '%.300s' is a directory; give a file name", flag, path);
    return -1;
  }
  const int stream = exists && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode));
  if (exists && !S_ISREG(st.st_mode) && !(how == CG_AFILE_APPEND && stream)) {
    snprintf(err, errlen, "%s: '%.300s' is %s: %s %s", flag, path, cg_afile_kind(st.st_mode),
             flag, how == CG_AFILE_APPEND
                       ? "appends to a regular file, a FIFO or a character device"
                       : "writes a regular file by renaming a temporary over it");
    return -1;
  }
  if (exists && access(path, W_OK) != 0) {
    snprintf(err, errlen, "%s: '%.300s' is not writable (%s)", flag, path, strerror(errno));
    return -1;
  }
  const char *data = exists && S_ISREG(st.st_mode) ? input_kind(path) : NULL;
  if (data && !strncmp(data, "a run's ", 8)) { /* each taken by its own flag alone */
    if (!(how == CG_AFILE_REPLACE_HISTORY && !strcmp(data, LOG_HISTORY)) &&
        !(how == CG_AFILE_APPEND && !strcmp(data, LOG_STATS))) {
      snprintf(err, errlen, "%s: '%.300s' is %s, not an output: give another file name", flag,
               path, data);
      return -1;
    }
  } else if (data && !(how == CG_AFILE_REPLACE_SHARD && !strcmp(data, "a .cgds shard"))) {
    snprintf(err, errlen, "%s: '%.300s' is %s (input data), not an output: give another file "
             "name", flag, path, data);
    return -1;
  }
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  const size_t k = ckpt_name_len(base);
  if (k && k == strlen(base)) { /* a run would take it for a checkpoint of its own */
    snprintf(err, errlen, "%s: '%.300s' is named as checkpoints are (ckpt-N.cgck), not an "
             "output: give another file name", flag, path);
    return -1;
  }
  if (exists && how == CG_AFILE_APPEND) return 0; /* its directory is not written */
  char *tmp = strdup(path);
  if (!tmp) {
    snprintf(err, errlen, "%s: out of memory", flag);
    return -1;
  }
  const char *dir = dirname(tmp);
  int rc = 0;
  const int found = stat(dir, &st) == 0;
  if (!found || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "%s: directory '%.300s' of '%.300s' %s", flag, dir, path,
             found ? "is not a directory" : "does not exist");
    rc = -1;
  } else if (access(dir, W_OK) != 0) {
    snprintf(err, errlen, "%s: directory '%.300s' is not writable (%s)", flag, dir,
             strerror(errno));
    rc = -1;
  } else if ((rc = probe_dir(dir)) != 0) { /* root passes access() where nothing can be made */
    if (rc == -1)
      snprintf(err, errlen, "%s: cannot create a file in directory '%.300s' (%s)", flag, dir,
               strerror(errno));
    else
      snprintf(err, errlen, "%s: directory '%.300s' lets files be created but not renamed or "
               "removed (%s; append-only?): outputs are written by renaming a temporary over "
               "the file (any .probe.* files left there are this check's)", flag, dir,
               strerror(errno));
    rc = -1;
  }
  free(tmp);
  return rc;
}

/* ---- append-only logs -------------------------------------------------------------------- */

FILE *cg_afile_append(const char *path, int streams_ok, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0666);
  if (fd < 0 && errno == ENXIO) {
    fail(err, errlen, errno, "%s: %s", path, streams_ok ? "a FIFO that no process reads "
         "(start its reader first)" : "a FIFO or device, not a regular file");
    return NULL;
  }
  if (fd < 0) {
    fail(err, errlen, errno, "%s: cannot open for appending", path);
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    fail(err, errlen, errno, "%s: cannot stat", path);
    goto fail;
  }
  if (!S_ISREG(st.st_mode) && !(streams_ok && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)))) {
    fail(err, errlen, EINVAL, "%s: %s", path, cg_afile_kind(st.st_mode));
    goto fail;
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    fail(err, errlen, errno, "%s: fcntl", path);
    goto fail;
  }
  FILE *s = fdopen(fd, "a");
  if (s) return s;
  fail(err, errlen, errno, "%s: fdopen", path);
fail:
  close(fd);
  return NULL;
}

/* ---- reading a whole file ---------------------------------------------------------------- */

char *cg_file_read(const char *path, size_t *len, char *err, size_t errlen) {
  /* O_NONBLOCK: a FIFO with no writer is refused below, not waited for (regular files ignore
   * the flag) */
  const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct stat st;
  int e = 0;
  char *buf = NULL;
  size_t n = 0;
  if (fd < 0 || fstat(fd, &st) != 0) {
    e = errno;
    if (err && errlen) snprintf(err, errlen, "%s", strerror(e));
  } else if (S_ISDIR(st.st_mode)) {
    e = EISDIR;
    if (err && errlen) snprintf(err, errlen, "a directory, not a file");
  } else if (!S_ISREG(st.st_mode)) { /* /dev/zero, a FIFO: no end, or no size to read */
    e = EINVAL;
    if (err && errlen)
      snprintf(err, errlen, "not a regular file (a %s): give the file itself",
               S_ISFIFO(st.st_mode) ? "FIFO" : S_ISSOCK(st.st_mode) ? "socket" : "device");
  } else if ((uintmax_t)st.st_size >= SIZE_MAX || !(buf = malloc((size_t)st.st_size + 1))) {
    e = ENOMEM;
    fail(err, errlen, e, "%lld bytes, more than this process can hold", (long long)st.st_size);
  } else {
    const size_t cap = (size_t)st.st_size; /* a file that grows meanwhile is read this far */
    while (n < cap) {
      const ssize_t got = read(fd, buf + n, cap - n);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        e = errno;
        fail(err, errlen, e, "read failed after %zu bytes", n);
        break;
      }
      if (got == 0) break; /* it shrank meanwhile */
      n += (size_t)got;
    }
  }
  if (fd >= 0) close(fd);
  if (e) {
    free(buf);
    errno = e;
    return NULL;
  }
  buf[n] = 0;
  if (len) *len = n;
  return buf;
}
