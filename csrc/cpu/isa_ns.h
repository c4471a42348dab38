// isa_ns.h — names the namespace of the backend this translation unit is compiled for.
// CMake compiles csrc/cpu/kernels/ once per ISA (GPTX_ISA_GENERIC / _AVX2 / _AVX512) and csrc/ref/ once
// (GPTX_ISA_REFERENCE); each copy lands in its own namespace, so no symbol is shared between ISA builds.
#pragma once

#if defined(GPTX_ISA_AVX512_BF16)
#define GPTX_ISA_NS avx512_bf16
#elif defined(GPTX_ISA_AVX512)
#define GPTX_ISA_NS avx512
#elif defined(GPTX_ISA_AVX2)
#define GPTX_ISA_NS avx2
#elif defined(GPTX_ISA_GENERIC)
#define GPTX_ISA_NS generic
#elif defined(GPTX_ISA_REFERENCE)
#define GPTX_ISA_NS reference
#else
#error "compile with one of GPTX_ISA_GENERIC, GPTX_ISA_AVX2, GPTX_ISA_AVX512, GPTX_ISA_REFERENCE"
#endif
