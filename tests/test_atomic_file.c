/* test_atomic_file.c: the output-file writer (atomic_file.h) — commit writes the content
 * (fwrite, fprintf, fseek) and replaces the target; abort and every failure (a write refused by
 * RLIMIT_FSIZE, a rename onto a directory, a missing directory) keep the old target and leave
 * no temporary; the mode follows the umask; a symlink at the target is replaced, never written
 * through; the append-only opener appends, follows a link the user made and refuses a FIFO. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "testutil.h"

static char dir[256];

static const char *at(const char *name) {
  static char buf[4][512];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static void put(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* The whole file as a string ("" when absent), static. */
static const char *get(const char *path) {
  static char buf[8192];
  buf[0] = 0;
  FILE *f = fopen(path, "r");
  if (!f) return buf;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = 0;
  fclose(f);
  return buf;
}

/* Entries of dir other than . and .. */
static int entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

static void test_commit(void) {
  char err[512] = "";
  put(at("out.txt"), "old content\n");
  cg_afile_t *f = cg_afile_open(at("out.txt"), err, sizeof err);
  CG_TEST_CHECK(f != NULL, "open: %s", err);
  if (!f) return;
  /* the temporary sits beside the target as .out.txt.XXXXXX, the target still old */
  CG_TEST_CHECK(entries() == 2, "%d entries while writing", entries());
  DIR *d = opendir(dir);
  struct dirent *e;
  int named = 0;
  while ((e = readdir(d)) != NULL)
    named += !strncmp(e->d_name, ".out.txt.", 9) && strlen(e->d_name) == 15;
  closedir(d);
  CG_TEST_CHECK(named == 1, "no temporary named .out.txt.XXXXXX");
  CG_TEST_CHECK(cg_afile_write(f, "XXXXX", 5) == 0, "write");
  fprintf(cg_afile_stream(f), " and %d\n", 42);
  fseek(cg_afile_stream(f), 0, SEEK_SET);
  cg_afile_write(f, "first", 5);
  CG_TEST_CHECK(!strcmp(get(at("out.txt")), "old content\n"), "target changed before commit");
  CG_TEST_CHECK(cg_afile_commit(f, err, sizeof err) == 0, "commit: %s", err);
  CG_TEST_CHECK(!strcmp(get(at("out.txt")), "first and 42\n"), "content '%s'", get(at("out.txt")));
  CG_TEST_CHECK(entries() == 1, "%d entries after commit", entries());
  CG_TEST_CHECK(cg_afile_save(at("out.txt"), "saved", 5, err, sizeof err) == 0, "save: %s", err);
  CG_TEST_CHECK(!strcmp(get(at("out.txt")), "saved"), "save wrote '%s'", get(at("out.txt")));
  CG_TEST_CHECK(entries() == 1, "%d entries after save", entries());
  printf("PASS commit writes the content and replaces the target\n");
}

static void test_abort(void) {
  char err[512];
  put(at("keep.txt"), "keep me\n");
  cg_afile_t *f = cg_afile_open(at("keep.txt"), err, sizeof err);
  CG_TEST_CHECK(f != NULL, "open: %s", err);
  if (!f) return;
  for (int i = 0; i < 10000; i++) fprintf(cg_afile_stream(f), "line %d\n", i);
  cg_afile_abort(f);
  cg_afile_abort(NULL);
  CG_TEST_CHECK(!strcmp(get(at("keep.txt")), "keep me\n"), "abort changed the target");
  CG_TEST_CHECK(entries() == 2, "%d entries after abort (out.txt, keep.txt)", entries());
  printf("PASS abort keeps the target and removes the temporary\n");
}

/* A write the kernel refuses midway (EFBIG from RLIMIT_FSIZE stands in for a full disk). */
static void test_write_failure(void) {
  char err[512] = "";
  put(at("keep.txt"), "keep me\n");
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  lim = old;
  lim.rlim_cur = 4096;
  signal(SIGXFSZ, SIG_IGN);
  setrlimit(RLIMIT_FSIZE, &lim);
  cg_afile_t *f = cg_afile_open(at("keep.txt"), err, sizeof err);
  CG_TEST_CHECK(f != NULL, "open: %s", err);
  if (f) {
    static char block[65536];
    memset(block, 'x', sizeof block);
    CG_TEST_CHECK(cg_afile_write(f, block, sizeof block) != 0, "a 64 KiB write under a 4 KiB limit");
    fprintf(cg_afile_stream(f), "more\n");
    CG_TEST_CHECK(cg_afile_commit(f, err, sizeof err) != 0, "commit succeeded");
  }
  setrlimit(RLIMIT_FSIZE, &old);
  printf("  message: %s\n", err);
  CG_TEST_CHECK(strstr(err, at("keep.txt")) && strstr(err, "write failed") &&
                    strstr(err, strerror(EFBIG)),
                "message does not name the path, the operation and the errno string");
  CG_TEST_CHECK(!strcmp(get(at("keep.txt")), "keep me\n"), "failed commit changed the target");
  CG_TEST_CHECK(entries() == 2, "%d entries after a failed write", entries());
  printf("PASS a failed write keeps the target and leaves no temporary\n");
}

