// libFuzzer target for the connection state machine with the HTTP session:
// the input is a script of what a client and the network do, played against
// a Connection over a fake socket and a fake clock, the way the event loop
// would drive it (level-triggered: while the socket is ready for what the
// connection waits for, it is told so).
//
// Operations (one byte each, some followed by an argument byte or bytes):
//   0 n bytes  the client sends n bytes      5    the socket stops accepting
//   1 i        it sends canned request i     6 t  t*20 ms pass (deadlines)
//   2          it shuts down its sending     7    a spurious readiness call
//   3 e        the socket fails (reset/pipe) 8    the loop evicts it
//   4 k        the socket accepts k*64 bytes 9    a new client reuses the slot
//
// Invariants: no crash or sanitizer report; input and output buffers stay
// bounded; whenever the socket is ready the connection makes progress (no
// busy loop); nothing is written after the write side is shut down or the
// connection closed; what was written parses as HTTP/1.1 responses with a
// correct Content-Length, `Connection: close` on the last only, and never
// more responses than requests the client sent; a response is cut short
// only when the connection failed, timed out or was evicted.
//   build/tests/http_connection_fuzz tests/fuzz/corpus-http-connection
#include <errno.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>

#include "../unit/fake_socket.h"
#include "connection.h"
#include "fuzz_check.h"
#include "http_session.h"

