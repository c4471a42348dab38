// dtype_convert.h — one element of any gptx dtype to and from double, with the rounding every CPU conversion uses
// (float32 -> bfloat16/float16 round to nearest even, NaN kept; ints like a C cast). Tensor::to/fill/copy_from and
// the CUDA fill (which must write exactly the CPU's bits) share it.
#pragma once
#include <cstdint>

#include "gptx/tensor.h"

namespace gptx {
namespace detail {

double load_element(const void* p, DType dt, int64_t i);
void store_element(void* p, DType dt, int64_t i, double x);

}  // namespace detail
}  // namespace gptx
