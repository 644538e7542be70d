// prometheus_client's multi-process mode, read from the master: every *.db
// file of PROMETHEUS_MULTIPROC_DIR is parsed (both on-disk layouts: a double
// per entry as in 0.16, and a double plus a timestamp from 0.18 on) and
// merged as prometheus_client's MultiProcessCollector merges them.
//
// Nothing here trusts the files: a file that is not regular, too large,
// truncated, corrupt or not from prometheus_client is skipped (and reported)
// and everything else is still served.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

namespace uwsgi_prometheus {

struct DbEntry {
  std::string_view key;  // JSON, points into the parsed buffer
  double value = 0;
  double timestamp = 0;  // 0 in the old layout
};

enum class DbLayout { kValueOnly, kValueAndTimestamp };

// Parses one file's bytes. Returns false with a reason when the bytes are not
// a prometheus_client file. A file still being written (an entry beyond the
// bytes read) yields the complete entries before it.
bool ParseDbFile(std::string_view data, std::vector<DbEntry>* entries, DbLayout* layout,
                 std::string* error);

// A key: ["metric_name", "sample_name", {"label": "value", ...}, "help"].
struct DbKey {
  std::string metric;
  std::string sample;
  std::vector<std::pair<std::string, std::string>> labels;  // sorted by name
  std::string help;
};

// Parses a key; strings are JSON-unescaped and checked to be valid UTF-8.
bool ParseDbKey(std::string_view json, DbKey* key, std::string* error);

// Keys parsed once and remembered: every process writes the same keys, so a
// scrape looks each one up instead of parsing JSON again.
class KeyTable {
 public:
  static constexpr int32_t kInvalid = -1;
  // The id of `json`, parsing it the first time; kInvalid (with `error`)
  // when it is not a valid key.
  int32_t Intern(std::string_view json, std::string* error);
  const DbKey& key(int32_t id) const { return keys_[static_cast<size_t>(id)].key; }
  // For histogram keys: whether there is an `le` label and its bound.
  bool has_le(int32_t id) const { return keys_[static_cast<size_t>(id)].has_le; }
  double le(int32_t id) const { return keys_[static_cast<size_t>(id)].le; }
  // The labels without `le`, joined, to group a histogram's buckets.
  const std::string& group(int32_t id) const { return keys_[static_cast<size_t>(id)].group; }
  size_t size() const { return keys_.size(); }
  // Keys naming the same (metric, sample, labels) share a series id.
  int32_t series(int32_t id) const { return keys_[static_cast<size_t>(id)].series; }
  size_t series_count() const { return series_.size(); }
  size_t bad_size() const { return bad_.size(); }
  void Clear();

 private:
  struct Entry {
    DbKey key;
    bool has_le = false;
    double le = 0;
    std::string group;
    int32_t series = 0;
  };
  std::vector<std::unique_ptr<std::string>> texts_;  // stable storage for the map's views
  std::unordered_map<std::string_view, int32_t> ids_;
  std::vector<Entry> keys_;
  std::unordered_map<std::string_view, std::string> bad_;  // invalid keys and why
  std::unordered_map<std::string, int32_t> series_;       // metric, sample, labels -> id
};

struct MultiprocStats {
  uint64_t files_read = 0;
  uint64_t files_skipped = 0;
};

class MultiprocCollector {
 public:
  explicit MultiprocCollector(std::string dir, size_t max_file_bytes = 64u << 20)
      : dir_(std::move(dir)), max_file_bytes_(max_file_bytes) {}

  // Reads the directory and appends merged families (unsorted). `skipped` is
  // called once per skipped file with its name and the reason.
  void Collect(std::vector<prometheus::MetricFamily>* out,
               const std::function<void(const std::string& file, const std::string& why)>& skipped);

  const MultiprocStats& stats() const { return stats_; }
  const std::string& dir() const { return dir_; }

  // Deletes gauge_live*_<pid>.db, as prometheus_client's mark_process_dead.
  static void MarkProcessDead(const std::string& dir, long pid);
  // Deletes every *.db regular file of `dir` (at master start).
  static bool Clear(const std::string& dir, std::string* error);

 private:
  std::string dir_;
  size_t max_file_bytes_;
  MultiprocStats stats_;
  KeyTable keys_;
};

// Merges parsed files: exposed for tests and the fuzzer.
struct DbFile {
  std::string type;  // counter, gauge, histogram, summary
  std::string mode;  // gauge mode (all, liveall, livesum, max, min, sum, mostrecent, ...)
  std::string pid;   // process id part of the name
  std::vector<std::pair<int32_t, DbEntry>> entries;  // key ids in a KeyTable
};

// Splits "gauge_livesum_123.db" / "counter_123.db"; false if not such a name.
bool ParseDbFileName(std::string_view name, DbFile* file);

void MergeDbFiles(const KeyTable& keys, const std::vector<DbFile>& files,
                  std::vector<prometheus::MetricFamily>* out);

}  // namespace uwsgi_prometheus
