// checkpoint_dir.cc — run directory -> step folder (latest.json, else the newest verified step), manifest checks.
#include "model/checkpoint_dir.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>
#include <vector>

#include "gptx/error.h"
#include "model/json.h"
#include "model/sha256.h"

namespace gptx {

namespace {

namespace fs = std::filesystem;

bool file_exists(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return static_cast<bool>(f);
}

uint64_t file_size(const std::string& path) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    return f ? static_cast<uint64_t>(f.tellg()) : 0;
}

std::string read_text(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": not found or not readable");
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

const char* const kPrefix = "step-";

// The step number of a "step-<digits>" name as its digits without leading zeros ("" for step 0), so any length
// compares as Python's int() does: longer is larger, then by text. False for other names.
bool step_of(const std::string& name, std::string* step) {
    const std::string prefix = kPrefix;
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
    const std::string digits = name.substr(prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return false;
    *step = digits.substr(std::min(digits.find_first_not_of('0'), digits.size()));
    return true;
}

bool step_less(const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
}

// Step folders of a run directory, newest first.
std::vector<std::pair<std::string, std::string>> step_folders(const std::string& dir) {
    std::vector<std::pair<std::string, std::string>> found;  // (step, folder name)
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        std::error_code type_ec;
        std::string step;
        const std::string name = it->path().filename().string();
        if (it->is_directory(type_ec) && step_of(name, &step)) found.emplace_back(step, name);
    }
    std::sort(found.begin(), found.end(), [](const auto& x, const auto& y) { return step_less(y.first, x.first); });
    return found;
}

// The newest step folder with a step above `after` (nullptr: any) whose manifest verifies; "" when none does.
std::string newest_verified(const std::string& dir, const std::string* after) {
    for (const auto& [step, name] : step_folders(dir)) {
        if (after && !step_less(*after, step)) break;
        const std::string folder = dir + "/" + name;
        if (!file_exists(folder + "/manifest.json")) continue;
        try {
            verify_manifest(folder);
        } catch (const Error&) {
            continue;  // incomplete or damaged: an older one may still be whole
        }
        return folder;
    }
    return "";
}

}  // namespace

void verify_manifest(const std::string& dir) {
    const std::string path = dir + "/manifest.json";
    if (!file_exists(path)) return;
    const json::Value m = json::parse(read_text(path), path);
    const json::Value* format = m.find("format");
    const json::Value* version = m.find("version");
    const json::Value* files = m.find("files");
    if (!format || format->kind != json::Value::Kind::string || format->str != "gptx-checkpoint" || !files ||
        files->kind != json::Value::Kind::object)
        throw Error(path + ": not a gptx-checkpoint manifest");
    if (!version || version->kind != json::Value::Kind::number || version->num != 1)
        throw Error(path + ": manifest version is not 1 (this gptx reads version 1)");
    for (const char* required : {"model.safetensors", "config.json", "state.json"})
        if (!files->find(required)) throw Error(path + ": the manifest does not list " + required);
    for (const auto& kv : files->obj) {
        const std::string& rel = kv.first;
        const bool escapes = rel.empty() || rel[0] == '/' || rel == ".." || rel.rfind("../", 0) == 0 ||
                             rel.find("/../") != std::string::npos ||
                             (rel.size() >= 3 && rel.compare(rel.size() - 3, 3, "/..") == 0);
        const json::Value* bytes = kv.second.find("bytes");
        const json::Value* sha = kv.second.find("sha256");
        if (escapes || !bytes || bytes->kind != json::Value::Kind::number || !sha ||
            sha->kind != json::Value::Kind::string)
            throw Error(path + ": bad entry '" + rel + "'");
        const std::string file = dir + "/" + rel;
        if (!file_exists(file)) throw Error(file + ": missing (the manifest lists it)");
        const uint64_t size = file_size(file);
        if (static_cast<double>(size) != bytes->num)
            throw Error(file + ": has " + std::to_string(size) + " bytes, the manifest says " +
                        std::to_string(static_cast<uint64_t>(bytes->num)) + " (truncated or overwritten)");
        if (sha256_file(file) != sha->str) throw Error(file + ": corrupt: its sha256 does not match the manifest");
    }
}

std::string resolve_checkpoint_dir(const std::string& dir) {
    if (file_exists(dir + "/manifest.json") || file_exists(dir + "/config.json")) return dir;
    const std::string pointer = dir + "/latest.json";
    if (file_exists(pointer)) {
        const json::Value latest = json::parse(read_text(pointer), pointer);
        const json::Value* name = latest.find("checkpoint");
        if (!name || name->kind != json::Value::Kind::string || name->str.empty() ||
            name->str.find_first_of("/\\") != std::string::npos || name->str == "." || name->str == "..")
            throw Error(pointer + ": does not name a checkpoint directory");
        const std::string target = dir + "/" + name->str;
        if (!file_exists(target + "/manifest.json"))
            throw Error(pointer + ": points to " + target + ", which has no manifest.json (missing or deleted)");
        std::string step;
        const bool numbered = step_of(name->str, &step);
        // An unnumbered target (not a name gptx writes) counts as step -1, as in Python: any verified step is newer.
        const std::string newer = newest_verified(dir, numbered ? &step : nullptr);
        return newer.empty() ? target : newer;
    }
    const std::string newest = newest_verified(dir, nullptr);
    return newest.empty() ? dir : newest;
}

}  // namespace gptx
