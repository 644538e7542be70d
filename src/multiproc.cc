#include "multiproc.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "labels.h"

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

constexpr size_t kMaxKeyLabelValueBytes = 1024;

int32_t ReadI32(std::string_view d, size_t pos) {
  int32_t v;
  std::memcpy(&v, d.data() + pos, 4);  // little endian, as the writer
  return v;
}

double ReadF64(std::string_view d, size_t pos) {
  double v;
  std::memcpy(&v, d.data() + pos, 8);
  return v;
}

// Walks the entries with one layout. Returns how many bytes it consumed
// cleanly (stops at the first entry that does not fit or is not padded as the
// writer pads); `exact` tells whether it ended exactly at `used`, `odd` counts
// keys that do not look like JSON arrays (a misread layout yields many).
size_t Walk(std::string_view d, size_t used, size_t value_bytes, std::vector<DbEntry>* out,
            bool* exact, size_t* odd) {
  size_t pos = 8;
  *exact = false;
  *odd = 0;
  while (pos < used) {
    if (pos + 4 > used) return pos;
    const int32_t n = ReadI32(d, pos);
    if (n <= 0 || static_cast<size_t>(n) > used) return pos;
    const size_t len = static_cast<size_t>(n);
    const size_t padded = len + (8 - (len + 4) % 8);
    const size_t value_at = pos + 4 + padded;
    if (value_at + value_bytes > used) return pos;
    std::string_view key = d.substr(pos + 4, len);
    if (key.front() != '[' || key.back() != ']') ++*odd;
    for (size_t i = len; i < padded; ++i) {
      if (d[pos + 4 + i] != ' ') return pos;  // the writer pads with spaces
    }
    DbEntry e;
    e.key = key;
    e.value = ReadF64(d, value_at);
    if (value_bytes == 16) e.timestamp = ReadF64(d, value_at + 8);
    out->push_back(e);
    pos = value_at + value_bytes;
  }
  *exact = pos == used;
  return pos;
}

// --- A small JSON reader for keys -------------------------------------------

class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  bool Expect(char c) {
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipSpace();
    return pos_ < s_.size() && s_[pos_] == c;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ == s_.size();
  }

  // A JSON string, unescaped to UTF-8. Rejects invalid escapes, control
  // characters and lone surrogates.
  bool String(std::string* out) {
    out->clear();
    if (!Expect('"')) return false;
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return false;
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo;
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') return false;
            pos_ += 2;
            if (!Hex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

 private:
  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' ||
                                s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool Hex4(uint32_t* out) {
    if (pos_ + 4 > s_.size()) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= static_cast<uint32_t>(h - '0');
      else if (h >= 'a' && h <= 'f') v |= static_cast<uint32_t>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= static_cast<uint32_t>(h - 'A' + 10);
      else return false;
    }
    *out = v;
    return true;
  }
  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// A count read from a file, as an integer: garbage (NaN, negative, huge)
// becomes 0 or saturates instead of being undefined behaviour.
uint64_t Count(double v) {
  if (!(v > 0)) return 0;
  if (v >= 1.8e19) return UINT64_MAX;
  return static_cast<uint64_t>(v);
}

// The value as Go and prometheus_client print a bucket bound, for keys.
double ParseBound(const std::string& le, bool* ok) {
  if (le == "+Inf" || le == "Inf" || le == "inf") return INFINITY;
  if (le == "-Inf" || le == "-inf") return -INFINITY;
  char* end = nullptr;
  const double v = std::strtod(le.c_str(), &end);
  *ok = !le.empty() && end == le.c_str() + le.size() && !std::isnan(v);
  return v;
}

}  // namespace

