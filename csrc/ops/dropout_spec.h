// dropout_spec.h — turns a validated gptx::Dropout into the backend's mask parameters (shared by the ops that drop).
#pragma once
#include "backend/params.h"
#include "gptx/ops.h"
#include "ops/check.h"

namespace gptx {
namespace detail {

// Checks p (in [0, 1), else an error naming 'dropout') and derives the key, threshold and scale; p == 0 gives the
// empty mask (threshold 0: kernels take their dropout-free path).
backend::DropoutMask dropout_mask(const Check& c, const Dropout& d);

}  // namespace detail
}  // namespace gptx
