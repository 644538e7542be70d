#include "multiproc_merge.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

using LabelSet = std::vector<std::pair<std::string, std::string>>;

enum class GaugeMode { kPerPid, kMin, kMax, kSum, kMostRecent };

GaugeMode GaugeModeOf(const std::string& mode) {
  if (mode == "min" || mode == "livemin") return GaugeMode::kMin;
  if (mode == "max" || mode == "livemax") return GaugeMode::kMax;
  if (mode == "sum" || mode == "livesum") return GaugeMode::kSum;
  if (mode == "mostrecent" || mode == "livemostrecent") return GaugeMode::kMostRecent;
  return GaugeMode::kPerPid;  // all, liveall
}

// One metric: its type and gauge mode come from the first file it is seen in.
struct Metric {
  const std::string* name;
  std::string type;
  GaugeMode mode;
  const std::string* help;
  std::vector<int32_t> key_ids;  // keys seen this scrape, in first-seen order
};

// A count read from a file, as an integer: garbage (NaN, negative, huge)
// becomes 0 or saturates instead of being undefined behaviour.
uint64_t Count(double v) {
  if (!(v > 0)) return 0;
  if (v >= 1.8e19) return UINT64_MAX;
  return static_cast<uint64_t>(v);
}

LabelSet WithoutPid(LabelSet labels) {
  labels.erase(std::remove_if(labels.begin(), labels.end(),
                              [](const auto& l) { return l.first == "pid"; }),
               labels.end());
  return labels;
}

// Folds one series' merged value into another's, by the gauge mode (not
// all/liveall, whose series are never folded).
void Combine(GaugeMode mode, double v, double timestamp, double* into, double* into_timestamp) {
  switch (mode) {
    case GaugeMode::kMin: *into = std::min(*into, v); break;
    case GaugeMode::kMax: *into = std::max(*into, v); break;
    case GaugeMode::kSum: *into += v; break;
    case GaugeMode::kMostRecent:
      if (*into_timestamp < timestamp) {
        *into = v;
        *into_timestamp = timestamp;
      }
      break;
    case GaugeMode::kPerPid: break;
  }
}

std::vector<ClientMetric::Label> LabelsOf(const LabelSet& labels) {
  std::vector<ClientMetric::Label> out;
  out.reserve(labels.size());
  for (const auto& [name, value] : labels) out.push_back({name, value});
  return out;
}

// The merge: entries of every file folded into one value per series (a
// KeyTable series id), then written out metric by metric.
class Merger {
 public:
  explicit Merger(const KeyTable& keys)
      : keys_(keys),
        metric_of_(keys.series_count(), -1),
        value_(keys.series_count(), 0.0),
        timestamp_(keys.series_count(), 0.0),
        seen_(keys.series_count(), kUnseen) {}

  void Add(const DbFile& file);
  void Emit(std::vector<MetricFamily>* out) const;

 private:
  enum Seen : char { kUnseen, kSeen, kHasRecent };  // kHasRecent: mostrecent got a value

  Metric& MetricOf(int32_t id, const DbFile& file);
  void AddGauge(const Metric& m, size_t series, bool first, const DbEntry& entry,
                const std::string& pid);
  size_t SeriesOf(int32_t id) const { return static_cast<size_t>(keys_.series(id)); }

  void EmitCounter(const Metric& m, MetricFamily* family) const;
  void EmitGauge(const Metric& m, MetricFamily* family) const;
  void EmitPerPid(const DbKey& key, size_t series, MetricFamily* family) const;
  void EmitSummary(const Metric& m, MetricFamily* family) const;
  void EmitHistogram(const Metric& m, MetricFamily* family) const;
  LabelSet HistogramLabels(const Metric& m, const std::string& group) const;

  const KeyTable& keys_;
  std::vector<Metric> metrics_;
  std::unordered_map<std::string_view, size_t> metric_index_;  // by name
  std::vector<int32_t> metric_of_;                             // series -> metrics_ index
  std::vector<double> value_, timestamp_;                      // by series
  std::vector<char> seen_;                                     // by series
  std::map<std::pair<int32_t, std::string>, double> pid_values_;  // (series, pid) -> value
};

