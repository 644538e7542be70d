// Listen addresses: parsing the --prometheus-socket syntax and binding the
// listening socket, TCP (dual-stack for the any address) or UNIX.
#include "listen_address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <utility>

namespace uwsgi_prometheus {
namespace {

bool Fail(std::string* error, std::string message) {
  *error = std::move(message);
  return false;
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

// The addresses a named host resolves to (freeaddrinfo them), or null with
// a message.
addrinfo* ResolveHost(const ListenAddress& address, std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc =
      getaddrinfo(address.host.c_str(), std::to_string(address.port).c_str(), &hints, &found);
  if (rc == 0 && found != nullptr) return found;
  if (found) freeaddrinfo(found);
  *error = address.ToString() + ": cannot resolve '" + address.host +
           "': " + (rc != 0 ? gai_strerror(rc) : "no address");
  return nullptr;
}

int ListenTcp(const ListenAddress& address, int backlog, std::string* error, bool* in_use) {
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
    addrinfo* found = ResolveHost(address, error);
    if (found == nullptr) return -1;
    fd = BindAndListen(found->ai_addr, found->ai_addrlen, backlog, false);
    const int err = errno;
    freeaddrinfo(found);
    errno = err;
  }
  if (fd < 0) {
    *in_use = errno == EADDRINUSE;
    *error = address.ToString() + ": " + ErrnoText(errno);
  }
  return fd;
}

int ListenUnix(const ListenAddress& address, int backlog, std::string* error, bool* in_use) {
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
      *in_use = true;
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
  if (fd < 0) {
    *in_use = errno == EADDRINUSE;  // another server bound the path just now
    *error = name + ": " + ErrnoText(errno);
  }
  return fd;
}

}  // namespace

std::string ErrnoText(int err) {
  char buf[128];
  std::string text = strerror_r(err, buf, sizeof buf);  // GNU variant
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] + 32);
  return text;
}

std::string ListenAddress::ToString() const {
  if (kind == Kind::kUnix) return "unix:" + path;
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

namespace {

// "host:port" or "[v6]:port" into *a, or false with a message.
bool ParseTcpAddress(const std::string& text, ListenAddress* a, std::string* error) {
  std::string port;
  if (text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos) return Fail(error, "missing ']' after the IPv6 address");
    a->host = text.substr(1, close - 1);
    in6_addr ignored;
    if (inet_pton(AF_INET6, a->host.c_str(), &ignored) != 1) {
      return Fail(error, "'" + a->host + "' is not an IPv6 address");
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
    a->host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (a->host.find(':') != std::string::npos) {
      return Fail(error, "IPv6 addresses go in brackets, e.g. [::1]:9117");
    }
    const bool host_ok = std::all_of(a->host.begin(), a->host.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '-' || c == '_';
    });
    if (!host_ok) return Fail(error, "'" + a->host + "' is not a host name or IPv4 address");
  }
  if (port.empty()) return Fail(error, "port is missing (e.g. :9117)");
  if (port.find_first_not_of("0123456789") != std::string::npos) {
    return Fail(error, "port '" + port + "' is not a number");
  }
  if (port.size() > 5 || std::stoul(port) > 65535) {
    return Fail(error, "port " + port + " is out of range (1-65535)");
  }
  a->port = static_cast<uint16_t>(std::stoul(port));
  return true;
}

}  // namespace

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
  } else if (!ParseTcpAddress(text, &a, error)) {
    return false;
  }
  *out = std::move(a);
  return true;
}

bool BindListener(const ListenAddress& address, int backlog, BoundListener* out,
                  std::string* error, bool* in_use) {
  BoundListener l;
  bool busy = false;
  l.fd = address.kind == ListenAddress::Kind::kUnix ? ListenUnix(address, backlog, error, &busy)
                                                     : ListenTcp(address, backlog, error, &busy);
  if (in_use) *in_use = l.fd < 0 && busy;
  if (l.fd < 0) return false;
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (address.kind == ListenAddress::Kind::kTcp &&
      getsockname(l.fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    l.port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  }
  struct stat st;
  l.owns_file = address.kind == ListenAddress::Kind::kUnix && stat(address.path.c_str(), &st) == 0;
  if (l.owns_file) {
    l.file_dev = st.st_dev;
    l.file_ino = st.st_ino;
  }
  *out = l;
  return true;
}

bool ResolveListenHost(ListenAddress* address, std::string* error) {
  if (address->kind != ListenAddress::Kind::kTcp || address->host.empty()) return true;
  addrinfo* found = ResolveHost(*address, error);
  if (found == nullptr) return false;
  char host[NI_MAXHOST];
  const int rc = getnameinfo(found->ai_addr, found->ai_addrlen, host, sizeof host, nullptr, 0,
                             NI_NUMERICHOST);
  freeaddrinfo(found);
  if (rc != 0) {
    *error = address->ToString() + ": cannot resolve '" + address->host + "': " + gai_strerror(rc);
    return false;
  }
  address->host = host;
  return true;
}

void RemoveSocketFile(const ListenAddress& address, const BoundListener& listener) {
  struct stat st;
  if (listener.owns_file && stat(address.path.c_str(), &st) == 0 &&
      st.st_dev == listener.file_dev && st.st_ino == listener.file_ino) {
    unlink(address.path.c_str());
  }
}

}  // namespace uwsgi_prometheus
