#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>

namespace uwsgi_prometheus {

namespace {

constexpr uint64_t kListenTag = ~0ULL;
constexpr uint64_t kWakeTag = ~0ULL - 1;

uint64_t Tag(size_t slot, uint32_t generation) {
  return static_cast<uint64_t>(generation) << 32 | slot;
}

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

bool ParsePort(const std::string& text, uint16_t* port, std::string* error) {
  if (text.empty()) {
    *error = "missing port";
    return false;
  }
  if (text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos) {
    *error = "port '" + text + "' is not a number";
    return false;
  }
  unsigned long v = std::stoul(text);
  if (v > 65535) {
    *error = "port " + text + " is out of range (1-65535)";
    return false;
  }
  *port = static_cast<uint16_t>(v);
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Outcome of parsing the bytes received so far.
enum class Parse { kIncomplete, kOk, kBad, kMethod, kTooLarge, kBody };

struct ParsedRequest {
  HttpRequest request;
  bool keep_alive = true;
  size_t consumed = 0;
};

Parse ParseRequest(std::string_view buf, size_t max_bytes, ParsedRequest* out) {
  // Find the end of the header block (CRLFCRLF or LFLF).
  size_t end = std::string_view::npos, end_len = 0;
  for (size_t i = 0; i < buf.size(); ++i) {
    if (buf[i] != '\n') continue;
    if (i + 1 < buf.size() && buf[i + 1] == '\n') {
      end = i + 1;
      end_len = 1;
      break;
    }
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
      end = i + 1;
      end_len = 2;
      break;
    }
  }
  if (end == std::string_view::npos) {
    // Reject obvious garbage early instead of waiting for the deadline.
    for (size_t i = 0; i < buf.size() && buf[i] != ' '; ++i) {
      if (!IsTokenChar(buf[i]) && !(buf[i] == '\r' || buf[i] == '\n')) return Parse::kBad;
    }
    return buf.size() >= max_bytes ? Parse::kTooLarge : Parse::kIncomplete;
  }
  if (end + end_len > max_bytes) return Parse::kTooLarge;
  out->consumed = end + end_len;
  std::string_view head = buf.substr(0, end);

  size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == 0 || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Parse::kBad;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  for (char c : method) {
    if (!IsTokenChar(c)) return Parse::kBad;
  }
  if (target.empty() || target[0] != '/') return Parse::kBad;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return Parse::kBad;
  }
  bool http10;
  if (version == "HTTP/1.1") {
    http10 = false;
  } else if (version == "HTTP/1.0") {
    http10 = true;
  } else {
    return Parse::kBad;
  }

  HttpRequest& r = out->request;
  r.method.assign(method);
  size_t q = target.find('?');
  r.path.assign(target.substr(0, q));
  r.query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  r.accept.clear();
  r.accept_encoding.clear();
  bool keep_alive = !http10;
  bool has_body = false;

  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 1);
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view h = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (!h.empty() && h.back() == '\r') h.remove_suffix(1);
    if (h.empty()) continue;
    size_t colon = h.find(':');
    if (colon == 0 || colon == std::string_view::npos) return Parse::kBad;
    std::string_view name = h.substr(0, colon);
    for (char c : name) {
      if (!IsTokenChar(c)) return Parse::kBad;
    }
    std::string_view value = Trim(h.substr(colon + 1));
    if (IEquals(name, "Accept")) {
      r.accept.assign(value);
    } else if (IEquals(name, "Accept-Encoding")) {
      r.accept_encoding.assign(value);
    } else if (IEquals(name, "Connection")) {
      if (IEquals(value, "close")) keep_alive = false;
      if (IEquals(value, "keep-alive")) keep_alive = true;
    } else if (IEquals(name, "Content-Length")) {
      if (value.find_first_not_of('0') != std::string_view::npos) has_body = true;
    } else if (IEquals(name, "Transfer-Encoding")) {
      has_body = true;
    }
  }
  out->keep_alive = keep_alive;
  if (method != "GET" && method != "HEAD") return Parse::kMethod;
  if (has_body) return Parse::kBody;
  return Parse::kOk;
}

}  // namespace

