// Where the endpoint listens: the --prometheus-socket syntax and the
// listening socket it describes (TCP or UNIX).
#pragma once

#include <cstdint>
#include <string>

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

// A listening socket made by BindListener.
struct BoundListener {
  int fd = -1;
  uint16_t port = 0;         // the TCP port actually bound; 0 for UNIX
  bool owns_file = false;    // a UNIX socket file was created for it
  uint64_t file_dev = 0;     // that file's identity, so that only it is
  uint64_t file_ino = 0;     // ever removed (see RemoveSocketFile)
};

// Creates, binds and listens (close-on-exec, non-blocking, SO_REUSEADDR; a
// stale UNIX socket file is replaced only if nothing listens on it).
// Returns false with a message such as "127.0.0.1:9117: address already
// in use"; then `in_use` (when given) tells whether the reason was that
// another socket holds the address (EADDRINUSE, or a server answering on
// the UNIX path): contention that may end, unlike every other failure.
bool BindListener(const ListenAddress& address, int backlog, BoundListener* out,
                  std::string* error, bool* in_use = nullptr);

// Replaces a host name in `address` by the numeric address it resolves to
// first (the one BindListener would bind), so that later binds never wait
// for a name service. Numeric hosts and the any address are left as they
// are. False with a message when the name does not resolve.
bool ResolveListenHost(ListenAddress* address, std::string* error);

// Removes the UNIX socket file `listener` created at `address`, unless it
// has been replaced by someone else's file since.
void RemoveSocketFile(const ListenAddress& address, const BoundListener& listener);

// strerror text starting in lower case ("address already in use"), for
// messages that read as one sentence.
std::string ErrnoText(int err);

}  // namespace uwsgi_prometheus
