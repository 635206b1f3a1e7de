# The shared library and the installed tree (label "install", in the
# default suite; shell scripts driving nm, cmake --install, make, pkg-config).
if(MEND_SHARED)
  add_test(NAME test_exports COMMAND ${CMAKE_CURRENT_LIST_DIR}/exports_test.sh
           $<TARGET_FILE:mend_shared> libmend.so.${MEND_VERSION_MAJOR})
  set_tests_properties(test_exports PROPERTIES LABELS install TIMEOUT 60)

  add_executable(check_generate ${CMAKE_CURRENT_LIST_DIR}/check_generate.c)
  target_link_libraries(check_generate PRIVATE mendlib)
  target_include_directories(check_generate PRIVATE ${CMAKE_SOURCE_DIR}/tests)
  target_compile_definitions(check_generate PRIVATE MEND_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_test(NAME test_install COMMAND ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${CMAKE_COMMAND}
           ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR} $<TARGET_FILE:mend> $<TARGET_FILE:check_generate>)
  set_tests_properties(test_install PROPERTIES LABELS install TIMEOUT 300)
endif()
