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

#include "model.h"

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

constexpr size_t kMaxLabelValueBytes = 1024;

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

bool ValidMetricName(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(std::string_view n) {
  if (n.empty() || n.find(':') != std::string_view::npos) return false;
  return ValidMetricName(n) && !(n.size() >= 2 && n[0] == '_' && n[1] == '_');
}

bool ValidUtf8(std::string_view s) { return SanitizeLabelValue(s, s.size() + 1) == s; }

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
  if (!ValidMetricName(key->metric) || !ValidMetricName(key->sample)) {
    *error = "invalid metric name";
    return false;
  }
  std::sort(key->labels.begin(), key->labels.end());
  for (size_t i = 0; i < key->labels.size(); ++i) {
    if (!ValidLabelName(key->labels[i].first) ||
        (i > 0 && key->labels[i].first == key->labels[i - 1].first)) {
      *error = "invalid or repeated label name";
      return false;
    }
    if (!ValidUtf8(key->labels[i].second) || key->labels[i].second.size() > kMaxLabelValueBytes) {
      key->labels[i].second = SanitizeLabelValue(key->labels[i].second, kMaxLabelValueBytes);
    }
  }
  if (!ValidUtf8(key->help)) key->help = SanitizeLabelValue(key->help, key->help.size());
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
    static const std::set<std::string> kModes = {"all", "liveall", "min", "livemin",
                                                 "max", "livemax", "sum", "livesum",
                                                 "mostrecent", "livemostrecent"};
    if (!kModes.count(file->mode)) return false;
  } else if (file->type != "counter" && file->type != "histogram" && file->type != "summary") {
    return false;
  }
  // prometheus_client takes the third '_' part as the pid: "gauge_all_12_x.db"
  // has pid "12"; keep the same reading.
  const size_t more = rest.find('_');
  file->pid = std::string(more == std::string_view::npos ? rest : rest.substr(0, more));
  return !file->pid.empty() || file->type != "gauge";
}

