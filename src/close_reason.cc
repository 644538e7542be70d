#include "close_reason.h"

namespace uwsgi_prometheus {
namespace {

struct ReasonText {
  const char* name;
  const char* explanation;  // nullptr: routine, never logged
};

constexpr ReasonText kReasons[kCloseReasonCount] = {
    {"done", nullptr},
    {"client_closed", nullptr},
    {"idle_timeout", nullptr},
    {"request_timeout",
     "a client sent no complete request, or did not read the response, within the request "
     "timeout"},
    {"evicted",
     "the connection limit was reached; the oldest connection without a complete request was "
     "closed to make room (many idle or slow clients?)"},
    {"bad_request",
     "a client sent a malformed request or a method other than GET and HEAD (answered 4xx)"},
    {"too_large", "a client sent a request head over the size limit (answered 431)"},
    {"incomplete", "a client closed its connection in the middle of a request"},
    {"reset", "a connection failed while receiving or sending (reset by the client?)"},
    {"error", "the endpoint could not serve a connection (out of memory or an epoll error)"},
    {"tls_handshake",
     "a TLS handshake failed (not TLS, no common version, cipher or curve, or a client "
     "certificate missing or refused)"},
    {"http_to_https", "a client sent plain HTTP to the HTTPS endpoint (answered 400)"},
    {"shutdown", nullptr},
};

}  // namespace

const char* CloseReasonName(CloseReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < kCloseReasonCount ? kReasons[i].name : "unknown";
}

void CloseLog::Note(CloseReason reason, int64_t now_ns, const std::string& detail) {
  const auto i = static_cast<size_t>(reason);
  if (i >= kCloseReasonCount || !kReasons[i].explanation || !log_) return;
  if (logged_[i] && now_ns - last_ns_[i] < interval_ns_) {
    ++unlogged_[i];
    return;
  }
  const uint64_t unlogged = unlogged_[i];
  logged_[i] = true;
  last_ns_[i] = now_ns;
  unlogged_[i] = 0;
  try {
    std::string line = "endpoint closed a connection (";
    line += kReasons[i].name;
    line += "): ";
    line += kReasons[i].explanation;
    if (!detail.empty()) line += " [" + detail + "]";
    if (unlogged > 0) {
      line += "; ";
      line += std::to_string(unlogged);
      line += " more since the last such line (see uwsgi_prometheus_http_connections_closed_total)";
    }
    log_(line);
  } catch (...) {  // logging must never take the server down
  }
}

}  // namespace uwsgi_prometheus
