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
  // Requests refused by the guard (web_access.h): no or malformed
  // credentials, a wrong password or unknown user, the password check queue
  // full (429), the configuration file broken (500).
  std::atomic<uint64_t> auth_missing{0};
  std::atomic<uint64_t> auth_wrong{0};
  std::atomic<uint64_t> auth_throttled{0};
  std::atomic<uint64_t> config_broken{0};
  std::atomic<uint64_t> password_checks{0};  // bcrypt checks run (cache misses)
};

// Decides whether a request may be served (authentication), and adds
// headers to every response; web_access.h is the implementation. Called
// on the server thread.
class HttpGuard {
 public:
  enum class Verdict : uint8_t {
    kAllow,   // serve the request
    kRefuse,  // answer the refusal filled in (401, 429, 500)
    kWait,    // a check is under way: pause; the outcome comes to OnResume
  };
  virtual ~HttpGuard() = default;
  // kWait sets *ticket, which names the outcome meant for this request.
  virtual Verdict Check(const HttpRequest& request, size_t slot, uint64_t* ticket,
                        HttpResponse* refusal) = 0;
  // An outcome handed to a paused session: kWait when it is not the one for
  // `ticket` (stale), else kAllow or kRefuse.
  virtual Verdict Resumed(uint64_t outcome, uint64_t ticket, HttpResponse* refusal) = 0;
  virtual void AddHeaders(HttpResponse* response) const = 0;
};

// What the HTTP sessions of one server share. The server thread answers one
// request at a time, so one request and one response object serve every
// connection and their buffers are reused.
struct HttpContext {
  HttpHandler handler;
  HttpGuard* guard = nullptr;  // null: every request is served, no extra headers
  size_t max_request_bytes = 8192;  // request line + headers; more -> 431
  HttpStats* stats = nullptr;
  HttpRequest request;
  HttpResponse response;
};

class HttpSession final : public Session {
 public:
  // `slot`: the connection slot this session serves, which the guard's
  // checks name to resume it.
  explicit HttpSession(HttpContext* context, size_t slot = 0) : ctx_(context), slot_(slot) {}

  void Reset() override;
  SessionStep OnInput(std::string_view input, bool eof, OutputQueue* out) override;
  // The response is out: wait for the next request.
  SessionStep OnSent(OutputQueue*) override { return SessionStep(); }
  // The guard's check of a paused request is done.
  SessionStep OnResume(uint64_t outcome, OutputQueue* out) override;

 private:
  SessionStep Answer(size_t consumed, bool close, OutputQueue* out);
  SessionStep Serve(const HttpRequest& request, bool close, size_t consumed, OutputQueue* out);
  SessionStep Refuse(int status, size_t consumed, OutputQueue* out);
  void SetError(int status);
  void Queue(bool close, bool head_only, OutputQueue* out);

  HttpContext* ctx_;
  size_t slot_;
  size_t scanned_ = 0;  // the parser's resume point
  // A request paused for the guard: its own copy (the context's request
  // object serves the next connection meanwhile), and how to close.
  bool paused_ = false;
  bool paused_close_ = false;
  uint64_t ticket_ = 0;
  HttpRequest paused_request_;
};

}  // namespace uwsgi_prometheus
