// runtime.h — process-wide settings and facts: threads, the CPU kernel path (ISA) in use, the CUDA build.
#pragma once
#include <string>
#include <vector>

namespace gptx {

// Threads the CPU kernels use (OpenMP). Defaults to the OpenMP default (OMP_NUM_THREADS or the core count).
int get_num_threads();
void set_num_threads(int n);  // n >= 1, else gptx::Error

// The CPU kernel path in use: "generic", "avx2", "avx512", or "reference" (the scalar spec, slow).
// Chosen once at load from cpuid, or forced with the environment variable GPTX_FORCE_ISA.
std::string cpu_isa();
// Paths this CPU can run, best last (always contains "generic" and "reference").
std::vector<std::string> available_cpu_isas();
// Switch the path for the whole process (tests use it). Throws gptx::Error if unknown or unsupported by this CPU.
void set_cpu_isa(const std::string& name);

// CUDA: whether this build contains the CUDA backend, and how many devices the driver reports (0 without a driver).
bool cuda_built();
int cuda_device_count();

}  // namespace gptx
