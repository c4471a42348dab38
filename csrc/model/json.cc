// json.cc — recursive-descent JSON parser (RFC 8259; \uXXXX escapes decoded to UTF-8), depth-limited.
#include "model/json.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "gptx/error.h"

namespace gptx {
namespace json {

const Value* Value::find(const std::string& key) const {
    if (kind != Kind::object) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &it->second;
}

namespace {

class Parser {
public:
    Parser(const std::string& s, const std::string& what) : s_(s), what_(what) {}

    Value document() {
        Value v = value(0);
        ws();
        if (i_ != s_.size()) fail("trailing characters after the JSON value");
        return v;
    }

private:
    const std::string& s_;
    const std::string& what_;
    size_t i_ = 0;

    [[noreturn]] void fail(const std::string& msg) const {
        throw Error(what_ + ": invalid JSON at byte " + std::to_string(i_) + ": " + msg);
    }
    void ws() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool eat(char c) {
        ws();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    void expect(char c) {
        if (!eat(c)) fail(std::string("expected '") + c + "'");
    }
    bool literal(const char* word) {
        size_t n = std::char_traits<char>::length(word);
        if (s_.compare(i_, n, word) == 0) {
            i_ += n;
            return true;
        }
        return false;
    }

    Value value(int depth) {
        if (depth > 64) fail("nested too deeply");
        ws();
        if (i_ >= s_.size()) fail("unexpected end of text");
        Value v;
        const char c = s_[i_];
        if (c == '{') {
            ++i_;
            v.kind = Value::Kind::object;
            if (eat('}')) return v;
            do {
                ws();
                std::string key = string();
                expect(':');
                v.obj[key] = value(depth + 1);
            } while (eat(','));
            expect('}');
        } else if (c == '[') {
            ++i_;
            v.kind = Value::Kind::array;
            if (eat(']')) return v;
            do v.arr.push_back(value(depth + 1));
            while (eat(','));
            expect(']');
        } else if (c == '"') {
            v.kind = Value::Kind::string;
            v.str = string();
        } else if (literal("true")) {
            v.kind = Value::Kind::boolean;
            v.b = true;
        } else if (literal("false")) {
            v.kind = Value::Kind::boolean;
        } else if (literal("null")) {
        } else if (literal("NaN")) {  // Python's json writes these three (a config check then refuses them)
            v.kind = Value::Kind::number;
            v.num = std::nan("");
        } else if (literal("Infinity")) {
            v.kind = Value::Kind::number;
            v.num = HUGE_VAL;
        } else if (literal("-Infinity")) {
            v.kind = Value::Kind::number;
            v.num = -HUGE_VAL;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            const char* begin = s_.c_str() + i_;
            char* end = nullptr;
            v.kind = Value::Kind::number;
            v.num = std::strtod(begin, &end);
            if (end == begin) fail("bad number");
            v.integer = std::all_of(begin, static_cast<const char*>(end),
                                    [](char d) { return d == '-' || (d >= '0' && d <= '9'); });
            i_ += static_cast<size_t>(end - begin);
        } else {
            fail(std::string("unexpected character '") + c + "'");
        }
        return v;
    }

    unsigned hex4() {
        if (i_ + 4 > s_.size()) fail("truncated \\u escape");
        unsigned u = 0;
        for (int k = 0; k < 4; ++k) {
            const char h = s_[i_++];
            u <<= 4;
            if (h >= '0' && h <= '9') u |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') u |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') u |= static_cast<unsigned>(h - 'A' + 10);
            else fail("bad \\u escape");
        }
        return u;
    }

    std::string string() {
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string");
        ++i_;
        std::string out;
        while (true) {
            if (i_ >= s_.size()) fail("unterminated string");
            const char c = s_[i_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) fail("unterminated string");
            const char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    unsigned u = hex4();
                    if (u >= 0xD800 && u < 0xDC00 && i_ + 6 <= s_.size() && s_[i_] == '\\' && s_[i_ + 1] == 'u') {
                        i_ += 2;
                        const unsigned lo = hex4();
                        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    if (u < 0x80) {
                        out += static_cast<char>(u);
                    } else if (u < 0x800) {
                        out += static_cast<char>(0xC0 | (u >> 6));
                        out += static_cast<char>(0x80 | (u & 0x3F));
                    } else if (u < 0x10000) {
                        out += static_cast<char>(0xE0 | (u >> 12));
                        out += static_cast<char>(0x80 | ((u >> 6) & 0x3F));
                        out += static_cast<char>(0x80 | (u & 0x3F));
                    } else {
                        out += static_cast<char>(0xF0 | (u >> 18));
                        out += static_cast<char>(0x80 | ((u >> 12) & 0x3F));
                        out += static_cast<char>(0x80 | ((u >> 6) & 0x3F));
                        out += static_cast<char>(0x80 | (u & 0x3F));
                    }
                    break;
                }
                default: fail(std::string("bad escape '\\") + e + "'");
            }
        }
    }
};

}  // namespace

Value parse(const std::string& text, const std::string& what) { return Parser(text, what).document(); }

}  // namespace json
}  // namespace gptx
