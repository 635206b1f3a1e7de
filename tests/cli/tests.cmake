# CLI tests run the built `mend` binary; its path is compiled in.
mend_test(test_cli_args ${CMAKE_CURRENT_LIST_DIR}/test_cli_args.c LABELS unit TIMEOUT 60)
target_compile_definitions(test_cli_args PRIVATE MEND_BIN="$<TARGET_FILE:mend>")
add_dependencies(test_cli_args mend)
mend_test(test_cli_model ${CMAKE_CURRENT_LIST_DIR}/test_cli_model.c LABELS model TIMEOUT 900)
target_compile_definitions(test_cli_model PRIVATE MEND_BIN="$<TARGET_FILE:mend>")
add_dependencies(test_cli_model mend)
