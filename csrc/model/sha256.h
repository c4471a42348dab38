// sha256.h — SHA-256 of a file (FIPS 180-4), for checking a checkpoint's manifest in the C++ loader without a
// crypto library dependency (internal to csrc/model/).
#pragma once
#include <string>

namespace gptx {

// The lowercase hex digest of the file's bytes; throws gptx::Error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace gptx
