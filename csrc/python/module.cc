// module.cc — the gptx._core extension module: registers the bindings and maps gptx errors to Python ones.
#include "gptx/error.h"
#include "gptx/runtime.h"
#include "convert.h"

PYBIND11_MODULE(_core, m) {
    namespace py = pybind11;
    m.doc() = "gptx native core (private: use the gptx package)";
    // gptx::TypeError derives from gptx::Error (std::invalid_argument -> ValueError): map it first.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const gptx::TypeError& e) {
            PyErr_SetString(PyExc_TypeError, e.what());
        }
    });
    gptx::cpu_isa();  // pick the CPU path now, so a bad GPTX_FORCE_ISA fails the import with its message
    gptx::python::bind_runtime(m);
    gptx::python::bind_tensor(m);
    gptx::python::bind_ops(m);
    gptx::python::bind_model(m);
}