bool ParseDbFile(std::string_view data, std::vector<DbEntry>* entries, DbLayout* layout,
                 std::string* error) {
  entries->clear();
  if (data.size() < 8) {
    *error = "shorter than the 8-byte header";
    return false;
  }
  const int32_t used_raw = ReadI32(data, 0);
  if (used_raw < 8) {
    *error = "header says " + std::to_string(used_raw) + " bytes used";
    return false;
  }
  // A file still growing (or cut short) may be shorter than `used`: read what is there.
  const size_t used = std::min(static_cast<size_t>(used_raw), data.size());
  std::vector<DbEntry> a, b;
  bool exact_a = false, exact_b = false;
  size_t odd_a = 0, odd_b = 0;
  const size_t end_a = Walk(data, used, 8, &a, &exact_a, &odd_a);
  const size_t end_b = Walk(data, used, 16, &b, &exact_b, &odd_b);
  // The layout that walks exactly to `used` wins; with a cut file, the one
  // that gets further. An empty file (used == 8) has no entries either way.
  bool pick_b;
  if (exact_a != exact_b) {
    pick_b = exact_b;
  } else if (exact_a) {
    // Both walk to the end: only possible when every entry reads the same;
    // prefer the layout whose timestamps look like times (newer writers).
    pick_b = !b.empty() && std::all_of(b.begin(), b.end(), [](const DbEntry& e) {
      return e.timestamp > 1e9 && e.timestamp < 1e10;
    });
  } else {
    pick_b = end_b - 8 - odd_b * 8 > end_a - 8 - odd_a * 8 ? true
             : end_b == end_a ? odd_b < odd_a : false;
  }
  *layout = pick_b ? DbLayout::kValueAndTimestamp : DbLayout::kValueOnly;
  *entries = pick_b ? std::move(b) : std::move(a);
  const bool exact = pick_b ? exact_b : exact_a;
  if (!exact && static_cast<size_t>(used_raw) <= data.size()) {
    // Not cut short, yet the entries do not add up: not a file we understand.
    if (entries->empty()) {
      *error = "entries do not parse in either prometheus_client layout";
      return false;
    }
  }
  return true;
}

bool ParseDbKey(std::string_view json, DbKey* key, std::string* error) {
  JsonReader r(json);
  key->labels.clear();
  if (!r.Expect('[') || !r.String(&key->metric) || !r.Expect(',') || !r.String(&key->sample) ||
      !r.Expect(',') || !r.Expect('{')) {
    *error = "key is not [\"metric\", \"sample\", {labels}, \"help\"]";
    return false;
  }
  if (!r.Expect('}')) {
    do {
      std::string name, value;
      if (!r.String(&name) || !r.Expect(':') || !r.String(&value)) {
        *error = "labels are not an object of strings";
        return false;
      }
      key->labels.emplace_back(std::move(name), std::move(value));
    } while (r.Expect(','));
    if (!r.Expect('}')) {
      *error = "unterminated labels";
      return false;
    }
  }
  if (!r.Expect(',') || !r.String(&key->help) || !r.Expect(']') || !r.AtEnd()) {
    *error = "key is not [\"metric\", \"sample\", {labels}, \"help\"]";
    return false;
  }
  if (!IsValidMetricName(key->metric) || !IsValidMetricName(key->sample)) {
    *error = "invalid metric name";
    return false;
  }
  std::sort(key->labels.begin(), key->labels.end());
  for (size_t i = 0; i < key->labels.size(); ++i) {
    if (!IsValidLabelName(key->labels[i].first) ||
        (i > 0 && key->labels[i].first == key->labels[i - 1].first)) {
      *error = "invalid or repeated label name";
      return false;
    }
    if (!IsValidLabelValue(key->labels[i].second) || key->labels[i].second.size() > kMaxKeyLabelValueBytes) {
      key->labels[i].second = SanitizeLabelValue(key->labels[i].second, kMaxKeyLabelValueBytes);
    }
  }
  if (!IsValidLabelValue(key->help)) key->help = SanitizeLabelValue(key->help, key->help.size());
  return true;
}

bool ParseDbFileName(std::string_view name, DbFile* file) {
  if (name.size() < 4 || name.substr(name.size() - 3) != ".db") return false;
  std::string_view stem = name.substr(0, name.size() - 3);
  const size_t first = stem.find('_');
  if (first == std::string_view::npos) return false;
  file->type = std::string(stem.substr(0, first));
  std::string_view rest = stem.substr(first + 1);
  if (file->type == "gauge") {
    const size_t second = rest.find('_');
    if (second == std::string_view::npos) return false;
    file->mode = std::string(rest.substr(0, second));
    rest = rest.substr(second + 1);
    static const char* const kModes[] = {"all", "liveall", "min", "livemin", "max",
                                         "livemax", "sum", "livesum", "mostrecent",
                                         "livemostrecent"};
    if (std::none_of(std::begin(kModes), std::end(kModes),
                     [&](const char* m) { return file->mode == m; })) {
      return false;
    }
  } else if (file->type != "counter" && file->type != "histogram" && file->type != "summary") {
    return false;
  }
  // prometheus_client takes the third '_' part as the pid: "gauge_all_12_x.db"
  // has pid "12"; keep the same reading.
  const size_t more = rest.find('_');
  file->pid = std::string(more == std::string_view::npos ? rest : rest.substr(0, more));
  return !file->pid.empty() || file->type != "gauge";
}