namespace {

using namespace uwsgi_prometheus;

constexpr int64_t kMs = 1000 * 1000;
constexpr size_t kMaxRequest = 1024;
constexpr size_t kBigBody = 40000;  // several 16 KiB writes

int64_t g_now = 0;
int64_t FakeClock() { return g_now; }

const char* const kCanned[] = {
    "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /big HTTP/1.1\r\n\r\n",
    "HEAD /big HTTP/1.1\r\n\r\n",
    "GET /throw HTTP/1.1\r\n\r\n",
    "GET /empty HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "GET /status/99 HTTP/1.1\r\nConnection: close\r\n\r\n",
    "HEAD /status/404 HTTP/1.1\r\nAccept: text/plain\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    "\r\n",
    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "GET /bad-header HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.0\r\n\r\n",
};
constexpr size_t kCannedCount = sizeof kCanned / sizeof kCanned[0];

// Marks HEAD responses (X-Method) so the checker knows they have no body.
void Handler(const HttpRequest& req, HttpResponse* resp) {
  resp->extra_headers.emplace_back("X-Method", req.method);
  if (req.path == "/throw" && req.method == "GET") throw std::runtime_error("boom");
  if (req.path == "/big") {
    resp->body.assign(kBigBody, 'b');
    return;
  }
  if (req.path == "/empty") return;
  if (req.path == "/bad-header") resp->extra_headers.emplace_back("X-Bad", "a\r\nInjected: 1");
  if (req.path.compare(0, 8, "/status/") == 0) resp->status = std::atoi(req.path.c_str() + 8);
  resp->body = "path=" + req.path + "\n";
}

// Upper bound of the requests in `in`: every complete head ends with an
// empty line, and one more may be refused before its head ends.
size_t MaxRequests(std::string_view in) {
  size_t n = 1;
  for (size_t i = 0; i + 1 < in.size(); ++i) {
    if (in[i] != '\n') continue;
    n += in[i + 1] == '\n' || (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n');
  }
  return n;
}

std::string_view HeaderValue(std::string_view head, std::string_view name) {
  const std::string key = "\r\n" + std::string(name) + ": ";
  const size_t at = head.find(key);
  if (at == std::string_view::npos) return {};
  const size_t start = at + key.size();
  return head.substr(start, head.find("\r\n", start) - start);
}

struct Transcript {
  size_t responses = 0;   // including a truncated last one
  bool truncated = false;
  bool closed_by_response = false;  // the last one said Connection: close
};

// Checks one response head; returns its body length.
size_t CheckHead(std::string_view head, bool* close) {
  FUZZ_CHECK(head.compare(0, 9, "HTTP/1.1 ") == 0 && head.size() > 13 && head[12] == ' ');
  const int status = std::atoi(std::string(head.substr(9, 3)).c_str());
  FUZZ_CHECK(status >= 200 && status <= 599);
  for (size_t i = 0; i < head.size(); ++i) {  // lines end in CRLF, no bare CR or LF
    if (head[i] == '\n') FUZZ_CHECK(i > 0 && head[i - 1] == '\r');
    if (head[i] == '\r') FUZZ_CHECK(i + 1 < head.size() && head[i + 1] == '\n');
  }
  FUZZ_CHECK(head.find("\r\nInjected:") == std::string_view::npos);
  const std::string_view connection = HeaderValue(head, "Connection");
  FUZZ_CHECK(connection == "close" || connection == "keep-alive");
  *close = connection == "close";
  // The session's own refusals (no X-Method: the handler did not run) end
  // the connection; the handler may answer any status on a kept one.
  const bool refused = status == 400 || status == 405 || status == 413 || status == 431;
  if (refused && HeaderValue(head, "X-Method").empty()) FUZZ_CHECK(*close);
  const std::string_view length = HeaderValue(head, "Content-Length");
  FUZZ_CHECK(!length.empty() && length.find_first_not_of("0123456789") == std::string_view::npos);
  if (HeaderValue(head, "X-Method") == "HEAD") return 0;
  return std::strtoul(std::string(length).c_str(), nullptr, 10);
}

Transcript CheckResponses(std::string_view out) {
  Transcript t;
  while (!out.empty()) {
    FUZZ_CHECK(!t.closed_by_response);  // nothing after a "close" response
    ++t.responses;
    const size_t end = out.find("\r\n\r\n");
    if (end == std::string_view::npos) {
      t.truncated = true;
      break;
    }
    bool close = false;
    const size_t body = CheckHead(out.substr(0, end + 2), &close);
    if (out.size() < end + 4 + body) {
      t.truncated = true;
      break;
    }
    out.remove_prefix(end + 4 + body);
    t.closed_by_response = close;
  }
  return t;
}

class Script {
 public:
  Script() {
    http_.handler = Handler;
    http_.max_request_bytes = kMaxRequest;
    http_.stats = &stats_;
    ctx_.max_input_bytes = kMaxRequest + 1;
    ctx_.request_timeout_ns = 1000 * kMs;
    ctx_.idle_timeout_ns = 2000 * kMs;
    ctx_.clock = FakeClock;
    g_now = 0;
    ctx_.Tick();
    conn_.Open(&socket_, &session_, &ctx_);
  }

  void Run(const uint8_t* data, size_t size);

 private:
  uint8_t Next() { return pos_ < size_ ? data_[pos_++] : 0; }
  void Step(uint8_t op);
  bool Ready() const;
  void Pump();
  void CheckBounds() const;
  void Verify();
  void Reopen();

  HttpStats stats_;
  HttpContext http_;
  HttpSession session_{&http_};
  ConnectionContext ctx_;
  FakeSocket socket_;
  std::string sent_;  // everything the client sent on this connection
  Connection conn_;
  uint64_t answered_before_ = 0;  // stats at this connection's start
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, pos_ = 0;
};

void Script::Run(const uint8_t* data, size_t size) {
  data_ = data;
  size_ = size;
  while (pos_ < size_) {
    Step(Next());
    Pump();
    CheckBounds();
  }
  // The end: the network delivers everything it can.
  socket_.room = SIZE_MAX / 2;
  Pump();
  Verify();
}

void Script::Step(uint8_t op) {
  switch (op % 10) {
    case 0: {
      // Read the length first: the order of evaluation of function
      // arguments is unspecified, and Next() moves pos_.
      const size_t wanted = Next();
      const size_t n = std::min(wanted, size_ - pos_);
      const std::string bytes(reinterpret_cast<const char*>(data_ + pos_), n);
      pos_ += n;
      if (!socket_.eof) {
        socket_.incoming += bytes;
        sent_ += bytes;
      }
      break;
    }
    case 1:
      if (!socket_.eof) {
        const std::string bytes = kCanned[Next() % kCannedCount];
        socket_.incoming += bytes;
        sent_ += bytes;
      }
      break;
    case 2: socket_.eof = true; break;
    case 3: socket_.error = Next() & 1 ? ECONNRESET : EPIPE; break;
    case 4: socket_.room += size_t{Next()} * 64; break;
    case 5: socket_.room = 0; break;
    case 6:
      g_now += int64_t{Next()} * 20 * kMs;
      ctx_.Tick();
      if (!conn_.closed() && ctx_.now >= conn_.deadline()) conn_.OnDeadline();
      break;
    case 7: conn_.OnReady(); break;
    case 8: conn_.Abort(CloseReason::kEvicted); break;
    case 9: Reopen(); break;
  }
  if (conn_.closed()) socket_.closed = true;
}

bool Script::Ready() const {
  if (conn_.closed()) return false;
  if (socket_.error != 0) return true;
  if (conn_.wants_write()) return socket_.room > 0;
  return !socket_.incoming.empty() || socket_.eof;
}

// What epoll would do: report readiness while there is some. Each report
// must change something, or the real loop would spin.
void Script::Pump() {
  for (int i = 0; i < 256 && Ready(); ++i) {
    const auto before = std::make_tuple(socket_.incoming.size(), socket_.written.size(),
                                        socket_.shut, conn_.phase(), conn_.buffered_input(),
                                        conn_.queued_output(), conn_.wants_write());
    conn_.OnReady();
    if (conn_.closed()) socket_.closed = true;
    const auto after = std::make_tuple(socket_.incoming.size(), socket_.written.size(),
                                       socket_.shut, conn_.phase(), conn_.buffered_input(),
                                       conn_.queued_output(), conn_.wants_write());
    FUZZ_CHECK(before != after);
  }
}

void Script::CheckBounds() const {
  FUZZ_CHECK(socket_.misuse == 0);  // no I/O after close, no write after shutdown
  FUZZ_CHECK(conn_.buffered_input() <= ctx_.max_input_bytes);
  FUZZ_CHECK(conn_.queued_output() <= kBigBody + 4096);
  if (conn_.closed()) FUZZ_CHECK(conn_.buffered_input() == 0 && conn_.queued_output() == 0);
}

// The connection's transcript, at its end or the script's.
void Script::Verify() {
  const Transcript t = CheckResponses(socket_.written);
  const uint64_t answered = stats_.requests.load() + stats_.bad_requests.load();
  FUZZ_CHECK(t.responses <= answered - answered_before_);
  FUZZ_CHECK(t.responses <= MaxRequests(sent_));
  if (!conn_.closed()) {
    FUZZ_CHECK(!t.closed_by_response || conn_.phase() == Connection::Phase::kLinger);
    return;
  }
  const CloseReason reason = conn_.close_reason();
  FUZZ_CHECK(reason != CloseReason::kError && reason != CloseReason::kShutdown);
  const bool cut = reason == CloseReason::kReset || reason == CloseReason::kRequestTimeout ||
                   reason == CloseReason::kEvicted;
  if (!cut) FUZZ_CHECK(!t.truncated);
  // A connection the server ended after its answer said so.
  if (reason == CloseReason::kDone || reason == CloseReason::kBadRequest ||
      reason == CloseReason::kTooLarge) {
    FUZZ_CHECK(t.closed_by_response);
  }
}

void Script::Reopen() {
  if (!conn_.closed()) return;
  Verify();
  socket_ = FakeSocket();
  sent_.clear();
  answered_before_ = stats_.requests.load() + stats_.bad_requests.load();
  conn_.Open(&socket_, &session_, &ctx_);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Script script;
  script.Run(data, size);
  return 0;
}
