mend_test(test_ops_backward ${CMAKE_CURRENT_LIST_DIR}/test_ops_backward.c)
mend_test(test_grad ${CMAKE_CURRENT_LIST_DIR}/test_grad.c)
mend_test(test_tune ${CMAKE_CURRENT_LIST_DIR}/test_tune.c)
mend_test(test_select_probe ${CMAKE_CURRENT_LIST_DIR}/test_select_probe.c LABELS unit)
