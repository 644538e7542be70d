// The metrics endpoint's HTTP server. One thread runs a level-triggered
// epoll loop over the listening socket, an eventfd (Stop) and at most
// max_connections client sockets. Each connection is a small state machine:
//
//   accept -> kReading --head complete--> kWriting --sent, keep-alive--> kIdle
//                ^                           |                            |
//                +---------------------------|----- next request's byte --+
//                                            +--sent, close--> kLinger --> closed
//
// Deadlines (CLOCK_MONOTONIC): request_timeout_ms covers kReading+kWriting,
// idle_timeout_ms covers kIdle. The loop scans its connections once per
// iteration (max_connections is small) and sleeps until the nearest deadline.
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

namespace uwsgi_prometheus {
namespace {

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "CloseFdsAfterFork must be async-signal-safe");

constexpr uint64_t kListenTag = ~uint64_t{0};
constexpr uint64_t kWakeTag = kListenTag - 1;
constexpr int64_t kMs = 1000000;                // ns per ms
constexpr int64_t kAcceptPauseNs = 100 * kMs;   // after EMFILE with nothing to evict
constexpr int64_t kLingerNs = 1000 * kMs;       // drain time after a "close" response
constexpr size_t kLingerMaxBytes = 256 * 1024;  // ... and at most this much input
constexpr size_t kKeepBufferBytes = 1 << 20;    // bigger per-connection buffers are freed
constexpr const char* kTextPlain = "text/plain; charset=utf-8";

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

std::string ErrnoText(int err) {
  char buf[128];
  std::string text = strerror_r(err, buf, sizeof buf);  // GNU variant
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] + 32);
  return text;
}

void CloseSlot(std::atomic<int>& slot) noexcept {
  const int fd = slot.exchange(-1, std::memory_order_relaxed);
  if (fd >= 0) close(fd);
}

bool Fail(std::string* error, std::string message) {
  *error = std::move(message);
  return false;
}

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// A header value we can send or accept: no control characters but HT.
bool IsFieldValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(token) for each comma-separated, trimmed element of a list header.
template <typename Fn>
void ForEachToken(std::string_view list, Fn fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    fn(Trim(list.substr(0, comma)));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
}

void AppendInt(std::string* out, uint64_t value) {
  char buf[24];
  *out += std::string_view(buf, std::to_chars(buf, buf + sizeof buf, value).ptr - buf);
}

