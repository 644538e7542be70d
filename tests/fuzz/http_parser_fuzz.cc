// libFuzzer target for the request parser alone. Input: one byte choosing
// the head limit, one byte choosing how many bytes arrive per call, then the
// bytes a client sends. The bytes are fed as a connection feeds them
// (growing buffer, resumed scan, leading empty lines dropped), each result
// is checked, and compared with a one-shot parse of the same bytes; then the
// pipelined requests after the first are parsed the same way.
//   cmake -DUWSGI_PROMETHEUS_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++-14 ...
//   build/tests/http_parser_fuzz tests/fuzz/corpus-http-parser
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "http_parser.h"

namespace {

using uwsgi_prometheus::HttpParseResult;
using uwsgi_prometheus::HttpRequest;
using uwsgi_prometheus::ParseHttpRequest;
using Kind = HttpParseResult::Kind;

constexpr size_t kLimits[] = {64, 256, 1024, 8192};

bool NoControl(std::string_view s) {
  for (char c : s) {
    if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

void CheckResult(const HttpParseResult& r, std::string_view in, size_t max,
                 const HttpRequest& req) {
  FUZZ_CHECK(r.consumed <= in.size());
  switch (r.kind) {
    case Kind::kPartial:
      FUZZ_CHECK(r.status == 0);
      FUZZ_CHECK(in.substr(0, r.consumed).find_first_not_of("\r\n") == std::string_view::npos);
      FUZZ_CHECK(in.size() - r.consumed <= max);  // over the limit is never "partial"
      break;
    case Kind::kBad:
      FUZZ_CHECK(r.status == 400 || r.status == 405 || r.status == 413 || r.status == 431);
      FUZZ_CHECK(r.consumed == in.size());
      break;
    case Kind::kComplete: {
      const std::string_view head = in.substr(0, r.consumed);
      FUZZ_CHECK(head.size() >= 2 && head.back() == '\n');
      FUZZ_CHECK(head[head.size() - 2] == '\n' ||
                 (head.size() >= 3 && head.substr(head.size() - 3) == "\n\r\n"));
      FUZZ_CHECK(req.method == "GET" || req.method == "HEAD");
      FUZZ_CHECK(req.path.find_first_of(" \r\n?") == std::string::npos);  // "?x": path ""
      FUZZ_CHECK(NoControl(req.path) && NoControl(req.query));
      FUZZ_CHECK(NoControl(req.accept) && NoControl(req.accept_encoding));
      break;
    }
  }
}

bool Same(const HttpParseResult& a, const HttpParseResult& b) {
  return a.kind == b.kind && a.consumed == b.consumed && a.status == b.status &&
         (a.kind != Kind::kComplete || a.keep_alive == b.keep_alive);
}

// Parses one request from the start of `in`, `step` bytes at a time.
// Returns the bytes it took (0: none complete).
size_t ParseOne(std::string_view in, size_t max, size_t step) {
  size_t base = 0, fed = 0, scanned = 0;
  HttpRequest req, fresh_req;
  for (;;) {
    fed = std::min(in.size(), fed + step);
    const std::string_view window = in.substr(base, fed - base);
    const HttpParseResult r = ParseHttpRequest(window, max, &scanned, &req);
    CheckResult(r, window, max, req);
    size_t fresh_scanned = 0;
    const HttpParseResult fresh = ParseHttpRequest(window, max, &fresh_scanned, &fresh_req);
    FUZZ_CHECK(Same(r, fresh));  // resuming changes nothing
    if (r.kind == Kind::kComplete) {
      FUZZ_CHECK(req.method == fresh_req.method && req.path == fresh_req.path &&
                 req.query == fresh_req.query && req.accept == fresh_req.accept &&
                 req.accept_encoding == fresh_req.accept_encoding);
      return base + r.consumed;
    }
    if (r.kind == Kind::kBad || fed == in.size()) return 0;
    base += r.consumed;  // dropped empty lines, as the connection does
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t max = kLimits[data[0] & 3];
  const size_t step = 1 + data[1] % 97;
  const size_t n = size - 2;
  std::unique_ptr<char[]> copy(new char[n ? n : 1]);  // exact size: over-reads are caught
  std::memcpy(copy.get(), data + 2, n);
  std::string_view in(copy.get(), n);
  for (int requests = 0; !in.empty() && requests < 64; ++requests) {  // pipelined
    const size_t took = ParseOne(in, max, step);
    if (took == 0) break;
    in.remove_prefix(took);
  }
  return 0;
}
