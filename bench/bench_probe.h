// bench_probe.h — measures this machine's peaks (fp32 FMA throughput, memory bandwidth) that benchmarks compare to.
#pragma once
#include <cstddef>
#include <string>

namespace bench {

struct MachinePeak {
    std::string cpu_model;    // "model name" from /proc/cpuinfo
    int threads = 1;          // threads the probes ran on
    double gflops = 0.0;      // fp32 GFLOP/s over all threads
    std::string probe_isa;    // vector path the FMA probe ran: "avx512", "avx2", "sse" or "scalar" (widest available)
    std::string gflops_how;   // "avx512 fma probe", ..., or "scalar estimate"
    double copy_gbs = 0.0;    // STREAM-like copy  b = a          (bytes read + written)
    double triad_gbs = 0.0;   // STREAM-like triad a = b + s * c
    double gbs = 0.0;         // the larger of the two: the bandwidth "peak" memory-bound ops are compared to
    size_t array_mib = 0;     // size of each probe array
};

std::string cpu_model_name();

// Runs both probes on `threads` threads (a fraction of a second for the FMA loop, a few passes over 3 arrays of
// `array_mib` MiB for the bandwidth). The arrays must be much larger than the last-level cache to measure DRAM.
MachinePeak measure_peak(int threads, size_t array_mib);

}  // namespace bench
