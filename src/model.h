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
#include "model_options.h"
#include "render.h"
#include "snapshot.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {

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
