// Snapshot -> Prometheus metric families (prometheus-cpp's data model).
// Names, types, label names and help texts follow uwsgi_exporter so that
// existing dashboards and alerts keep working; what goes beyond it is
// documented in README.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <prometheus/metric_family.h>

#include "labels.h"
#include "render.h"
#include "snapshot.h"
#include "text_buffer.h"

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

// Appends the families for one scrape to `out`, families sorted by name and
// series sorted by labels, duplicate series dropped. Never throws for any
// snapshot content (label values are sanitized).
void BuildFamilies(const Snapshot& snapshot, const ModelOptions& options,
                   const SelfStats& self,
                   std::vector<prometheus::MetricFamily>* out);

// The same text as RenderText() of BuildFamilies() merged with `extra`, but
// written straight from the snapshot (no per-series objects): what a scrape
// serves. `extra` must be sorted by name and hold no built-in family name.
void RenderScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out);

// The protobuf twin of RenderScrape: the same bytes as EncodeFamily() of
// BuildFamilies() merged with `extra` (delimited MetricFamily messages,
// protobuf.h), also written straight from the snapshot.
void EncodeScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out);

// Whether `name` is one of the families BuildFamilies can produce.
bool IsBuiltInFamily(std::string_view name);

// Sorts families by name and each family's series by label values, and drops
// series whose labels repeat an earlier one.
void Normalize(std::vector<prometheus::MetricFamily>* families);
void Normalize(std::vector<ServedFamily>* families);

}  // namespace uwsgi_prometheus
