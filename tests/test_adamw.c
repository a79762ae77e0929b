/* test_adamw.c: cg_cpu_adamw against values worked out by hand (in double, with the Python
 * snippet below), step by step.
 *
 * PyTorch AdamW, per element, at step t (1-based):
 *   g  = grad * grad_mul
 *   p  = p * (1 - lr*wd)                         decoupled weight decay, every parameter
 *   m  = b1*m + (1-b1)*g
 *   v  = b2*v + (1-b2)*g^2
 *   p  = p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *
 * Case A, from zero state, lr 0.01, betas 0.9/0.999, eps 1e-8, wd 0.1, grad_mul 0.5:
 *   step 1, element 0: g = 0.2*0.5 = 0.1; p = 1*(1 - 0.001) = 0.999; m = 0.01; v = 1e-5;
 *   m_hat = 0.01/0.1 = 0.1; v_hat = 1e-5/0.001 = 0.01, sqrt 0.1;
 *   p = 0.999 - 0.01 * 0.1/(0.1 + 1e-8) = 0.989000001.
 *   Element 2 has g = 0: only the decay acts, p = 0.25*0.999 = 0.24975.
 * Case B resumes at t = 1000 from non-zero m, v, with lr 1e-3 and no weight decay.
 *
 * Clipping (--clip-grad-norm): cg_cpu_grad_norm and cg_clip_coef against PyTorch 1.13:
 *   p.grad = torch.tensor([3., 4.]); torch.nn.utils.clip_grad_norm_([p], 1.0)
 * returns 5.0 and leaves p.grad = [0.5999999046325684, 0.7999998331069946] (max_norm / (5 +
 * 1e-6) in float, 0.19999996); with max_norm 10 the gradient is left as it is. With max_norm
 * 0.1 on [1, 2] it leaves [0.044721342623233795, 0.08944268524646759]: PyTorch's
 * max_norm / tensor is reciprocal(tensor) * max_norm, two roundings, which a plain division
 * misses here.
 *
 * The interface passes hyperparameters as float, so the expected values take every input at
 * its float value (f() below) and compute in double: 0.999f is 0.99900001287, and its
 * 1 - beta2 is 1.3e-5 (relative) below 0.001, so v comes out that much below what PyTorch,
 * holding betas as Python doubles, would store. p is unaffected to first order, because the
 * bias correction 1 - beta2^t uses the same beta2 (see the hand-worked step above).
 *
 *   f = lambda x: struct.unpack('f', struct.pack('f', x))[0]
 *   def run(p, m, v, grads, lr, b1, b2, eps, wd, t0, gmul):  # all inputs passed through f
 *       for s, g in enumerate(grads):
 *           t = t0 + s; bc1 = 1 - b1**t; bc2 = 1 - b2**t
 *           for i in range(len(p)):
 *               gi = g[i]*gmul; p[i] *= 1 - lr*wd
 *               m[i] = b1*m[i] + (1-b1)*gi; v[i] = b2*v[i] + (1-b2)*gi*gi
 *               p[i] -= lr*(m[i]/bc1)/(math.sqrt(v[i]/bc2) + eps)
 *           print(p, m, v)
 */
#include <math.h>
#include <stdio.h>

#include "backend.h" /* cg_clip_coef */
#include "cpu_layers.h"
#include "testutil.h"

#define NA 4
#define NB 3

static void check_step(const char *c, int step, const float *p, const float *m, const float *v,
                       const float *wp, const float *wm, const float *wv, int n) {
  char nm[64];
  snprintf(nm, sizeof nm, "adamw %s step %d p", c, step);
  cg_test_close(nm, p, wp, n, 1e-6, 1e-6);
  snprintf(nm, sizeof nm, "adamw %s step %d m", c, step);
  cg_test_close(nm, m, wm, n, 1e-12, 1e-6);
  snprintf(nm, sizeof nm, "adamw %s step %d v", c, step);
  cg_test_close(nm, v, wv, n, 1e-15, 2e-6);
}

static void case_a(void) {
  float p[NA] = {1.0f, -0.5f, 0.25f, 2.0f}, m[NA] = {0}, v[NA] = {0};
  const float g[3][NA] = {{0.2f, -0.4f, 0.0f, 6.0f}, {0.1f, 0.6f, -0.002f, -2.0f},
                          {-0.3f, 0.6f, 0.002f, 4.0f}};
  const float wp[3][NA] = {{0.989000001f, -0.489500001f, 0.24975f, 1.988f},
                           {0.978689206f, -0.491487519f, 0.256941513f, 1.98200981f},
                           {0.978530285f, -0.496554956f, 0.256232754f, 1.97399694f}};
  const float wm[3][NA] = {{0.0100000025f, -0.0200000051f, 0.0f, 0.300000072f},
                           {0.0140000033f, 0.0120000043f, -0.000100000029f, 0.170000033f},
                           {-0.00240000153f, 0.0408000119f, 1.00000052e-05f, 0.353000074f}};
  const float wv[3][NA] = {{9.99987155e-06f, 3.99994862e-05f, 0.0f, 0.00899988413f},
                           {1.24898397e-05f, 0.000129958336f, 9.9998722e-10f, 0.00999087149f},
                           {3.49770621e-05f, 0.000219827227f, 1.99897447e-09f, 0.0139808292f}};
  for (int s = 0; s < 3; s++) {
    cg_cpu_adamw(p, g[s], m, v, NA, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, s + 1, 0.5f);
    check_step("A (wd 0.1, grad_mul 0.5)", s + 1, p, m, v, wp[s], wm[s], wv[s], NA);
  }
}