int32_t KeyTable::Intern(std::string_view json, std::string* error) {
  auto it = ids_.find(json);
  if (it != ids_.end()) return it->second;
  auto bad = bad_.find(json);
  if (bad != bad_.end()) {
    *error = bad->second;
    return kInvalid;
  }
  texts_.push_back(std::make_unique<std::string>(json));
  std::string_view stored(*texts_.back());
  Entry e;
  if (!ParseDbKey(json, &e.key, error)) {
    bad_.emplace(stored, *error);
    return kInvalid;
  }
  std::string series = e.key.metric;
  series.push_back('\0');
  series.append(e.key.sample).push_back('\0');
  for (const auto& [name, value] : e.key.labels) {
    series.append(name).push_back('\0');
    series.append(value).push_back('\0');
  }
  for (const auto& [name, value] : e.key.labels) {
    if (name == "le") {
      bool ok = true;
      e.le = ParseBound(value, &ok);
      e.has_le = ok;
      if (!ok) {
        *error = "bucket bound '" + value + "' is not a number";
        bad_.emplace(stored, *error);
        return kInvalid;
      }
      continue;
    }
    e.group.append(name).push_back('\0');
    e.group.append(value).push_back('\0');
  }
  // Keys that differ only in help text (an app redeployed with new help,
  // older processes' files still there) are one series, as prometheus_client
  // merges by sample name and labels.
  auto [series_it, fresh] = series_.try_emplace(std::move(series), static_cast<int32_t>(series_.size()));
  e.series = series_it->second;
  (void)fresh;
  const auto id = static_cast<int32_t>(keys_.size());
  keys_.push_back(std::move(e));
  ids_.emplace(stored, id);
  return id;
}

void KeyTable::Clear() {
  series_.clear();
  ids_.clear();
  bad_.clear();
  keys_.clear();
  texts_.clear();
}

