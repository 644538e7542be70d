#include "negotiate.h"

#include <cstddef>

namespace uwsgi_prometheus {
namespace {

constexpr std::string_view kTextType = "text/plain; version=0.0.4; charset=utf-8";
constexpr std::string_view kProtobufType =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
    "encoding=delimited";

// Weights are thousandths (RFC 9110: at most three decimals), so that
// comparisons are exact.
constexpr int kWeightMax = 1000;
constexpr int kWeightInvalid = -1;

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view Unquote(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  return s;
}

// Splits `list` at `sep` outside quoted strings; returns the next piece and
// advances `list` past it.
std::string_view NextPart(std::string_view* list, char sep) {
  bool quoted = false;
  for (size_t i = 0; i < list->size(); ++i) {
    const char c = (*list)[i];
    if (c == '"') quoted = !quoted;
    if (c == '\\' && quoted) ++i;
    if (c == sep && !quoted) {
      std::string_view part = list->substr(0, i);
      list->remove_prefix(i + 1);
      return Trim(part);
    }
  }
  std::string_view part = *list;
  *list = {};
  return Trim(part);
}

// "0", "0.5", "1.000"... -> 0..1000; kWeightInvalid for anything else.
int ParseWeight(std::string_view q) {
  if (q.empty() || (q[0] != '0' && q[0] != '1')) return kWeightInvalid;
  int value = (q[0] - '0') * kWeightMax;
  if (q.size() == 1) return value;
  if (q[1] != '.' || q.size() > 5) return kWeightInvalid;
  int scale = 100;
  for (size_t i = 2; i < q.size(); ++i, scale /= 10) {
    if (q[i] < '0' || q[i] > '9') return kWeightInvalid;
    value += (q[i] - '0') * scale;
  }
  return value > kWeightMax ? kWeightInvalid : value;
}

// One list element: "value;name=v;q=0.5".
struct Element {
  std::string_view value;
  std::string_view params;  // everything after the first ';'
  int weight = kWeightMax;
};

// Reads the params of an element, calling fn(name, value) for each but q.
template <typename Fn>
int ForEachParam(std::string_view params, Fn fn) {
  int weight = kWeightMax;
  while (!params.empty()) {
    std::string_view param = NextPart(&params, ';');
    const size_t eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = Trim(param.substr(0, eq));
    const std::string_view value = Unquote(Trim(param.substr(eq + 1)));
    if (IEquals(name, "q")) {
      weight = ParseWeight(value);
    } else {
      fn(name, value);
    }
  }
  return weight;
}

Element ParseElement(std::string_view text) {
  Element e;
  e.value = NextPart(&text, ';');
  e.params = text;
  e.weight = ForEachParam(text, [](std::string_view, std::string_view) {});
  return e;
}

std::string_view ParamOf(std::string_view params, std::string_view wanted) {
  std::string_view found;
  ForEachParam(params, [&](std::string_view name, std::string_view value) {
    if (IEquals(name, wanted)) found = value;
  });
  return found;
}

// Which format a media range names, if any this endpoint serves.
bool NamesFormat(const Element& e, bool protobuf_offered, ExpositionFormat* format) {
  if (IEquals(e.value, "text/plain")) {
    const std::string_view version = ParamOf(e.params, "version");
    if (!version.empty() && version != "0.0.4") return false;
    *format = ExpositionFormat::kText;
    return true;
  }
  if (protobuf_offered && IEquals(e.value, "application/vnd.google.protobuf") &&
      ParamOf(e.params, "proto") == "io.prometheus.client.MetricFamily" &&
      ParamOf(e.params, "encoding") == "delimited") {
    *format = ExpositionFormat::kProtobuf;
    return true;
  }
  return false;
}

}  // namespace

std::string_view ContentTypeOf(ExpositionFormat format) {
  return format == ExpositionFormat::kProtobuf ? kProtobufType : kTextType;
}

ExpositionFormat ChooseFormat(std::string_view accept, bool protobuf_offered) {
  ExpositionFormat best = ExpositionFormat::kText;
  int best_weight = 0;  // a named format must have q > 0
  while (!accept.empty()) {
    const Element e = ParseElement(NextPart(&accept, ','));
    ExpositionFormat format;
    // Strictly greater: among equal weights the first in the header wins.
    if (e.weight > best_weight && NamesFormat(e, protobuf_offered, &format)) {
      best = format;
      best_weight = e.weight;
    }
  }
  return best;
}

ContentCoding ChooseCoding(std::string_view accept_encoding) {
  int gzip = kWeightInvalid, star = kWeightInvalid, identity = kWeightInvalid;
  while (!accept_encoding.empty()) {
    const Element e = ParseElement(NextPart(&accept_encoding, ','));
    if (e.weight == kWeightInvalid) continue;
    if (IEquals(e.value, "gzip") || IEquals(e.value, "x-gzip")) {
      gzip = gzip > e.weight ? gzip : e.weight;
    } else if (e.value == "*") {
      star = e.weight;
    } else if (IEquals(e.value, "identity")) {
      identity = e.weight;
    }
  }
  if (gzip == kWeightInvalid) gzip = star;
  // Identity's weight matters only when the client states it.
  if (gzip > 0 && gzip >= identity) return ContentCoding::kGzip;
  return ContentCoding::kIdentity;
}

}  // namespace uwsgi_prometheus
