// gzip for response bodies (libdeflate: one call over the whole body, which
// a scrape has in memory anyway). The compressor is kept across scrapes;
// each body is written into a buffer of its own (it may be shared by
// several connections while it is sent).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "text_buffer.h"

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

  // Compresses `in` into a gzip member in *out (replacing its contents).
  // Returns false (with `error`) only when memory cannot be had; the caller
  // then answers uncompressed.
  bool Encode(std::string_view in, TextBuffer* out, std::string* error);

  int level() const { return level_; }

 private:
  int level_;
  libdeflate_compressor* compressor_ = nullptr;
};

}  // namespace uwsgi_prometheus