static void test_other_failures(void) {
  char err[512] = "";
  /* the target is a non-empty directory: the rename fails */
  mkdir(at("adir"), 0777);
  put(at("adir/inside"), "x");
  cg_afile_t *f = cg_afile_open(at("adir"), err, sizeof err);
  CG_TEST_CHECK(f != NULL, "open: %s", err);
  if (f) {
    cg_afile_write(f, "data", 4);
    CG_TEST_CHECK(cg_afile_commit(f, err, sizeof err) != 0, "rename over a directory succeeded");
    printf("  message: %s\n", err);
    CG_TEST_CHECK(strstr(err, "rename") != NULL, "message: %s", err);
  }
  CG_TEST_CHECK(!strcmp(get(at("adir/inside")), "x"), "directory changed");
  CG_TEST_CHECK(entries() == 3, "%d entries after a failed rename", entries());
  /* no such directory; a path naming no file */
  CG_TEST_CHECK(cg_afile_open(at("nodir/x"), err, sizeof err) == NULL, "open in a missing dir");
  printf("  message: %s\n", err);
  CG_TEST_CHECK(strstr(err, at("nodir/x")) && strstr(err, strerror(ENOENT)), "message: %s", err);
  CG_TEST_CHECK(cg_afile_open(at("adir/"), err, sizeof err) == NULL, "open of 'dir/'");
  CG_TEST_CHECK(cg_afile_open("", NULL, 0) == NULL, "open of ''");
  rmdir(at("nodir"));
  unlink(at("adir/inside"));
  rmdir(at("adir"));
  printf("PASS rename and open failures are named and leave nothing behind\n");
}

static void test_modes(void) {
  static const mode_t masks[] = {022, 077, 002, 0};
  char err[512];
  for (int i = 0; i < 4; i++) {
    mode_t old = umask(masks[i]);
    unlink(at("mode.txt"));
    int rc = cg_afile_save(at("mode.txt"), "m", 1, err, sizeof err);
    unlink(at("mode.log"));
    FILE *a = cg_afile_append(at("mode.log"), 0, err, sizeof err);
    if (a) fclose(a);
    umask(old);
    struct stat st, sa;
    CG_TEST_CHECK(rc == 0 && stat(at("mode.txt"), &st) == 0, "save: %s", err);
    CG_TEST_CHECK(a && stat(at("mode.log"), &sa) == 0, "append: %s", err);
    if (rc || !a) continue;
    const mode_t want = 0666 & ~masks[i];
    CG_TEST_CHECK((st.st_mode & 07777) == want, "umask %03o: mode %03o, want %03o", masks[i],
                  st.st_mode & 07777, want);
    CG_TEST_CHECK((sa.st_mode & 07777) == want, "umask %03o: log mode %03o, want %03o", masks[i],
                  sa.st_mode & 07777, want);
  }
  unlink(at("mode.txt"));
  unlink(at("mode.log"));
  printf("PASS the mode is 0666 & ~umask, as fopen gives\n");
}

