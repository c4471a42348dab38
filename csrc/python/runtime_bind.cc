// runtime_bind.cc — threads, CPU path and CUDA facts as gptx._core functions.
#include <pybind11/stl.h>

#include "gptx/runtime.h"
#include "gptx/version.h"
#include "python/convert.h"

namespace gptx {
namespace python {

void bind_runtime(py::module_& m) {
    m.def("version", &version);
    m.def("get_num_threads", &get_num_threads, "Threads the CPU kernels use.");
    m.def("set_num_threads", &set_num_threads, py::arg("n"), "Set the threads the CPU kernels use (n >= 1).");
    m.def("cpu_isa", &cpu_isa, "The CPU kernel path in use: generic, avx2, avx512 or reference.");
    m.def("available_cpu_isas", &available_cpu_isas, "CPU kernel paths this machine can run.");
    m.def("set_cpu_isa", &set_cpu_isa, py::arg("name"), "Switch the CPU kernel path for the whole process.");
    m.def("cuda_built", &cuda_built, "Whether this build contains the CUDA backend.");
    m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible (0 without a driver or GPU).");
}

}  // namespace python
}  // namespace gptx
