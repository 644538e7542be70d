#include "dbfile.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace uwsgi_prometheus {

namespace {

constexpr size_t kHeaderBytes = 8;  // int32 `used`, 4 bytes of padding

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

// The entries of one layout, and how well the bytes fit it.
struct Walk {
  std::vector<DbEntry> entries;
  size_t end = kHeaderBytes;  // bytes consumed cleanly
  bool exact = false;         // ended exactly at `used`
  size_t odd = 0;             // keys that do not look like JSON arrays
};

// Walks the entries with one layout (`value_bytes` 8 or 16). Stops at the
// first entry that does not fit or is not padded as the writer pads; a
// misread layout yields many odd keys.
Walk WalkEntries(std::string_view d, size_t used, size_t value_bytes) {
  Walk w;
  size_t& pos = w.end;
  while (pos < used) {
    if (pos + 4 > used) return w;
    const int32_t n = ReadI32(d, pos);
    if (n <= 0 || static_cast<size_t>(n) > used) return w;
    const size_t len = static_cast<size_t>(n);
    const size_t padded = len + (8 - (len + 4) % 8);
    const size_t value_at = pos + 4 + padded;
    if (value_at + value_bytes > used) return w;
    std::string_view key = d.substr(pos + 4, len);
    if (key.front() != '[' || key.back() != ']') ++w.odd;
    for (size_t i = len; i < padded; ++i) {
      if (d[pos + 4 + i] != ' ') return w;  // the writer pads with spaces
    }
    DbEntry e;
    e.key = key;
    e.value = ReadF64(d, value_at);
    if (value_bytes == 16) e.timestamp = ReadF64(d, value_at + 8);
    w.entries.push_back(e);
    pos = value_at + value_bytes;
  }
  w.exact = pos == used;
  return w;
}

// Whether the value-and-timestamp reading `b` is the right one rather than
// the value-only reading `a`. The layout that walks exactly to `used` wins;
// with a cut file, the one that gets further. An empty file (used == 8) has
// no entries either way.
bool PickTimestampLayout(const Walk& a, const Walk& b) {
  if (a.exact != b.exact) return b.exact;
  if (a.exact) {
    // Both walk to the end: only possible when every entry reads the same;
    // prefer the layout whose timestamps look like times (newer writers).
    return !b.entries.empty() &&
           std::all_of(b.entries.begin(), b.entries.end(),
                       [](const DbEntry& e) { return e.timestamp > 1e9 && e.timestamp < 1e10; });
  }
  const size_t score_a = a.end - kHeaderBytes - a.odd * 8;
  const size_t score_b = b.end - kHeaderBytes - b.odd * 8;
  return score_b > score_a ? true : b.end == a.end ? b.odd < a.odd : false;
}

}  // namespace

std::string_view UsedPart(std::string_view data) {
  if (data.size() < 4) return data;
  const int32_t used = ReadI32(data, 0);
  if (used >= 8 && static_cast<size_t>(used) < data.size()) {
    return data.substr(0, static_cast<size_t>(used));
  }
  return data;
}

bool ParseDbFile(std::string_view data, std::vector<DbEntry>* entries, DbLayout* layout,
                 std::string* error) {
  entries->clear();
  if (data.size() < kHeaderBytes) {
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
  Walk a = WalkEntries(data, used, 8);
  Walk b = WalkEntries(data, used, 16);
  const bool pick_b = PickTimestampLayout(a, b);
  Walk& picked = pick_b ? b : a;
  *layout = pick_b ? DbLayout::kValueAndTimestamp : DbLayout::kValueOnly;
  *entries = std::move(picked.entries);
  if (!picked.exact && static_cast<size_t>(used_raw) <= data.size() && entries->empty()) {
    // Not cut short, yet the entries do not add up: not a file we understand.
    *error = "entries do not parse in either prometheus_client layout";
    return false;
  }
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

}  // namespace uwsgi_prometheus
