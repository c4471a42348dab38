// threads.h — the thread count every CPU kernel uses for its OpenMP regions (set by gptx::set_num_threads).
#pragma once

namespace gptx {
namespace cpu {
// Threads a kernel may use (>= 1). Kernels pass it as num_threads(...) so the setting holds on every calling thread.
int num_threads();
}  // namespace cpu
}  // namespace gptx
