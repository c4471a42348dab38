// bench_probe.cc — the peak probes: independent FMAs on the CPU's widest vector path on every thread, STREAM-like
// copy and triad.
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

// The FMA loops, one per vector width, each compiled for its ISA with a target attribute (no per-file -m flags, no
// -march=native) and run only after cpuid says the CPU has it. They have internal linkage and use only intrinsics,
// so no inline function or template gets an AVX-512 copy that generic code could link to (the weak-symbol pitfall
// of ISA-specific code).
//
// Every loop keeps kChains independent accumulators: the cores seen so far retire 2 FMAs per cycle at a latency of
// 4-5 cycles, so at least 10 chains in flight keep both pipes busy; 12 fit in the 16 registers of SSE/AVX2 with
// the two constants. a = a * m + c converges (|m| < 1), so the values stay normal (no denormal slow-down) however
// long the loop runs. Each returns a sum so the loop cannot be dropped.
constexpr int kChains = 12;

#ifdef BENCH_X86
__attribute__((target("avx512f"))) float fma_loop_avx512(int64_t iters) {
    const __m512 m = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-3f);
    __m512 a[kChains];
    for (int j = 0; j < kChains; j++) a[j] = _mm512_set1_ps(0.1f * (j + 1));
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < kChains; j++) a[j] = _mm512_fmadd_ps(a[j], m, c);
    }
    __m512 s = a[0];
    for (int j = 1; j < kChains; j++) s = _mm512_add_ps(s, a[j]);
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, s);
    return lanes[0] + lanes[15];
}

__attribute__((target("avx2,fma"))) float fma_loop_avx2(int64_t iters) {
    const __m256 m = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
    __m256 a[kChains];
    for (int j = 0; j < kChains; j++) a[j] = _mm256_set1_ps(0.1f * (j + 1));
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < kChains; j++) a[j] = _mm256_fmadd_ps(a[j], m, c);
    }
    __m256 s = a[0];
    for (int j = 1; j < kChains; j++) s = _mm256_add_ps(s, a[j]);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    return lanes[0] + lanes[7];
}

// SSE2 is part of x86-64 itself: no attribute, no FMA (a multiply and an add, counted as the same 2 FLOPs).
float fma_loop_sse(int64_t iters) {
    const __m128 m = _mm_set1_ps(0.999f), c = _mm_set1_ps(1e-3f);
    __m128 a[kChains];
    for (int j = 0; j < kChains; j++) a[j] = _mm_set1_ps(0.1f * (j + 1));
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < kChains; j++) a[j] = _mm_add_ps(_mm_mul_ps(a[j], m), c);
    }
    __m128 s = a[0];
    for (int j = 1; j < kChains; j++) s = _mm_add_ps(s, a[j]);
    alignas(16) float lanes[4];
    _mm_store_ps(lanes, s);
    return lanes[0] + lanes[3];
}
#else
// Other architectures: the same dependency structure in plain C++; whatever the compiler makes of it for the
// baseline ISA is the estimate (it underrates a machine with vector units the build does not target).
float fma_loop_scalar(int64_t iters) {
    float a[kChains];
    for (int j = 0; j < kChains; j++) a[j] = 0.1f * (j + 1);
    const float m = 0.999f, c = 1e-3f;
    for (int64_t i = 0; i < iters; i++)
        for (float& x : a) x = x * m + c;
    float s = 0.0f;
    for (float x : a) s += x;
    return s;
}
#endif

struct FmaPath {
    const char* isa;  // what MachinePeak::probe_isa reports
    float (*loop)(int64_t);
    int lanes;  // fp32 lanes per vector
};

// The widest path this CPU runs, from cpuid (__builtin_cpu_supports also checks that the OS saves the wide
// registers), as the library picks its kernels.
FmaPath widest_fma_path() {
#ifdef BENCH_X86
    if (__builtin_cpu_supports("avx512f")) return {"avx512", fma_loop_avx512, 16};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {"avx2", fma_loop_avx2, 8};
    return {"sse", fma_loop_sse, 4};
#else
    return {"scalar", fma_loop_scalar, 1};
#endif
}

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
    const FmaPath fma = widest_fma_path();
    p.probe_isa = fma.isa;
    p.gflops = flops_probe(threads, fma.loop, 2.0 * kChains * fma.lanes);  // x (mul + add)
    p.gflops_how = p.probe_isa == "scalar" ? "scalar estimate" : p.probe_isa + " fma probe";

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