Metric& Merger::MetricOf(int32_t id, const DbFile& file) {
  const size_t k = SeriesOf(id);
  if (metric_of_[k] < 0) {
    const DbKey& key = keys_.key(id);
    auto [it, fresh] = metric_index_.try_emplace(key.metric, metrics_.size());
    if (fresh) metrics_.push_back({&key.metric, file.type, GaugeModeOf(file.mode), &key.help, {}});
    metric_of_[k] = static_cast<int32_t>(it->second);
  }
  return metrics_[static_cast<size_t>(metric_of_[k])];
}

void Merger::Add(const DbFile& file) {
  for (const auto& [id, entry] : file.entries) {
    if (id < 0 || static_cast<size_t>(id) >= keys_.size()) continue;
    const size_t k = SeriesOf(id);
    Metric& m = MetricOf(id, file);
    if (m.type != file.type) continue;  // one name written as two types: the first wins
    const bool first = seen_[k] == kUnseen;
    if (first) {
      seen_[k] = kSeen;
      m.key_ids.push_back(id);
    }
    if (m.type == "gauge") {
      AddGauge(m, k, first, entry, file.pid);
    } else {
      value_[k] += entry.value;  // counters, histograms and summaries add up
    }
  }
}

void Merger::AddGauge(const Metric& m, size_t k, bool first, const DbEntry& entry,
                      const std::string& pid) {
  const double v = entry.value;
  switch (m.mode) {
    case GaugeMode::kMin:
      if (first || v < value_[k]) value_[k] = v;
      break;
    case GaugeMode::kMax:
      if (first || v > value_[k]) value_[k] = v;
      break;
    case GaugeMode::kSum:
      value_[k] += v;
      break;
    case GaugeMode::kMostRecent:
      if (timestamp_[k] < entry.timestamp) {  // from 0, as prometheus_client
        timestamp_[k] = entry.timestamp;
        value_[k] = v;
        seen_[k] = kHasRecent;
      }
      break;
    case GaugeMode::kPerPid:  // one sample per process, labelled pid
      pid_values_[{static_cast<int32_t>(k), pid}] = v;
      break;
  }
}

void Merger::Emit(std::vector<MetricFamily>* out) const {
  for (const Metric& m : metrics_) {
    MetricFamily family;
    family.help = *m.help;
    if (m.type == "counter") {
      EmitCounter(m, &family);
    } else if (m.type == "gauge") {
      EmitGauge(m, &family);
    } else if (m.type == "summary") {
      EmitSummary(m, &family);
    } else {
      EmitHistogram(m, &family);
    }
    if (!family.metric.empty()) out->push_back(std::move(family));
  }
}

void Merger::EmitCounter(const Metric& m, MetricFamily* family) const {
  family->name = *m.name + "_total";
  family->type = MetricType::Counter;
  for (int32_t id : m.key_ids) {
    const DbKey& key = keys_.key(id);
    if (key.sample != family->name) continue;  // only _total exists in multi-process mode
    ClientMetric c;
    c.label = LabelsOf(key.labels);
    c.counter.value = value_[SeriesOf(id)];
    family->metric.push_back(std::move(c));
  }
}

// Outside all/liveall, prometheus_client merges a gauge's samples by their
// labels without `pid`: an app label of that name is dropped, and the series
// it told apart become one, combined by the mode.
void Merger::EmitGauge(const Metric& m, MetricFamily* family) const {
  family->name = *m.name;
  family->type = MetricType::Gauge;
  std::map<LabelSet, size_t> merged;  // labels without pid -> index in family->metric
  std::vector<double> timestamps;     // by index in family->metric, for mostrecent
  for (int32_t id : m.key_ids) {
    const DbKey& key = keys_.key(id);
    const size_t k = SeriesOf(id);
    if (key.sample != *m.name) continue;
    if (m.mode == GaugeMode::kPerPid) {
      EmitPerPid(key, k, family);
      continue;
    }
    if (m.mode == GaugeMode::kMostRecent && seen_[k] != kHasRecent) continue;
    auto [at, fresh] = merged.try_emplace(WithoutPid(key.labels), family->metric.size());
    if (fresh) {
      ClientMetric c;
      c.label = LabelsOf(at->first);
      c.gauge.value = value_[k];
      family->metric.push_back(std::move(c));
      timestamps.push_back(timestamp_[k]);
    } else {
      Combine(m.mode, value_[k], timestamp_[k], &family->metric[at->second].gauge.value,
              &timestamps[at->second]);
    }
  }
}