static void test_symlinks(void) {
  char err[512];
  put(at("victim"), "victim\n");
  symlink(at("victim"), at("link.txt"));
  CG_TEST_CHECK(cg_afile_save(at("link.txt"), "new\n", 4, err, sizeof err) == 0, "%s", err);
  struct stat st;
  CG_TEST_CHECK(lstat(at("link.txt"), &st) == 0 && S_ISREG(st.st_mode), "the link was not replaced");
  CG_TEST_CHECK(!strcmp(get(at("link.txt")), "new\n"), "content '%s'", get(at("link.txt")));
  CG_TEST_CHECK(!strcmp(get(at("victim")), "victim\n"), "written through the symlink");
  unlink(at("link.txt"));
  /* the append-only log: a link the user made is followed, a FIFO is refused at once */
  symlink(at("victim"), at("log.lnk"));
  FILE *a = cg_afile_append(at("log.lnk"), 0, err, sizeof err);
  CG_TEST_CHECK(a != NULL, "append: %s", err);
  if (a) {
    fputs("appended\n", a);
    fclose(a);
  }
  CG_TEST_CHECK(!strcmp(get(at("victim")), "victim\nappended\n"), "log: '%s'", get(at("victim")));
  mkfifo(at("fifo"), 0600);
  CG_TEST_CHECK(cg_afile_append(at("fifo"), 0, err, sizeof err) == NULL, "a FIFO was opened");
  printf("  message: %s\n", err);
  /* streams_ok (--stats-out): a FIFO nobody reads is an error at once, never a wait; one
   * with a reader is appended to */
  CG_TEST_CHECK(cg_afile_append(at("fifo"), 1, err, sizeof err) == NULL &&
                    strstr(err, "no process reads"), "a FIFO without a reader: %s", err);
  const int rd = open(at("fifo"), O_RDONLY | O_NONBLOCK);
  FILE *fa = rd >= 0 ? cg_afile_append(at("fifo"), 1, err, sizeof err) : NULL;
  CG_TEST_CHECK(fa != NULL, "a FIFO with a reader: %s", err);
  if (fa) {
    fputs("line\n", fa);
    fflush(fa);
    char got[16] = "";
    CG_TEST_CHECK(read(rd, got, sizeof got - 1) == 5 && !strcmp(got, "line\n"), "read '%s'", got);
    fclose(fa);
  }
  if (rd >= 0) close(rd);
  CG_TEST_CHECK(cg_afile_append(dir, 0, err, sizeof err) == NULL, "a directory was opened");
  CG_TEST_CHECK(cg_afile_append(dir, 1, err, sizeof err) == NULL, "a directory was opened");
  unlink(at("log.lnk"));
  unlink(at("fifo"));
  unlink(at("victim"));
  printf("PASS a symlink at the target is replaced; the log follows one; a FIFO is refused, or "
         "with streams_ok appended to\n");
}

/* cg_file_read: a file of 200,000 bytes, binary (NUL bytes kept), NUL-terminated, and an empty
 * one; a missing file gives NULL with ENOENT, a directory EISDIR, and what is not a regular
 * file (/dev/zero, which never ends; a FIFO with no writer, which would block) EINVAL, each
 * with its reason, at once. */
static void test_read(void) {
  char err[512];
  const size_t n = 200000;
  char *data = malloc(n);
  for (size_t i = 0; i < n; i++) data[i] = (char)(i * 7 % 251);
  CG_TEST_CHECK(cg_afile_save(at("read.bin"), data, n, err, sizeof err) == 0, "save: %s", err);
  size_t len = 0;
  char *back = cg_file_read(at("read.bin"), &len, err, sizeof err);
  CG_TEST_CHECK(back && len == n && !memcmp(back, data, n) && back[n] == 0,
                "read back %zu of %zu bytes", back ? len : 0, n);
  free(back);
  CG_TEST_CHECK(cg_afile_save(at("empty.bin"), "", 0, err, sizeof err) == 0, "save: %s", err);
  back = cg_file_read(at("empty.bin"), &len, err, sizeof err);
  CG_TEST_CHECK(back && len == 0 && back[0] == 0, "empty file: %s", back ? "length" : err);
  free(back);
  struct {
    const char *path, *why;
    int e;
  } bad[] = {{at("none.bin"), "No such file", ENOENT},
             {dir, "a directory", EISDIR},
             {"/dev/zero", "not a regular file (a device)", EINVAL},
             {at("read.fifo"), "not a regular file (a FIFO)", EINVAL}};
  CG_TEST_CHECK(mkfifo(at("read.fifo"), 0600) == 0, "mkfifo: %s", strerror(errno));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    errno = 0;
    err[0] = 0;
    CG_TEST_CHECK(!cg_file_read(bad[i].path, &len, err, sizeof err) && errno == bad[i].e &&
                      strstr(err, bad[i].why),
                  "%s: errno %d, \"%s\"", bad[i].path, errno, err);
  }
  unlink(at("read.fifo"));
  unlink(at("empty.bin"));
  unlink(at("read.bin"));
  free(data);
}

/* cg_afile_check: a directory where no file can be made (/proc, which root's access() calls
 * writable) is refused at start-up, not at the end of a run; a usable one is left as it was. */
static void test_check_probe(void) {
  char err[512] = "";
  const int bad = cg_afile_check("--metrics-out", "/proc/version", CG_AFILE_REPLACE, err,
                                 sizeof err);
  CG_TEST_CHECK(bad == -1 && strstr(err, "--metrics-out") && strstr(err, "/proc"),
                "an output in /proc passed the check: %s", err);
  const int n = entries();
  CG_TEST_CHECK(cg_afile_check("--metrics-out", at("new.json"), CG_AFILE_REPLACE, err,
                               sizeof err) == 0 && entries() == n,
                "a usable directory: %s, %d entries (was %d)", err, entries(), n);
  printf("PASS check: an output directory where nothing can be made is refused: %s\n", err);
}

