#include "multiproc_reader.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>

namespace uwsgi_prometheus {

namespace {

std::string Errno(const char* what) { return std::string(what) + strerror(errno); }

// An open directory: its fd for openat(2) and its *.db names.
class DbDirectory {
 public:
  DbDirectory() = default;
  DbDirectory(const DbDirectory&) = delete;
  DbDirectory& operator=(const DbDirectory&) = delete;
  ~DbDirectory() {
    if (dir_) closedir(dir_);  // closes fd_ too
  }

  bool Open(const std::string& path, std::string* error) {
    const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      *error = Errno("cannot open directory: ");
      return false;
    }
    dir_ = fdopendir(fd);
    if (!dir_) {
      *error = Errno("cannot open directory: ");
      close(fd);
      return false;
    }
    fd_ = fd;
    return true;
  }

  int fd() const { return fd_; }

  // The names ending in ".db", in directory order.
  std::vector<std::string> DbNames() {
    std::vector<std::string> names;
    while (struct dirent* e = readdir(dir_)) {
      std::string_view n(e->d_name);
      if (n.size() > 3 && n.substr(n.size() - 3) == ".db") names.emplace_back(n);
    }
    return names;
  }

 private:
  DIR* dir_ = nullptr;
  int fd_ = -1;
};

class FileFd {
 public:
  explicit FileFd(int fd) : fd_(fd) {}
  FileFd(const FileFd&) = delete;
  FileFd& operator=(const FileFd&) = delete;
  ~FileFd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

enum class ReadResult { kRead, kGone, kSkipped };

// Reads the regular file `name` of the directory whole into `data`.
ReadResult ReadDbBytes(int dirfd, const std::string& name, size_t max_bytes, std::string* data,
                       std::optional<SkippedFile>* skip) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer. O_NOFOLLOW: a
  // symlink is not read through.
  FileFd fd(openat(dirfd, name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    // live gauge files can vanish between readdir and open (process marked dead)
    if (errno == ENOENT) return ReadResult::kGone;
    *skip = SkippedFile{name, SkipReason::kOpen, Errno("cannot open: ")};
    return ReadResult::kSkipped;
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    *skip = SkippedFile{name, SkipReason::kNotRegular, "not a regular file"};
    return ReadResult::kSkipped;
  }
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    *skip = SkippedFile{name, SkipReason::kTooLarge,
                        "larger than " + std::to_string(max_bytes >> 20) + " MiB"};
    return ReadResult::kSkipped;
  }
  // pread, never mmap: a file truncated under a mapping raises SIGBUS.
  data->assign(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data->size()) {
    ssize_t n = pread(fd.get(), &(*data)[got], data->size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  data->resize(got);
  return ReadResult::kRead;
}

// Parses a file's bytes into `file` (whose name parts are filled), keys
// interned. False when the file is not usable at all; `skip` is also set
// when only some keys were bad.
bool ParseRecord(const std::string& name, std::string_view bytes, KeyTable* keys, DbFile* file,
                 std::optional<SkippedFile>* skip) {
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  if (!ParseDbFile(UsedPart(bytes), &entries, &layout, &error)) {
    *skip = SkippedFile{name, SkipReason::kCorrupt, error};
    return false;
  }
  bool bad = false;
  file->entries.reserve(entries.size());
  for (const auto& e : entries) {
    const int32_t id = keys->Intern(e.key, &error);
    if (id == KeyTable::kInvalid) {
      bad = true;
      continue;  // serve the rest of the file
    }
    DbEntry value = e;
    value.key = {};  // points into `bytes`, which goes away
    file->entries.emplace_back(id, value);
  }
  if (bad) *skip = SkippedFile{name, SkipReason::kInvalidKeys, "some keys are not valid: " + error};
  return true;
}

}  // namespace

const char* SkipReasonName(SkipReason reason) {
  switch (reason) {
    case SkipReason::kDirectory: return "directory";
    case SkipReason::kFileName: return "file_name";
    case SkipReason::kOpen: return "open";
    case SkipReason::kNotRegular: return "not_regular";
    case SkipReason::kTooLarge: return "too_large";
    case SkipReason::kCorrupt: return "corrupt";
    case SkipReason::kInvalidKeys: return "invalid_keys";
  }
  return "unknown";
}

size_t ReadMultiprocDir(const std::string& dir, size_t max_file_bytes, KeyTable* keys,
                        std::vector<DbFile>* files, const SkipHandler& skipped) {
  DbDirectory directory;
  std::string error;
  if (!directory.Open(dir, &error)) {
    skipped({dir, SkipReason::kDirectory, error});
    return 0;
  }
  size_t read = 0;
  std::string bytes;
  for (const auto& name : directory.DbNames()) {
    DbFile file;
    if (!ParseDbFileName(name, &file)) {
      skipped({name, SkipReason::kFileName,
               "not a prometheus_client file name (TYPE_PID.db or gauge_MODE_PID.db)"});
      continue;
    }
    std::optional<SkippedFile> skip;
    const ReadResult result = ReadDbBytes(directory.fd(), name, max_file_bytes, &bytes, &skip);
    if (result == ReadResult::kGone) continue;
    const bool usable = result == ReadResult::kRead && ParseRecord(name, bytes, keys, &file, &skip);
    if (skip) skipped(*skip);
    if (!usable) continue;
    files->push_back(std::move(file));
    ++read;
  }
  return read;
}

bool RemoveDbFiles(const std::string& dir, std::string* error) {
  DbDirectory directory;
  if (!directory.Open(dir, error)) return false;
  for (const auto& name : directory.DbNames()) {
    struct stat st;
    if (fstatat(directory.fd(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode)) {
      unlinkat(directory.fd(), name.c_str(), 0);
    }
  }
  return true;
}

void RemoveLiveGaugeFiles(const std::string& dir, long pid) {
  static const char* const kLiveModes[] = {"liveall", "livesum", "livemin", "livemax",
                                           "livemostrecent"};
  for (const char* mode : kLiveModes) {
    const std::string path = dir + "/gauge_" + mode + "_" + std::to_string(pid) + ".db";
    unlink(path.c_str());
  }
}

bool PrepareMultiprocDir(const std::string& dir, std::string* error) {
  if (dir.empty()) {
    *error = "empty path";
    return false;
  }
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT || mkdir(dir.c_str(), 0755) != 0) {
      *error = Errno("cannot create the directory: ");
      return false;
    }
  } else if (!S_ISDIR(st.st_mode)) {
    *error = "exists and is not a directory";
    return false;
  }
  if (access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    *error = Errno("not readable and writable: ");
    return false;
  }
  return RemoveDbFiles(dir, error);
}

}  // namespace uwsgi_prometheus
