# Cross-compiling mend for 64-bit ARM Linux with Debian's gcc-aarch64-linux-gnu
# and the arm64 libraries of Debian multiarch (dpkg --add-architecture arm64;
# libopenblas-dev:arm64 liblapacke-dev:arm64 libjansson-dev:arm64
# libpcre2-dev:arm64 libgomp1:arm64). scripts/test_arm64.sh installs them,
# builds with
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# and runs the tests under qemu-aarch64 (CMAKE_CROSSCOMPILING_EMULATOR).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(MEND_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${MEND_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${MEND_TRIPLE}-g++)

# Headers and libraries come from the multiarch directories of the host
# (/usr/include/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu) and the cross
# toolchain's own sysroot-like tree (/usr/aarch64-linux-gnu); programs run
# from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${MEND_TRIPLE})
set(CMAKE_LIBRARY_ARCHITECTURE ${MEND_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config must read the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${MEND_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# ctest runs the test binaries through qemu-user. The programs load their
# libraries, the C library and its loader included, from the arm64
# multiarch packages (/lib/aarch64-linux-gnu, /usr/lib/aarch64-linux-gnu,
# /lib/ld-linux-aarch64.so.1), never from the cross toolchain's
# /usr/aarch64-linux-gnu: that tree's loader is not the same glibc build as
# the multiarch libc the other libraries bring, and the mix hangs in the
# first pthread_create. QEMU_CPU picks the emulated CPU (scripts/test_arm64.sh).
find_program(MEND_QEMU_AARCH64 qemu-aarch64)
if(MEND_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MEND_QEMU_AARCH64} -L /)
endif()
