// dispatch.cc — picks the CPU kernel table once (cpuid or GPTX_FORCE_ISA) and lets tests switch it.
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/kernel_table.h"
#include "gptx/error.h"
#include "gptx/runtime.h"

namespace gptx {
namespace cpu {
namespace avx512_bf16 {
void qmatmul_forward(const backend::QMatmulParams& p);  // kernels/qmatmul.cc built with VNNI + BF16
}

using backend::KernelTable;

namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

// AVX-512 VNNI + BF16 (Zen 4/5, Sapphire Rapids and later): the avx512_bf16 path.
bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_cpu_init();
    return cpu_has_avx512() && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

const KernelTable* table_by_name(const std::string& name) {
    if (name == "generic") return backend::cpu_kernels_generic();
    if (name == "reference") return backend::cpu_kernels_reference();
    if (name == "avx2") return cpu_has_avx2() ? backend::cpu_kernels_avx2() : nullptr;
    if (name == "avx512") return cpu_has_avx512() ? backend::cpu_kernels_avx512() : nullptr;
    if (name == "avx512_bf16") return cpu_has_avx512_bf16() ? backend::cpu_kernels_avx512_bf16() : nullptr;
    return nullptr;
}

const KernelTable* best_table() {
    if (cpu_has_avx512_bf16()) return backend::cpu_kernels_avx512_bf16();
    if (cpu_has_avx512()) return backend::cpu_kernels_avx512();
    if (cpu_has_avx2()) return backend::cpu_kernels_avx2();
    return backend::cpu_kernels_generic();
}

const KernelTable* initial_table() {
    const char* forced = std::getenv("GPTX_FORCE_ISA");
    if (forced == nullptr || *forced == '\0') return best_table();
    const KernelTable* t = table_by_name(forced);
    if (t == nullptr)
        throw Error(std::string("GPTX_FORCE_ISA='") + forced +
                    "' is not a CPU path this machine can run (choose generic, avx2, avx512, avx512_bf16 or reference)");
    return t;
}

std::atomic<const KernelTable*>& current() {
    static std::atomic<const KernelTable*> table{initial_table()};
    return table;
}

}  // namespace

}  // namespace cpu

// The avx512 table with the VNNI + BF16 qmatmul (everything else is the avx512 kernels). Built here, in code
// compiled for any x86-64, so the copy itself uses no AVX-512 instruction.
const backend::KernelTable* backend::cpu_kernels_avx512_bf16() {
    static const KernelTable table = [] {
        KernelTable t = *cpu_kernels_avx512();
        t.name = "avx512_bf16";
        t.qmatmul_forward = &cpu::avx512_bf16::qmatmul_forward;
        return t;
    }();
    return &table;
}

const backend::KernelTable& backend::cpu_kernels() { return *cpu::current().load(std::memory_order_acquire); }

std::string cpu_isa() { return backend::cpu_kernels().name; }

std::vector<std::string> available_cpu_isas() {
    std::vector<std::string> names = {"reference", "generic"};
    if (cpu::cpu_has_avx2()) names.push_back("avx2");
    if (cpu::cpu_has_avx512()) names.push_back("avx512");
    if (cpu::cpu_has_avx512_bf16()) names.push_back("avx512_bf16");
    return names;
}

void set_cpu_isa(const std::string& name) {
    const backend::KernelTable* t = cpu::table_by_name(name);
    if (t == nullptr)
        throw Error("set_cpu_isa: argument 'name'='" + name +
                    "' is not a CPU path this machine can run (choose generic, avx2, avx512, avx512_bf16 or reference)");
    cpu::current().store(t, std::memory_order_release);
}

}  // namespace gptx
