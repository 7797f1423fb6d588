// JSON Schema equality of JSON texts as byte strings: the native twin of `guided.ir.canonical_json`.
//
// `canonical_value(text)` is equal for two texts exactly where `canonical_json` (Python's
// `json.loads` of the bytes, numbers as `Decimal`) calls their values equal: numbers by
// mathematical value (`1`, `1.0`, `1e0`; `-0` and `0`), strings by decoded code points, objects by
// their members in any order (a repeated key keeps its last value, as a dict does), arrays item by
// item, `NaN`/`Infinity`/`-Infinity` by name; a text `json.loads` refuses compares as its bytes.
// The decoding follows `json.loads` of bytes: the encoding detected from a BOM or zero bytes
// (UTF-8 otherwise), decoded with "surrogatepass"; `\uXXXX` escapes of a surrogate pair join.
//
// The encoding is self-delimiting and tagged, so equal encodings mean equal values:
//   z null, t / f booleans, n<sign><digits>e<exponent>; a number (digits without leading or trailing
//   zeros, value 0.<digits> x 10^exponent, the exponent in decimal however long; zero is "n0"), s<length>:<code points as generalized
//   UTF-8> a string, a<items>] an array, o<key value...>} an object (members sorted by key),
//   c<name>; a constant, b<bytes> a text that is not JSON (top level only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace guided_native {

namespace canonical_detail {

// Decode `text` as `json.loads(bytes)` does; false where Python raises UnicodeDecodeError.
inline bool decode(const std::string& text, std::vector<uint32_t>& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  auto starts = [&](std::initializer_list<unsigned char> p) {
    if (n < p.size()) return false;
    size_t i = 0;
    for (unsigned char c : p)
      if (s[i++] != c) return false;
    return true;
  };
  enum { kUtf8, kUtf16Le, kUtf16Be, kUtf32Le, kUtf32Be } enc = kUtf8;
  size_t at = 0;
  // `json.detect_encoding`, then the codec's own BOM handling ("utf-16"/"utf-32" read and drop it).
  if (starts({0xFF, 0xFE, 0, 0})) {
    enc = kUtf32Le, at = 4;
  } else if (starts({0, 0, 0xFE, 0xFF})) {
    enc = kUtf32Be, at = 4;
  } else if (starts({0xFF, 0xFE})) {
    enc = kUtf16Le, at = 2;
  } else if (starts({0xFE, 0xFF})) {
    enc = kUtf16Be, at = 2;
  } else if (starts({0xEF, 0xBB, 0xBF})) {
    at = 3;  // utf-8-sig
  } else if (n >= 4) {
    if (!s[0]) enc = s[1] ? kUtf16Be : kUtf32Be;
    else if (!s[1]) enc = (s[2] || s[3]) ? kUtf16Le : kUtf32Le;
  } else if (n == 2) {
    if (!s[0]) enc = kUtf16Be;
    else if (!s[1]) enc = kUtf16Le;
  }
  out.clear();
  if (enc == kUtf32Le || enc == kUtf32Be) {
    if ((n - at) % 4) return false;
    for (size_t i = at; i < n; i += 4) {
      const uint32_t c = enc == kUtf32Le ? (s[i] | s[i + 1] << 8 | s[i + 2] << 16 | uint32_t{s[i + 3]} << 24)
                                         : (uint32_t{s[i]} << 24 | s[i + 1] << 16 | s[i + 2] << 8 | s[i + 3]);
      if (c > 0x10FFFF) return false;
      out.push_back(c);  // surrogates pass
    }
    return true;
  }
  if (enc == kUtf16Le || enc == kUtf16Be) {
    if ((n - at) % 2) return false;
    for (size_t i = at; i < n; i += 2) {
      uint32_t c = enc == kUtf16Le ? (s[i] | s[i + 1] << 8) : (s[i] << 8 | s[i + 1]);
      if (c >= 0xD800 && c < 0xDC00 && i + 3 < n) {
        const uint32_t d = enc == kUtf16Le ? (s[i + 2] | s[i + 3] << 8) : (s[i + 2] << 8 | s[i + 3]);
        if (d >= 0xDC00 && d < 0xE000) {
          c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
          i += 2;
        }
      }
      out.push_back(c);  // a lone surrogate passes
    }
    return true;
  }
  // UTF-8, strict but for surrogates (ED A0..BF xx), which "surrogatepass" lets through.
  for (size_t i = at; i < n;) {
    const unsigned char b = s[i];
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    }
    int len;
    uint32_t c, lo = 0x80, hi = 0xBF;  // the bounds of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2, c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3, c = b & 0x0F;
      if (b == 0xE0) lo = 0xA0;
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4, c = b & 0x07;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + static_cast<size_t>(len) > n) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char x = s[i + k];
      if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) return false;
      c = c << 6 | (x & 0x3F);
    }
    out.push_back(c);
    i += static_cast<size_t>(len);
  }
  return true;
}

