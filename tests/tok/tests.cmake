mend_test(test_tok_tiny ${CMAKE_CURRENT_LIST_DIR}/test_tok_tiny.c LABELS unit TIMEOUT 60)
mend_test(test_tok_model ${CMAKE_CURRENT_LIST_DIR}/test_tok_model.c LABELS model TIMEOUT 120)
mend_test(test_tok_unit ${CMAKE_CURRENT_LIST_DIR}/test_tok_unit.c LABELS unit TIMEOUT 60)
