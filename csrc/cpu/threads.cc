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

// More threads than this only oversubscribes the cores; far more (100000) made the OpenMP runtime crash.
constexpr int kMaxThreads = 1024;

void set_num_threads(int n) {
    if (n < 1 || n > kMaxThreads)
        throw Error("set_num_threads: argument 'n' must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                    std::to_string(n));
    g_threads.store(n, std::memory_order_relaxed);
}

namespace cpu {
int num_threads() { return get_num_threads(); }
}  // namespace cpu

}  // namespace gptx
