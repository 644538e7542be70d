#include "render.h"

#include <cmath>

#include <fmt/format.h>

#include "go_float.h"
#include "labels.h"

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

void AppendCount(TextBuffer* out, uint64_t value);

}  // namespace

void AppendValue(TextBuffer* out, double value) {
  if (std::isnan(value)) {
    Append(out, "NaN");
  } else if (std::isinf(value)) {
    Append(out, value < 0 ? "-Inf" : "+Inf");
  } else if (value == std::floor(value) && std::fabs(value) < 1e15) {
    // Integral values (the common case: counters) without float formatting.
    fmt::format_int i(static_cast<long long>(value));
    Append(out, std::string_view(i.data(), i.size()));
  } else {
    fmt::format_to(std::back_inserter(*out), "{}", value);
  }
}

namespace {

void AppendCount(TextBuffer* out, uint64_t value) {
  fmt::format_int i(static_cast<unsigned long long>(value));
  Append(out, std::string_view(i.data(), i.size()));
}

// name{labels[,extra_name="extra"]} value\n
void AppendSample(TextBuffer* out, const std::string& name, std::string_view suffix,
                  const ClientMetric& metric, std::string_view extra_name,
                  std::string_view extra_value, double value) {
  Append(out, name);
  Append(out, suffix);
  if (!metric.label.empty() || !extra_name.empty()) {
    out->push_back('{');
    bool first = true;
    for (const auto& label : metric.label) {
      if (!first) out->push_back(',');
      first = false;
      Append(out, label.name);
      Append(out, "=\"");
      AppendEscapedLabelValue(out, label.value);
      out->push_back('"');
    }
    if (!extra_name.empty()) {
      if (!first) out->push_back(',');
      Append(out, extra_name);
      Append(out, "=\"");
      Append(out, extra_value);
      out->push_back('"');
    }
    out->push_back('}');
  }
  out->push_back(' ');
  AppendValue(out, value);
  if (metric.timestamp_ms != 0) {
    out->push_back(' ');
    AppendCount(out, static_cast<uint64_t>(metric.timestamp_ms));
  }
  out->push_back('\n');
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::Counter: return "counter";
    case MetricType::Gauge: return "gauge";
    case MetricType::Summary: return "summary";
    case MetricType::Histogram: return "histogram";
    default: return "untyped";
  }
}

std::string_view FormatBound(double bound, BoundSpelling spelling, char* buf, size_t size) {
  if (spelling == BoundSpelling::kPythonClient) return FormatGoFloat(bound, buf, size);
  if (std::isinf(bound)) return bound < 0 ? "-Inf" : "+Inf";
  auto end = fmt::format_to_n(buf, size, "{}", bound).out;
  return std::string_view(buf, static_cast<size_t>(end - buf));
}

}  // namespace

void AppendHelpLine(TextBuffer* out, std::string_view name, std::string_view help) {
  Append(out, "# HELP ");
  Append(out, name);
  out->push_back(' ');
  AppendEscapedHelp(out, help);
  out->push_back('\n');
}

void AppendTypeLine(TextBuffer* out, std::string_view name, MetricType type) {
  Append(out, "# TYPE ");
  Append(out, name);
  out->push_back(' ');
  Append(out, TypeName(type));
  out->push_back('\n');
}

void RenderFamily(const MetricFamily& family, BoundSpelling bounds, TextBuffer* out) {
  char buf[64];
  if (family.metric.empty()) return;
  if (!family.help.empty()) AppendHelpLine(out, family.name, family.help);
  AppendTypeLine(out, family.name, family.type);
  for (const auto& m : family.metric) {
    switch (family.type) {
      case MetricType::Counter:
        AppendSample(out, family.name, "", m, "", "", m.counter.value);
        break;
      case MetricType::Gauge:
        AppendSample(out, family.name, "", m, "", "", m.gauge.value);
        break;
      case MetricType::Summary:
        for (const auto& q : m.summary.quantile) {
          AppendSample(out, family.name, "", m, "quantile",
                       FormatBound(q.quantile, bounds, buf, sizeof buf), q.value);
        }
        AppendSample(out, family.name, "_sum", m, "", "", m.summary.sample_sum);
        AppendSample(out, family.name, "_count", m, "", "",
                     static_cast<double>(m.summary.sample_count));
        break;
      case MetricType::Histogram: {
        bool has_inf = false;
        for (const auto& b : m.histogram.bucket) {
          has_inf = has_inf || std::isinf(b.upper_bound);
          AppendSample(out, family.name, "_bucket", m, "le",
                       FormatBound(b.upper_bound, bounds, buf, sizeof buf),
                       static_cast<double>(b.cumulative_count));
        }
        if (!has_inf) {
          AppendSample(out, family.name, "_bucket", m, "le", "+Inf",
                       static_cast<double>(m.histogram.sample_count));
        }
        AppendSample(out, family.name, "_sum", m, "", "", m.histogram.sample_sum);
        AppendSample(out, family.name, "_count", m, "", "",
                     static_cast<double>(m.histogram.sample_count));
        break;
      }
      default:
        AppendSample(out, family.name, "", m, "", "", m.untyped.value);
    }
  }
}

void RenderText(const std::vector<MetricFamily>& families, TextBuffer* out,
                BoundSpelling bounds) {
  for (const auto& family : families) RenderFamily(family, bounds, out);
}

std::string RenderText(const std::vector<MetricFamily>& families, BoundSpelling bounds) {
  TextBuffer buf;
  RenderText(families, &buf, bounds);
  return std::string(buf.data(), buf.size());
}

}  // namespace uwsgi_prometheus