std::string ListenAddress::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

bool ParseListenAddress(const std::string& text, ListenAddress* out, std::string* error) {
  *out = ListenAddress{};
  if (text.empty()) {
    *error = "empty address";
    return false;
  }
  if (text.rfind("unix:", 0) == 0 || text.find('/') != std::string::npos) {
    std::string path = text.rfind("unix:", 0) == 0 ? text.substr(5) : text;
    if (path.empty()) {
      *error = "empty UNIX socket path";
      return false;
    }
    if (path.size() >= sizeof(sockaddr_un::sun_path)) {
      *error = "UNIX socket path longer than " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
               " bytes";
      return false;
    }
    out->kind = ListenAddress::Kind::kUnix;
    out->path = path;
    return true;
  }
  std::string host, port;
  if (text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *error = "expected [IPv6]:PORT";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) {
      *error = "'" + host + "' is not an IPv6 address";
      return false;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      *error = "expected HOST:PORT, :PORT, [IPv6]:PORT or a UNIX socket path";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      *error = "IPv6 addresses go in brackets: [" + host + "]:" + port;
      return false;
    }
  }
  if (!ParsePort(port, &out->port, error)) return false;
  out->host = host;
  return true;
}

HttpServer::~HttpServer() { Stop(); }

bool HttpServer::Listen(const HttpServerOptions& options, std::string* error) {
  options_ = options;
  const ListenAddress& a = options.address;
  int fd = -1;
  auto fail = [&](const std::string& what) {
    *error = a.ToString() + ": " + what;
    if (fd >= 0) close(fd);
    return false;
  };
  if (a.kind == ListenAddress::Kind::kUnix) {
    struct sockaddr_un sun;
    std::memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, a.path.c_str(), a.path.size());
    struct stat st;
    if (lstat(a.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) return fail("exists and is not a socket");
      int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
      int probe_errno = errno;
      if (probe >= 0) close(probe);
      if (live) return fail("address already in use");
      if (probe_errno != ECONNREFUSED && probe_errno != ENOENT) {
        return fail(std::string("cannot check existing socket: ") + strerror(probe_errno));
      }
      unlink(a.path.c_str());
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(strerror(errno));
    if (bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0) {
      return fail(errno == EADDRINUSE ? "address already in use" : strerror(errno));
    }
    unlink_on_stop_ = true;
  } else {
    struct sockaddr_storage ss;
    socklen_t len = 0;
    std::memset(&ss, 0, sizeof ss);
    bool dual = false;
    if (a.host.empty()) {
      int probe = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (probe >= 0) {
        close(probe);
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_any;
        s6->sin6_port = htons(a.port);
        len = sizeof *s6;
        dual = true;
      } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        s4->sin_port = htons(a.port);
        len = sizeof *s4;
      }
    } else {
      struct addrinfo hints, *res = nullptr;
      std::memset(&hints, 0, sizeof hints);
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
      int rc = getaddrinfo(a.host.c_str(), std::to_string(a.port).c_str(), &hints, &res);
      if (rc != 0 || !res) return fail(std::string("cannot resolve host: ") + gai_strerror(rc));
      std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
      len = res->ai_addrlen;
      freeaddrinfo(res);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(strerror(errno));
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (dual) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      return fail(errno == EADDRINUSE ? "address already in use" : strerror(errno));
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) == 0) {
      bound_port_ = ntohs(bound.ss_family == AF_INET6
                              ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    }
  }
  if (a.kind == ListenAddress::Kind::kTcp) {
    // Wake up for a connection only once its request has arrived; a client
    // that connects and stays silent never reaches the accept queue before
    // the request deadline.
    int defer = std::max(1, options.request_timeout_ms / 1000);
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
  }
  if (listen(fd, options.listen_backlog) != 0) return fail(strerror(errno));
  listen_fd_.store(fd);
  return true;
}