const char* Reason(int status) {
  static constexpr std::pair<int, const char*> kReasons[] = {
      {200, "OK"},
      {400, "Bad Request"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {413, "Content Too Large"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {503, "Service Unavailable"}};
  for (const auto& [code, text] : kReasons) {
    if (code == status) return text;
  }
  return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

// accept4() errors that concern only the connection being accepted.
bool IsConnectionError(int err) {
  for (int e : {EINTR, ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
                EOPNOTSUPP, ENETUNREACH}) {
    if (err == e) return true;
  }
  return false;
}

// Length of the request head (through its empty line) at the start of `in`,
// or 0 when incomplete. Accepts CRLF and bare LF. *scanned lets repeated
// calls on a growing buffer resume instead of rescanning.
size_t FindHeadEnd(const std::string& in, size_t* scanned) {
  for (size_t i = *scanned; i < in.size(); ++i) {
    if (in[i] != '\n') continue;
    if (i + 1 < in.size() && in[i + 1] == '\n') return i + 2;
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return i + 3;
  }
  *scanned = in.size() > 2 ? in.size() - 2 : 0;
  return 0;
}

// Parses a complete head (picohttpparser style: bounds-checked views into the
// caller's buffer). Returns 200 and fills *req and *keep_alive, or the status
// to answer: 400 malformed, 405 method, 413 request has a body.
int ParseHead(std::string_view head, HttpRequest* req, bool* keep_alive) {
  size_t eol = head.find('\n');
  auto line_at = [&head](size_t from, size_t to) {
    std::string_view line = head.substr(from, to - from);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    return line;
  };
  const std::string_view line = line_at(0, eol);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsToken(method) || target.empty() || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    return 400;
  }
  const bool http11 = version == "HTTP/1.1";
  if (!http11 && version != "HTTP/1.0") return 400;
  if (method != "GET" && method != "HEAD") return 405;

  req->method.assign(method);
  const size_t q = target.find('?');
  req->path.assign(target.substr(0, q));
  req->query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  req->accept.clear();
  req->accept_encoding.clear();
  bool saw_close = false, saw_keep_alive = false, has_body = false;
  while (eol != std::string_view::npos && eol + 1 < head.size()) {
    const size_t start = eol + 1;
    eol = head.find('\n', start);
    const std::string_view field = line_at(start, eol);
    if (field.empty()) break;  // the head's final empty line
    const size_t colon = field.find(':');
    // No whitespace before ':' and no obsolete line folding (RFC 9112 5.1).
    if (colon == std::string_view::npos || !IsToken(field.substr(0, colon))) return 400;
    const std::string_view name = field.substr(0, colon);
    const std::string_view value = Trim(field.substr(colon + 1));
    if (!IsFieldValue(value)) return 400;
    std::string* list = IEquals(name, "Accept")            ? &req->accept
                        : IEquals(name, "Accept-Encoding") ? &req->accept_encoding
                                                           : nullptr;
    if (list) {
      if (!list->empty()) *list += ", ";
      list->append(value);
    } else if (IEquals(name, "Connection")) {
      ForEachToken(value, [&](std::string_view token) {
        saw_close |= IEquals(token, "close");
        saw_keep_alive |= IEquals(token, "keep-alive");
      });
    } else if (IEquals(name, "Content-Length")) {
      if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos) {
        return 400;
      }
      has_body |= value.find_first_not_of('0') != std::string_view::npos;
    } else if (IEquals(name, "Transfer-Encoding")) {
      has_body = true;
    }
  }
  if (has_body) return 413;
  *keep_alive = http11 ? !saw_close : saw_keep_alive;
  return 200;
}

// socket + options + bind + listen; returns the fd, or -1 with errno set.
int BindAndListen(const sockaddr* addr, socklen_t len, int backlog, bool dual_stack) {
  const int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int one = 1, zero = 0;
  if (addr->sa_family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (dual_stack) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (bind(fd, addr, len) == 0 && listen(fd, backlog > 0 ? backlog : SOMAXCONN) == 0) return fd;
  const int err = errno;
  close(fd);
  errno = err;
  return -1;
}

int ListenTcp(const ListenAddress& address, int backlog, std::string* error) {
  int fd = -1;
  if (address.host.empty()) {
    // Any address: IPv6 "::" accepting IPv4 too, or 0.0.0.0 without IPv6.
    sockaddr_in6 any6{};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    any6.sin6_port = htons(address.port);
    fd = BindAndListen(reinterpret_cast<sockaddr*>(&any6), sizeof any6, backlog, true);
    if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL || errno == EPROTONOSUPPORT)) {
      sockaddr_in any4{};
      any4.sin_family = AF_INET;
      any4.sin_addr.s_addr = htonl(INADDR_ANY);
      any4.sin_port = htons(address.port);
      fd = BindAndListen(reinterpret_cast<sockaddr*>(&any4), sizeof any4, backlog, false);
    }
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const int rc =
        getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
      *error = address.ToString() + ": cannot resolve '" + address.host +
               "': " + (rc != 0 ? gai_strerror(rc) : "no address");
      return -1;
    }
    fd = BindAndListen(found->ai_addr, found->ai_addrlen, backlog, false);
    const int err = errno;
    freeaddrinfo(found);
    errno = err;
  }
  if (fd < 0) *error = address.ToString() + ": " + ErrnoText(errno);
  return fd;
}

