/* GeGLU forward and backward (kernels/geglu.h). */
#include "kernels/geglu.h"

#include <math.h>
#include <stddef.h>

#define GELU_C 0.7978845608028654   /* sqrt(2/pi) */
#define GELU_A 0.044715

/* gelu(g) and, when d != NULL, its derivative; in double, rounded once */
static inline float gelu_tanh(float g, float *d) {
    const double x = g, u = GELU_C * (x + GELU_A * x * x * x), t = tanh(u);
    if (d) *d = (float)(0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * GELU_A * x * x));
    return (float)(0.5 * x * (1.0 + t));
}

void geglu_forward(float *out, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) out[i] = gelu_tanh(gate[i], NULL) * up[i];
}

void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float d;
        const float g = gelu_tanh(gate[i], &d), dy = dout[i];
        dup[i] = dy * g;
        dgate[i] = dy * up[i] * d;
    }
}
