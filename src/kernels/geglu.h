/* GeGLU, the gated FFN activation of Gemma: out = gelu(gate) * up with the
 * tanh approximation of GELU (torch: F.gelu(g, approximate="tanh") * u):
 *   gelu(g) = g/2 · (1 + tanh(c (g + 0.044715 g³))),  c = sqrt(2/π).
 * Scalar only (no SIMD twin needed); the FFN products dominate its cost. */
#ifndef MEND_GEGLU_H
#define MEND_GEGLU_H

#include <stdint.h>

/* gate (n), up (n) -> out (n); out may alias gate. */
void geglu_forward(float *out, const float *gate, const float *up, int64_t n);

/* dgate = dout * up * gelu'(gate), dup = dout * gelu(gate); dgate may alias
 * dout. All (n). */
void geglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);

#endif
