mend_test(test_gguf ${CMAKE_CURRENT_LIST_DIR}/test_gguf.c LABELS unit)
