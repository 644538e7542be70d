// A small HTTP/1.x server for the metrics endpoint: one thread, one epoll
// loop, non-blocking sockets, bounded everywhere. It answers GET and HEAD;
// what to answer is decided by a handler called on the server thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
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
// address (empty, port 0 or > 65535, junk after the port, path too long...).
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
  HttpServer() = default;
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
  struct Conn;
  void Run();

  HttpServerOptions options_;
  HttpHandler handler_;
  // On the heap so that a forked child, where the thread does not exist,
  // never joins or destroys it (see CloseFdsAfterFork).
  std::thread* thread_ = nullptr;
  std::atomic<bool> in_child_{false};
  std::atomic<int> listen_fd_{-1};
  std::atomic<int> epoll_fd_{-1};
  std::atomic<int> wake_fd_{-1};
  // Open connection fds, published for CloseFdsAfterFork (-1 = free slot).
  std::vector<std::atomic<int>> conn_fds_;
  std::atomic<bool> stopping_{false};
  uint16_t bound_port_ = 0;
  bool unlink_on_stop_ = false;
  HttpServerStats stats_;
};

}  // namespace uwsgi_prometheus
