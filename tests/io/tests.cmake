mend_test(test_gguf ${CMAKE_CURRENT_LIST_DIR}/test_gguf.c LABELS unit)
mend_test(test_gguf_write ${CMAKE_CURRENT_LIST_DIR}/test_gguf_write.c LABELS unit)
mend_test(test_safetensors ${CMAKE_CURRENT_LIST_DIR}/test_safetensors.c LABELS unit)
