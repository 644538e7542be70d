// Reading a prometheus_client multi-process directory: every *.db file,
// opened without trusting it (no symlinks followed, no FIFO waited on, no
// file larger than a bound, pread rather than mmap), parsed into records for
// the merge. A file that cannot be used is skipped with a reason; the rest is
// still read. Also the directory's housekeeping (clearing it at start,
// removing a dead process' live gauges).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "dbfile.h"
#include "dbkey.h"

namespace uwsgi_prometheus {

// Why a file was skipped. kInvalidKeys files are still read, without the
// entries whose keys are not valid.
enum class SkipReason {
  kDirectory,    // the directory itself cannot be opened
  kFileName,     // not TYPE_PID.db or gauge_MODE_PID.db
  kOpen,         // open(2) failed
  kNotRegular,   // FIFO, symlink, directory, device...
  kTooLarge,     // larger than the bound
  kCorrupt,      // not prometheus_client's format
  kInvalidKeys,  // some keys are not valid
};
inline constexpr SkipReason kSkipReasons[] = {
    SkipReason::kDirectory, SkipReason::kFileName, SkipReason::kOpen,       SkipReason::kNotRegular,
    SkipReason::kTooLarge,  SkipReason::kCorrupt,  SkipReason::kInvalidKeys};
inline constexpr size_t kSkipReasonCount = sizeof(kSkipReasons) / sizeof(kSkipReasons[0]);

// The reason as a label value: "directory", "file_name", "open", ...
const char* SkipReasonName(SkipReason reason);

struct SkippedFile {
  std::string file;  // the name in the directory, or the directory
  SkipReason reason;
  std::string why;   // for the log: "not a regular file", "cannot open: ..."
};
using SkipHandler = std::function<void(const SkippedFile&)>;

inline constexpr size_t kDefaultMaxDbFileBytes = 64u << 20;

// Reads every *.db file of `dir`, in directory order (as prometheus_client's
// glob: the same float sums and the same first help text), appending one
// record per usable file to `files`; keys are interned in `keys`.
// `skipped` is called once per skipped file. Returns the number of records
// appended.
size_t ReadMultiprocDir(const std::string& dir, size_t max_file_bytes, KeyTable* keys,
                        std::vector<DbFile>* files, const SkipHandler& skipped);

// Makes `dir` ready for a new master: created if missing (0755), checked to
// be a readable and writable directory, and emptied of its *.db regular
// files (values of a previous master are stale). False with a reason.
bool PrepareMultiprocDir(const std::string& dir, std::string* error);

// Deletes every *.db regular file of `dir`.
bool RemoveDbFiles(const std::string& dir, std::string* error);

// Deletes gauge_live*_<pid>.db, as prometheus_client's mark_process_dead.
void RemoveLiveGaugeFiles(const std::string& dir, long pid);

}  // namespace uwsgi_prometheus
