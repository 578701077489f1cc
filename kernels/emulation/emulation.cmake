# CMake wiring of the CUDA kernel emulator (see cuda_emulation.h): an emulator
# runtime library per build flavour, and the flags that make g++ compile .cu
# kernel sources as emulated C++. Needs the CUDA toolkit's headers only, not a
# CUDA compiler or a GPU. Include it from any CMakeLists.txt:
#
#   include(${PROJECT_SOURCE_DIR}/kernels/emulation/emulation.cmake)
#   if(DDPM_EMULATION_AVAILABLE)
#     ddpm_add_cuda_emulator(my_emulator)                       # plain (-O2 in Release)
#     ddpm_add_cuda_emulator(my_emulator_asan SANITIZE address) # ASan + UBSan
#     ddpm_add_cuda_emulator(my_emulator_tsan SANITIZE thread)  # TSan race checker
#     add_executable(my_kernel_tests test.cpp ../../kernels/elementwise.cu)
#     ddpm_emulate_cuda_sources(my_kernel_tests ../../kernels/elementwise.cu)
#     target_link_libraries(my_kernel_tests PRIVATE my_emulator GTest::gtest_main)
#   endif()
#
# Linking an emulator library carries everything a consumer needs: the CUDA
# include directories (as system headers), the repository root as include
# directory, -fstack-clash-protection, and the sanitizer compile and link
# flags. Do not link CUDA::cudart as well: the emulator defines the runtime API.
# Source properties are per directory, so the same .cu file can be compiled by
# nvcc in kernels/ and as emulated C++ in a test directory.

include_guard(GLOBAL)

set(DDPM_EMULATION_DIR ${CMAKE_CURRENT_LIST_DIR})
get_filename_component(DDPM_EMULATION_REPO_ROOT ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)

set(DDPM_EMULATION_AVAILABLE FALSE)
set(DDPM_EMULATION_UNAVAILABLE_REASON "")
find_package(CUDAToolkit QUIET)
find_package(Threads REQUIRED)
if(NOT CUDAToolkit_FOUND)
  set(DDPM_EMULATION_UNAVAILABLE_REASON
      "no CUDA toolkit found (its headers cuda_runtime.h, cuda_fp16.h and curand_kernel.h are needed, not a GPU)")
