// Looking into built families, and request tables to build them from, for
// tests.
#pragma once

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <prometheus/metric_family.h>

#include "render.h"
#include "request_stats.h"

namespace uwsgi_prometheus {

inline const prometheus::MetricFamily* Find(const std::vector<prometheus::MetricFamily>& fs,
                                            const std::string& name) {
  for (const auto& f : fs) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

inline const prometheus::MetricFamily* Find(const std::vector<ServedFamily>& fs,
                                            const std::string& name) {
  for (const auto& f : fs) {
    if (f.family.name == name) return &f.family;
  }
  return nullptr;
}

// The value of label `name`, or "<absent>".
inline std::string Label(const prometheus::ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label) {
    if (l.name == name) return l.value;
  }
  return "<absent>";
}

// A request table with the default duration buckets.
inline RequestStats MakeRequestStats(uint32_t workers, uint32_t apps = 1) {
  RequestStats stats;
  RequestStatsOptions o;
  o.duration_bounds = DefaultDurationBounds();
  o.workers = workers;
  o.apps = apps;
  std::string error;
  REQUIRE(stats.Create(o, &error));
  return stats;
}

}  // namespace uwsgi_prometheus
