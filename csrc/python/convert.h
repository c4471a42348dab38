// convert.h — Python objects to gptx::Tensor (zero-copy for numpy arrays and buffers) with named-argument errors.
#pragma once
#include <pybind11/pybind11.h>

#include "gptx/tensor.h"

namespace gptx {
namespace python {

namespace py = pybind11;

// A gptx.Tensor, or a C-contiguous numpy array / buffer of a supported dtype (shared, not copied). None gives an
// undefined Tensor when allow_none. `writable` rejects read-only buffers (outputs). Errors name op and arg.
Tensor as_tensor(py::handle obj, const char* op, const char* arg, bool allow_none = false, bool writable = false);
// Same, for an output argument (None -> undefined, read-only -> error).
inline Tensor as_output(py::handle obj, const char* op, const char* arg) { return as_tensor(obj, op, arg, true, true); }

// Registers gptx.Tensor (buffer protocol, numpy and DLPack interop) and gptx.from_dlpack / from_numpy.
void bind_tensor(py::module_& m);
void bind_ops(py::module_& m);
void bind_runtime(py::module_& m);
void bind_model(py::module_& m);  // model_bind.cc: gptx/model.h

}  // namespace python
}  // namespace gptx
