# cmake --install: the libraries, every header of include/, the mend
# command and mend.pc (pkg-config; Libs.private lets `pkg-config --static`
# link the static library).
include(GNUInstallDirs)

install(TARGETS mendlib ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
if(MEND_SHARED)
  install(TARGETS mend_shared LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(TARGETS mend RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# -lNAME for a library find_library found as /path/libNAME.so
function(mend_pc_lib out path)
  get_filename_component(name ${path} NAME_WE)
  string(REGEX REPLACE "^lib" "" name ${name})
  set(${out} "-l${name}" PARENT_SCOPE)
endfunction()
mend_pc_lib(MEND_PC_LAPACKE ${LAPACKE_LIB})
mend_pc_lib(MEND_PC_OPENBLAS ${OPENBLAS_LIB})
set(MEND_PC_LIBS_PRIVATE "${MEND_PC_LAPACKE} ${MEND_PC_OPENBLAS} ${OpenMP_C_FLAGS} -lm")

# Relocatable: the prefix is found from where mend.pc lies, so an install
# under `cmake --install --prefix DIR` is found there too.
if(IS_ABSOLUTE ${CMAKE_INSTALL_LIBDIR} OR IS_ABSOLUTE ${CMAKE_INSTALL_INCLUDEDIR})
  message(FATAL_ERROR "mend.pc: give CMAKE_INSTALL_LIBDIR and CMAKE_INSTALL_INCLUDEDIR relative to the prefix")
endif()
file(RELATIVE_PATH MEND_PC_UP /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" MEND_PC_UP "${MEND_PC_UP}")
configure_file(cmake/mend.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mend.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mend.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
