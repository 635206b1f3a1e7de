# ggml block formats: traits, hand-built blocks, gguf-python golden fixtures,
# quantizer round trips, SIMD vs scalar.
mend_test(test_quants ${CMAKE_CURRENT_LIST_DIR}/test_quants.c LABELS unit TIMEOUT 60)
