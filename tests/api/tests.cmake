# The public API as a client sees it: compiled with include/ (from mendlib)
# and tests/ only, so a declaration missing from the public headers fails
# the build.
add_executable(test_api ${CMAKE_CURRENT_LIST_DIR}/test_api.c)
target_link_libraries(test_api PRIVATE mendlib)
target_include_directories(test_api PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(test_api PRIVATE MEND_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME test_api COMMAND test_api WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_api PROPERTIES LABELS unit TIMEOUT 600 ENVIRONMENT "MEND_SOURCE_DIR=${CMAKE_SOURCE_DIR}")

# The programs of docs/api.md compile against the public headers.
add_test(NAME test_api_docs COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/check_docs.sh ${CMAKE_C_COMPILER} ${CMAKE_SOURCE_DIR})
set_tests_properties(test_api_docs PROPERTIES LABELS unit TIMEOUT 120)

# mend_repair_run as a library call: refused fields, a cancel and a resume,
# stage logs, nothing printed, the report rebuilt.
add_executable(test_jobs_repair ${CMAKE_CURRENT_LIST_DIR}/test_jobs_repair.c)
target_link_libraries(test_jobs_repair PRIVATE mendlib)
target_include_directories(test_jobs_repair PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_compile_definitions(test_jobs_repair PRIVATE MEND_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
add_test(NAME test_jobs_repair COMMAND test_jobs_repair WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(test_jobs_repair PROPERTIES LABELS unit TIMEOUT 600 ENVIRONMENT "MEND_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
# The training jobs (mend_tune_job_run, mend_bank_build_run) on the tiny model.
mend_test(test_jobs_train ${CMAKE_CURRENT_LIST_DIR}/test_jobs_train.c LABELS unit TIMEOUT 300)
# The evaluation jobs (mend_eval_job_run, mend_ppl_job_run) on the tiny model.
mend_test(test_jobs_eval ${CMAKE_CURRENT_LIST_DIR}/test_jobs_eval.c LABELS unit TIMEOUT 300)
# The compress job (mend_compress_job_run) on the tiny model.
mend_test(test_jobs_compress ${CMAKE_CURRENT_LIST_DIR}/test_jobs_compress.c LABELS unit TIMEOUT 300)