void MergeDbFiles(const KeyTable& keys, const std::vector<DbFile>& files,
                  std::vector<MetricFamily>* out) {
  using LabelSet = std::vector<std::pair<std::string, std::string>>;
  // One metric: its type and gauge mode come from the first file it is seen in.
  struct Metric {
    const std::string* name;
    std::string type;
    std::string mode;
    const std::string* help;
    std::vector<int32_t> key_ids;  // keys seen this scrape, in first-seen order
    std::vector<std::pair<int32_t, const std::string*>> per_pid;  // gauge all/liveall
  };
  std::vector<Metric> metrics;
  std::unordered_map<std::string_view, size_t> metric_index;
  const size_t n = keys.series_count();
  std::vector<int32_t> metric_of(n, -1);
  std::vector<double> value(n, 0.0), timestamp(n, 0.0);
  std::vector<char> seen(n, 0);
  std::map<std::pair<int32_t, std::string>, double> pid_values;  // (key, pid) -> value

  for (const auto& f : files) {
    for (const auto& [id, entry] : f.entries) {
      if (id < 0 || static_cast<size_t>(id) >= keys.size()) continue;
      const size_t k = static_cast<size_t>(keys.series(id));
      if (metric_of[k] < 0) {
        const DbKey& key = keys.key(id);
        auto [it, fresh] = metric_index.try_emplace(key.metric, metrics.size());
        if (fresh) metrics.push_back({&key.metric, f.type, f.mode, &key.help, {}, {}});
        metric_of[k] = static_cast<int32_t>(it->second);
      }
      Metric& m = metrics[static_cast<size_t>(metric_of[k])];
      if (m.type != f.type) continue;  // one name written as two types: the first wins
      const double v = entry.value;
      const bool first = !seen[k];
      if (first) {
        seen[k] = 1;
        m.key_ids.push_back(id);
      }
      if (m.type != "gauge") {
        value[k] += v;  // counters, histograms and summaries add up
        continue;
      }
      const std::string& mode = m.mode;
      if (mode == "min" || mode == "livemin") {
        if (first || v < value[k]) value[k] = v;
      } else if (mode == "max" || mode == "livemax") {
        if (first || v > value[k]) value[k] = v;
      } else if (mode == "sum" || mode == "livesum") {
        value[k] += v;
      } else if (mode == "mostrecent" || mode == "livemostrecent") {
        if (timestamp[k] < entry.timestamp) {  // from 0, as prometheus_client
          timestamp[k] = entry.timestamp;
          value[k] = v;
          seen[k] = 2;  // has a value
        }
      } else {  // all, liveall: one sample per process, labelled pid
        pid_values[{static_cast<int32_t>(k), f.pid}] = v;
      }
    }
  }

  auto S = [&](int32_t id) { return static_cast<size_t>(keys.series(id)); };
  auto labels_of = [](const LabelSet& ls) {
    std::vector<ClientMetric::Label> out;
    out.reserve(ls.size());
    for (const auto& [k, v] : ls) out.push_back({k, v});
    return out;
  };
  for (const Metric& m : metrics) {
    const std::string& name = *m.name;
    MetricFamily family;
    family.help = *m.help;
    if (m.type == "counter") {
      family.name = name + "_total";
      family.type = MetricType::Counter;
      for (int32_t id : m.key_ids) {
        const DbKey& key = keys.key(id);
        if (key.sample != family.name) continue;  // only _total exists in multi-process mode
        ClientMetric c;
        c.label = labels_of(key.labels);
        c.counter.value = value[S(id)];
        family.metric.push_back(std::move(c));
      }
    } else if (m.type == "gauge") {
      family.name = name;
      family.type = MetricType::Gauge;
      const bool per_pid = !(m.mode == "min" || m.mode == "livemin" || m.mode == "max" ||
                             m.mode == "livemax" || m.mode == "sum" || m.mode == "livesum" ||
                             m.mode == "mostrecent" || m.mode == "livemostrecent");
      const bool recent = m.mode == "mostrecent" || m.mode == "livemostrecent";
      for (int32_t id : m.key_ids) {
        const DbKey& key = keys.key(id);
        if (key.sample != name) continue;
        if (per_pid) {
          const auto series = static_cast<int32_t>(S(id));
          for (auto it = pid_values.lower_bound({series, std::string()});
               it != pid_values.end() && it->first.first == series; ++it) {
            ClientMetric c;
            LabelSet ls = key.labels;
            // the process' pid replaces a label of the same name, as in prometheus_client
            ls.erase(std::remove_if(ls.begin(), ls.end(),
                                    [](const auto& l) { return l.first == "pid"; }),
                     ls.end());
            ls.emplace_back("pid", it->first.second);
            std::sort(ls.begin(), ls.end());
            c.label = labels_of(ls);
            c.gauge.value = it->second;
            family.metric.push_back(std::move(c));
          }
          continue;
        }
        if (recent && seen[S(id)] != 2) continue;
        ClientMetric c;
        c.label = labels_of(key.labels);
        c.gauge.value = value[S(id)];
        family.metric.push_back(std::move(c));
      }
    } else if (m.type == "summary") {
      family.name = name;
      family.type = MetricType::Summary;
      std::map<std::string, ClientMetric> by_labels;
      for (int32_t id : m.key_ids) {
        const DbKey& key = keys.key(id);
        const bool count = key.sample == name + "_count", sum = key.sample == name + "_sum";
        if (!count && !sum) continue;
        ClientMetric& c = by_labels[keys.group(id)];
        c.label = labels_of(key.labels);
        if (count) c.summary.sample_count = Count(value[S(id)]);
        if (sum) c.summary.sample_sum = value[S(id)];
      }
      for (auto& [group, c] : by_labels) family.metric.push_back(std::move(c));
    } else {  // histogram: buckets summed, then accumulated; _count is the +Inf bucket
      family.name = name;
      family.type = MetricType::Histogram;
      std::map<std::string, std::map<double, double>> buckets;
      std::map<std::string, std::pair<int32_t, double>> sums;  // group -> (a key id, _sum)
      for (int32_t id : m.key_ids) {
        const DbKey& key = keys.key(id);
        const double v = value[S(id)];
        if (keys.has_le(id)) {
          buckets[keys.group(id)][keys.le(id)] += v;
        } else if (key.sample == name + "_sum") {
          sums[keys.group(id)] = {id, v};
        }
      }
      for (const auto& [group, bounds] : buckets) {
        ClientMetric c;
        auto s = sums.find(group);
        // labels without le: from the _sum key, or any bucket key of the group
        for (int32_t id : m.key_ids) {
          if (keys.group(id) == group) {
            LabelSet ls;
            for (const auto& l : keys.key(id).labels) {
              if (l.first != "le") ls.push_back(l);
            }
            c.label = labels_of(ls);
            break;
          }
        }
        double acc = 0;
        for (const auto& [bound, count] : bounds) {
          acc += count;
          c.histogram.bucket.push_back({Count(acc), bound});
        }
        c.histogram.sample_count = Count(acc);
        if (s != sums.end()) c.histogram.sample_sum = s->second.second;
        family.metric.push_back(std::move(c));
      }
    }
    if (!family.metric.empty()) out->push_back(std::move(family));
  }
}

