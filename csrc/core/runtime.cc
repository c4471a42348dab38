// runtime.cc — thread count and version.
#include "gptx/runtime.h"

#include <omp.h>

#include <atomic>
#include <string>

#include "cpu/threads.h"
#include "gptx/error.h"
#include "gptx/version.h"

namespace gptx {

namespace {
std::atomic<int> g_threads{0};  // 0: not set yet, use the OpenMP default
}

const char* version() { return GPTX_VERSION_STRING; }

int get_num_threads() {
    int n = g_threads.load(std::memory_order_relaxed);
    return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) {
    if (n < 1) throw Error("set_num_threads: argument 'n' must be >= 1, got " + std::to_string(n));
    g_threads.store(n, std::memory_order_relaxed);
}

namespace cpu {
int num_threads() { return get_num_threads(); }
}  // namespace cpu

}  // namespace gptx
