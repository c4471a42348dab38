// stub_attention.cc — placeholder until attention.cc lands (delete this file then).
#include <cstdlib>
#include "../kernels.h"
namespace gptx { namespace cpu { namespace GPTX_ISA_NS {
void attention_forward(const AttentionParams&) { abort(); }
void attention_backward(const AttentionBackwardParams&) { abort(); }
}}}
