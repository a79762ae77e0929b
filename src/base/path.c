/* path.c: cg_path_abs, cg_path_same_file and cg_path_mkdir_p (path.h). */
#include "path.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cg_path_abs(const char *path, char *out, size_t outlen) {
  if (!path[0] || outlen < 2) return -1;
  const size_t need = strlen(path) + 2;
  char *cwd = NULL;
  if (path[0] != '/' && !(cwd = getcwd(NULL, 0))) return -1;
  const size_t n = (cwd ? strlen(cwd) + 1 : 0) + need;
  char *in = malloc(n), *res = malloc(n);
  if (!in || !res) {
    free(in), free(res), free(cwd);
    return -1;
  }
  snprintf(in, n, "%s%s%s", cwd ? cwd : "", cwd ? "/" : "", path);
  free(cwd);
  size_t len = 0; /* res holds "/a/b" (no trailing '/'), or "" for the root */
  for (char *save = NULL, *c = strtok_r(in, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (!strcmp(c, ".")) continue;
    res[len++] = '/';
    memcpy(res + len, c, strlen(c));
    len += strlen(c);
  }
  if (len == 0) res[len++] = '/';
  res[len] = 0;
  const int fits = len < outlen;
  if (fits) memcpy(out, res, len + 1);
  free(in);
  free(res);
  return fits ? 0 : -1;
}

int cg_path_same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return a[0] && b[0] && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

int cg_path_mkdir_p(const char *dir) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
  struct stat st;
  if (stat(buf, &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}