int ListenUnix(const ListenAddress& address, int backlog, std::string* error) {
  const std::string& path = address.path;
  const std::string name = address.ToString();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());  // length checked by the parser
  const socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      *error = name + ": file exists and is not a socket; remove it or pick another path";
      return -1;
    }
    // A socket file: replace it only if nobody accepts connections on it.
    const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int rc = probe < 0 ? -1 : connect(probe, reinterpret_cast<sockaddr*>(&addr), len);
    const int err = errno;
    if (probe >= 0) close(probe);
    if (rc == 0 || err == EAGAIN) {
      *error = name + ": address already in use (a server is listening on it)";
      return -1;
    }
    if (err != ECONNREFUSED) {
      *error = name + ": cannot check the existing socket: " + ErrnoText(err);
      return -1;
    }
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      *error = name + ": cannot remove the stale socket: " + ErrnoText(errno);
      return -1;
    }
  }
  const int fd = BindAndListen(reinterpret_cast<sockaddr*>(&addr), len, backlog, false);
  if (fd < 0) *error = name + ": " + ErrnoText(errno);
  return fd;
}

}  // namespace

std::string ListenAddress::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool ParseListenAddress(const std::string& text, ListenAddress* out, std::string* error) {
  ListenAddress a;
  if (text.empty()) return Fail(error, "address is empty (e.g. :9117)");
  const bool unix_prefix = text.compare(0, 5, "unix:") == 0;
  if (unix_prefix || text.find('/') != std::string::npos) {
    a.kind = ListenAddress::Kind::kUnix;
    a.path = unix_prefix ? text.substr(5) : text;
    if (a.path.empty()) return Fail(error, "UNIX socket path is empty");
    const size_t max = sizeof(sockaddr_un::sun_path) - 1;
    if (a.path.size() > max) {
      return Fail(error, "UNIX socket path is too long (" + std::to_string(a.path.size()) +
                             " bytes, at most " + std::to_string(max) + ")");
    }
    if (a.path.find('\0') != std::string::npos) return Fail(error, "UNIX socket path contains NUL");
    *out = std::move(a);
    return true;
  }
  std::string port;
  if (text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos) return Fail(error, "missing ']' after the IPv6 address");
    a.host = text.substr(1, close - 1);
    in6_addr ignored;
    if (inet_pton(AF_INET6, a.host.c_str(), &ignored) != 1) {
      return Fail(error, "'" + a.host + "' is not an IPv6 address");
    }
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return Fail(error, "expected ':port' after ']' (e.g. [::1]:9117)");
    }
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return Fail(error, "missing ':port' (e.g. :9117, 127.0.0.1:9117 or [::1]:9117)");
    }
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (a.host.find(':') != std::string::npos) {
      return Fail(error, "IPv6 addresses go in brackets, e.g. [::1]:9117");
    }
    const bool host_ok = std::all_of(a.host.begin(), a.host.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '-' || c == '_';
    });
    if (!host_ok) return Fail(error, "'" + a.host + "' is not a host name or IPv4 address");
  }
  if (port.empty()) return Fail(error, "port is missing (e.g. :9117)");
  if (port.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(error, "port '" + port + "' is not a number");
  }
  if (port.size() > 5 || std::stoul(port) > 65535) {
    return Fail(error, "port " + port + " is out of range (1-65535)");
  }
  a.port = static_cast<uint16_t>(std::stoul(port));
  *out = std::move(a);
  return true;
}

// ---------------------------------------------------------------------------
// The event loop. Every piece of per-connection state lives in this object
// and only the server thread touches it; a forked child (where that thread
// does not exist) never does, whatever state the fork caught it in.

class HttpServer::Loop {
 public:
  explicit Loop(HttpServer* server)
      : server_(*server),
        options_(server->options_),
        stats_(server->stats_),
        epoll_fd_(server->epoll_fd_.load()),
        listen_fd_(server->listen_fd_.load()),
        wake_fd_(server->wake_fd_.load()),
        conns_(server->conn_fds_.size()) {}

  void Run();

 private:
  enum class Phase : uint8_t { kReading, kWriting, kIdle, kLinger };
  struct Conn {
    int fd = -1;
    uint32_t generation = 0;  // in the epoll tag: spots events of a closed connection
    Phase phase = Phase::kReading;
    bool want_out = false;     // registered for EPOLLOUT instead of EPOLLIN
    bool close_after = false;  // close once the response is sent
    bool peer_eof = false;     // client shut down its sending side
    int64_t deadline = 0;
    uint64_t order = 0;  // when it started waiting for a request; smaller = older
    size_t scanned = 0;  // FindHeadEnd resume point
    size_t sent = 0;     // bytes of head + body already sent (or drained in kLinger)
    std::string in, head, body;
  };

