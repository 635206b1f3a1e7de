mend_test(test_quantize ${CMAKE_CURRENT_LIST_DIR}/test_quantize.c LABELS unit)
mend_test(test_gptq ${CMAKE_CURRENT_LIST_DIR}/test_gptq.c LABELS unit)
mend_test(test_prune ${CMAKE_CURRENT_LIST_DIR}/test_prune.c LABELS unit)
mend_test(test_compress ${CMAKE_CURRENT_LIST_DIR}/test_compress.c LABELS unit)