void MultiprocCollector::Collect(
    std::vector<MetricFamily>* out,
    const std::function<void(const std::string&, const std::string&)>& skipped) {
  if (keys_.size() + keys_.bad_size() > 200000) keys_.Clear();  // bound memory against churn
  int dirfd = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    ++stats_.files_skipped;
    skipped(dir_, std::string("cannot open directory: ") + strerror(errno));
    return;
  }
  DIR* d = fdopendir(dirfd);
  if (!d) {
    close(dirfd);
    return;
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string_view n(e->d_name);
    if (n.size() > 3 && n.substr(n.size() - 3) == ".db") names.emplace_back(n);
  }
  // Directory order, as prometheus_client's glob: the same float sums, the
  // same first help text.

  std::vector<DbFile> files;
  for (const auto& name : names) {
    auto skip = [&](const std::string& why) {
      ++stats_.files_skipped;
      skipped(name, why);
    };
    DbFile file;
    if (!ParseDbFileName(name, &file)) {
      skip("not a prometheus_client file name (TYPE_PID.db or gauge_MODE_PID.db)");
      continue;
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW:
    // a symlink is not read through.
    int fd = openat(dirfd, name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      // live gauge files can vanish between readdir and open (process marked dead)
      if (errno != ENOENT) skip(std::string("cannot open: ") + strerror(errno));
      continue;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      skip("not a regular file");
      continue;
    }
    if (static_cast<size_t>(st.st_size) > max_file_bytes_) {
      close(fd);
      skip("larger than " + std::to_string(max_file_bytes_ >> 20) + " MiB");
      continue;
    }
    // pread, never mmap: a file truncated under a mapping raises SIGBUS.
    std::string data(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < data.size()) {
      ssize_t n = pread(fd, &data[got], data.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    close(fd);
    data.resize(got);
    // Only `used` bytes matter; the rest of the file is preallocated zeros.
    if (data.size() >= 4) {
      const int32_t used = ReadI32(data, 0);
      if (used >= 8 && static_cast<size_t>(used) < data.size()) data.resize(static_cast<size_t>(used));
    }
    std::vector<DbEntry> entries;
    DbLayout layout;
    std::string error;
    if (!ParseDbFile(data, &entries, &layout, &error)) {
      skip(error);
      continue;
    }
    bool bad = false;
    file.entries.reserve(entries.size());
    for (const auto& e : entries) {
      const int32_t id = keys_.Intern(e.key, &error);
      if (id == KeyTable::kInvalid) {
        bad = true;
        continue;  // serve the rest of the file
      }
      DbEntry value = e;
      value.key = {};  // points into `data`, which goes away
      file.entries.emplace_back(id, value);
    }
    if (bad) skip("some keys are not valid: " + error);
    ++stats_.files_read;
    files.push_back(std::move(file));
  }
  closedir(d);
  MergeDbFiles(keys_, files, out);
}

void MultiprocCollector::MarkProcessDead(const std::string& dir, long pid) {
  static const char* kLiveModes[] = {"liveall", "livesum", "livemin", "livemax",
                                     "livemostrecent"};
  for (const char* mode : kLiveModes) {
    const std::string path = dir + "/gauge_" + mode + "_" + std::to_string(pid) + ".db";
    unlink(path.c_str());
  }
}

bool MultiprocCollector::Clear(const std::string& dir, std::string* error) {
  int dirfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    *error = std::string("cannot open directory: ") + strerror(errno);
    return false;
  }
  DIR* d = fdopendir(dirfd);
  if (!d) {
    close(dirfd);
    *error = strerror(errno);
    return false;
  }
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) {
    std::string_view n(e->d_name);
    if (n.size() > 3 && n.substr(n.size() - 3) == ".db") names.emplace_back(n);
  }
  for (const auto& n : names) {
    struct stat st;
    if (fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)) {
      unlinkat(dirfd, n.c_str(), 0);
    }
  }
  closedir(d);
  return true;
}

}  // namespace uwsgi_prometheus
