# The bench-only addon simd_adamw_bench.node (native/bench/): the roofline probes and the plain C
# AdamW loop that `npm run bench` measures the step against. Included by the top-level
# CMakeLists.txt when this file is present; the published package leaves native/bench/ out, so an
# install never builds it.
#
# Its own sources are built with -march=native: the probes must be the fastest loops this machine
# runs, and the C loop is "what the compiler makes of the obvious loop here". That is acceptable
# only because this addon is never shipped (the released one dispatches at run time).
set(SIMD_ADAMW_BENCH_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(simd_adamw_bench SHARED
            ${SIMD_ADAMW_BENCH_DIR}/bench-addon.cc ${SIMD_ADAMW_BENCH_DIR}/roofline-probes.cc
            ${SIMD_ADAMW_BENCH_DIR}/c-loop.cc ${SIMD_ADAMW_BENCH_DIR}/lean-probes.cc ${CMAKE_JS_SRC})
set_target_properties(simd_adamw_bench PROPERTIES PREFIX "" SUFFIX ".node"
                                                  CXX_VISIBILITY_PRESET hidden)
# The thread pool and threadsFor/partsFor from the core library, so the probes split and schedule
# a pass exactly as the step does.
target_link_libraries(simd_adamw_bench PRIVATE simd_adamw_core)
execute_process(COMMAND node -p "require('node-addon-api').include_dir"
                WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE SIMD_ADAMW_BENCH_NAPI_DIR
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
target_include_directories(simd_adamw_bench PRIVATE ${CMAKE_JS_INC} ${SIMD_ADAMW_BENCH_NAPI_DIR})
find_package(Threads REQUIRED)
target_link_libraries(simd_adamw_bench PRIVATE ${CMAKE_JS_LIB} Threads::Threads)
# As the released addon (no fused multiply-add, so the C loop rounds as the kernels do), plus
# -march=native on this addon's own sources only (not on the core library).
target_compile_options(simd_adamw_bench PRIVATE -O3 -Wall -Wextra -Wpedantic -ffp-contract=off
                                                -fno-math-errno)
set_source_files_properties(${SIMD_ADAMW_BENCH_DIR}/c-loop.cc PROPERTIES COMPILE_OPTIONS
                                                                        "-march=native")
# The probes at the widest vectors: GCC's tuning for some AVX-512 CPUs prefers 256-bit ones.
set_source_files_properties(${SIMD_ADAMW_BENCH_DIR}/roofline-probes.cc ${SIMD_ADAMW_BENCH_DIR}/lean-probes.cc
                            PROPERTIES COMPILE_OPTIONS "-march=native;-mprefer-vector-width=512")
