// gptx.h — the whole public C++ API of gptx.
#pragma once
#include "gptx/error.h"
#include "gptx/gpt_spec.h"
#include "gptx/model.h"
#include "gptx/ops.h"
#include "gptx/runtime.h"
#include "gptx/tensor.h"
#include "gptx/version.h"
