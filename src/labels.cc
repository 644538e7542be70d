#include "labels.h"

#include <algorithm>

namespace uwsgi_prometheus {

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;   // overlong
    if (c == 0xED) hi = 0x9F;   // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;   // overlong
    if (c == 0xF4) hi = 0x8F;   // > U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xBF)) return 0;
  }
  return len;
}

void Append(TextBuffer* out, std::string_view s) {
  out->append(s.data(), s.data() + s.size());
}

}  // namespace

std::string SanitizeLabelValue(std::string_view value, size_t max_bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(std::min(value.size(), max_bytes));
  size_t i = 0;
  while (i < value.size()) {
    size_t len = Utf8SequenceLength(value, i);
    std::string_view piece = len ? value.substr(i, len) : std::string_view(kReplacement, 3);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += len ? len : 1;
  }
  return out;
}

bool IsValidLabelValue(std::string_view value) {
  size_t i = 0;
  while (i < value.size()) {
    const size_t len = Utf8SequenceLength(value, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

void AppendEscapedLabelValue(TextBuffer* out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\': Append(out, "\\\\"); break;
      case '"': Append(out, "\\\""); break;
      case '\n': Append(out, "\\n"); break;
      default: out->push_back(c);
    }
  }
}

void AppendEscapedHelp(TextBuffer* out, std::string_view help) {
  for (char c : help) {
    switch (c) {
      case '\\': Append(out, "\\\\"); break;
      case '\n': Append(out, "\\n"); break;
      default: out->push_back(c);
    }
  }
}

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.find(':') != std::string_view::npos) return false;
  return IsValidMetricName(name) && !(name.size() >= 2 && name[0] == '_' && name[1] == '_');
}

}  // namespace uwsgi_prometheus
