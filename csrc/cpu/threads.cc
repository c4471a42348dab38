// threads.cc — the thread count of the CPU kernels: owned by the CPU backend, set through gptx::set_num_threads.
#include "cpu/threads.h"

#include <omp.h>

#include <atomic>
#include <string>

#include "gptx/error.h"
#include "gptx/runtime.h"

namespace gptx {

namespace {
std::atomic<int> g_threads{0};  // 0: not set yet, use the OpenMP default
}

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
