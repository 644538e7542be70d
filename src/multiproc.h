// prometheus_client's multi-process mode, read from the master: every *.db
// file of PROMETHEUS_MULTIPROC_DIR is read (multiproc_reader.h: directory ->
// records, dbfile.h and dbkey.h: one file's bytes and keys) and merged as
// prometheus_client's MultiProcessCollector merges them (multiproc_merge.h:
// records -> families). This header brings the whole pipeline.
//
// Nothing here trusts the files: a file that is not regular, too large,
// truncated, corrupt or not from prometheus_client is skipped (and reported)
// and everything else is still served.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <prometheus/metric_family.h>

#include "dbfile.h"
#include "dbkey.h"
#include "multiproc_merge.h"
#include "multiproc_reader.h"

namespace uwsgi_prometheus {

// What the collector did, for the operator (AppendStatsFamilies).
struct MultiprocStats {
  uint64_t files = 0;                       // files merged by the last collection
  uint64_t skipped[kSkipReasonCount] = {};  // files skipped since start, by reason
  double seconds = 0;                       // the last collection's read and merge
};

// One directory, read and merged at every scrape; keys are remembered
// between scrapes.
class MultiprocCollector {
 public:
  explicit MultiprocCollector(std::string dir, size_t max_file_bytes = kDefaultMaxDbFileBytes)
      : dir_(std::move(dir)), max_file_bytes_(max_file_bytes) {}

  // Reads the directory and appends merged families (unsorted). `skipped` is
  // called once per skipped file.
  void Collect(std::vector<prometheus::MetricFamily>* out, const SkipHandler& skipped);

  // Appends uwsgi_prometheus_multiproc_files, _skipped_files_total{reason}
  // and _merge_duration_seconds, from stats().
  void AppendStatsFamilies(std::vector<prometheus::MetricFamily>* out) const;

  // The workers' pids now, slot by slot (0 for an empty slot): the live
  // gauge files of a pid that left its slot are deleted, as
  // prometheus_client's mark_process_dead. May run on another thread than
  // Collect (it touches only the files and its own list).
  void ForgetDeadProcesses(const std::vector<long>& pids);

  const MultiprocStats& stats() const { return stats_; }

 private:
  std::string dir_;
  size_t max_file_bytes_;
  MultiprocStats stats_;
  KeyTable keys_;
  std::vector<DbFile> files_;
  std::vector<long> known_pids_;  // ForgetDeadProcesses' last look
};

}  // namespace uwsgi_prometheus