static void case_b(void) {
  float p[NB] = {0.5f, -1.5f, 3.0f}, m[NB] = {0.01f, -0.02f, 0.5f}, v[NB] = {1e-4f, 4e-4f, 0.3f};
  const float g[2][NB] = {{0.02f, -0.01f, -0.4f}, {0.03f, 0.0f, 0.1f}};
  const float wp[2][NB] = {{0.49912662f, -1.4992443f, 2.99940463f},
                           {0.498106145f, -1.49856364f, 2.99885385f}};
  const float wm[2][NB] = {{0.011f, -0.0189999993f, 0.409999978f},
                           {0.0129000004f, -0.017099999f, 0.378999973f}};
  const float wv[2][NB] = {{0.000100299994f, 0.000399699994f, 0.299860014f},
                           {0.000101099683f, 0.000399300299f, 0.299570157f}};
  for (int s = 0; s < 2; s++) {
    cg_cpu_adamw(p, g[s], m, v, NB, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1000 + s, 1.0f);
    check_step("B (resume at t 1000, wd 0)", s + 1, p, m, v, wp[s], wm[s], wv[s], NB);
  }
}

/* A long buffer goes through the threaded loop: every element must equal the 4-element case. */
static void case_long(void) {
  enum { N = 100003 };
  static float p[N], g[N], m[N], v[N];
  const float p0[NA] = {1.0f, -0.5f, 0.25f, 2.0f}, g0[NA] = {0.2f, -0.4f, 0.0f, 6.0f};
  for (int i = 0; i < N; i++) p[i] = p0[i % NA], g[i] = g0[i % NA], m[i] = v[i] = 0;
  cg_cpu_adamw(p, g, m, v, N, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 1, 0.5f);
  float q[NA] = {1.0f, -0.5f, 0.25f, 2.0f}, mq[NA] = {0}, vq[NA] = {0};
  cg_cpu_adamw(q, g0, mq, vq, NA, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 1, 0.5f);
  int bad = 0;
  for (int i = 0; i < N; i++) bad += p[i] != q[i % NA] || m[i] != mq[i % NA] || v[i] != vq[i % NA];
  CG_TEST_CHECK(bad == 0, "%d of %d elements of a long buffer differ from the short case", bad, N);
  if (!bad) printf("PASS adamw long buffer (n %d) matches element-wise\n", N);
  cg_cpu_adamw(NULL, NULL, NULL, NULL, 0, 0.01f, 0.9f, 0.999f, 1e-8f, 0.1f, 1, 1.0f); /* n = 0 */
}

static void case_clip(void) {
  const float g[2] = {3.0f, 4.0f};
  double part[1];
  const double norm = cg_cpu_grad_norm(g, 2, 1.0f, part);
  const float c = cg_clip_coef(norm, 1.0f);
  const float got[2] = {g[0] * c, g[1] * c}; /* as cg_cpu_adamw scales them */
  const int ok = norm == 5.0 && got[0] == 0.5999999046325684f && got[1] == 0.7999998331069946f;
  CG_TEST_CHECK(ok, "clip [3, 4] to 1: norm %.17g, gradient [%.17g, %.17g]", norm, got[0],
                got[1]);
  const float g2[2] = {1.0f, 2.0f};
  const float c2 = cg_clip_coef(cg_cpu_grad_norm(g2, 2, 1.0f, part), 0.1f);
  const int ok2 = g2[0] * c2 == 0.044721342623233795f && g2[1] * c2 == 0.08944268524646759f;
  CG_TEST_CHECK(ok2, "clip [1, 2] to 0.1: gradient [%.17g, %.17g]", g2[0] * c2, g2[1] * c2);
  const int edges = cg_clip_coef(5.0, 10.0f) == 1.0f && cg_clip_coef(0.0, 1.0f) == 1.0f &&
                    cg_clip_coef(INFINITY, 1.0f) == 1.0f && cg_clip_coef(NAN, 1.0f) == 1.0f &&
                    cg_clip_coef(5.0, INFINITY) == 1.0f;
  CG_TEST_CHECK(edges, "clip factor: 1 expected below the limit, at norm 0, inf or NaN");
  /* the chunked sum: a buffer over several CG_NORM_CHUNKs, against a plain double loop */
  enum { N = 3 * CG_NORM_CHUNK + 17 };
  static float big[N];
  static double parts[N / CG_NORM_CHUNK + 1];
  double ref = 0;
  for (int i = 0; i < N; i++) {
    big[i] = (float)((i * 7919) % 1000 - 500) / 256.0f;
    ref += (double)big[i] * big[i];
  }
  const double nb = cg_cpu_grad_norm(big, N, 0.5f, parts);
  const int close = fabs(nb - 0.5 * sqrt(ref)) <= 1e-12 * nb;
  CG_TEST_CHECK(close, "grad norm of %d elements %.17g, expected %.17g", N, nb, 0.5 * sqrt(ref));
  if (ok && ok2 && edges && close)
    printf("PASS clip: PyTorch's clip_grad_norm_ on [3, 4] and [1, 2]; edges\n");
}

int main(void) {
  case_clip();
  case_a();
  case_b();
  case_long();
  return cg_test_done("test_adamw");
}
