// Metric families -> Prometheus text exposition format 0.0.4.
// Byte-for-byte the same text as prometheus-cpp's TextSerializer except for
// number formatting (shortest round-trip form here), written with fmt into
// one buffer instead of an ostream per scrape.
#pragma once

#include <string>
#include <vector>

#include <fmt/format.h>
#include <prometheus/metric_family.h>

#include "text_buffer.h"

namespace uwsgi_prometheus {

inline constexpr const char* kTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// Appends the exposition text of `families` to `out`. Does not throw except
// std::bad_alloc.
void RenderText(const std::vector<prometheus::MetricFamily>& families, TextBuffer* out);

std::string RenderText(const std::vector<prometheus::MetricFamily>& families);

// Pieces of the format, shared with the direct snapshot renderer in model.cc.
void RenderFamily(const prometheus::MetricFamily& family, TextBuffer* out);
void AppendValue(TextBuffer* out, double value);
void AppendHelpLine(TextBuffer* out, std::string_view name, std::string_view help);
void AppendTypeLine(TextBuffer* out, std::string_view name, prometheus::MetricType type);
inline void Append(TextBuffer* out, std::string_view s) {
  out->append(s.data(), s.data() + s.size());
}

}  // namespace uwsgi_prometheus
