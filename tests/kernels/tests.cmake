# ggml block formats: traits, hand-built blocks, gguf-python golden fixtures,
# quantizer round trips, SIMD vs scalar.
mend_test(test_quants ${CMAKE_CURRENT_LIST_DIR}/test_quants.c LABELS unit TIMEOUT 60)
# native products on packed blocks: quantizers, dot products (SIMD vs ref,
# exact integer sums), threaded matmul against double references.
mend_test(test_qmatmul ${CMAKE_CURRENT_LIST_DIR}/test_qmatmul.c LABELS unit TIMEOUT 120)
# mend's own f32 products (forward x·Wᵀ, backward dY·W) against double references.
mend_test(test_sgemm ${CMAKE_CURRENT_LIST_DIR}/test_sgemm.c LABELS unit TIMEOUT 120)
# batched products on repacked (interleaved) q4_0 / q4_1 / q5_0 / q2_K / q3_K /
# q4_K / q6_K weights: SIMD ==
# _ref bit for bit, both against double references and mend_qmatmul.
mend_test(test_qgemm ${CMAKE_CURRENT_LIST_DIR}/test_qgemm.c LABELS unit TIMEOUT 120)