void MergeDbFiles(const std::vector<DbFile>& files, std::vector<MetricFamily>* out) {
  using LabelSet = std::vector<std::pair<std::string, std::string>>;
  struct Metric {
    std::string type;
    std::string mode;
    std::string help;
    std::map<std::pair<std::string, LabelSet>, double> samples;      // (sample, labels) -> value
    std::map<std::pair<std::string, LabelSet>, double> timestamps;   // mostrecent
    std::map<LabelSet, std::map<double, double>> buckets;            // labels w/o le -> le -> n
    std::map<LabelSet, std::string> bucket_sample;                   // for names
  };
  std::map<std::string, Metric> metrics;

  for (const auto& f : files) {
    for (const auto& [key, entry] : f.entries) {
      auto [it, inserted] = metrics.try_emplace(key.metric);
      Metric& m = it->second;
      if (inserted) {
        m.type = f.type;
        m.mode = f.mode;
        m.help = key.help;
      }
      if (m.type != f.type) continue;  // same name written as two types: first wins
      const double value = entry.value;
      if (m.type == "gauge") {
        const std::string& mode = f.mode;
        std::pair<std::string, LabelSet> k{key.sample, key.labels};
        if (mode == "min" || mode == "livemin") {
          auto [s, fresh] = m.samples.try_emplace(k, value);
          if (!fresh && value < s->second) s->second = value;
        } else if (mode == "max" || mode == "livemax") {
          auto [s, fresh] = m.samples.try_emplace(k, value);
          if (!fresh && value > s->second) s->second = value;
        } else if (mode == "sum" || mode == "livesum") {
          m.samples[k] += value;
        } else if (mode == "mostrecent" || mode == "livemostrecent") {
          double& ts = m.timestamps[k];  // starts at 0, as prometheus_client's
          if (ts < entry.timestamp) {
            ts = entry.timestamp;
            m.samples[k] = value;
          }
        } else {  // all, liveall: one sample per process, labelled pid
          k.second.emplace_back("pid", f.pid);
          std::sort(k.second.begin(), k.second.end());
          m.samples[k] = value;
        }
      } else if (m.type == "histogram") {
        auto le = std::find_if(key.labels.begin(), key.labels.end(),
                               [](const auto& l) { return l.first == "le"; });
        if (le != key.labels.end()) {
          bool ok = true;
          const double bound = ParseBound(le->second, &ok);
          if (!ok) continue;
          LabelSet without(key.labels.begin(), key.labels.end());
          without.erase(without.begin() + (le - key.labels.begin()));
          m.buckets[without][bound] += value;
        } else {
          m.samples[{key.sample, key.labels}] += value;
        }
      } else {
        m.samples[{key.sample, key.labels}] += value;
      }
    }
  }

  for (auto& [name, m] : metrics) {
    MetricFamily family;
    family.help = m.help;
    auto labels_of = [](const LabelSet& ls) {
      std::vector<ClientMetric::Label> out;
      for (const auto& [k, v] : ls) out.push_back({k, v});
      return out;
    };
    if (m.type == "counter") {
      family.name = name + "_total";
      family.type = MetricType::Counter;
      for (const auto& [k, v] : m.samples) {
        if (k.first != family.name) continue;  // only _total is kept in multi-process mode
        ClientMetric c;
        c.label = labels_of(k.second);
        c.counter.value = v;
        family.metric.push_back(std::move(c));
      }
    } else if (m.type == "gauge") {
      family.name = name;
      family.type = MetricType::Gauge;
      for (const auto& [k, v] : m.samples) {
        if (k.first != name) continue;
        ClientMetric c;
        c.label = labels_of(k.second);
        c.gauge.value = v;
        family.metric.push_back(std::move(c));
      }
    } else if (m.type == "summary") {
      family.name = name;
      family.type = MetricType::Summary;
      std::map<LabelSet, ClientMetric> by_labels;
      for (const auto& [k, v] : m.samples) {
        ClientMetric& c = by_labels[k.second];
        if (k.first == name + "_count") c.summary.sample_count = static_cast<uint64_t>(v);
        if (k.first == name + "_sum") c.summary.sample_sum = v;
      }
      for (auto& [ls, c] : by_labels) {
        c.label = labels_of(ls);
        family.metric.push_back(std::move(c));
      }
    } else {  // histogram
      family.name = name;
      family.type = MetricType::Histogram;
      std::map<LabelSet, ClientMetric> by_labels;
      for (const auto& [ls, bounds] : m.buckets) {
        ClientMetric& c = by_labels[ls];
        double acc = 0;
        for (const auto& [bound, n] : bounds) {
          acc += n;
          c.histogram.bucket.push_back({static_cast<uint64_t>(acc), bound});
        }
        c.histogram.sample_count = static_cast<uint64_t>(acc);  // _count is the +Inf bucket
      }
      for (const auto& [k, v] : m.samples) {
        if (k.first == name + "_sum") by_labels[k.second].histogram.sample_sum = v;
      }
      for (auto& [ls, c] : by_labels) {
        c.label = labels_of(ls);
        family.metric.push_back(std::move(c));
      }
    }
    if (!family.metric.empty()) out->push_back(std::move(family));
  }
}

void MultiprocCollector::Collect(
    std::vector<MetricFamily>* out,
    const std::function<void(const std::string&, const std::string&)>& skipped) {
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
  std::sort(names.begin(), names.end());  // a stable merge order (first help wins)

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
    for (const auto& e : entries) {
      DbKey key;
      if (!ParseDbKey(e.key, &key, &error)) {
        bad = true;
        continue;  // serve the rest of the file
      }
      DbEntry value = e;
      value.key = {};  // points into `data`, which goes away
      file.entries.emplace_back(std::move(key), value);
    }
    if (bad) skip("some keys are not valid: " + error);
    ++stats_.files_read;
    files.push_back(std::move(file));
  }
  closedir(d);
  MergeDbFiles(files, out);
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
