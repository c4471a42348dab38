// error.h — the exceptions the gptx API throws. Messages name the op and the offending argument.
#pragma once
#include <stdexcept>
#include <string>

namespace gptx {

// A bad argument value: wrong shape, rank, size, aliasing, out-of-range index. (Python: ValueError.)
class Error : public std::invalid_argument {
public:
    explicit Error(const std::string& what) : std::invalid_argument(what) {}
};

// A bad argument kind: wrong dtype, device or object type. (Python: TypeError.)
class TypeError : public Error {
public:
    explicit TypeError(const std::string& what) : Error(what) {}
};

// A failure of the CUDA runtime or a kernel launch (out of memory, no device, an asynchronous kernel fault).
// (Python: RuntimeError.)
class CudaError : public std::runtime_error {
public:
    explicit CudaError(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace gptx