  int64_t ExpireAndNextDeadline();
  void Accept();
  bool Evict(bool unfinished_only);
  void SetAccepting(bool on);
  void OnEvent(uint64_t tag);
  void Read(Conn& c);
  void Process(Conn& c);
  void Respond(Conn& c, bool head_only);
  void SetError(int status);
  bool Flush(Conn& c);
  void Drain(Conn& c);
  void Watch(Conn& c, bool out);
  void Close(Conn& c);
  int64_t Ms(int ms) const { return int64_t{std::max(ms, 1)} * kMs; }

  HttpServer& server_;
  const HttpServerOptions& options_;
  HttpServerStats& stats_;
  const int epoll_fd_, listen_fd_, wake_fd_;
  std::vector<Conn> conns_;  // slot i <-> server_.conn_fds_[i]
  size_t open_ = 0;
  uint64_t order_ = 0;
  int64_t now_ = 0;
  int64_t accept_resume_ = 0;  // != 0: accepting paused until then
  HttpRequest request_;        // reused for every request
  HttpResponse response_;
};

void HttpServer::Loop::Run() {
  epoll_event events[64];
  while (!server_.stopping_.load(std::memory_order_acquire)) {
    now_ = NowNs();
    const int64_t next = ExpireAndNextDeadline();
    const int timeout =
        next == INT64_MAX
            ? -1
            : static_cast<int>(std::min<int64_t>((next - now_ + kMs - 1) / kMs, 60000));
    const int n = epoll_wait(epoll_fd_, events, 64, timeout);
    if (n < 0 && errno != EINTR) break;  // EBADF/EINVAL: cannot happen unless fds were stolen
    now_ = NowNs();
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        eventfd_t value;
        eventfd_read(wake_fd_, &value);  // Stop(): stopping_ is checked at the loop's top
      } else if (tag == kListenTag) {
        Accept();
      } else {
        OnEvent(tag);
      }
    }
  }
  for (Conn& c : conns_) {
    if (c.fd >= 0) Close(c);
  }
}

int64_t HttpServer::Loop::ExpireAndNextDeadline() {
  int64_t next = INT64_MAX;
  if (accept_resume_ != 0) {
    if (now_ >= accept_resume_) {
      SetAccepting(true);
    } else {
      next = accept_resume_;
    }
  }
  for (Conn& c : conns_) {
    if (c.fd < 0) continue;
    if (c.deadline <= now_) {
      // Only the request deadline counts; idle keep-alive and linger ends are normal.
      if (c.phase == Phase::kReading || c.phase == Phase::kWriting) {
        stats_.timeouts.fetch_add(1, std::memory_order_relaxed);
      }
      Close(c);
    } else {
      next = std::min(next, c.deadline);
    }
  }
  return next;
}

void HttpServer::Loop::Accept() {
  // Bounded so that a connect flood cannot starve the open connections;
  // the listening socket is level-triggered and reports the rest next time.
  for (size_t round = 0; round <= options_.max_connections; ++round) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN) return;
      if (IsConnectionError(errno)) continue;  // that connection is gone; try the next
      // EMFILE/ENFILE: free one fd; the next iteration retries (the listening
      // socket stays ready). Nothing to evict, ENOBUFS, ENOMEM: back off.
      if ((errno == EMFILE || errno == ENFILE) && Evict(true)) return;
      SetAccepting(false);
      return;
    }
    size_t slot = 0;  // conns_ has max_connections + 2 slots, open_ <= max_connections
    while (conns_[slot].fd >= 0) ++slot;
    server_.conn_fds_[slot].store(fd, std::memory_order_relaxed);  // publish first (fork)
    stats_.accepted.fetch_add(1, std::memory_order_relaxed);
    if (open_ >= options_.max_connections) Evict(false);
    Conn& c = conns_[slot];
    c.fd = fd;
    c.phase = Phase::kReading;
    c.want_out = c.close_after = c.peer_eof = false;
    c.deadline = now_ + Ms(options_.request_timeout_ms);
    c.order = ++order_;
    c.scanned = c.sent = 0;
    ++open_;
    stats_.open_connections.fetch_add(1, std::memory_order_relaxed);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = uint64_t{c.generation} << 32 | slot;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      Close(c);
      continue;
    }
    // The request is often there already: answer it before later accepts in
    // this batch can evict the connection.
    OnEvent(ev.data.u64);
  }
}

