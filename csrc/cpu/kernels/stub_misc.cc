// stub_misc.cc — placeholder until the elementwise/normalisation/loss/optimizer kernels land (delete this file then).
#include <cstdlib>
#include "../kernels.h"
namespace gptx { namespace cpu { namespace GPTX_ISA_NS {
void softmax_forward(float*, const float*, int64_t, int64_t, float, int64_t) { abort(); }
void softmax_backward(float*, const float*, const float*, int64_t, int64_t, float) { abort(); }
void layernorm_forward(float*, float*, float*, const float*, const float*, const float*, int64_t, int64_t, float) { abort(); }
void layernorm_backward(float*, float*, float*, const float*, const float*, const float*, const float*, const float*, int64_t, int64_t, bool) { abort(); }
void gelu_forward(float*, const float*, int64_t) { abort(); }
void gelu_backward(float*, const float*, const float*, int64_t, bool) { abort(); }
void embedding_forward(float*, const int32_t*, const float*, const float*, int64_t, int64_t, int64_t, int64_t) { abort(); }
void embedding_backward(float*, float*, const float*, const int32_t*, int64_t, int64_t, int64_t, int64_t) { abort(); }
void add_forward(float*, const float*, const float*, int64_t) { abort(); }
void cross_entropy_forward(float*, float*, const float*, const int32_t*, int64_t, int64_t, int64_t, int32_t) { abort(); }
void cross_entropy_backward(float*, const float*, const float*, const int32_t*, const float*, int64_t, int64_t, int64_t, int32_t, bool) { abort(); }
void adamw_step(float*, const float*, float*, float*, int64_t, const AdamWParams&) { abort(); }
double sum_squares(const float*, int64_t) { abort(); }
}}}
