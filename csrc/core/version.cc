// version.cc — the library version (gptx/version.h).
#include "gptx/version.h"

namespace gptx {

const char* version() { return GPTX_VERSION_STRING; }

}  // namespace gptx
