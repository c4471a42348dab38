// runtime_bind.cc — threads, CPU path and CUDA facts as gptx._core functions.
#include <pybind11/stl.h>

#include "gptx/runtime.h"
#include "gptx/version.h"
#include "convert.h"

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

    // The CUDA runtime services behind gptx.cuda (python/gptx/cuda.py wraps them). Streams travel as integers (the
    // cudaStream_t value; 0 = the legacy default stream).
    m.def("cuda_synchronize", [](int device) {
        py::gil_scoped_release nogil;
        cuda::synchronize(device);
    }, py::arg("device"));
    m.def("cuda_stream_create", [](int device) { return reinterpret_cast<uintptr_t>(cuda::stream_create(device)); },
          py::arg("device"));
    m.def("cuda_stream_destroy", [](int device, uintptr_t s) { cuda::stream_destroy(device, reinterpret_cast<void*>(s)); },
          py::arg("device"), py::arg("stream"));
    m.def("cuda_stream_synchronize", [](int device, uintptr_t s) {
        py::gil_scoped_release nogil;
        cuda::stream_synchronize(device, reinterpret_cast<void*>(s));
    }, py::arg("device"), py::arg("stream"));
    m.def("cuda_stream_wait_stream", [](int device, uintptr_t waiter, uintptr_t waited) {
        cuda::stream_wait_stream(device, reinterpret_cast<void*>(waiter), reinterpret_cast<void*>(waited));
    }, py::arg("device"), py::arg("waiter"), py::arg("waited"));
    m.def("cuda_set_device", [](int device) { cuda::set_device(device); }, py::arg("device"));
    m.def("cuda_current_stream", [](int device) { return reinterpret_cast<uintptr_t>(cuda::current_stream(device)); },
          py::arg("device"));
    m.def("cuda_set_stream", [](int device, uintptr_t s) { cuda::set_current_stream(device, reinterpret_cast<void*>(s)); },
          py::arg("device"), py::arg("stream"));
    m.def("cuda_memory_stats", [](int device) {
        const cuda::MemoryStats s = cuda::memory_stats(device);
        py::dict d;
        d["allocated"] = s.allocated;
        d["reserved"] = s.reserved;
        d["peak_allocated"] = s.peak_allocated;
        return d;
    }, py::arg("device"));
    m.def("cuda_empty_cache", &cuda::empty_cache, py::arg("device"));
    m.def("cuda_reset_peak", &cuda::reset_peak, py::arg("device"));
    m.def("cuda_device_properties", [](int device) {
        const cuda::DeviceProperties p = cuda::device_properties(device);
        py::dict d;
        d["name"] = std::string(p.name);
        d["capability"] = py::make_tuple(p.major, p.minor);
        d["multiprocessors"] = p.multiprocessors;
        d["total_memory"] = p.total_memory;
        return d;
    }, py::arg("device"));
}

}  // namespace python
}  // namespace gptx
