// Why connections end, counted and (rate-limited) logged. Shared by the
// transport, which closes connections, and the protocol, which may ask for
// a close and say why.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace uwsgi_prometheus {

enum class CloseReason : uint8_t {
  kDone,            // the last response was sent and the server closed as agreed
  kClientClosed,    // the client closed between requests (or before the first)
  kIdleTimeout,     // no new request within idle_timeout_ms of the last response
  kRequestTimeout,  // request not received, or response not read, in request_timeout_ms
  kEvicted,         // cut short to make room under max_connections (not when lingering)
  kBadRequest,      // malformed request or one the server refuses (answered 4xx first)
  kTooLarge,        // request over the size limit (answered 431 first)
  kIncomplete,      // the client closed in the middle of a request (or before its answer)
  kReset,           // the socket failed: reset by the peer, broken pipe...
  kError,           // the server could not go on with it (out of memory, epoll)
  kTlsHandshake,    // the TLS handshake failed (not TLS, no common version or cipher, client cert)
  kHttpToHttps,     // plain HTTP sent to the TLS endpoint (answered 400 in plain text)
  kShutdown,        // the server stopped
};
inline constexpr size_t kCloseReasonCount = static_cast<size_t>(CloseReason::kShutdown) + 1;

// The label value: "done", "client_closed", "request_timeout"...
const char* CloseReasonName(CloseReason reason);

// Counters about connections, readable from any thread.
struct ConnectionStats {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> open_connections{0};
  std::atomic<uint64_t> closed[kCloseReasonCount] = {};

  uint64_t Closed(CloseReason reason) const {
    return closed[static_cast<size_t>(reason)].load(std::memory_order_relaxed);
  }
};

// Logs closes for the reasons an operator may want to hear about (not
// kDone, kClientClosed, kIdleTimeout or kShutdown, which are routine), at
// most one line per reason per `interval_ns`; the next line says how many
// were not logged meanwhile. Lines have no prefix; the callback adds it.
class CloseLog {
 public:
  using LogFn = std::function<void(const std::string&)>;
  static constexpr int64_t kMinuteNs = int64_t{60} * 1000 * 1000 * 1000;

  explicit CloseLog(LogFn log, int64_t interval_ns = kMinuteNs)
      : log_(std::move(log)), interval_ns_(interval_ns) {}

  // `detail` (may be empty) is added to the line, e.g. what OpenSSL said.
  void Note(CloseReason reason, int64_t now_ns, const std::string& detail = std::string());

 private:
  LogFn log_;
  int64_t interval_ns_;
  bool logged_[kCloseReasonCount] = {};
  int64_t last_ns_[kCloseReasonCount] = {};
  uint64_t unlogged_[kCloseReasonCount] = {};
};

}  // namespace uwsgi_prometheus