else()
  find_path(DDPM_EMULATION_CURAND_INCLUDE_DIR curand_kernel.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  if(NOT DDPM_EMULATION_CURAND_INCLUDE_DIR)
    set(DDPM_EMULATION_UNAVAILABLE_REASON
        "the CUDA toolkit in ${CUDAToolkit_INCLUDE_DIRS} has no curand_kernel.h")
  elseif(NOT CMAKE_CXX_COMPILER_ID STREQUAL "GNU" OR NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
    set(DDPM_EMULATION_UNAVAILABLE_REASON
        "the emulator is written for g++ on Linux (found ${CMAKE_CXX_COMPILER_ID} on ${CMAKE_SYSTEM_NAME})")
  else()
    set(DDPM_EMULATION_AVAILABLE TRUE)
    set(DDPM_EMULATION_CUDA_INCLUDE_DIRS ${CUDAToolkit_INCLUDE_DIRS}
                                         ${DDPM_EMULATION_CURAND_INCLUDE_DIR})
    # CUDA 13 moved thrust/cub/libcu++ to include/cccl; CUDAToolkit does not add it.
    foreach(dir IN LISTS CUDAToolkit_INCLUDE_DIRS)
      if(EXISTS ${dir}/cccl)
        list(APPEND DDPM_EMULATION_CUDA_INCLUDE_DIRS ${dir}/cccl)
      endif()
    endforeach()
    list(REMOVE_DUPLICATES DDPM_EMULATION_CUDA_INCLUDE_DIRS)
  endif()
endif()

set(DDPM_EMULATION_RUNTIME_SOURCES
    ${DDPM_EMULATION_DIR}/async_copy_model.cpp
    ${DDPM_EMULATION_DIR}/block_diagnostics.cpp
    ${DDPM_EMULATION_DIR}/block_scheduler.cpp
    ${DDPM_EMULATION_DIR}/capture.cpp
    ${DDPM_EMULATION_DIR}/fiber.cpp
    ${DDPM_EMULATION_DIR}/fiber_switch_x86_64.cpp
    ${DDPM_EMULATION_DIR}/graph_api.cpp
    ${DDPM_EMULATION_DIR}/graph_exec.cpp
    ${DDPM_EMULATION_DIR}/grid_launcher.cpp
    ${DDPM_EMULATION_DIR}/profiler_api.cpp
    ${DDPM_EMULATION_DIR}/runtime_api.cpp
    ${DDPM_EMULATION_DIR}/shared_memory.cpp
    ${DDPM_EMULATION_DIR}/stream_api.cpp
    ${DDPM_EMULATION_DIR}/warp_exchange.cpp)

# ddpm_add_cuda_emulator(<name> [SANITIZE address|thread] [FIBERS asm|ucontext])
#   <name>: a static library of the emulator runtime; link it. It carries
#   <name>_usage, an interface target with what compiling and linking against
#   the emulator needs (link only that to build objects for several runtimes).
#   SANITIZE address: ASan + UBSan (UBSan errors abort) for the runtime and
#   everything linked with it. SANITIZE thread: everything linked with it is
#   compiled with -fsanitize=thread except the runtime itself (its bookkeeping
#   passes between fibers outside TSan's view; it adds the happens-before edges
#   of barriers and warp operations explicitly). FIBERS ucontext: the portable
#   swapcontext switch instead of the x86-64 routine (about 15-40x slower).
function(ddpm_add_cuda_emulator name)
  cmake_parse_arguments(ARG "" "SANITIZE;FIBERS" "" ${ARGN})
  if(NOT DDPM_EMULATION_AVAILABLE)
    message(FATAL_ERROR "ddpm_add_cuda_emulator: ${DDPM_EMULATION_UNAVAILABLE_REASON}")
  endif()
  set(usage ${name}_usage)
  add_library(${usage} INTERFACE)
  target_include_directories(${usage} INTERFACE ${DDPM_EMULATION_REPO_ROOT})
  target_include_directories(${usage} SYSTEM INTERFACE ${DDPM_EMULATION_CUDA_INCLUDE_DIRS})
  target_compile_features(${usage} INTERFACE cxx_std_20)
  target_compile_options(${usage} INTERFACE -fstack-clash-protection)
  target_link_libraries(${usage} INTERFACE Threads::Threads ${CMAKE_DL_LIBS})
  # Sanitizer builds keep line tables (-g1): reports then name file and line.
  # ASan at -O1 (its documented level): the unrolled GEMM and convolution
  # tiles took 5-7 minutes each to compile at -O3 -g under ASan + UBSan,
  # most of CI's build; their ASan tests take under a minute either way.
  if(ARG_SANITIZE STREQUAL "address")
    set(flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_compile_options(${usage} INTERFACE ${flags} -O1 -g1)
    target_link_options(${usage} INTERFACE ${flags})
  elseif(ARG_SANITIZE STREQUAL "thread")
    # $<TARGET_PROPERTY:NAME> is the consuming target: all but the runtime.
    set(not_runtime "$<NOT:$<STREQUAL:$<TARGET_PROPERTY:NAME>,${name}>>")
    target_compile_options(${usage} INTERFACE -g -fno-omit-frame-pointer
                                              "$<${not_runtime}:-fsanitize=thread>")
    target_link_options(${usage} INTERFACE -fsanitize=thread)
  elseif(ARG_SANITIZE)
    message(FATAL_ERROR "ddpm_add_cuda_emulator: SANITIZE must be address or thread")
  endif()

  add_library(${name} STATIC ${DDPM_EMULATION_RUNTIME_SOURCES})
  target_link_libraries(${name} PUBLIC ${usage})
  if(TARGET ddpm_warnings)
    target_link_libraries(${name} PRIVATE ddpm_warnings)
  endif()
  if(ARG_SANITIZE STREQUAL "thread")
    target_compile_definitions(${name} PRIVATE DDPM_EMU_TSAN=1)
  endif()
  if(ARG_FIBERS STREQUAL "ucontext")
    target_compile_definitions(${name} PRIVATE DDPM_EMU_FIBER_UCONTEXT=1)
  elseif(ARG_FIBERS AND NOT ARG_FIBERS STREQUAL "asm")
    message(FATAL_ERROR "ddpm_add_cuda_emulator: FIBERS must be asm or ucontext")
  endif()
endfunction()

# ddpm_emulate_cuda_sources(<target> <source.cu>...)
#   Compiles the given CUDA sources of <target> with the C++ compiler, as
#   `g++ -x c++ -include kernels/emulation/cuda_emulation.h`, so their kernels
#   run on the emulator the target links. Applies in the calling directory.
function(ddpm_emulate_cuda_sources target)
  foreach(source IN LISTS ARGN)
    set_source_files_properties(${source} TARGET_DIRECTORY ${target} PROPERTIES
      LANGUAGE CXX
      COMPILE_OPTIONS "-x;c++;-include;${DDPM_EMULATION_DIR}/cuda_emulation.h")
  endforeach()
endfunction()