// One connection's state, owned by the server thread.
struct HttpServer::Conn {
  int fd = -1;
  size_t slot = 0;
  uint32_t generation = 0;
  bool idle = false;         // keep-alive, waiting for the next request
  bool registered = false;   // added to the epoll set
  int64_t accepted_ms = 0;
  int64_t deadline_ms = 0;
  bool responding = false;   // a complete request was read; writing the answer
  bool close_after = false;
  std::string in;
  std::string out;       // status line and headers
  std::string out_body;  // body, sent after `out` with one sendmsg
  size_t out_pos = 0;    // bytes of out + out_body already sent
};

bool HttpServer::Start(HttpHandler handler, std::string* error) {
  if (listen_fd_.load() < 0) {
    *error = "not listening";
    return false;
  }
  handler_ = std::move(handler);
  conn_fds_ = std::vector<std::atomic<int>>(options_.max_connections + 2);
  for (auto& f : conn_fds_) f.store(-1);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  int wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep < 0 || wake < 0) {
    *error = std::string("epoll/eventfd: ") + strerror(errno);
    if (ep >= 0) close(ep);
    if (wake >= 0) close(wake);
    return false;
  }
  epoll_fd_.store(ep);
  wake_fd_.store(wake);
  struct epoll_event ev;
  std::memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd_.load(), &ev);
  ev.data.u64 = kWakeTag;
  epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev);
  try {
    thread_ = new std::thread([this] { Run(); });
  } catch (const std::exception& e) {
    *error = std::string("cannot start thread: ") + e.what();
    return false;
  }
  return true;
}

void HttpServer::Stop() {
  if (in_child_.load()) return;  // a forked copy: no thread, fds already closed
  stopping_.store(true);
  if (thread_) {
    uint64_t one = 1;
    if (write(wake_fd_.load(), &one, sizeof one) < 0) {
      // the eventfd cannot be full with one pending write; nothing to do
    }
    thread_->join();
    delete thread_;
    thread_ = nullptr;
  }
  for (auto& f : conn_fds_) {
    int fd = f.exchange(-1);
    if (fd >= 0) close(fd);
  }
  for (auto* a : {&listen_fd_, &epoll_fd_, &wake_fd_}) {
    int fd = a->exchange(-1);
    if (fd >= 0) close(fd);
  }
  if (unlink_on_stop_) {
    unlink(options_.address.path.c_str());
    unlink_on_stop_ = false;
  }
}

void HttpServer::CloseFdsAfterFork() noexcept {
  // The child has no server thread. The std::thread object (on the heap) is
  // left alone on purpose: joining or destroying it would act on a thread
  // that does not exist in this process.
  in_child_.store(true);
  for (auto& f : conn_fds_) {
    int fd = f.exchange(-1);
    if (fd >= 0) close(fd);
  }
  for (auto* a : {&listen_fd_, &epoll_fd_, &wake_fd_}) {
    int fd = a->exchange(-1);
    if (fd >= 0) close(fd);
  }
  unlink_on_stop_ = false;
}

