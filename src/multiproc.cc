#include "multiproc.h"

#include <chrono>

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

// Keys remembered at most: a directory whose keys keep changing (labels
// with ever-new values) must not grow the table without bound.
constexpr size_t kMaxRememberedKeys = 200000;

MetricFamily OneSample(const char* name, const char* help, MetricType type, double value) {
  MetricFamily family{name, help, type, {}};
  ClientMetric m;
  if (type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family.metric.push_back(std::move(m));
  return family;
}

}  // namespace

void MultiprocCollector::Collect(std::vector<MetricFamily>* out, const SkipHandler& skipped) {
  const auto start = std::chrono::steady_clock::now();
  if (keys_.size() + keys_.bad_size() > kMaxRememberedKeys) keys_.Clear();
  files_.clear();
  stats_.files = ReadMultiprocDir(dir_, max_file_bytes_, &keys_, &files_,
                                  [&](const SkippedFile& skip) {
                                    ++stats_.skipped[static_cast<size_t>(skip.reason)];
                                    skipped(skip);
                                  });
  MergeDbFiles(keys_, files_, out);
  stats_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

void MultiprocCollector::AppendStatsFamilies(std::vector<MetricFamily>* out) const {
  out->push_back(OneSample("uwsgi_prometheus_multiproc_files",
                           "Multi-process .db files merged by the last scrape.", MetricType::Gauge,
                           static_cast<double>(stats_.files)));
  MetricFamily skipped{
      "uwsgi_prometheus_multiproc_skipped_files_total",
      "Multi-process .db files skipped by scrapes because they could not be read, by reason "
      "(see the log).",
      MetricType::Counter, {}};
  for (SkipReason reason : kSkipReasons) {
    ClientMetric m;
    m.label = {{"reason", SkipReasonName(reason)}};
    m.counter.value = static_cast<double>(stats_.skipped[static_cast<size_t>(reason)]);
    skipped.metric.push_back(std::move(m));
  }
  out->push_back(std::move(skipped));
  out->push_back(OneSample("uwsgi_prometheus_multiproc_merge_duration_seconds",
                           "Time the last scrape spent reading and merging the multi-process "
                           ".db files, in seconds.",
                           MetricType::Gauge, stats_.seconds));
}

void MultiprocCollector::ForgetDeadProcesses(const std::vector<long>& pids) {
  known_pids_.resize(pids.size());
  for (size_t i = 0; i < pids.size(); ++i) {
    if (known_pids_[i] > 0 && known_pids_[i] != pids[i]) RemoveLiveGaugeFiles(dir_, known_pids_[i]);
    known_pids_[i] = pids[i];
  }
}

}  // namespace uwsgi_prometheus
