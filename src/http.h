// A small HTTP/1.x server for the metrics endpoint: one thread, one epoll
// loop, non-blocking sockets, bounded everywhere. It answers GET and HEAD;
// what to answer is decided by a handler called on the server thread.
//
// Layers: listen_address (binding), event_loop + connection (transport:
// accept, epoll, deadlines, connection limit, write queue), http_session +
// http_parser (protocol), fork_gate (quiescence across fork). This class
// owns the sockets and the thread and wires the layers together.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "close_reason.h"
#include "fork_gate.h"
#include "http_parser.h"
#include "http_session.h"
#include "listen_address.h"

namespace uwsgi_prometheus {

class EventLoop;
class VerifyPool;
class WebAccess;

struct HttpServerOptions {
  ListenAddress address;
  size_t max_request_bytes = 8192;     // request line + headers; more -> 431
  int request_timeout_ms = 10000;      // accept -> response fully written
  int idle_timeout_ms = 30000;         // keep-alive wait for the next request
  size_t max_connections = 128;        // beyond it the oldest unfinished one is closed
  int listen_backlog = 128;
  // Gets a line (no prefix, no newline) when connections are closed for an
  // unusual reason (see CloseLog), at most one per reason per minute. Called
  // on the server thread. May be empty.
  std::function<void(const std::string&)> log;
};

// Counters about the server itself, readable from any thread: accepted,
// open_connections and closed[reason] (Closed(reason)) from the transport,
// requests and bad_requests from the protocol.
struct HttpServerStats : ConnectionStats, HttpStats {};

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Applies the web configuration file (web_config.h: TLS, basic auth,
  // headers) to the endpoint; call before Start(). Returns false with the
  // problem found in the file. Without it every request is served as is.
  bool UseWebConfig(const std::string& path, std::string* error);
  // What the endpoint does with it, for the start-up line: "HTTPS with
  // basic auth (2 users)", "plain HTTP, no authentication"...
  std::string SecuritySummary() const;

  // Creates, binds and listens (close-on-exec, non-blocking, SO_REUSEADDR;
  // a stale UNIX socket file is replaced only if nothing listens on it).
  // Returns false with a message such as "127.0.0.1:9117: address already
  // in use", and `in_use` (when given) as BindListener sets it. Does not
  // start the thread.
  bool Listen(const HttpServerOptions& options, std::string* error, bool* in_use = nullptr);

  // Starts the server thread. Returns false with a message on failure.
  bool Start(HttpHandler handler, std::string* error);

  // Stops the thread (wakes it through an eventfd), joins it, closes every
  // socket and removes the UNIX socket file it created. Idempotent.
  void Stop();

  // Fork safety (see fork_gate.h). The process registers, once,
  //   pthread_atfork(prepare, parent, child)
  // with functions calling these three on the server. A fork then waits at
  // most for the request being answered (one scrape) before it proceeds.
  void PrepareFork() noexcept;
  void ParentAfterFork() noexcept;
  // In the child: closes every fd the server owns in this process, without
  // locks or allocation, and makes the object inert (no thread exists in
  // the child). Async-signal-safe.
  void ChildAfterFork() noexcept;

  // The port actually bound (useful with port 0 in tests); 0 for UNIX.
  uint16_t bound_port() const { return listener_.port; }
  const HttpServerStats& stats() const { return stats_; }

 private:
  static void* ThreadMain(void* server);
  bool StartThread(std::string* error);
  bool StartGuard(std::string* error);
  void Teardown();

  HttpServerOptions options_;
  std::unique_ptr<HttpContext> http_;  // shared by the connections' sessions
  std::unique_ptr<CloseLog> close_log_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<WebAccess> access_;  // with a web configuration file
  std::unique_ptr<VerifyPool> pool_;   // its password checks
  ForkGate gate_;
  // A plain pthread rather than std::thread: in a forked child the thread
  // does not exist, and a std::thread copy there can be neither joined nor
  // destroyed (joinable -> std::terminate). See ChildAfterFork in http.cc.
  pthread_t thread_{};
  bool thread_running_ = false;
  std::atomic<bool> forked_{false};  // set by ChildAfterFork: object is inert
  std::atomic<int> listen_fd_{-1};
  std::atomic<int> epoll_fd_{-1};
  std::atomic<int> wake_fd_{-1};
  // Open connection fds, published for ChildAfterFork (-1 = free slot).
  // Sized by Listen(), never resized while the thread runs.
  std::vector<std::atomic<int>> conn_fds_;
  std::atomic<bool> stopping_{false};
  BoundListener listener_;
  HttpServerStats stats_;
};

}  // namespace uwsgi_prometheus
