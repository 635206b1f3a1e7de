mend_test(test_quantize ${CMAKE_CURRENT_LIST_DIR}/test_quantize.c LABELS unit)