// Closes, in order of preference: a connection lingering after its last
// response, the one waiting longest for a complete request, or (unless
// unfinished_only) the oldest one being answered.
bool HttpServer::Loop::Evict(bool unfinished_only) {
  Conn* victim = nullptr;
  int victim_rank = 0;
  for (Conn& c : conns_) {
    if (c.fd < 0) continue;
    const int rank = c.phase == Phase::kLinger ? 0 : c.phase == Phase::kWriting ? 2 : 1;
    if (unfinished_only && rank == 2) continue;
    if (!victim || rank < victim_rank || (rank == victim_rank && c.order < victim->order)) {
      victim = &c;
      victim_rank = rank;
    }
  }
  if (!victim) return false;
  stats_.evicted.fetch_add(1, std::memory_order_relaxed);
  Close(*victim);
  return true;
}

void HttpServer::Loop::SetAccepting(bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  if (on) {
    accept_resume_ = epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev) == 0 || errno == EEXIST
                         ? 0
                         : now_ + kAcceptPauseNs;
  } else {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
    accept_resume_ = now_ + kAcceptPauseNs;
  }
}

void HttpServer::Loop::OnEvent(uint64_t tag) {
  const size_t slot = static_cast<size_t>(tag & 0xffffffffu);
  if (slot >= conns_.size()) return;
  Conn& c = conns_[slot];
  // Closed (and maybe reused) earlier in this batch: the generation tells.
  if (c.fd < 0 || c.generation != static_cast<uint32_t>(tag >> 32)) return;
  try {
    switch (c.phase) {
      case Phase::kWriting:
        if (Flush(c)) Process(c);  // then any pipelined request
        break;
      case Phase::kLinger:
        Drain(c);
        break;
      case Phase::kReading:
      case Phase::kIdle:
        Read(c);
        if (c.fd >= 0) Process(c);
        break;
    }
  } catch (...) {  // std::bad_alloc: give up on this connection, keep serving
    if (c.fd >= 0) Close(c);
  }
}

void HttpServer::Loop::Read(Conn& c) {
  char buf[16384];
  // Never hold more than one byte over the cap: enough to tell "too large".
  const size_t limit = options_.max_request_bytes + 1;
  while (c.in.size() < limit) {
    const ssize_t n = recv(c.fd, buf, std::min(sizeof buf, limit - c.in.size()), 0);
    if (n > 0) {
      if (c.phase == Phase::kIdle) {  // first byte of the next request
        c.phase = Phase::kReading;
        c.deadline = now_ + Ms(options_.request_timeout_ms);
      }
      c.in.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      c.peer_eof = true;  // a complete request already sent is still answered
      return;
    } else if (errno != EINTR) {
      if (errno != EAGAIN) Close(c);
      return;
    }
  }
}