void Merger::EmitPerPid(const DbKey& key, size_t series, MetricFamily* family) const {
  const auto k = static_cast<int32_t>(series);
  for (auto it = pid_values_.lower_bound({k, std::string()});
       it != pid_values_.end() && it->first.first == k; ++it) {
    // the process' pid replaces a label of the same name, as in prometheus_client
    LabelSet labels = WithoutPid(key.labels);
    labels.emplace_back("pid", it->first.second);
    std::sort(labels.begin(), labels.end());
    ClientMetric c;
    c.label = LabelsOf(labels);
    c.gauge.value = it->second;
    family->metric.push_back(std::move(c));
  }
}

void Merger::EmitSummary(const Metric& m, MetricFamily* family) const {
  family->name = *m.name;
  family->type = MetricType::Summary;
  std::map<std::string, ClientMetric> by_labels;
  for (int32_t id : m.key_ids) {
    const DbKey& key = keys_.key(id);
    const bool count = key.sample == *m.name + "_count", sum = key.sample == *m.name + "_sum";
    if (!count && !sum) continue;
    ClientMetric& c = by_labels[keys_.group(id)];
    c.label = LabelsOf(key.labels);
    if (count) c.summary.sample_count = Count(value_[SeriesOf(id)]);
    if (sum) c.summary.sample_sum = value_[SeriesOf(id)];
  }
  for (auto& [group, c] : by_labels) family->metric.push_back(std::move(c));
}

// A histogram's labels without le: from the first key of the group.
LabelSet Merger::HistogramLabels(const Metric& m, const std::string& group) const {
  LabelSet labels;
  for (int32_t id : m.key_ids) {
    if (keys_.group(id) != group) continue;
    for (const auto& l : keys_.key(id).labels) {
      if (l.first != "le") labels.push_back(l);
    }
    break;
  }
  return labels;
}

// Buckets summed over processes, then accumulated; _count is the last bucket.
void Merger::EmitHistogram(const Metric& m, MetricFamily* family) const {
  family->name = *m.name;
  family->type = MetricType::Histogram;
  std::map<std::string, std::map<double, double>> buckets;  // group -> bound -> count
  std::map<std::string, double> sums;                        // group -> _sum
  for (int32_t id : m.key_ids) {
    const double v = value_[SeriesOf(id)];
    if (keys_.has_le(id)) {
      buckets[keys_.group(id)][keys_.le(id)] += v;
    } else if (keys_.key(id).sample == *m.name + "_sum") {
      sums[keys_.group(id)] = v;
    }
  }
  for (const auto& [group, bounds] : buckets) {
    ClientMetric c;
    c.label = LabelsOf(HistogramLabels(m, group));
    double acc = 0;
    for (const auto& [bound, count] : bounds) {
      acc += count;
      c.histogram.bucket.push_back({Count(acc), bound});
    }
    c.histogram.sample_count = Count(acc);
    auto sum = sums.find(group);
    if (sum != sums.end()) c.histogram.sample_sum = sum->second;
    family->metric.push_back(std::move(c));
  }
}

}  // namespace

void MergeDbFiles(const KeyTable& keys, const std::vector<DbFile>& files,
                  std::vector<MetricFamily>* out) {
  Merger merger(keys);
  for (const auto& file : files) merger.Add(file);
  merger.Emit(out);
}

}  // namespace uwsgi_prometheus
