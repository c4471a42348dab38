// bench_probe.cc — the peak probes: an AVX2/FMA loop of independent FMAs on every thread, STREAM-like copy/triad.
#include "bench_probe.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

namespace bench {

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#ifdef BENCH_X86
// 12 independent accumulators: Zen 3 / Intel cores retire 2 FMAs per cycle at a latency of 4-5 cycles, so at least
// 10 chains in flight are needed to keep both pipes busy. a = a * m + c converges (|m| < 1), so the values stay
// normal (no denormal slow-down) however long the loop runs. Returns a sum so the loop cannot be dropped.
__attribute__((target("avx2,fma"))) float fma_loop(int64_t iters) {
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    __m256 a0 = _mm256_set1_ps(0.1f), a1 = _mm256_set1_ps(0.2f), a2 = _mm256_set1_ps(0.3f);
    __m256 a3 = _mm256_set1_ps(0.4f), a4 = _mm256_set1_ps(0.5f), a5 = _mm256_set1_ps(0.6f);
    __m256 a6 = _mm256_set1_ps(0.7f), a7 = _mm256_set1_ps(0.8f), a8 = _mm256_set1_ps(0.9f);
    __m256 a9 = _mm256_set1_ps(1.0f), a10 = _mm256_set1_ps(1.1f), a11 = _mm256_set1_ps(1.2f);
    for (int64_t i = 0; i < iters; i++) {
        a0 = _mm256_fmadd_ps(a0, m, c);
        a1 = _mm256_fmadd_ps(a1, m, c);
        a2 = _mm256_fmadd_ps(a2, m, c);
        a3 = _mm256_fmadd_ps(a3, m, c);
        a4 = _mm256_fmadd_ps(a4, m, c);
        a5 = _mm256_fmadd_ps(a5, m, c);
        a6 = _mm256_fmadd_ps(a6, m, c);
        a7 = _mm256_fmadd_ps(a7, m, c);
        a8 = _mm256_fmadd_ps(a8, m, c);
        a9 = _mm256_fmadd_ps(a9, m, c);
        a10 = _mm256_fmadd_ps(a10, m, c);
        a11 = _mm256_fmadd_ps(a11, m, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    return lanes[0] + lanes[7];
}
constexpr double kFmaFlopsPerIter = 12 * 8 * 2;  // 12 FMAs x 8 lanes x (mul + add)

bool have_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
#else
bool have_avx2_fma() { return false; }
float fma_loop(int64_t) { return 0.0f; }
constexpr double kFmaFlopsPerIter = 0;
#endif

// Fallback without AVX2/FMA: the same dependency structure in plain C++ (whatever the compiler makes of it for the
// baseline ISA is the estimate: it underrates a machine with wider units the build does not target).
float scalar_loop(int64_t iters) {
    float a[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    const float m = 0.999f, c = 1e-3f;
    for (int64_t i = 0; i < iters; i++)
        for (float& x : a) x = x * m + c;
    return a[0] + a[7];
}
constexpr double kScalarFlopsPerIter = 8 * 2;

volatile float g_sink;  // results of the probe loops land here so they are not optimised away

// Best of a few timed runs of `loop` on every thread; the iteration count is calibrated to ~0.1 s per run.
double flops_probe(int threads, float (*loop)(int64_t), double flops_per_iter) {
    int64_t iters = 1 << 16;
    for (;;) {  // calibrate on one thread: grow until a run takes >= 20 ms
        const double t0 = now_s();
        g_sink = loop(iters);
        const double dt = now_s() - t0;
        if (dt >= 0.02 || iters > (int64_t(1) << 40)) {
            iters = std::max<int64_t>(iters, static_cast<int64_t>(iters * 0.1 / std::max(dt, 1e-9)));
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = now_s();
#pragma omp parallel num_threads(threads)
        { g_sink = loop(iters); }
        const double dt = now_s() - t0;
        best = std::max(best, threads * iters * flops_per_iter / dt * 1e-9);
    }
    return best;
}

struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

Buffer alloc_floats(size_t n) {
    void* p = std::aligned_alloc(4096, ((n * sizeof(float) + 4095) / 4096) * 4096);
    return Buffer(static_cast<float*>(p));
}

}  // namespace

std::string cpu_model_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line)) {
        if (line.rfind("model name", 0) == 0) {
            const size_t colon = line.find(':');
            if (colon != std::string::npos) {
                size_t b = line.find_first_not_of(" \t", colon + 1);
                return b == std::string::npos ? std::string() : line.substr(b);
            }
        }
    }
    return "unknown";
}

MachinePeak measure_peak(int threads, size_t array_mib) {
    MachinePeak p;
    p.cpu_model = cpu_model_name();
    p.threads = threads;
    p.array_mib = array_mib;
    if (have_avx2_fma()) {
        p.gflops = flops_probe(threads, fma_loop, kFmaFlopsPerIter);
        p.gflops_how = "avx2+fma probe";
    } else {
        p.gflops = flops_probe(threads, scalar_loop, kScalarFlopsPerIter);
        p.gflops_how = "scalar estimate";
    }

    // Bandwidth. The arrays are first touched by the same static partition the loops use, so each thread's pages
    // are local to it (matters on multi-socket / NUMA machines).
    const int64_t n = static_cast<int64_t>(array_mib) * (1 << 20) / sizeof(float);
    Buffer a = alloc_floats(n), b = alloc_floats(n), c = alloc_floats(n);
    if (!a || !b || !c) return p;  // bandwidth stays 0: reported as unknown
    float *pa = a.get(), *pb = b.get(), *pc = c.get();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        pa[i] = 1.0f;
        pb[i] = 2.0f;
        pc[i] = 0.5f;
    }
    const double bytes = static_cast<double>(n) * sizeof(float);
    for (int rep = 0; rep < 4; rep++) {
        double t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; i++) pb[i] = pa[i];
        p.copy_gbs = std::max(p.copy_gbs, 2 * bytes / (now_s() - t0) * 1e-9);
        const float s = 0.5f;
        t0 = now_s();
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < n; i++) pa[i] = pb[i] + s * pc[i];
        p.triad_gbs = std::max(p.triad_gbs, 3 * bytes / (now_s() - t0) * 1e-9);
    }
    g_sink = pa[n / 2];
    p.gbs = std::max(p.copy_gbs, p.triad_gbs);
    return p;
}

}  // namespace bench
