// prometheus_client multi-process files built by hand, for tests.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

namespace uwsgi_prometheus {

struct DbTestEntry {
  std::string key;  // JSON
  double value = 0;
  double timestamp = 0;
};

// The bytes prometheus_client writes: an int32 `used`, 4 bytes of padding,
// then per entry an int32 key length, the key padded with spaces to 8 bytes
// (counting the length), the value and, in the newer layout, a timestamp.
// `tail` zero bytes follow, as the writer preallocates.
inline std::string DbBytes(const std::vector<DbTestEntry>& entries, bool timestamps,
                           size_t tail = 0) {
  std::string out(8, '\0');
  auto put = [&out](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  for (const auto& e : entries) {
    const auto len = static_cast<int32_t>(e.key.size());
    put(&len, 4);
    out += e.key;
    out.append(8 - (e.key.size() + 4) % 8, ' ');
    put(&e.value, 8);
    if (timestamps) put(&e.timestamp, 8);
  }
  const auto used = static_cast<int32_t>(out.size());
  std::memcpy(&out[0], &used, 4);
  out.append(tail, '\0');
  return out;
}

// A scratch directory, removed with its files.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/multiproc-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string Write(const std::string& name, const std::string& bytes) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << bytes;
    return file;
  }

 private:
  std::string path_;
};

}  // namespace uwsgi_prometheus
