// matmul.cc — matmul_forward: fp32 GEMM (packed panels, cache blocking, register-tiled micro-kernel, OpenMP),
// batched; and bias_backward.
//
// C(M, N) = beta * C + op(A) @ op(B) + bias, BLIS-style:
//   for jc (NC columns of op(B)), for chunks of K blocks:
//     pack the chunk of op(B) into kc x NR micro-panels (shared by the threads)           barrier
//     tasks (A block of MC rows, share of the panels), stolen between threads when one lags:
//       for pc (KC of K): pack the A block into MR x kc micro-panels (per thread);
//                         for jr (NR panel), ir (MR panel): micro-kernel on an MR x NR tile   barrier
// The transposes are absorbed by the packing routines, so one micro-kernel serves all four trans combinations.
// M up to one A block takes the fused path (B micro-panels packed right before use, no barrier) and M <= 4 the
// streaming path of gemm_small.h. Every element of C is summed in the same order (K blocks fixed by K alone)
// whatever the thread count and the path's task split, so results are bitwise identical for 1 and 2 threads.
//
// Measurements quoted below: AMD EPYC (Zen 3, AVX2 only, 2 cores, 32 KiB L1d, 512 KiB L2, 32 MiB L3, FMA peak
// ~102 GFLOP/s per core as measured), a shared VM with heavy background load, so best-of-N and ratios against
// OpenBLAS (numpy) taken in alternation. The AVX-512 parameters could not be timed there (no AVX-512 unit); they
// follow the register budget and the 48 KiB L1d / 2 MiB L2 of the intended machine.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <omp.h>

#include "../kernels.h"
#include "../threads.h"
#include "../vec.h"
#include "matmul_pack.h"
#include "matmul_small.h"
#include "matmul_tile.h"

