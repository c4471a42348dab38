// dropout_mask.h — the counter-based generator every backend draws dropout masks from, so that a mask is a pure
// function of (seed, step, layer, site, row, column): the same bits on every CPU path, on CUDA, for any thread count
// or tiling, and again after a resume (nothing is carried between calls).
//
// Two stages: the site key and each row's state are 64-bit mixes (computed once per call, once per row), and each
// element is one 32-bit mix of (row state, column), cheap enough to regenerate inside the attention kernels' inner
// loops and to vectorise (32-bit multiplies exist on every x86 vector ISA and on the GPU). An element is kept when
// its 32 bits are >= threshold = round(p * 2^32), so the keep probability is 1 - p to within 2^-32.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define GPTX_DROPOUT_FN __host__ __device__ __forceinline__
#else
#define GPTX_DROPOUT_FN static inline
#endif

namespace gptx {
namespace backend {

// The 64-bit finaliser of splitmix64 (a bijection whose outputs for neighbouring inputs look independent).
GPTX_DROPOUT_FN uint64_t dropout_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

// A 32-bit bijective finaliser (xor-shift / odd multiply, three rounds of shifts), applied once per element.
GPTX_DROPOUT_FN uint32_t dropout_mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// The key of one dropout site in one training step: every field goes through a full mix before the next is added,
// so keys of tuples that differ in any field are unrelated.
GPTX_DROPOUT_FN uint64_t dropout_key(uint64_t seed, int64_t step, int64_t layer, int64_t site) {
    uint64_t k = dropout_mix64(seed ^ 0x6a09e667f3bcc909ULL);
    k = dropout_mix64(k + 0x9e3779b97f4a7c15ULL * (uint64_t)(step + 1));
    k = dropout_mix64(k + 0xbb67ae8584caa73bULL * (uint64_t)(layer + 1));
    return dropout_mix64(k + 0x3c6ef372fe94f82bULL * (uint64_t)(site + 1));
}

// The state of one row (a token for the elementwise sites, a (b, h, query) triple for attention probabilities).
GPTX_DROPOUT_FN uint32_t dropout_row(uint64_t key, uint64_t row) {
    return (uint32_t)(dropout_mix64(key ^ (row * 0xd1b54a32d192ed03ULL)) >> 32);
}

// The 32 random bits of element (row, col): the column is spread by an odd multiply before the mix, so the columns
// of one row are a bijective image of 0..2^32-1 (no two columns of a row share bits).
GPTX_DROPOUT_FN uint32_t dropout_bits(uint32_t row_state, uint32_t col) {
    return dropout_mix32(row_state ^ (col * 0x9e3779b9u));
}

// The mask of a call: threshold 0 means no dropout (every element kept with factor 1).
struct DropoutMask {
    uint64_t key = 0;
    uint32_t threshold = 0;  // keep iff dropout_bits(...) >= threshold
    float scale = 1.0f;      // the kept elements' factor, float32(1 / (1 - p))
};

GPTX_DROPOUT_FN bool dropout_keep(const DropoutMask& m, uint32_t row_state, uint32_t col) {
    return dropout_bits(row_state, col) >= m.threshold;
}

}  // namespace backend
}  // namespace gptx