// Answers every complete request buffered on c, in order (pipelining).
void HttpServer::Loop::Process(Conn& c) {
  while (c.fd >= 0 && (c.phase == Phase::kReading || c.phase == Phase::kIdle)) {
    // Empty lines before a request line are ignored (RFC 9112 2.2).
    const size_t junk = std::min(c.in.find_first_not_of("\r\n"), c.in.size());
    if (junk > 0) {
      c.in.erase(0, junk);
      c.scanned = 0;
    }
    if (c.in.empty()) {
      if (c.peer_eof) Close(c);
      return;
    }
    if (c.phase == Phase::kIdle) {  // pipelined bytes: the next request has begun
      c.phase = Phase::kReading;
      c.deadline = now_ + Ms(options_.request_timeout_ms);
    }
    const size_t end = FindHeadEnd(c.in, &c.scanned);
    // A client that does not speak HTTP (say, a TLS handshake) gets its 400
    // now rather than at the deadline: a method is a short token.
    const size_t method_len = std::min({c.in.find(' '), c.in.size(), size_t{32}});
    const bool bad_start =
        method_len == 32 || !std::all_of(c.in.begin(), c.in.begin() + method_len, IsTokenChar);
    if (end == 0 && !bad_start && c.in.size() <= options_.max_request_bytes) {
      if (c.peer_eof) Close(c);  // truncated request
      return;
    }
    c.scanned = 0;
    c.close_after = true;
    bool keep_alive = false;
    const int status = bad_start ? 400
                       : end == 0 || end > options_.max_request_bytes
                           ? 431
                           : ParseHead(std::string_view(c.in.data(), end), &request_, &keep_alive);
    if (status != 200) {
      stats_.bad_requests.fetch_add(1, std::memory_order_relaxed);
      SetError(status);
      c.in.clear();
      Respond(c, false);
      continue;
    }
    c.in.erase(0, end);
    c.close_after = !keep_alive || c.peer_eof;
    stats_.requests.fetch_add(1, std::memory_order_relaxed);
    response_.status = 200;
    response_.content_type = kTextPlain;
    response_.body.clear();
    response_.extra_headers.clear();
    try {
      server_.handler_(request_, &response_);
    } catch (...) {
      SetError(500);
    }
    now_ = NowNs();  // a scrape can take a while
    Respond(c, request_.method == "HEAD");
  }
}

void HttpServer::Loop::SetError(int status) {
  response_.status = status;
  response_.content_type = kTextPlain;
  response_.body = Reason(status);
  response_.body += '\n';
  response_.extra_headers.clear();
  if (status == 405) response_.extra_headers.emplace_back("Allow", "GET, HEAD");
}

// Turns response_ into c's head + body and starts sending.
void HttpServer::Loop::Respond(Conn& c, bool head_only) {
  HttpResponse& r = response_;
  if (r.status < 200 || r.status > 599) r.status = 500;
  std::string& h = c.head;
  h.assign("HTTP/1.1 ");
  AppendInt(&h, static_cast<uint64_t>(r.status));
  h += ' ';
  h += Reason(r.status);
  h += "\r\nContent-Type: ";
  h += IsFieldValue(r.content_type) ? r.content_type : kTextPlain;
  h += "\r\nContent-Length: ";
  AppendInt(&h, r.body.size());  // HEAD: the length GET would send
  h += c.close_after ? "\r\nConnection: close\r\n" : "\r\nConnection: keep-alive\r\n";
  for (const auto& [name, value] : r.extra_headers) {
    if (!IsToken(name) || !IsFieldValue(value)) continue;  // no header injection
    h += name;
    h += ": ";
    h += value;
    h += "\r\n";
  }
  h += "\r\n";
  c.body.swap(r.body);  // no copy; response_ gets c's old buffer to reuse
  if (head_only) c.body.clear();
  c.phase = Phase::kWriting;
  c.sent = 0;
  Flush(c);
}

// Sends what is pending. Returns true when the response is complete and the
// connection stays open for another request.
bool HttpServer::Loop::Flush(Conn& c) {
  const size_t total = c.head.size() + c.body.size();
  while (c.sent < total) {
    iovec iov[2];
    int count = 0;
    if (c.sent < c.head.size()) iov[count++] = {&c.head[c.sent], c.head.size() - c.sent};
    const size_t body_sent = c.sent > c.head.size() ? c.sent - c.head.size() : 0;
    if (body_sent < c.body.size()) iov[count++] = {&c.body[body_sent], c.body.size() - body_sent};
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    const ssize_t n = sendmsg(c.fd, &msg, MSG_NOSIGNAL);  // MSG_NOSIGNAL: EPIPE, no SIGPIPE
    if (n >= 0) {
      c.sent += static_cast<size_t>(n);
    } else if (errno == EAGAIN) {
      Watch(c, true);
      return false;
    } else if (errno != EINTR) {
      Close(c);
      return false;
    }
  }
  c.head.clear();
  if (c.body.capacity() > kKeepBufferBytes) std::string().swap(c.body);
  c.body.clear();
  if (c.close_after) {
    // Lingering close: stop sending (the client sees EOF) but drain its
    // input for a moment, so unread bytes do not turn our close into an RST
    // that could destroy the response before the client reads it.
    if (c.peer_eof || shutdown(c.fd, SHUT_WR) != 0) {
      Close(c);
      return false;
    }
    c.phase = Phase::kLinger;
    c.deadline = now_ + std::min(kLingerNs, Ms(options_.request_timeout_ms));
    c.in.clear();
    c.sent = 0;
    Watch(c, false);
    return false;
  }
  c.phase = c.in.empty() ? Phase::kIdle : Phase::kReading;
  c.deadline = now_ + Ms(c.in.empty() ? options_.idle_timeout_ms : options_.request_timeout_ms);
  c.order = ++order_;
  Watch(c, false);
  return c.fd >= 0;
}

