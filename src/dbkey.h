// The keys of prometheus_client's multi-process files: JSON arrays
// ["metric_name", "sample_name", {"label": "value", ...}, "help"], parsed,
// checked and remembered so that a scrape parses each distinct key once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace uwsgi_prometheus {

struct DbKey {
  std::string metric;
  std::string sample;
  std::vector<std::pair<std::string, std::string>> labels;  // sorted by name
  std::string help;
};

// Parses a key; strings are JSON-unescaped. Names must be valid Prometheus
// names; label values and help that are not valid UTF-8 are sanitized (and
// label values capped), as one bad value must not cost the whole scrape.
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
  int32_t Reject(std::string_view stored, const std::string& error);

  std::vector<std::unique_ptr<std::string>> texts_;  // stable storage for the map's views
  std::unordered_map<std::string_view, int32_t> ids_;
  std::vector<Entry> keys_;
  std::unordered_map<std::string_view, std::string> bad_;  // invalid keys and why
  std::unordered_map<std::string, int32_t> series_;       // metric, sample, labels -> id
};

}  // namespace uwsgi_prometheus
