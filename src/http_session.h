// The HTTP/1.x side of a connection (a Session, see connection.h): parses
// requests, hands well-formed GET/HEAD ones to the handler and queues the
// response; keep-alive and pipelining (answered in order), HEAD, and the
// error answers 400/405/413/431, after which the connection closes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "connection.h"
#include "http_parser.h"

namespace uwsgi_prometheus {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // A body shared with other responses (one scrape answered to concurrent
  // clients): when its owner is set, it is sent instead of `body`.
  SharedBytes shared_body;
  std::vector<std::pair<std::string, std::string>> extra_headers;

  std::string_view Body() const {
    return shared_body.owner ? shared_body.bytes : std::string_view(body);
  }
};

// Called on the server thread for every well-formed GET/HEAD request.
// Must not throw (an exception is turned into a 500).
using HttpHandler = std::function<void(const HttpRequest&, HttpResponse*)>;

// Counters kept by the protocol side, readable from any thread.
struct HttpStats {
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};  // 400/405/413/431 answers
};

// What the HTTP sessions of one server share. The server thread answers one
// request at a time, so one request and one response object serve every
// connection and their buffers are reused.
struct HttpContext {
  HttpHandler handler;
  size_t max_request_bytes = 8192;  // request line + headers; more -> 431
  HttpStats* stats = nullptr;
  HttpRequest request;
  HttpResponse response;
};

class HttpSession final : public Session {
 public:
  explicit HttpSession(HttpContext* context) : ctx_(context) {}

  void Reset() override { scanned_ = 0; }
  SessionStep OnInput(std::string_view input, bool eof, OutputQueue* out) override;
  // The response is out: wait for the next request.
  SessionStep OnSent(OutputQueue*) override { return SessionStep(); }

 private:
  SessionStep Answer(size_t consumed, bool close, OutputQueue* out);
  SessionStep Refuse(int status, size_t consumed, OutputQueue* out);
  void SetError(int status);
  void Queue(bool close, bool head_only, OutputQueue* out);

  HttpContext* ctx_;
  size_t scanned_ = 0;  // the parser's resume point
};

}  // namespace uwsgi_prometheus
