// checkpoint_dir.h — which folder a gptx checkpoint or run directory stands for, and its manifest check (internal to
// csrc/model/). The rules are python/gptx/checkpoint.py's (resolve_checkpoint, verify_checkpoint), so the C++ loader
// and the Python one take the same step folder from the same run directory.
#pragma once
#include <string>

namespace gptx {

// A gptx checkpoint's manifest.json lists every file with its size and sha256: all present, of that size and digest,
// none outside the folder, model.safetensors, config.json and state.json among them. Throws gptx::Error naming the
// file; a folder without manifest.json (a Hugging Face export) passes.
void verify_manifest(const std::string& dir);

// The folder to read: `dir` itself when it holds manifest.json or config.json; in a run directory, the step folder
// latest.json names, or a newer step folder whose manifest verifies (a save killed after renaming its folder into
// place but before moving latest.json); without latest.json, the newest step folder that verifies (killed before
// the first latest.json existed). `dir` unchanged when none applies (the caller reports what is missing).
std::string resolve_checkpoint_dir(const std::string& dir);

}  // namespace gptx
