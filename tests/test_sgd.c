/* test_sgd.c: cg_cpu_sgd (--optimizer sgd) against torch.optim.SGD (PyTorch 1.13, float32,
 * foreach=False, dampening 0), three steps from a fresh state, printed by this snippet:
 *
 *   p = torch.nn.Parameter(torch.tensor([1.0, -0.5, 0.25, 2.0]))
 *   opt = torch.optim.SGD([p], lr=LR, momentum=MU, nesterov=NEST, weight_decay=WD)
 *   for g in G: p.grad = torch.tensor(g) * GMUL; opt.step()
 *   print(p, opt.state[p].get('momentum_buffer'))
 *
 * with G = [[0.2, -0.4, 0, 6], [0.1, 0.6, -0.002, -2], [-0.3, 0.6, 0.002, 4]] and
 *   A: lr 0.01, momentum 0.9, wd 0.1, grad_mul 0.5 (the clipping/unscaling factor)
 *   B: lr 0.05, momentum 0.9, Nesterov, wd 5e-4 (mmsegmentation's decay)
 *   C: lr 0.1, momentum 0 (plain SGD: PyTorch keeps no buffer), wd 0.01.
 * PyTorch's first step clones d_p into the buffer; cg_cpu_sgd's buffer starts at 0, and
 * 0 * momentum + d_p is d_p exactly, which case A's first buffer checks. Float rounding order
 * may differ from ATen's vectorised kernels: the tolerance is a few float ulps. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cpu_layers.h"
#include "testutil.h"

#define N 4

static const float kP0[N] = {1.0f, -0.5f, 0.25f, 2.0f};
static const float kG[3][N] = {{0.2f, -0.4f, 0.0f, 6.0f}, {0.1f, 0.6f, -0.002f, -2.0f},
                               {-0.3f, 0.6f, 0.002f, 4.0f}};

typedef struct {
  const char *name;
  float lr, mu, wd, gmul;
  int nesterov;
  float p[3][N], buf[3][N]; /* torch's; buf unused for momentum 0 */
} case_t;

static const case_t kCases[] = {
    {"A (momentum 0.9, wd 0.1, grad_mul 0.5)", 0.01f, 0.9f, 0.1f, 0.5f, 0,
     {{0.998000026f, -0.497500002f, 0.249750003f, 1.96800005f},
      {0.994702041f, -0.497752488f, 0.249285251f, 1.94723201f},
      {0.992239118f, -0.500481963f, 0.248607695f, 1.90659356f}},
     {{0.200000003f, -0.25f, 0.0250000004f, 3.20000005f},
      {0.32980001f, 0.0252500176f, 0.0464750007f, 2.07679987f},
      {0.246290207f, 0.272949785f, 0.067756027f, 4.06384277f}}},
    {"B (Nesterov, momentum 0.9, wd 5e-4)", 0.05f, 0.9f, 5e-4f, 1.0f, 1,
     {{0.980952501f, -0.46197626f, 0.249988124f, 1.42990506f},
      {0.963285685f, -0.502744198f, 0.250161201f, 1.3767966f},
      {0.980361819f, -0.569421828f, 0.250030696f, 0.858965814f}},
     {{0.200499997f, -0.400250018f, 0.000125000006f, 6.00099993f},
      {0.280940473f, 0.239544064f, -0.00176250597f, 3.40161467f},
      {-0.0466719568f, 0.815338314f, 0.00053882529f, 7.06214142f}}},
    {"C (momentum 0, wd 0.01)", 0.1f, 0.0f, 0.01f, 1.0f, 0,
     {{0.978999972f, -0.459499985f, 0.249750003f, 1.398f},
      {0.968020976f, -0.519040465f, 0.249700248f, 1.59660196f},
      {0.997052968f, -0.57852143f, 0.249250546f, 1.19500542f}},
     {{0}}},
};

static void run_case(const case_t *c) {
  float p[N], buf[N] = {0};
  memcpy(p, kP0, sizeof p);
  for (int s = 0; s < 3; s++) {
    cg_cpu_sgd(p, kG[s], buf, N, c->lr, c->mu, c->nesterov, c->wd, c->gmul);
    char nm[96];
    snprintf(nm, sizeof nm, "sgd %s step %d p", c->name, s + 1);
    cg_test_close(nm, p, c->p[s], N, 1e-7, 1e-6);
    if (c->mu > 0) {
      snprintf(nm, sizeof nm, "sgd %s step %d buffer", c->name, s + 1);
      cg_test_close(nm, buf, c->buf[s], N, 1e-7, 1e-6);
    }
  }
}

/* The first buffer is d_p itself (PyTorch's clone), bitwise: g * grad_mul + wd * p. */
static void first_buffer(void) {
  float p[N], buf[N] = {0}, want[N];
  memcpy(p, kP0, sizeof p);
  for (int i = 0; i < N; i++) want[i] = kG[0][i] * 0.5f + 0.1f * kP0[i];
  cg_cpu_sgd(p, kG[0], buf, N, 0.01f, 0.9f, 0, 0.1f, 0.5f);
  CG_TEST_CHECK(!memcmp(buf, want, sizeof buf), "the first step's buffer is not d_p bitwise");
  if (!memcmp(buf, want, sizeof buf)) printf("PASS sgd first buffer = d_p bitwise\n");
}

/* A long buffer goes through the threaded loop: every element equals the 4-element case. */
static void long_buffer(void) {
  enum { NL = 100003 };
  static float p[NL], g[NL], b[NL];
  for (int i = 0; i < NL; i++) p[i] = kP0[i % N], g[i] = kG[0][i % N], b[i] = 0.25f * (i % N);
  float q[N], bq[N];
  memcpy(q, kP0, sizeof q);
  for (int i = 0; i < N; i++) bq[i] = 0.25f * i;
  cg_cpu_sgd(p, g, b, NL, 0.05f, 0.9f, 1, 5e-4f, 1.0f);
  cg_cpu_sgd(q, kG[0], bq, N, 0.05f, 0.9f, 1, 5e-4f, 1.0f);
  int bad = 0;
  for (int i = 0; i < NL; i++) bad += p[i] != q[i % N] || b[i] != bq[i % N];
  CG_TEST_CHECK(bad == 0, "%d of %d elements of a long buffer differ from the short case", bad,
                NL);
  if (!bad) printf("PASS sgd long buffer (n %d) matches element-wise\n", NL);
  cg_cpu_sgd(NULL, NULL, NULL, 0, 0.05f, 0.9f, 1, 5e-4f, 1.0f); /* n = 0 */
}

int main(void) {
  for (size_t i = 0; i < sizeof kCases / sizeof kCases[0]; i++) run_case(&kCases[i]);
  first_buffer();
  long_buffer();
  return cg_test_done("test_sgd");
}
