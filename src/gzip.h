// gzip for response bodies (libdeflate: one call over the whole body, which
// a scrape has in memory anyway). The compressor and the output buffer are
// kept across scrapes; the buffer is about a quarter of the largest body.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

struct libdeflate_compressor;

namespace uwsgi_prometheus {

class GzipEncoder {
 public:
  // `level`: 1 (fastest) .. 9; chosen by tests/bench/gzip_bench.
  explicit GzipEncoder(int level = kDefaultLevel) : level_(level) {}
  ~GzipEncoder();
  GzipEncoder(const GzipEncoder&) = delete;
  GzipEncoder& operator=(const GzipEncoder&) = delete;

  static constexpr int kDefaultLevel = 1;
  static constexpr int kMinLevel = 1;
  static constexpr int kMaxLevel = 9;

  // Compresses `in` into a gzip member. Returns false (with `error`) only
  // when memory for the compressor cannot be had; the caller then answers
  // uncompressed. The result stays valid until the next call.
  bool Encode(std::string_view in, std::string_view* out, std::string* error);

  int level() const { return level_; }

 private:
  int level_;
  libdeflate_compressor* compressor_ = nullptr;
  std::vector<char> out_;
};

}  // namespace uwsgi_prometheus
