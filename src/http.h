// A small HTTP/1.x server for the metrics endpoint: one thread, one epoll
// loop, non-blocking sockets, bounded everywhere. It answers GET and HEAD;
// what to answer is decided by a handler called on the server thread.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace uwsgi_prometheus {

// A listen address: ":9117" (all interfaces, IPv4 and IPv6 where available),
// "127.0.0.1:9117", "[::1]:9117", "localhost:9117", or a UNIX socket path
// ("/run/metrics.sock", "unix:/run/metrics.sock", "./m.sock").
struct ListenAddress {
  enum class Kind { kTcp, kUnix };
  Kind kind = Kind::kTcp;
  std::string host;  // empty = any address; no brackets for IPv6
  uint16_t port = 0;
  std::string path;  // UNIX socket path
  std::string ToString() const;
};

// Returns false with a message naming the problem when `text` is not a valid
// address (empty, port > 65535, junk after the port, path too long...).
// Port 0 is accepted (the kernel picks a port; tests use it); callers that
// need a fixed port reject it themselves.
bool ParseListenAddress(const std::string& text, ListenAddress* out,
                        std::string* error);

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (others never reach the handler)
  std::string path;    // target without the query string, percent-decoding not applied
  std::string query;   // after '?', may be empty
  std::string accept;           // Accept header value, may be empty
  std::string accept_encoding;  // Accept-Encoding header value, may be empty
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> extra_headers;
};

// Called on the server thread for every well-formed GET/HEAD request.
// Must not throw (an exception is turned into a 500).
using HttpHandler = std::function<void(const HttpRequest&, HttpResponse*)>;

struct HttpServerOptions {
  ListenAddress address;
  size_t max_request_bytes = 8192;     // request line + headers; more -> 431
  int request_timeout_ms = 10000;      // accept -> response fully written
  int idle_timeout_ms = 30000;         // keep-alive wait for the next request
  size_t max_connections = 128;        // beyond it the oldest unfinished one is closed
  int listen_backlog = 128;
};

// Counters about the server itself, readable from any thread.
struct HttpServerStats {
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};   // 400/405/413/431 answers
  std::atomic<uint64_t> timeouts{0};       // connections closed by a deadline
  std::atomic<uint64_t> evicted{0};        // closed to stay under max_connections
  std::atomic<uint64_t> open_connections{0};
};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Creates, binds and listens (close-on-exec, non-blocking, SO_REUSEADDR;
  // a stale UNIX socket file is replaced only if nothing listens on it).
  // Returns false with a message such as "127.0.0.1:9117: address already
  // in use". Does not start the thread.
  bool Listen(const HttpServerOptions& options, std::string* error);

  // Starts the server thread. Returns false with a message on failure.
  bool Start(HttpHandler handler, std::string* error);

  // Stops the thread (wakes it through an eventfd), joins it, closes every
  // socket and removes the UNIX socket file it created. Idempotent.
  void Stop();

  // For a forked child (pthread_atfork child handler): closes every fd the
  // server owns in this process, without locks or allocation, and makes the
  // object inert (no thread exists in the child). Async-signal-safe.
  void CloseFdsAfterFork() noexcept;

  // The port actually bound (useful with port 0 in tests); 0 for UNIX.
  uint16_t bound_port() const { return bound_port_; }
  const HttpServerStats& stats() const { return stats_; }

 private:
  class Loop;  // the event loop and all connection state (http.cc)
  static void* ThreadMain(void* loop);

  HttpServerOptions options_;
  HttpHandler handler_;
  // A plain pthread rather than std::thread: in a forked child the thread
  // does not exist, and a std::thread copy there can be neither joined nor
  // destroyed (joinable -> std::terminate). See CloseFdsAfterFork in http.cc.
  std::unique_ptr<Loop> loop_;
  pthread_t thread_{};
  bool thread_running_ = false;
  std::atomic<bool> forked_{false};  // set by CloseFdsAfterFork: object is inert
  std::atomic<int> listen_fd_{-1};
  std::atomic<int> epoll_fd_{-1};
  std::atomic<int> wake_fd_{-1};
  // Open connection fds, published for CloseFdsAfterFork (-1 = free slot).
  // Sized by Listen(), never resized while the thread runs.
  std::vector<std::atomic<int>> conn_fds_;
  std::atomic<bool> stopping_{false};
  uint16_t bound_port_ = 0;
  bool unlink_on_stop_ = false;
  uint64_t unix_dev_ = 0;  // identity of the socket file we created, so
  uint64_t unix_ino_ = 0;  // Stop() never removes someone else's file
  HttpServerStats stats_;
};

}  // namespace uwsgi_prometheus
