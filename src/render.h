// Metric families -> Prometheus text exposition format 0.0.4.
// Byte-for-byte the same text as prometheus-cpp's TextSerializer except for
// number formatting (shortest round-trip form here, or prometheus_client's
// spelling of bounds for the families merged from its files), written with
// fmt into one buffer instead of an ostream per scrape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <prometheus/metric_family.h>

#include "native_histogram.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// How the numbers in a family's `le` and `quantile` labels are spelled.
// Prometheus compares label values as strings (le="1" and le="1.0" are two
// series), so each family keeps the spelling its producer has always served.
enum class BoundSpelling {
  kShortest,      // fmt's shortest round trip: "1", "0.005", "1000000", "1e+20"
  kPythonClient,  // prometheus_client's floatToGoString (go_float.h): "1.0", "1e+06"
};

// A family to serve, and how its bounds are spelled.
struct ServedFamily {
  prometheus::MetricFamily family;
  BoundSpelling bounds = BoundSpelling::kShortest;
  // For a histogram family, the native histogram of each series in the
  // order of family.metric (a default-constructed one: classic buckets
  // only), or empty. Only the protobuf format carries it; the text shows
  // the classic buckets.
  std::vector<NativeHistogram> native = {};
};

// Appends the exposition text of `families` to `out`. Does not throw except
// std::bad_alloc.
void RenderText(const std::vector<prometheus::MetricFamily>& families, TextBuffer* out,
                BoundSpelling bounds = BoundSpelling::kShortest);

std::string RenderText(const std::vector<prometheus::MetricFamily>& families,
                       BoundSpelling bounds = BoundSpelling::kShortest);

// Pieces of the format, shared with the direct snapshot renderer in model.cc.
void RenderFamily(const prometheus::MetricFamily& family, BoundSpelling bounds,
                  TextBuffer* out);
void AppendValue(TextBuffer* out, double value);
void AppendHelpLine(TextBuffer* out, std::string_view name, std::string_view help);
void AppendTypeLine(TextBuffer* out, std::string_view name, prometheus::MetricType type);
inline void Append(TextBuffer* out, std::string_view s) {
  out->append(s.data(), s.data() + s.size());
}

}  // namespace uwsgi_prometheus