void HttpServer::Loop::Drain(Conn& c) {
  char buf[16384];
  for (;;) {
    const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0 || (c.sent += static_cast<size_t>(n)) > kLingerMaxBytes) break;
  }
  Close(c);
}

void HttpServer::Loop::Watch(Conn& c, bool out) {
  if (c.want_out == out) return;
  epoll_event ev{};
  ev.events = out ? EPOLLOUT : EPOLLIN | EPOLLRDHUP;
  ev.data.u64 = uint64_t{c.generation} << 32 | static_cast<size_t>(&c - conns_.data());
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev) != 0) {
    Close(c);
    return;
  }
  c.want_out = out;
}

void HttpServer::Loop::Close(Conn& c) {
  // Deregister first: a copy of the fd in a forked child would otherwise
  // keep the socket (and its epoll registration) alive.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
  // Unpublish before close(): once closed, the number can be reused by
  // another thread of the master, and a child must never close that one.
  server_.conn_fds_[&c - conns_.data()].store(-1, std::memory_order_relaxed);
  close(c.fd);
  c.fd = -1;
  ++c.generation;
  if (c.in.capacity() > kKeepBufferBytes) std::string().swap(c.in);
  if (c.body.capacity() > kKeepBufferBytes) std::string().swap(c.body);
  c.in.clear();
  c.head.clear();
  c.body.clear();
  --open_;
  stats_.open_connections.fetch_sub(1, std::memory_order_relaxed);
}

// ---------------------------------------------------------------------------

HttpServer::HttpServer() = default;  // here, where Loop is complete

HttpServer::~HttpServer() {
  // In a forked child the loop's state may have been caught mid-update by
  // fork(): never destroy it there, leak it (the child usually execs or
  // exits soon; nothing else refers to it).
  if (forked_.load()) (void)loop_.release();
  Stop();
}

void* HttpServer::ThreadMain(void* loop) {
  try {
    static_cast<Loop*>(loop)->Run();
  } catch (...) {  // Run() handles its own errors; never let one end the process
  }
  return nullptr;
}

