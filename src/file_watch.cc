#include "file_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <unistd.h>

#include "listen_address.h"

namespace uwsgi_prometheus {
namespace {

int64_t WallNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t Ns(const timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

std::array<unsigned char, 32> Sha256(const std::string& bytes) {
  std::array<unsigned char, 32> digest{};
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr) != 1) {
    digest.fill(0xff);  // only without memory
  }
  return digest;
}

}  // namespace

bool ReadSmallFile(const std::string& path, size_t max_bytes, std::string* content,
                   std::string* error) {
  content->clear();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *error = "cannot open: " + ErrnoText(errno);
    return false;
  }
  struct stat st;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (!ok) *error = "not a regular file";
  char buf[16384];
  while (ok) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = "cannot read: " + ErrnoText(errno);
      ok = false;
    } else if (content->size() + static_cast<size_t>(n) > max_bytes) {
      *error = "larger than " + std::to_string(max_bytes / 1024) + " KiB; is this the right file?";
      ok = false;
    } else {
      content->append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  OPENSSL_cleanse(buf, sizeof buf);  // a key file's bytes: not left on the stack
  return ok;
}

FileWatch::Stamp FileWatch::Look() const {
  Stamp s;
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    s.err = errno;
    return s;
  }
  s.err = 0;
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.size = static_cast<uint64_t>(st.st_size);
  s.mtime_ns = Ns(st.st_mtim);
  s.ctime_ns = Ns(st.st_ctim);
  return s;
}

bool FileWatch::Read(std::string* content, std::string* error) {
  checked_at_ns_ = WallNs();
  stamp_ = Look();  // before reading: a write after this shows in the next Look()
  read_ok_ = ReadSmallFile(path_, max_bytes_, content, error);
  digest_ = Sha256(read_ok_ ? *content : std::string());
  return read_ok_;
}

bool FileWatch::Changed() {
  if (!read_ok_) return true;
  const Stamp now = Look();
  if (!(now == stamp_)) return true;
  // Same times, but a write within the same clock tick would not change
  // them: compare the bytes until the last change is old enough.
  const int64_t latest = std::max(now.mtime_ns, now.ctime_ns);
  if (checked_at_ns_ - latest > kRacyNs) return false;
  const int64_t when = WallNs();
  std::string bytes, error;
  const bool same = ReadSmallFile(path_, max_bytes_, &bytes, &error) && Sha256(bytes) == digest_;
  OPENSSL_cleanse(bytes.data(), bytes.size());
  if (!same) return true;
  checked_at_ns_ = when;
  return false;
}

}  // namespace uwsgi_prometheus
