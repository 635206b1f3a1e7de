# Hardening: fixed-crash regressions, replays of the fuzz targets over their
# seed corpora and reproducers, and kill-and-resume tests of the CLI.
mend_test(test_regressions ${CMAKE_CURRENT_LIST_DIR}/test_regressions.c LABELS unit TIMEOUT 120)

# fuzz/<target>.c without libFuzzer: every seed and every reproducer once
foreach(t gguf safetensors hf_config adapter bank tasks tokenize)
  set(src ${CMAKE_SOURCE_DIR}/fuzz/fuzz_${t}.c)
  if(EXISTS ${src} AND (NOT t STREQUAL "bank" OR EXISTS ${CMAKE_SOURCE_DIR}/src/prompt/bank.c))
    add_executable(test_replay_${t} ${src} ${CMAKE_CURRENT_LIST_DIR}/replay_main.c)
    target_link_libraries(test_replay_${t} PRIVATE mendlib)
    target_include_directories(test_replay_${t} PRIVATE ${CMAKE_SOURCE_DIR}/src)
    target_compile_definitions(test_replay_${t} PRIVATE MEND_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
    add_test(NAME test_replay_${t} COMMAND test_replay_${t} ${CMAKE_SOURCE_DIR}/fuzz/corpus/fuzz_${t}
             ${CMAKE_CURRENT_LIST_DIR}/regressions/fuzz_${t} WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
    set_tests_properties(test_replay_${t} PROPERTIES LABELS unit TIMEOUT 300
                         ENVIRONMENT "MEND_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  endif()
endforeach()

# SIGKILL at random points, resume, compare with an uninterrupted run
mend_test(test_kill_resume ${CMAKE_CURRENT_LIST_DIR}/test_kill_resume.c LABELS unit TIMEOUT 900)
target_compile_definitions(test_kill_resume PRIVATE MEND_BIN="${MEND_TEST_BIN}")
add_dependencies(test_kill_resume mend)

# mend info --check reports NaN / Inf weights
mend_test(test_info_check ${CMAKE_CURRENT_LIST_DIR}/test_info_check.c LABELS unit TIMEOUT 120)
target_compile_definitions(test_info_check PRIVATE MEND_BIN="${MEND_TEST_BIN}")
add_dependencies(test_info_check mend)