bool HttpServer::Listen(const HttpServerOptions& options, std::string* error) {
  if (forked_.load()) return Fail(error, "server object was inherited across fork()");
  if (listen_fd_.load() >= 0 || thread_running_) return Fail(error, "already listening");
  options_ = options;
  options_.max_connections = std::max<size_t>(options_.max_connections, 1);
  const ListenAddress& address = options_.address;
  const int fd = address.kind == ListenAddress::Kind::kUnix
                     ? ListenUnix(address, options_.listen_backlog, error)
                     : ListenTcp(address, options_.listen_backlog, error);
  if (fd < 0) return false;
  bound_port_ = 0;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (address.kind == ListenAddress::Kind::kTcp &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    bound_port_ =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  struct stat st;
  unlink_on_stop_ =
      address.kind == ListenAddress::Kind::kUnix && stat(address.path.c_str(), &st) == 0;
  if (unlink_on_stop_) {
    unix_dev_ = st.st_dev;
    unix_ino_ = st.st_ino;
  }
  // Two spare slots: a new connection is published before the eviction
  // that makes room for it.
  conn_fds_ = std::vector<std::atomic<int>>(options_.max_connections + 2);
  for (auto& slot : conn_fds_) slot.store(-1, std::memory_order_relaxed);
  listen_fd_.store(fd);
  return true;
}

bool HttpServer::Start(HttpHandler handler, std::string* error) {
  if (forked_.load()) return Fail(error, "server object was inherited across fork()");
  if (thread_running_) return Fail(error, "already started");
  if (listen_fd_.load() < 0) return Fail(error, "Listen() must succeed before Start()");
  if (!handler) return Fail(error, "no handler");
  handler_ = std::move(handler);
  epoll_fd_.store(epoll_create1(EPOLL_CLOEXEC));
  wake_fd_.store(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  epoll_event listen_ev{}, wake_ev{};
  listen_ev.events = wake_ev.events = EPOLLIN;
  listen_ev.data.u64 = kListenTag;
  wake_ev.data.u64 = kWakeTag;
  if (epoll_fd_.load() < 0 || wake_fd_.load() < 0 ||
      epoll_ctl(epoll_fd_.load(), EPOLL_CTL_ADD, listen_fd_.load(), &listen_ev) != 0 ||
      epoll_ctl(epoll_fd_.load(), EPOLL_CTL_ADD, wake_fd_.load(), &wake_ev) != 0) {
    *error = "epoll/eventfd: " + ErrnoText(errno);
    CloseSlot(epoll_fd_);
    CloseSlot(wake_fd_);
    return false;
  }
  stopping_.store(false);
  std::string failure;
  try {
    loop_ = std::make_unique<Loop>(this);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (loop_) {
    // The thread blocks asynchronous signals: uWSGI's master handlers must
    // run on the master's own thread. Faults still reach their handlers.
    sigset_t all, saved;
    sigfillset(&all);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigdelset(&all, sig);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    const int rc = pthread_create(&thread_, nullptr, &HttpServer::ThreadMain, loop_.get());
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    thread_running_ = rc == 0;
    if (rc == 0) pthread_setname_np(thread_, "prometheus-http");  // as top -H shows it
    if (rc != 0) failure = ErrnoText(rc);
  }
  if (thread_running_) return true;
  *error = "cannot start the server thread: " + failure;
  loop_.reset();
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  return false;
}

void HttpServer::Stop() {
  // A forked child has no server thread: nothing to join or wake, and its
  // fds are closed by CloseFdsAfterFork. The socket file is the parent's.
  if (forked_.load()) return;
  stopping_.store(true, std::memory_order_release);
  if (thread_running_) {
    if (pthread_equal(thread_, pthread_self())) return;  // from the handler: cannot join itself
    eventfd_write(wake_fd_.load(), 1);  // cannot fail: the counter is far from its max
    pthread_join(thread_, nullptr);     // the loop closed its connections on the way out
    thread_running_ = false;
  }
  loop_.reset();
  for (auto& slot : conn_fds_) CloseSlot(slot);
  CloseSlot(listen_fd_);
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  struct stat st;
  if (unlink_on_stop_ && stat(options_.address.path.c_str(), &st) == 0 && st.st_dev == unix_dev_ &&
      st.st_ino == unix_ino_) {
    unlink(options_.address.path.c_str());
  }
  unlink_on_stop_ = false;
}

// Runs in a forked child, possibly from a pthread_atfork handler while the
// parent's server thread was anywhere in its loop: only atomic exchanges
// and close(), no locks or allocation. conn_fds_ is never resized while
// the thread runs, so its storage is valid here. A connection accepted in
// the instant between accept4() and its slot store (or unpublished but not
// yet closed) leaks into the child; the opposite order could make the
// child close an unrelated fd, which is worse.
//
// Afterwards the object is inert. The thread is a raw pthread_t, not a
// std::thread: a std::thread copied by fork() is joinable, so destroying it
// calls std::terminate, joining waits on a thread id that means nothing in
// the child, and detach() releases resources of a thread that is not ours.
// A pthread_t needs none of that: Stop() returns at once, and the
// destructor leaks the Loop (the fork may have caught it mid-update) instead
// of freeing it. Close() of a parent's connection in the child sends no FIN:
// the parent still holds the socket.
void HttpServer::CloseFdsAfterFork() noexcept {
  forked_.store(true);
  for (auto& slot : conn_fds_) CloseSlot(slot);
  CloseSlot(listen_fd_);
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  unlink_on_stop_ = false;  // the socket file belongs to the parent
}

}  // namespace uwsgi_prometheus
