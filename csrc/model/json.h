// json.h — a small strict JSON reader for config.json and safetensors headers (internal to the loader).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gptx {
namespace json {

struct Value {
    enum class Kind { null, boolean, number, string, array, object } kind = Kind::null;
    bool b = false;
    double num = 0;
    bool integer = false;  // a number written without '.' or exponent (what Python's json reads as an int)
    std::string str;
    std::vector<Value> arr;
    std::map<std::string, Value> obj;

    bool is_null() const { return kind == Kind::null; }
    // Member lookup on an object: nullptr if absent (or if this is not an object).
    const Value* find(const std::string& key) const;
};

// Parses text; throws gptx::Error("<what>: ...") with the byte offset of the first problem.
Value parse(const std::string& text, const std::string& what);

}  // namespace json
}  // namespace gptx