void HttpServer::Run() {
  pthread_setname_np(pthread_self(), "uwsgi-prom");
  const int ep = epoll_fd_.load();
  const int lfd = listen_fd_.load();
  std::vector<std::unique_ptr<Conn>> conns;  // open connections, oldest first
  std::vector<Conn*> by_slot(conn_fds_.size(), nullptr);
  std::vector<uint32_t> generations(conn_fds_.size(), 0);
  std::vector<size_t> free_slots;
  for (size_t i = conn_fds_.size(); i-- > 0;) free_slots.push_back(i);
  int64_t accept_paused_until = 0;
  struct epoll_event events[64];

  auto close_conn = [&](Conn* c) {
    if (c->registered) epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
    conn_fds_[c->slot].store(-1);  // unpublish before close (fork safety)
    close(c->fd);
    by_slot[c->slot] = nullptr;
    free_slots.push_back(c->slot);
    stats_.open_connections.fetch_sub(1, std::memory_order_relaxed);
    auto it = std::find_if(conns.begin(), conns.end(), [c](const auto& p) { return p.get() == c; });
    if (it != conns.end()) conns.erase(it);
  };

  // Closes the oldest connection still waiting for its request, else the
  // oldest one. Returns false when there is nothing to close.
  auto evict_one = [&]() {
    if (conns.empty()) return false;
    Conn* victim = conns.front().get();
    for (const auto& c : conns) {
      if (!c->responding) {
        victim = c.get();
        break;
      }
    }
    stats_.evicted.fetch_add(1, std::memory_order_relaxed);
    close_conn(victim);
    return true;
  };

  auto watch = [&](Conn* c, uint32_t events) {
    struct epoll_event ev;
    std::memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = Tag(c->slot, c->generation);
    epoll_ctl(ep, c->registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev);
    c->registered = true;
  };

  // Writes what is pending; returns false if the connection was closed.
  auto flush = [&](Conn* c) {
    const size_t total = c->out.size() + c->out_body.size();
    while (c->out_pos < total) {
      struct iovec iov[2];
      int iovcnt = 0;
      if (c->out_pos < c->out.size()) {
        iov[iovcnt++] = {c->out.data() + c->out_pos, c->out.size() - c->out_pos};
      }
      const size_t body_pos = c->out_pos > c->out.size() ? c->out_pos - c->out.size() : 0;
      if (body_pos < c->out_body.size()) {
        iov[iovcnt++] = {c->out_body.data() + body_pos, c->out_body.size() - body_pos};
      }
      struct msghdr msg;
      std::memset(&msg, 0, sizeof msg);
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(iovcnt);
      ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c->out_pos += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(c, EPOLLOUT | EPOLLRDHUP);
        return true;
      }
      close_conn(c);
      return false;
    }
    // Response complete.
    c->out.clear();
    c->out_body.clear();
    c->out_pos = 0;
    c->responding = false;
    if (c->close_after) {
      close_conn(c);
      return false;
    }
    c->idle = true;
    c->deadline_ms = NowMs() + options_.idle_timeout_ms;
    watch(c, EPOLLIN | EPOLLRDHUP);
    return true;
  };

  auto respond = [&](Conn* c, HttpResponse& r, bool head, bool keep_alive) {
    c->responding = true;
    c->close_after = !keep_alive;
    std::string& o = c->out;
    o.clear();
    o += "HTTP/1.1 ";
    o += std::to_string(r.status);
    o += ' ';
    o += Reason(r.status);
    o += "\r\nContent-Type: ";
    o += r.content_type;
    o += "\r\nContent-Length: ";
    o += std::to_string(r.body.size());
    o += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
    for (const auto& [k, v] : r.extra_headers) {
      o += k;
      o += ": ";
      o += v;
      o += "\r\n";
    }
    o += "\r\n";
    c->out_body.clear();
    if (!head) c->out_body.swap(r.body);  // no copy of a large scrape
    c->out_pos = 0;
  };

  auto error_response = [&](Conn* c, int status, const char* extra_name = nullptr,
                            const char* extra_value = nullptr) {
    stats_.bad_requests.fetch_add(1, std::memory_order_relaxed);
    HttpResponse r;
    r.status = status;
    r.body = std::string(Reason(status)) + "\n";
    if (extra_name) r.extra_headers.push_back({extra_name, extra_value});
    respond(c, r, false, false);
    c->in.clear();
    // Stop reading; just deliver the error and close.
    shutdown(c->fd, SHUT_RD);
    flush(c);
  };

  // Handles every complete request buffered on c (pipelining).
  auto process = [&](Conn* c) {
    while (!c->responding) {
      ParsedRequest parsed;
      Parse p = ParseRequest(c->in, options_.max_request_bytes, &parsed);
      switch (p) {
        case Parse::kIncomplete:
          return true;
        case Parse::kBad:
          error_response(c, 400);
          return false;
        case Parse::kTooLarge:
          error_response(c, 431);
          return false;
        case Parse::kBody:
          error_response(c, 413);
          return false;
        case Parse::kMethod:
          error_response(c, 405, "Allow", "GET, HEAD");
          return false;
        case Parse::kOk:
          break;
      }
      c->in.erase(0, parsed.consumed);
      stats_.requests.fetch_add(1, std::memory_order_relaxed);
      HttpResponse resp;
      try {
        handler_(parsed.request, &resp);
      } catch (...) {
        resp = HttpResponse{};
        resp.status = 500;
        resp.body = "Internal Server Error\n";
      }
      respond(c, resp, parsed.request.method == "HEAD", parsed.keep_alive);
      if (!flush(c)) return false;
      // A following pipelined request gets a fresh deadline.
      if (!c->in.empty()) c->deadline_ms = NowMs() + options_.request_timeout_ms;
    }
    return true;
  };

  auto on_readable = [&](Conn* c) {
    char buf[16384];
    for (;;) {
      ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        if (c->idle) {  // first bytes of the next keep-alive request
          c->idle = false;
          c->deadline_ms = NowMs() + options_.request_timeout_ms;
        }
        if (c->in.size() + static_cast<size_t>(n) > options_.max_request_bytes + sizeof buf) {
          error_response(c, 431);
          return;
        }
        c->in.append(buf, static_cast<size_t>(n));
        if (c->in.size() > options_.max_request_bytes * 2) break;  // parse now
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      close_conn(c);  // EOF or error
      return;
    }
    process(c);
  };

  while (!stopping_.load()) {
    // Timeout: the nearest deadline.
    int64_t now = NowMs();
    int64_t next = now + 1000;
    for (const auto& c : conns) next = std::min(next, c->deadline_ms);
    if (accept_paused_until > now) next = std::min(next, accept_paused_until);
    int timeout = static_cast<int>(std::max<int64_t>(0, next - now));
    int n = epoll_wait(ep, events, 64, timeout);
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) continue;
      if (tag == kListenTag) {
        if (NowMs() < accept_paused_until) continue;
        for (;;) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
              if (!evict_one()) accept_paused_until = NowMs() + 100;
            }
            break;
          }
          if (conns.size() >= options_.max_connections || free_slots.empty()) evict_one();
          auto c = std::make_unique<Conn>();
          c->fd = fd;
          c->slot = free_slots.back();
          free_slots.pop_back();
          c->generation = ++generations[c->slot];
          by_slot[c->slot] = c.get();
          conn_fds_[c->slot].store(fd);
          c->accepted_ms = NowMs();
          c->deadline_ms = c->accepted_ms + options_.request_timeout_ms;
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          Conn* raw = c.get();
          const size_t slot = raw->slot;
          const uint32_t generation = raw->generation;
          conns.push_back(std::move(c));
          stats_.accepted.fetch_add(1, std::memory_order_relaxed);
          stats_.open_connections.fetch_add(1, std::memory_order_relaxed);
          // The request is usually there already (TCP_DEFER_ACCEPT): answer
          // it now; only a connection that stays open joins the epoll set.
          on_readable(raw);
          if (by_slot[slot] == raw && raw->generation == generation && !raw->registered) {
            watch(raw, EPOLLIN | EPOLLRDHUP);
          }
        }
        continue;
      }
      // The connection may have been closed (or its slot reused) earlier
      // in this batch: the generation tells.
      const size_t slot = static_cast<size_t>(tag & 0xffffffffu);
      Conn* c = slot < by_slot.size() ? by_slot[slot] : nullptr;
      if (!c || c->generation != static_cast<uint32_t>(tag >> 32)) continue;
      if (c->responding) {
        if (events[i].events & (EPOLLERR | EPOLLHUP)) {
          close_conn(c);
        } else if (events[i].events & EPOLLOUT) {
          if (flush(c)) process(c);
        }
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
    }
    // Deadlines.
    now = NowMs();
    for (size_t i = 0; i < conns.size();) {
      if (conns[i]->deadline_ms <= now) {
        stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
        close_conn(conns[i].get());
      } else {
        ++i;
      }
    }
  }
  while (!conns.empty()) close_conn(conns.front().get());
}

}  // namespace uwsgi_prometheus
