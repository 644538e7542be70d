#include "gzip.h"

#include <libdeflate.h>

#include <algorithm>
#include <new>

namespace uwsgi_prometheus {

GzipEncoder::~GzipEncoder() { libdeflate_free_compressor(compressor_); }

bool GzipEncoder::Encode(std::string_view in, TextBuffer* out, std::string* error) {
  if (!compressor_) {
    compressor_ = libdeflate_alloc_compressor(std::clamp(level_, kMinLevel, kMaxLevel));
    if (!compressor_) {
      *error = "gzip: out of memory for the compressor";
      return false;
    }
  }
  // Exposition text compresses 8-30x: reserve a quarter of the input (pages
  // never written cost nothing) and grow to the worst-case bound only if
  // that does not fit.
  const size_t bound = libdeflate_gzip_compress_bound(compressor_, in.size());
  size_t avail = std::min(bound, in.size() / 4 + 1024);
  for (;;) {
    try {
      out->clear();
      out->resize(avail);
    } catch (const std::bad_alloc&) {
      *error = "gzip: out of memory for the body";
      return false;
    }
    const size_t n =
        libdeflate_gzip_compress(compressor_, in.data(), in.size(), out->data(), out->size());
    if (n != 0) {
      out->resize(n);
      return true;
    }
    if (avail >= bound) {  // cannot happen: the bound always fits
      *error = "gzip: compression failed";
      return false;
    }
    avail = bound;
  }
}

}  // namespace uwsgi_prometheus
