// version.h — the library version (kept equal to pyproject.toml and CMakeLists.txt).
#pragma once

#define GPTX_VERSION_MAJOR 0
#define GPTX_VERSION_MINOR 1
#define GPTX_VERSION_PATCH 0

namespace gptx {
// "MAJOR.MINOR.PATCH" of the library actually loaded (may differ from the header a program was compiled with).
const char* version();
}  // namespace gptx