namespace gptx {
namespace cpu {
namespace GPTX_ISA_NS {
namespace {

// ---------------------------------------------------------------- tile and blocking parameters
#if defined(GPTX_ISA_AVX512)
// 14 x 32: 28 zmm accumulators + 2 B vectors + 1 broadcast = 31 of 32 registers, no spill in the k loop (objdump);
// 16 loads (2 B + 14 broadcasts, no shuffle port) per 28 FMAs.
constexpr int kMR = 14, kNV = 2;
constexpr int kKC = 256;  // B micro-panel 256 x 32 x 4 B = 32 KiB of the 48 KiB L1d
#elif defined(GPTX_ISA_AVX2)
// 6 x 16: 12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16 registers. 1 thread, 2048 x 768 x 2304 and
// 2048 x 2304 x 768, best of 20: 88-93 GFLOP/s, ~90% of peak, as OpenBLAS (88-93).
constexpr int kMR = 6, kNV = 2;
// B micro-panel 256 x 16 x 4 B = 16 KiB, half the L1d. KC 384 / 512 and MC at a quarter or all of the L2 came out
// within the +-3% noise of this choice (e.g. 89.2 / 87.8 / 83.7 GFLOP/s for KC 256 / 384 / 512).
constexpr int kKC = 256;
#else
// SSE2 has no FMA (mul then add needs a temporary): 6 x 8 = 12 xmm accumulators + 2 B + broadcast + temp = 16,
// no spill in the k loop (objdump).
constexpr int kMR = 6, kNV = 2;
constexpr int kKC = 256;
#endif
constexpr int kNR = kNV * kW;
constexpr int64_t kNCMax = 4096;  // B block kc x nc = 4 MiB: lives in L3, A is repacked once per nc columns

// Upper bound on MC: the packed A block (mc x kc floats) should take about half the L2 (the rest holds the
// streaming B micro-panels and C lines).
int64_t mc_limit() {
    static int64_t l2_cached = 0;  // sysconf may run cpuid (slow under a hypervisor): once is enough
    int64_t l2 = __atomic_load_n(&l2_cached, __ATOMIC_RELAXED);
    if (l2 == 0) {
        long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
        l2 = v > 0 ? (int64_t)v : 512 * 1024;
        __atomic_store_n(&l2_cached, l2, __ATOMIC_RELAXED);
    }
    int64_t mc = l2 / 2 / ((int64_t)kKC * (int64_t)sizeof(float));
    mc = mc / kMR * kMR;
    return imin(imax(mc, 4 * kMR), 128 * kMR);
}

// ---------------------------------------------------------------- the micro-kernel
constexpr bool kPrefetchNextB = true;

// One k step: acc[i][v] += a[i] * b[v * kW ..]; a broadcast is loaded per row, the NV B vectors once.
inline void micro_step(const float* __restrict a, const float* __restrict b, Vf (&acc)[kMR][kNV]) {
    Vf bv[kNV];
#pragma GCC unroll 8
    for (int v = 0; v < kNV; v++) bv[v] = vload(b + v * kW);
#pragma GCC unroll 16
    for (int i = 0; i < kMR; i++) {
        Vf ai = vset1(a[i]);
#pragma GCC unroll 8
        for (int v = 0; v < kNV; v++) acc[i][v] = vfmadd(ai, bv[v], acc[i][v]);
    }
}

// a: kc x kMR packed A micro-panel, b: kc x kNR packed B micro-panel (both zero-padded to full tiles).
// b_next: the B micro-panel the next tile will use when it is another one (or null); it is pulled toward L2, one
// line per k step, so that tile does not start on L3 misses. 2 threads, best of 21, with / without: 2048 x 768 x
// 3072 NT 170 / 147, 2048 x 2304 x 768 NN 163 / 154, 2048 x 768 x 2304 NN 168 / 163, 768 x 2304 x 2048 TN 140 / 150.
__attribute__((noinline)) void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b,
                                            float* c, int64_t ldc, int mr, int nr, float cscale, const float* bias,
                                            const float* b_next) {
    Vf acc[kMR][kNV];
#pragma GCC unroll 16
    for (int i = 0; i < kMR; i++)
#pragma GCC unroll 8
        for (int v = 0; v < kNV; v++) acc[i][v] = vzero();
    // Pull the C tile toward L1 while the k loop runs (it is read, or at least written, at the end).
    for (int i = 0; i < mr; i++) {
        _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char*)(c + i * ldc + kNR - 1), _MM_HINT_T0);
    }
    if (kPrefetchNextB && b_next) {
        constexpr int kLines = kNR * 4 / 64 > 0 ? kNR * 4 / 64 : 1;  // cache lines per k step of B
        for (int64_t k = 0; k < kc; k++) {
#pragma GCC unroll 2
            for (int l = 0; l < kLines; l++) _mm_prefetch((const char*)(b_next + k * kNR) + 64 * l, _MM_HINT_T1);
            micro_step(a, b, acc);
            a += kMR;
            b += kNR;
        }
    } else {
#pragma GCC unroll 2
        for (int64_t k = 0; k < kc; k++) {
            micro_step(a, b, acc);
            a += kMR;
            b += kNR;
        }
    }
    store_tile<kMR, kNV>(acc, c, ldc, mr, nr, cscale, bias);
}

// ---------------------------------------------------------------- work distribution
// Each phase's tasks are dealt out in contiguous ranges, one per thread; a thread that has finished its own range
// takes tasks from the far end of the others'. With no interference both threads just run their own halves (and
// each packs only its own A blocks); on a shared, busy machine a descheduled thread no longer holds up the other.
// A range is one 64-bit word, (end << 32) | next, updated with compare-and-swap.
struct alignas(64) TaskRange {
    uint64_t word;
};

bool take_front(TaskRange* r, int64_t* task) {
    uint64_t w = __atomic_load_n(&r->word, __ATOMIC_RELAXED);
    for (;;) {
        const uint64_t next = w & 0xffffffffu, end = w >> 32;
        if (next >= end) return false;
        if (__atomic_compare_exchange_n(&r->word, &w, w + 1, true, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            *task = (int64_t)next;
            return true;
        }
    }
}

bool take_back(TaskRange* r, int64_t* task) {
    uint64_t w = __atomic_load_n(&r->word, __ATOMIC_RELAXED);
    for (;;) {
        const uint64_t next = w & 0xffffffffu, end = w >> 32;
        if (next >= end) return false;
        if (__atomic_compare_exchange_n(&r->word, &w, ((end - 1) << 32) | next, true, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            *task = (int64_t)(end - 1);
            return true;
        }
    }
}

// ranges: the nt ranges of one phase. Own range first, then steal (from every slot: the team may be smaller).
bool next_task(TaskRange* ranges, int nt, int tid, int64_t* task) {
    if (take_front(&ranges[tid], task)) return true;
    for (int s = 1; s < nt; s++)
        if (take_back(&ranges[(tid + s) % nt], task)) return true;
    return false;
}

void deal(TaskRange* ranges, int nt, int64_t n_tasks) {
    for (int t = 0; t < nt; t++)
        ranges[t].word = ((uint64_t)(n_tasks * (t + 1) / nt) << 32) | (uint64_t)(n_tasks * t / nt);
}

// ---------------------------------------------------------------- short M: the fused path
// When op(A) fits one MC block there is no reuse of a packed B block across A blocks, so none is kept: each task
// (a run of NR panels) packs the A block of each K block into its own buffer and each B micro-panel right before
// use, so B never leaves L1 and the threads never wait on each other (no barrier at all). The A block is packed
// again per task; runs of ~kFusedCols columns keep that below ~1.5% of the FLOPs' time. Best of 27, 1 thread,
// N = 2304 (3072), K = 768, trans_b, shared-B path -> fused: M = 8: 32 -> 40 GFLOP/s, M = 64: 74 -> 71 (noise),
// M = 200 (N 3072): 75 -> 84; 2 threads on the busy machine, M = 64: 72 -> 136.
#if defined(GPTX_ISA_AVX512)
constexpr int64_t kFusedCols = 1024;
#else
constexpr int64_t kFusedCols = 512;
#endif
// B is packed kFusedGroup micro-panels at a time (64 KiB at KC = 256, AVX2: L2), so the rows of a non-transposed B
// are read in 256-byte runs. 1 / 2 / 4 panels, N = 2304, K = 768, NN, 1 thread, best of 54: M = 16: 36 / 49 / 51,
// M = 64: 62 / 66 / 71, M = 200: 77 / 82 / 82 GFLOP/s (with B^T, where each panel reads its own rows: all equal).
constexpr int64_t kFusedGroup = 4;
// Taller A blocks go the shared-B way: more, smaller tasks to balance, and A packed once rather than per task.
constexpr int64_t kFusedMaxM = 256;

void gemm_fused(const GemmArgs& g, int nt, int64_t n_pc, int64_t kc_max) {
    const int64_t M = g.M, N = g.N, K = g.K;
    const int64_t mc = round_up(M, kMR), n_panels = cdiv(N, kNR);
    // Column runs of about kFusedCols, a multiple of nt of them, but at least one per thread.
    int64_t n_tasks = imax((int64_t)nt, N / kFusedCols / nt * nt);
    n_tasks = imin(n_tasks, n_panels);
    if (n_tasks < nt) nt = (int)n_tasks;
    const int64_t ap_size = round_up(mc * kc_max, 16), bp_size = round_up(kc_max * kNR * kFusedGroup, 16);
    float* buf = alloc_floats((int64_t)nt * (ap_size + bp_size));
    TaskRange* ranges = (TaskRange*)aligned_alloc(64, sizeof(TaskRange) * (size_t)nt);
    if (!buf || !ranges) abort();
    deal(ranges, nt, n_tasks);
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        float* ap = buf + tid * (ap_size + bp_size);
        float* bp = ap + ap_size;
        int64_t t;
        while (next_task(ranges, nt, tid, &t)) {
            const int64_t jp0 = n_panels * t / n_tasks, jp1 = n_panels * (t + 1) / n_tasks;
            for (int64_t p = 0; p < n_pc; p++) {
                const int64_t pc = p * kc_max, kc = imin(kc_max, K - pc);
                const float cscale = p == 0 ? g.beta : 1.0f;
                const float* bias = p == 0 ? g.bias : nullptr;
                pack_a<kMR>(ap, g.A, g.lda, g.trans_a, 0, M, pc, kc);
                for (int64_t jg = jp0; jg < jp1; jg += kFusedGroup) {
                    const int64_t jg1 = imin(jp1, jg + kFusedGroup);
                    pack_b<kNR>(bp, g.B, g.ldb, g.trans_b, pc, kc, jg * kNR, imin(N, jg1 * kNR) - jg * kNR);
                    for (int64_t jp = jg; jp < jg1; jp++) {
                        const int64_t j0 = jp * kNR, nr = imin(kNR, N - j0);
                        const float* bpanel = bp + (jp - jg) * kc * kNR;
                        for (int64_t ir = 0; ir < M; ir += kMR)
                            micro_kernel(kc, ap + ir * kc, bpanel, g.C + ir * g.ldc + j0, g.ldc,
                                         (int)imin(kMR, M - ir), (int)nr, cscale, bias ? bias + j0 : nullptr, nullptr);
                    }
                }
            }
        }
    }
    free(ranges);
    free(buf);
}

// ---------------------------------------------------------------- the blocked, packed path
// B is packed a "chunk" of K blocks at a time (up to kBChunkFloats of it) and shared by the threads, so there are
// only two barriers per chunk (B packed; B consumed) rather than two per K block: each task, an A block (and a
// share of the B panels), then runs through all the chunk's K blocks by itself. On this busy, shared 2-core machine
// every barrier risks waiting out a time slice of a descheduled thread: with one B block per K block the shapes
// with 9-12 K blocks (N = 768, K = 2304 / 3072) ran at 0.65-0.69x OpenBLAS, those with 3 at 0.97-1.12x; with
// chunks, 0.92-1.09x for both kinds (2 threads, medians of per-pair ratios, numpy timed in alternation).
// A B micro-panel is read from L3 (or memory) once per A block: mc / 2 FLOPs per byte, so the chunk need not fit
// in any cache; 16 MiB stays under glibc's mmap threshold, so the buffer is reused rather than faulted in anew.
constexpr int64_t kBChunkFloats = (int64_t)4 << 20;

void gemm_packed(const GemmArgs& g) {
    const int64_t M = g.M, N = g.N, K = g.K;
    int nt = num_threads();
    // Below ~2 MFLOP a second thread costs more in fork/join than it saves.
    if ((double)M * (double)N * (double)K < 1.0e6) nt = 1;

    // K blocks of equal size (so the last one is not a sliver); depends on K alone, which keeps the summation
    // order independent of the thread count.
    const int64_t n_pc = cdiv(K, kKC), kc_max = cdiv(K, n_pc);
    const int64_t mcl = mc_limit();
    if (M <= imin(mcl, kFusedMaxM)) {
        gemm_fused(g, nt, n_pc, kc_max);
        return;
    }
    const int64_t n_jc = cdiv(N, kNCMax), nc_max = round_up(cdiv(N, n_jc), kNR);
    const int64_t pcs_per_chunk = imin(n_pc, imax(1, kBChunkFloats / (nc_max * kc_max)));
    const int64_t n_chunks = cdiv(n_pc, pcs_per_chunk);
    // M blocks: a multiple of nt of them, at least 4 per thread when M allows, so the own ranges are equal and
    // there is something left to steal.
    int64_t n_ic = cdiv(M, mcl);
    if (nt > 1) n_ic = round_up(imax(n_ic, imin((int64_t)4 * nt, M / (4 * kMR))), nt);
    const int64_t mc_max = round_up(cdiv(M, n_ic), kMR);
    n_ic = cdiv(M, mc_max);
    // Too few A blocks for that: cut each block's NR panels into n_js shares too (each share packs the A block
    // again), keeping shares of >= 8 panels so a B micro-panel's trip from L3 is paid for.
    const int64_t max_panels = cdiv(nc_max, kNR);
    const int64_t n_js = imax(1, imin(cdiv(4 * nt, n_ic), max_panels / 8));
    constexpr int64_t kPackChunk = 16;  // B panels per packing task: rows read in 1 KiB (AVX2) runs
    const int64_t n_phases = 2 * n_jc * n_chunks;
    const int64_t bchunk_stride = round_up(kc_max * nc_max, 16);  // floats per packed K block of the chunk

    float* bp = alloc_floats(pcs_per_chunk * bchunk_stride);
    float* ap_all = alloc_floats((int64_t)nt * round_up(mc_max * kc_max, 16));
    TaskRange* ranges = (TaskRange*)aligned_alloc(64, sizeof(TaskRange) * (size_t)(n_phases * nt));
    if (!bp || !ap_all || !ranges) abort();
    for (int64_t jb = 0; jb < n_jc; jb++) {
        const int64_t n_panels = cdiv(imin(nc_max, N - jb * nc_max), kNR);
        for (int64_t q = 0; q < n_chunks; q++) {
            TaskRange* r = ranges + 2 * (jb * n_chunks + q) * nt;
            const int64_t pcs = imin(pcs_per_chunk, n_pc - q * pcs_per_chunk);
            deal(r, nt, pcs * cdiv(n_panels, kPackChunk));
            deal(r + nt, nt, n_ic * n_js);
        }
    }

#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        float* ap = ap_all + tid * round_up(mc_max * kc_max, 16);
        TaskRange* r = ranges;
        for (int64_t jc = 0; jc < N; jc += nc_max) {
            const int64_t nc = imin(nc_max, N - jc);
            const int64_t n_panels = cdiv(nc, kNR), pack_tasks = cdiv(n_panels, kPackChunk);
            for (int64_t p0 = 0; p0 < n_pc; p0 += pcs_per_chunk, r += 2 * nt) {
                const int64_t p1 = imin(n_pc, p0 + pcs_per_chunk);
                int64_t t;
                while (next_task(r, nt, tid, &t)) {  // pack the chunk: task = (K block, run of panels)
                    const int64_t p = p0 + t / pack_tasks, jt = t % pack_tasks;
                    const int64_t pc = p * kc_max, kc = imin(kc_max, K - pc);
                    float* bk = bp + (p - p0) * bchunk_stride;
                    const int64_t jp = jt * kPackChunk, j0 = jc + jp * kNR;
                    pack_b<kNR>(bk + jp * kc * kNR, g.B, g.ldb, g.trans_b, pc, kc, j0,
                                imin(jc + nc, j0 + kPackChunk * kNR) - j0);
                }
#pragma omp barrier
                while (next_task(r + nt, nt, tid, &t)) {  // task = (A block, share of the panels), all K blocks
                    const int64_t ib = t / n_js, js = t % n_js;
                    const int64_t ic = ib * mc_max, mc = imin(mc_max, M - ic);
                    const int64_t jp0 = n_panels * js / n_js, jp1 = n_panels * (js + 1) / n_js;
                    for (int64_t p = p0; p < p1; p++) {
                        const int64_t pc = p * kc_max, kc = imin(kc_max, K - pc);
                        const float cscale = p == 0 ? g.beta : 1.0f;
                        const float* bias = (p == 0 && g.bias) ? g.bias + jc : nullptr;
                        const float* bk = bp + (p - p0) * bchunk_stride;
                        pack_a<kMR>(ap, g.A, g.lda, g.trans_a, ic, mc, pc, kc);
                        for (int64_t jp = jp0; jp < jp1; jp++) {
                            const int64_t jr = jp * kNR, nr = imin(kNR, nc - jr);
                            const float* bpanel = bk + jp * kc * kNR;
                            const float* bias_j = bias ? bias + jr : nullptr;
                            for (int64_t ir = 0; ir < mc; ir += kMR) {
                                float* c = g.C + (ic + ir) * g.ldc + jc + jr;
                                const bool last = ir + kMR >= mc && jp + 1 < jp1;
                                micro_kernel(kc, ap + ir * kc, bpanel, c, g.ldc, (int)imin(kMR, mc - ir), (int)nr,
                                             cscale, bias_j, last ? bpanel + kc * kNR : nullptr);
                            }
                        }
                    }
                }
#pragma omp barrier
            }
        }
    }
    free(ranges);
    free(bp);
    free(ap_all);
}

void gemm(const GemmArgs& g) {
    if (g.M <= 0 || g.N <= 0) return;
    if (g.K <= 0) {  // empty sum: C = beta * C + bias
        for (int64_t i = 0; i < g.M; i++)
            for (int64_t j = 0; j < g.N; j++) {
                float* cp = g.C + i * g.ldc + j;
                *cp = (g.beta != 0.0f ? g.beta * *cp : 0.0f) + (g.bias ? g.bias[j] : 0.0f);
            }
        return;
    }
    if (g.M <= kSmallM)
        gemm_small(g);
    else
        gemm_packed(g);
}

}  // namespace

