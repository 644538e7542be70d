// The endpoint's HTTP/1.x request parser, in picohttpparser's manner: the
// caller owns the buffer and calls again when more bytes have arrived; the
// result says complete (how many bytes the request took), partial, or bad
// (with the status to answer). Every read is bounds-checked against the
// view it is given. Requests have no body: one with a body is refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace uwsgi_prometheus {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (others never reach the handler)
  std::string path;    // target without the query string, percent-decoding not applied
  std::string query;   // after '?', may be empty
  std::string accept;           // Accept header value, may be empty
  std::string accept_encoding;  // Accept-Encoding header value, may be empty
  std::string authorization;    // the first Authorization header's value, may be empty
};

struct HttpParseResult {
  enum class Kind : uint8_t {
    kPartial,   // no complete head yet; `consumed` leading empty lines may be dropped
    kComplete,  // *req is filled; the request took `consumed` bytes
    kBad,       // answer `status` and close; framing is lost (`consumed` = all)
  };
  Kind kind = Kind::kPartial;
  size_t consumed = 0;
  int status = 0;           // kBad: 400 malformed, 405 method, 413 has a body, 431 too large
  bool keep_alive = false;  // kComplete: the connection may carry another request
};

// Parses the request at the start of `in`. Empty lines before it are
// skipped (RFC 9112 2.2). A head longer than `max_head_bytes`, or a buffer
// holding more than that without a complete head, is kBad with 431. Input
// that cannot start a request line (a TLS handshake, say) is kBad with 400
// at once instead of waiting for a head. `*scanned` lets calls on a growing
// buffer resume the search for the head's end: start it at 0 and reset it
// to 0 after kComplete or kBad.
HttpParseResult ParseHttpRequest(std::string_view in, size_t max_head_bytes, size_t* scanned,
                                 HttpRequest* req);

// RFC 9110 token (method, header name) and field value (no control
// characters but HT): what the response writer also checks before sending.
bool IsHttpToken(std::string_view s);
bool IsHttpFieldValue(std::string_view s);

}  // namespace uwsgi_prometheus
