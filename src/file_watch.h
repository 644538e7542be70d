// Whether a file changed since it was last read, cheaply enough to ask on
// every request: one stat() compared with the last one (device, inode,
// size, modification and change times), so an edit in place, a rename over
// it and a Kubernetes secret's symlink swap are all seen. File times tick
// at the kernel's clock granularity (a few milliseconds), so two writes of
// the same size within one tick look alike: while the file's times are
// that recent, its bytes are compared too (at most for kRacyNs after the
// last write), through a SHA-256 digest: the watch keeps no copy of the
// file, which may be a private key (forked workers would inherit it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace uwsgi_prometheus {

class FileWatch {
 public:
  static constexpr int64_t kRacyNs = int64_t{2} * 1000 * 1000 * 1000;

  FileWatch() = default;
  FileWatch(std::string path, size_t max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {}

  const std::string& path() const { return path_; }

  // Reads the whole file (a regular file of at most max_bytes) into
  // *content and remembers what was read. Returns false with a reason
  // ("cannot open: no such file or directory").
  bool Read(std::string* content, std::string* error);

  // True when the file may differ from what Read() last returned (also
  // when it could not be read then, or cannot be looked at now).
  bool Changed();

 private:
  struct Stamp {
    int err = -1;  // stat()'s errno, 0 when it succeeded; -1: never looked
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    bool operator==(const Stamp& o) const {
      return err == o.err && dev == o.dev && ino == o.ino && size == o.size &&
             mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
    }
  };
  Stamp Look() const;

  std::string path_;
  size_t max_bytes_ = 0;
  Stamp stamp_;          // as of the last Read()
  std::array<unsigned char, 32> digest_{};  // SHA-256 of what the last Read() returned
  bool read_ok_ = false;
  int64_t checked_at_ns_ = 0;  // wall clock when digest_ was last known current
};

// Reads a regular file of at most `max_bytes` (non-blocking open: a FIFO
// never blocks). Returns false with a reason.
bool ReadSmallFile(const std::string& path, size_t max_bytes, std::string* content,
                   std::string* error);

}  // namespace uwsgi_prometheus
