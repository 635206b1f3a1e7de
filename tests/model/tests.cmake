# model/ and kernels/ops: kernels against scalar twins and the equations; the
# loader and forward pass against NumPy reference logits (tiny random models
# always, the default model when present).
mend_test(test_ops ${CMAKE_CURRENT_LIST_DIR}/test_ops.c LABELS unit TIMEOUT 60)
mend_test(test_tiny_models ${CMAKE_CURRENT_LIST_DIR}/test_tiny_models.c LABELS unit TIMEOUT 60)
mend_test(test_model_logits ${CMAKE_CURRENT_LIST_DIR}/test_model_logits.c LABELS model TIMEOUT 300)
mend_test(test_model_cache ${CMAKE_CURRENT_LIST_DIR}/test_model_cache.c LABELS model TIMEOUT 600)
mend_test(test_fingerprint ${CMAKE_CURRENT_LIST_DIR}/test_fingerprint.c LABELS unit TIMEOUT 60)
mend_test(test_families ${CMAKE_CURRENT_LIST_DIR}/test_families.c LABELS unit TIMEOUT 600)
target_compile_definitions(test_families PRIVATE MEND_BIN="${MEND_TEST_BIN}")
add_dependencies(test_families mend)
mend_test(test_gemma3_logits ${CMAKE_CURRENT_LIST_DIR}/test_gemma3_logits.c LABELS model TIMEOUT 600)
