// What the model of a scrape is built with: the options and the endpoint's
// own counters (model.h builds and writes families from them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "labels.h"

namespace uwsgi_prometheus {

struct ModelOptions {
  std::string stats_uri;          // value of the stats_uri label
  bool collect_cores = false;     // per-core families (uwsgi_exporter's --collect.cores)
  size_t max_label_value_bytes = kMaxLabelValueBytes;
};

// Counters about the endpoint itself, kept under uwsgi_exporter's names.
struct SelfStats {
  bool up = true;                 // the snapshot was taken
  uint64_t scrapes = 0;           // including this one
  uint64_t scrape_errors = 0;
  double scrape_duration_sum = 0; // seconds, completed scrapes
  uint64_t scrape_duration_count = 0;
  bool last_scrape_error = false;
  uint64_t errors = 0;            // uwsgi_prometheus_errors_total
};

}  // namespace uwsgi_prometheus