inline void put_utf8(std::string& out, uint32_t c) {  // generalized: surrogates too
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | c >> 6));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | c >> 12));
    out.push_back(static_cast<char>(0x80 | (c >> 6 & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | c >> 18));
    out.push_back(static_cast<char>(0x80 | (c >> 12 & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c >> 6 & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// A recursive-descent reader of the decoded text, as CPython's `_json` scanner reads it.
class Reader {
 public:
  // Deeper than this, Python's scanner would hit the interpreter's recursion limit; the value is
  // then compared as bytes (Python: RecursionError, caught by `canonical_json` the same way).
  static constexpr int kMaxDepth = 900;

  explicit Reader(const std::vector<uint32_t>& t) : t_(t) {}

  // The whole text as one value (whitespace around it); false where `json.loads` refuses it.
  bool document(std::string& out) {
    skip_ws();
    if (!value(out, 0)) return false;
    skip_ws();
    return i_ == t_.size();
  }

 private:
  uint32_t at(size_t k) const { return k < t_.size() ? t_[k] : 0xFFFFFFFFu; }
  void skip_ws() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\n' || t_[i_] == '\r')) ++i_;
  }
  bool word(const char* w) {
    size_t k = 0;
    for (; w[k]; ++k)
      if (at(i_ + k) != static_cast<unsigned char>(w[k])) return false;
    i_ += k;
    return true;
  }
  static bool digit(uint32_t c) { return c >= '0' && c <= '9'; }

  bool value(std::string& out, int depth) {
    if (depth > kMaxDepth) return false;
    const uint32_t c = at(i_);
    switch (c) {
      case '"': {
        ++i_;
        std::string s;
        if (!string(s)) return false;
        out += 's' + std::to_string(s.size()) + ':' + s;
        return true;
      }
      case '{': return object(out, depth);
      case '[': return array(out, depth);
      case 'n':
        if (word("null")) return out += 'z', true;
        break;
      case 't':
        if (word("true")) return out += 't', true;
        break;
      case 'f':
        if (word("false")) return out += 'f', true;
        break;
      case 'N':
        if (word("NaN")) return out += "cNaN;", true;
        break;
      case 'I':
        if (word("Infinity")) return out += "cInfinity;", true;
        break;
      case '-':
        if (word("-Infinity")) return out += "c-Infinity;", true;
        break;
      default:
        break;
    }
    return number(out);
  }

  // `_match_number`: -?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)? read greedily, each optional part only
  // where complete; the value is Decimal's (exact).
  bool number(std::string& out) {
    const size_t begin = i_;
    bool negative = false;
    if (at(i_) == '-') negative = true, ++i_;
    if (at(i_) == '0') {
      ++i_;
    } else if (at(i_) >= '1' && at(i_) <= '9') {
      while (digit(at(i_))) ++i_;
    } else {
      i_ = begin;
      return false;
    }
    const size_t int_end = i_;
    size_t frac_begin = i_, frac_end = i_;
    if (at(i_) == '.' && digit(at(i_ + 1))) {
      frac_begin = ++i_;
      while (digit(at(i_))) ++i_;
      frac_end = i_;
    }
    // The exponent's digits (any number of them: JSON bounds none).
    bool minus = false;
    size_t exp_begin = i_, exp_end = i_;
    if (at(i_) == 'e' || at(i_) == 'E') {
      size_t k = i_ + 1;
      if (at(k) == '+' || at(k) == '-') minus = at(k) == '-', ++k;
      if (digit(at(k))) {
        exp_begin = k;
        while (digit(at(k))) ++k;
        exp_end = i_ = k;
      }
    }
    // Significant digits (int part then fraction), their point after the int part.
    std::string digits;
    for (size_t k = negative ? begin + 1 : begin; k < int_end; ++k) digits.push_back(static_cast<char>(t_[k]));
    for (size_t k = frac_begin; k < frac_end; ++k) digits.push_back(static_cast<char>(t_[k]));
    const size_t first = digits.find_first_not_of('0');
    if (first == std::string::npos) {
      out += "n0";
      return true;
    }
    const size_t last = digits.find_last_not_of('0');
    // value = 0.<digits from the first non-zero> x 10^(exponent + shift)
    const int64_t shift = static_cast<int64_t>(int_end - (negative ? begin + 1 : begin)) - static_cast<int64_t>(first);
    std::string magnitude;
    for (size_t k = exp_begin; k < exp_end; ++k) magnitude.push_back(static_cast<char>(t_[k]));
    out += negative ? "n-" : "n+";
    out.append(digits, first, last - first + 1);
    out += 'e' + add_exponent(magnitude, minus, shift) + ';';
    return true;
  }

  // The decimal string of (-1 if `minus`)·`magnitude` + `shift` (`magnitude` decimal digits, maybe
  // none or with leading zeros; `shift` is bounded by the text's length).  Decimal refuses an
  // exponent past about 10^18 (`canonical_json` then raises decimal.InvalidOperation): here every
  // exponent compares by value.
  static std::string add_exponent(const std::string& magnitude, bool minus, int64_t shift) {
    const size_t nz = magnitude.find_first_not_of('0');
    const std::string m = nz == std::string::npos ? std::string() : magnitude.substr(nz);
    if (m.size() <= 17) {
      int64_t e = 0;
      for (char ch : m) e = e * 10 + (ch - '0');
      return std::to_string((minus ? -e : e) + shift);
    }
    // |exponent| >= 10^17 > |shift|: the sign is the exponent's; add shift's part to the magnitude.
    int64_t carry = minus ? -shift : shift;  // added to the magnitude (never makes it negative)
    std::string r = m;
    for (size_t k = r.size(); k-- > 0 && carry != 0;) {
      const int64_t d = (r[k] - '0') + carry;
      carry = d >= 0 ? d / 10 : -((9 - d) / 10);  // floor(d / 10)
      r[k] = static_cast<char>('0' + (d - carry * 10));
    }
    while (carry > 0) {
      r.insert(r.begin(), static_cast<char>('0' + carry % 10));
      carry /= 10;
    }
    const size_t lead = r.find_first_not_of('0');
    return (minus ? "-" : "") + r.substr(lead);
  }

  // After the opening quote: the decoded string as generalized UTF-8.
  bool string(std::string& s) {
    for (;;) {
      const uint32_t c = at(i_);
      if (c == 0xFFFFFFFFu || c < 0x20) return false;  // unterminated, or a control character (strict)
      ++i_;
      if (c == '"') return true;
      if (c != '\\') {
        put_utf8(s, c);
        continue;
      }
      const uint32_t e = at(i_++);
      switch (e) {
        case '"': case '\\': case '/': put_utf8(s, e); break;
        case 'b': put_utf8(s, '\b'); break;
        case 'f': put_utf8(s, '\f'); break;
        case 'n': put_utf8(s, '\n'); break;
        case 'r': put_utf8(s, '\r'); break;
        case 't': put_utf8(s, '\t'); break;
        case 'u': {
          uint32_t u;
          if (!hex4(i_, u)) return false;
          i_ += 4;
          if (u >= 0xD800 && u < 0xDC00 && at(i_) == '\\' && at(i_ + 1) == 'u') {
            uint32_t v;
            if (!hex4(i_ + 2, v)) return false;  // (an invalid escape there is an error either way)
            if (v >= 0xDC00 && v < 0xE000) {
              u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
              i_ += 6;
            }
          }
          put_utf8(s, u);
          break;
        }
        default: return false;
      }
    }
  }

  bool hex4(size_t k, uint32_t& u) const {
    u = 0;
    for (size_t j = 0; j < 4; ++j) {
      const uint32_t c = at(k + j);
      uint32_t d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return false;
      u = u << 4 | d;
    }
    return true;
  }

  bool array(std::string& out, int depth) {
    ++i_;
    out += 'a';
    skip_ws();
    if (at(i_) == ']') return ++i_, out += ']', true;
    for (;;) {
      if (!value(out, depth + 1)) return false;
      skip_ws();
      if (at(i_) == ']') return ++i_, out += ']', true;
      if (at(i_) != ',') return false;
      ++i_;
      skip_ws();
    }
  }

  bool object(std::string& out, int depth) {
    ++i_;
    std::vector<std::pair<std::string, std::string>> members;  // (key, value) in text order
    skip_ws();
    if (at(i_) != '}') {
      for (;;) {
        if (at(i_) != '"') return false;
        ++i_;
        std::string key, v;
        if (!string(key)) return false;
        skip_ws();
        if (at(i_) != ':') return false;
        ++i_;
        skip_ws();
        if (!value(v, depth + 1)) return false;
        members.emplace_back(std::move(key), std::move(v));
        skip_ws();
        if (at(i_) == '}') break;
        if (at(i_) != ',') return false;
        ++i_;
        skip_ws();
      }
    }
    ++i_;
    // A dict: a repeated key keeps its last value (stable sort, then the last of each run).
    std::stable_sort(members.begin(), members.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    out += 'o';
    for (size_t k = 0; k < members.size(); ++k) {
      if (k + 1 < members.size() && members[k + 1].first == members[k].first) continue;
      out += 's' + std::to_string(members[k].first.size()) + ':' + members[k].first;
      out += members[k].second;
    }
    out += '}';
    return true;
  }

  const std::vector<uint32_t>& t_;
  size_t i_ = 0;
};

}  // namespace canonical_detail

// The canonical encoding of JSON text `text` (see the top of this file).
inline std::string canonical_value(const std::string& text) {
  std::vector<uint32_t> code_points;
  if (canonical_detail::decode(text, code_points)) {
    canonical_detail::Reader reader(code_points);
    std::string out;
    if (reader.document(out)) return out;
  }
  return 'b' + text;
}

}  // namespace guided_native
