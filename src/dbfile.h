// One prometheus_client multi-process file (a *.db file of
// PROMETHEUS_MULTIPROC_DIR): its name, and its bytes as entries. Both on-disk
// layouts are read: a double per entry (prometheus_client 0.16) and a double
// plus a timestamp (0.18 on). Keys stay JSON text here; dbkey.h parses them.
//
// Nothing here trusts the bytes: every length is checked against the end
// before it is read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace uwsgi_prometheus {

struct DbEntry {
  std::string_view key;  // JSON, points into the parsed buffer
  double value = 0;
  double timestamp = 0;  // 0 in the old layout
};

enum class DbLayout { kValueOnly, kValueAndTimestamp };

// The part of a file's bytes that holds entries: the header's `used` count
// when it is plausible and inside the data (the rest of the file is
// preallocated zeros), else all of `data`.
std::string_view UsedPart(std::string_view data);

// Parses one file's bytes. Returns false with a reason when the bytes are not
// a prometheus_client file. A file still being written (an entry beyond the
// bytes read) yields the complete entries before it.
bool ParseDbFile(std::string_view data, std::vector<DbEntry>* entries, DbLayout* layout,
                 std::string* error);

// One file as the merge sees it: what its name says and its entries, keys
// replaced by their ids in a KeyTable (dbkey.h).
struct DbFile {
  std::string type;  // counter, gauge, histogram, summary
  std::string mode;  // gauge mode (all, liveall, livesum, max, min, sum, mostrecent, ...)
  std::string pid;   // process id part of the name
  std::vector<std::pair<int32_t, DbEntry>> entries;  // key ids in a KeyTable
};

// Splits "gauge_livesum_123.db" / "counter_123.db"; false if not such a name.
bool ParseDbFileName(std::string_view name, DbFile* file);

}  // namespace uwsgi_prometheus
