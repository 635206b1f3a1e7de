mend_test(test_tok_tiny ${CMAKE_CURRENT_LIST_DIR}/test_tok_tiny.c LABELS unit TIMEOUT 60)