// Batches run one after another, each a whole GEMM over all threads (batched matmuls here are attention-sized or
// the per-batch weight gradients of a shared weight; each batch alone fills the threads).
void matmul_forward(const MatmulParams& p) {
    GemmArgs g;
    g.trans_a = p.trans_a;
    g.trans_b = p.trans_b;
    g.M = p.M;
    g.N = p.N;
    g.K = p.K;
    g.lda = p.lda;
    g.ldb = p.ldb;
    g.ldc = p.ldc;
    g.beta = p.beta;
    g.bias = p.bias;
    for (int64_t z = 0; z < p.batch; z++) {
        g.A = f32(p.A) + z * p.stride_a;
        g.B = f32(p.B) + z * p.stride_b;
        g.C = f32(p.C) + z * p.stride_c;
        gemm(g);
    }
}

// ---------------------------------------------------------------- bias_backward
// dbias[j] (+)= sum_i dout[i, j]. Each thread owns a contiguous share of the columns and walks it in blocks of up
// to kBiasCols, adding whole rows (long contiguous runs, which is what the memory system wants: 64-column strips
// with a row-stride jump ran at half of numpy's sum(axis=0)). Every column is summed the same way whatever the
// thread count: rows in chunks of 64 summed in order into a fresh partial, partials added in order into the total,
// which also keeps the fp32 error near 64 + N/64 roundings instead of N.
namespace {
constexpr int64_t kBiasCols = 2048, kBiasChunk = 64;

void bias_block(float* dbias, const float* dout, int64_t N, int64_t OC, int64_t w, bool accumulate, float* part,
                float* tot) {
    const int64_t wv = w / kW * kW;
    for (int64_t j = 0; j < w; j++) tot[j] = 0.0f;
    for (int64_t r0 = 0; r0 < N; r0 += kBiasChunk) {
        const int64_t r1 = imin(N, r0 + kBiasChunk);
        for (int64_t j = 0; j < w; j++) part[j] = 0.0f;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            const float* x0 = dout + r * OC;
            const float* x1 = x0 + OC;
            const float* x2 = x1 + OC;
            const float* x3 = x2 + OC;
            for (int64_t j = 0; j < wv; j += kW)
                vstore(part + j, (((vload(part + j) + vload(x0 + j)) + vload(x1 + j)) + vload(x2 + j)) + vload(x3 + j));
            for (int64_t j = wv; j < w; j++) part[j] = (((part[j] + x0[j]) + x1[j]) + x2[j]) + x3[j];
        }
        for (; r < r1; r++) {
            const float* x0 = dout + r * OC;
            for (int64_t j = 0; j < wv; j += kW) vstore(part + j, vload(part + j) + vload(x0 + j));
            for (int64_t j = wv; j < w; j++) part[j] += x0[j];
        }
        for (int64_t j = 0; j < wv; j += kW) vstore(tot + j, vload(tot + j) + vload(part + j));
        for (int64_t j = wv; j < w; j++) tot[j] += part[j];
    }
    for (int64_t j = 0; j < w; j++) dbias[j] = accumulate ? dbias[j] + tot[j] : tot[j];
}
}  // namespace

void bias_backward(const BiasBackwardParams& p) {
    float* dbias = p.dbias;
    const float* dout = f32(p.dout);
    const int64_t N = p.N, OC = p.OC;
    const bool accumulate = p.accumulate;
    int nt = num_threads();
    const int64_t units = cdiv(OC, 16);  // 16-float units: no cache line of dbias is shared between threads
    if (N * OC < 65536) nt = 1;
    if (units < nt) nt = (int)units;
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        const int64_t j0 = imin(OC, units * tid / nth * 16), j1 = imin(OC, units * (tid + 1) / nth * 16);
        float* buf = alloc_floats(2 * kBiasCols);
        if (!buf) abort();
        for (int64_t j = j0; j < j1; j += kBiasCols)
            bias_block(dbias + j, dout + j, N, OC, imin(kBiasCols, j1 - j), accumulate, buf, buf + kBiasCols);
        free(buf);
    }
}

}  // namespace GPTX_ISA_NS
}  // namespace cpu
}  // namespace gptx