/* cg_afile_check: a run's validation history and --stats-out log (by their first record: a
 * report or the stop record) are refused as what another output replaces (export --out
 * ck/history.jsonl lost the history), the history taken by --history-out alone (a resume
 * rewrites it) and the stats log by --stats-out alone (it appends); a metrics JSON
 * ("steps", not "step") and a history-like text of another shape are outputs as before; a BMP
 * image is input data. */
static void test_check_logs(void) {
  char err[512];
  const struct {
    const char *name, *text, *what; /* what: a refusal's words, NULL: an output */
    int hist_ok, stats_ok;          /* taken by --history-out, by --stats-out */
  } files[] = {
      {"h.jsonl", "{\"step\": 40, \"epoch\": 1.25, \"wall_s\": 3.5}\n", "validation history", 1,
       0},
      {"s.jsonl", "{\"step\": 7, \"total_steps\": 100, \"final\": false}\n", "--stats-out log", 0,
       1},
      {"f.jsonl", "{\"final\": true, \"stopped\": \"signal\", \"step\": 0}\n",
       "--stats-out log", 0, 1},
      {"m.json", "{\"steps\": 40, \"steps_trained\": 40}\n", NULL, 1, 1},
      {"o.jsonl", "{\"step\": 40, \"loss\": 0.5}\n", NULL, 1, 1},
      {"n.jsonl", "{\"step\": , \"epoch\": 1}\n", NULL, 1, 1}};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    const char *p = at(files[i].name);
    CG_TEST_CHECK(cg_afile_save(p, files[i].text, strlen(files[i].text), err, sizeof err) == 0,
                  "save: %s", err);
    err[0] = 0;
    const int rc = cg_afile_check("--out", p, CG_AFILE_REPLACE, err, sizeof err);
    if (files[i].what)
      CG_TEST_CHECK(rc == -1 && strstr(err, files[i].what) && strstr(err, "--out") &&
                        strstr(err, "not an output"), "%s as --out: %d '%s'", files[i].name,
                    rc, err);
    else
      CG_TEST_CHECK(rc == 0, "%s as --out: '%s'", files[i].name, err);
    if (files[i].what) printf("  refused: %s\n", err);
    CG_TEST_CHECK((cg_afile_check("--history-out", p, CG_AFILE_REPLACE_HISTORY, err,
                                  sizeof err) == 0) == files[i].hist_ok,
                  "%s as --history-out: '%s'", files[i].name, err);
    CG_TEST_CHECK((cg_afile_check("--stats-out", p, CG_AFILE_APPEND, err, sizeof err) == 0) ==
                      files[i].stats_ok, "%s as --stats-out: '%s'", files[i].name, err);
    CG_TEST_CHECK(cg_afile_check("--out", p, CG_AFILE_REPLACE_SHARD, err, sizeof err) ==
                      (files[i].what ? -1 : 0), "%s as pack --out: '%s'", files[i].name, err);
    unlink(p);
  }
  /* a BMP image (bmp_io.c's header sizes) is input data for every output */
  static const uint8_t bmp[18] = {'B', 'M', 0x46, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 40, 0, 0, 0};
  CG_TEST_CHECK(cg_afile_save(at("img.txt"), bmp, sizeof bmp, err, sizeof err) == 0, "%s", err);
  CG_TEST_CHECK(cg_afile_check("--out", at("img.txt"), CG_AFILE_REPLACE, err, sizeof err) == -1 &&
                    strstr(err, "a BMP image (input data)") &&
                    cg_afile_check("--history-out", at("img.txt"), CG_AFILE_REPLACE_HISTORY, err,
                                   sizeof err) == -1, "a BMP as an output: '%s'", err);
  unlink(at("img.txt"));
  printf("PASS check: a run's history is an output of --history-out alone, its stats log of "
         "--stats-out alone; a BMP of none\n");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/cg_afile_XXXXXX");
  if (!mkdtemp(dir)) return 1;
  test_commit();
  test_abort();
  test_write_failure();
  test_other_failures();
  test_modes();
  test_symlinks();
  test_read();
  test_check_probe();
  test_check_logs();
  unlink(at("out.txt"));
  unlink(at("keep.txt"));
  CG_TEST_CHECK(entries() == 0, "%d entries left in the directory", entries());
  rmdir(dir);
  return cg_test_done("test_atomic_file");
}
