#include "providers.h"

#include <algorithm>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>

#include "labels.h"

namespace uwsgi_prometheus {

namespace {

constexpr size_t kMaxSkipLogLines = 1000;

void Serve(std::vector<prometheus::MetricFamily> families, BoundSpelling bounds,
           std::vector<ServedFamily>* out) {
  for (auto& family : families) out->push_back({std::move(family), bounds});
}

// One key per series: its family and its labels sorted by name.
std::string SeriesKey(const std::string& family, std::vector<prometheus::ClientMetric::Label> labels) {
  std::sort(labels.begin(), labels.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  std::string key = family;
  for (const auto& l : labels) key.append(1, '\0').append(l.name).append(1, '\0').append(l.value);
  return key;
}

// Gives each histogram series in `families` its native histogram from
// `native` (read in the same pass).
void AttachNative(const std::vector<NativeSeries>& native, ServedFamily* families, size_t count) {
  if (native.empty()) return;
  std::unordered_map<std::string, const NativeHistogram*> by_key;
  for (const auto& n : native) by_key.emplace(SeriesKey(n.family, n.labels), &n.histogram);
  for (size_t f = 0; f < count; ++f) {
    ServedFamily& served = families[f];
    if (served.family.type != prometheus::MetricType::Histogram) continue;
    served.native.assign(served.family.metric.size(), NativeHistogram{});
    for (size_t i = 0; i < served.family.metric.size(); ++i) {
      const auto it = by_key.find(SeriesKey(served.family.name, served.family.metric[i].label));
      if (it != by_key.end()) served.native[i] = *it->second;
    }
  }
}

}  // namespace

std::vector<std::vector<std::string>> AppLabels(const Snapshot& snapshot) {
  std::vector<std::vector<std::string>> labels;
  MergeAppLabels(snapshot, &labels);
  return labels;
}

void MergeAppLabels(const Snapshot& snapshot, std::vector<std::vector<std::string>>* known) {
  if (known->size() < snapshot.workers.size()) known->resize(snapshot.workers.size());
  for (size_t w = 0; w < snapshot.workers.size(); ++w) {
    std::vector<std::string>& labels = (*known)[w];
    const auto& apps = snapshot.workers[w].apps;
    if (labels.size() < apps.size() + 1) labels.resize(apps.size() + 1);
    labels[0] = "(no app)";
    for (size_t j = 0; j < apps.size(); ++j) {
      labels[j + 1] = SanitizeLabelValue(apps[j].mountpoint, kMaxLabelValueBytes);
    }
  }
}

RequestFamiliesFunction RequestFamilies(const RequestStats* stats, bool per_app, bool per_worker) {
  auto last_labels = std::make_shared<std::vector<std::vector<std::string>>>();
  return [stats, per_app, per_worker, last_labels](const Snapshot& snapshot, bool taken,
                                                   std::vector<ServedFamily>* out,
                                                   std::vector<NativeSeries>* native) {
    RequestStats::RenderOptions options;
    options.per_worker = per_worker;
    if (per_app) {
      if (taken) MergeAppLabels(snapshot, last_labels.get());
      options.app_labels = *last_labels;
      if (options.app_labels.empty()) options.app_labels.resize(1);  // still per app
    }
    std::vector<prometheus::MetricFamily> families;
    stats->AppendFamilies(options, &families, native);
    Serve(std::move(families), BoundSpelling::kShortest, out);
  };
}

FamilyProvider RequestStatsProvider(const RequestStats* stats, bool per_app, bool per_worker) {
  return [families = RequestFamilies(stats, per_app, per_worker)](
             const Snapshot& snapshot, const ScrapeContext& context,
             std::vector<ServedFamily>* out) {
    std::vector<NativeSeries> native;  // none when native histograms are off
    const size_t first = out->size();
    families(snapshot, context.taken, out, context.native ? &native : nullptr);
    AttachNative(native, out->data() + first, out->size() - first);
  };
}

FamilyProvider MultiprocProvider(MultiprocCollector* collector, LogFunction log) {
  auto reported = std::make_shared<std::set<std::string>>();
  return [collector, log = std::move(log), reported](const Snapshot&, const ScrapeContext&,
                                                     std::vector<ServedFamily>* out) {
    // The plugin's own families first: an app family of the same name is
    // then the one dropped (and logged) by the exporter.
    std::vector<prometheus::MetricFamily> merged, own;
    collector->Collect(&merged, [&](const SkippedFile& skip) {
      if (log && reported->size() < kMaxSkipLogLines &&
          reported->insert(skip.file + '\0' + skip.why).second) {
        log("multiproc: skipped " + skip.file + ": " + skip.why);
      }
    });
    collector->AppendStatsFamilies(&own);
    Serve(std::move(own), BoundSpelling::kShortest, out);
    Serve(std::move(merged), kMergedBoundSpelling, out);
  };
}

}  // namespace uwsgi_prometheus
