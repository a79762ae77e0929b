/* cmp_params.c: compares two raw fp32 parameter files (--params-out) for the shell tests.
 * usage: cg_cmp_params A B TOL [bitwise]
 * Prints the max relative difference max|a-b| / max|b| and the worst element; exits 1 when it
 * exceeds TOL (or, with "bitwise", when any byte differs), 2 on unreadable/mismatched files. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "cg_cmp_params: cannot open %s\n", path);
    return NULL;
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  float *p = malloc(len > 0 ? (size_t)len : 1);
  if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) {
    fclose(f);
    free(p);
    return NULL;
  }
  fclose(f);
  *n = (size_t)len / sizeof(float);
  return p;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: cg_cmp_params A B TOL [bitwise]\n");
    return 2;
  }
  size_t na = 0, nb = 0;
  float *a = load(argv[1], &na), *b = load(argv[2], &nb);
  if (!a || !b || na != nb || na == 0) {
    fprintf(stderr, "cg_cmp_params: unreadable or different sizes (%zu vs %zu floats)\n", na, nb);
    return 2;
  }
  double tol = atof(argv[3]), md = 0, mr = 0;
  size_t worst = 0, diff_bytes = 0;
  for (size_t i = 0; i < na; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d == d)) d = INFINITY;
    if (d > md) { md = d; worst = i; }
    if (fabs(b[i]) > mr) mr = fabs(b[i]);
    if (memcmp(&a[i], &b[i], sizeof(float))) diff_bytes++;
  }
  double rel = mr > 0 ? md / mr : md;
  printf("params: %zu, differing: %zu, max abs diff %.3e at [%zu] (%.9g vs %.9g), max relative "
         "difference %.3e\n", na, diff_bytes, md, worst, a[worst], b[worst], rel);
  int bitwise = argc > 4 && !strcmp(argv[4], "bitwise");
  free(a);
  free(b);
  if (bitwise) return diff_bytes ? 1 : 0;
  return rel <= tol ? 0 : 1;
}
