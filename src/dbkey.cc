#include "dbkey.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "go_float.h"
#include "labels.h"

namespace uwsgi_prometheus {

namespace {

// Label values of keys are capped higher than the plugin's own (apps may
// carry long values on purpose), but still capped.
constexpr size_t kMaxKeyLabelValueBytes = 1024;

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// A small JSON reader, enough for keys: punctuation and strings.
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  bool Expect(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }

  // A JSON string, unescaped to UTF-8. Rejects invalid escapes, control
  // characters and lone surrogates.
  bool String(std::string* out) {
    out->clear();
    if (!Expect('"')) return false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
      } else if (!Escape(out)) {
        return false;
      }
    }
    return false;
  }

 private:
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  // The escape after a backslash.
  bool Escape(std::string* out) {
    if (pos_ >= s_.size()) return false;
    const char e = s_[pos_++];
    switch (e) {
      case '"': out->push_back('"'); return true;
      case '\\': out->push_back('\\'); return true;
      case '/': out->push_back('/'); return true;
      case 'b': out->push_back('\b'); return true;
      case 'f': out->push_back('\f'); return true;
      case 'n': out->push_back('\n'); return true;
      case 'r': out->push_back('\r'); return true;
      case 't': out->push_back('\t'); return true;
      case 'u': return CodePoint(out);
      default: return false;
    }
  }

  // \uXXXX after the 'u', with a following low surrogate when it is a high one.
  bool CodePoint(std::string* out) {
    uint32_t cp;
    if (!Hex4(&cp)) return false;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      uint32_t lo;
      if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') return false;
      pos_ += 2;
      if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return false;
    }
    AppendUtf8(cp, out);
    return true;
  }

  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else return false;
    }
    *out = v;
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

constexpr const char kNotAKey[] = "key is not [\"metric\", \"sample\", {labels}, \"help\"]";

// {"name": "value", ...}, the opening brace already read.
bool ParseLabels(JsonReader* r, DbKey* key, std::string* error) {
  if (r->Expect('}')) return true;
  do {
    std::string name, value;
    if (!r->String(&name) || !r->Expect(':') || !r->String(&value)) {
      *error = "labels are not an object of strings";
      return false;
    }
    key->labels.emplace_back(std::move(name), std::move(value));
  } while (r->Expect(','));
  if (!r->Expect('}')) {
    *error = "unterminated labels";
    return false;
  }
  return true;
}

// The key's JSON shape, strings unescaped; nothing checked yet.
bool ParseKeyJson(std::string_view json, DbKey* key, std::string* error) {
  JsonReader r(json);
  key->labels.clear();
  if (!r.Expect('[') || !r.String(&key->metric) || !r.Expect(',') || !r.String(&key->sample) ||
      !r.Expect(',') || !r.Expect('{')) {
    *error = kNotAKey;
    return false;
  }
  if (!ParseLabels(&r, key, error)) return false;
  if (!r.Expect(',') || !r.String(&key->help) || !r.Expect(']') || !r.AtEnd()) {
    *error = kNotAKey;
    return false;
  }
  return true;
}

// The value as Go and prometheus_client print a bucket bound, for keys.
double ParseBound(const std::string& le, bool* ok) {
  if (le == "+Inf" || le == "Inf" || le == "inf") return INFINITY;
  if (le == "-Inf" || le == "-inf") return -INFINITY;
  char* end = nullptr;
  const double v = StrtodC(le.c_str(), &end);
  *ok = !le.empty() && end == le.c_str() + le.size() && !std::isnan(v);
  return v;
}

// metric, sample and labels joined with NULs: what makes two keys one series
// whatever their help text.
std::string SeriesText(const DbKey& key) {
  std::string series = key.metric;
  series.push_back('\0');
  series.append(key.sample).push_back('\0');
  for (const auto& [name, value] : key.labels) {
    series.append(name).push_back('\0');
    series.append(value).push_back('\0');
  }
  return series;
}

}  // namespace

bool ParseDbKey(std::string_view json, DbKey* key, std::string* error) {
  if (!ParseKeyJson(json, key, error)) return false;
  if (!IsValidMetricName(key->metric) || !IsValidMetricName(key->sample)) {
    *error = "invalid metric name";
    return false;
  }
  std::sort(key->labels.begin(), key->labels.end());
  for (size_t i = 0; i < key->labels.size(); ++i) {
    auto& [name, value] = key->labels[i];
    if (!IsValidLabelName(name) || (i > 0 && name == key->labels[i - 1].first)) {
      *error = "invalid or repeated label name";
      return false;
    }
    if (!IsValidLabelValue(value) || value.size() > kMaxKeyLabelValueBytes) {
      value = SanitizeLabelValue(value, kMaxKeyLabelValueBytes);
    }
  }
  // Help is not capped: room for every byte to become U+FFFD (3 bytes).
  if (!IsValidLabelValue(key->help)) key->help = SanitizeLabelValue(key->help, key->help.size() * 3);
  return true;
}

int32_t KeyTable::Reject(std::string_view stored, const std::string& error) {
  bad_.emplace(stored, error);
  return kInvalid;
}

int32_t KeyTable::Intern(std::string_view json, std::string* error) {
  auto it = ids_.find(json);
  if (it != ids_.end()) return it->second;
  auto bad = bad_.find(json);
  if (bad != bad_.end()) {
    *error = bad->second;
    return kInvalid;
  }
  texts_.push_back(std::make_unique<std::string>(json));
  std::string_view stored(*texts_.back());
  Entry e;
  if (!ParseDbKey(json, &e.key, error)) return Reject(stored, *error);
  for (const auto& [name, value] : e.key.labels) {
    if (name != "le") {
      e.group.append(name).push_back('\0');
      e.group.append(value).push_back('\0');
      continue;
    }
    bool ok = true;
    e.le = ParseBound(value, &ok);
    e.has_le = ok;
    if (!ok) {
      *error = "bucket bound '" + value + "' is not a number";
      return Reject(stored, *error);
    }
  }
  // Keys that differ only in help text (an app redeployed with new help,
  // older processes' files still there) are one series, as prometheus_client
  // merges by sample name and labels.
  auto series = series_.try_emplace(SeriesText(e.key), static_cast<int32_t>(series_.size()));
  e.series = series.first->second;
  const auto id = static_cast<int32_t>(keys_.size());
  keys_.push_back(std::move(e));
  ids_.emplace(stored, id);
  return id;
}

void KeyTable::Clear() {
  series_.clear();
  ids_.clear();
  bad_.clear();
  keys_.clear();
  texts_.clear();
}

}  // namespace uwsgi_prometheus
