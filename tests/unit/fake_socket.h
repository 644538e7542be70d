// A Socket whose other end is the test (unit tests and the connection
// fuzzer): bytes to deliver, room to write, end of stream, errors.
#pragma once

#include <errno.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "connection.h"

namespace uwsgi_prometheus {

class FakeSocket final : public Socket {
 public:
  ssize_t Read(char* buf, size_t len) override {
    misuse += closed;
    if (error) return -error;
    if (incoming.empty()) return eof ? 0 : -EAGAIN;
    const size_t n = std::min(len, incoming.size());
    std::memcpy(buf, incoming.data(), n);
    incoming.erase(0, n);
    return static_cast<ssize_t>(n);
  }
  ssize_t Write(const iovec* iov, int count) override {
    misuse += closed || shut;
    if (error) return -error;
    size_t n = 0;
    for (int i = 0; i < count && n < room; ++i) {
      const size_t take = std::min(iov[i].iov_len, room - n);
      written.append(static_cast<const char*>(iov[i].iov_base), take);
      n += take;
    }
    room -= n;
    return n > 0 ? static_cast<ssize_t>(n) : -EAGAIN;
  }
  int ShutdownWrite() override {
    misuse += closed || shut;
    if (error) return -error;
    shut = true;
    return 0;
  }

  std::string incoming;  // sent by the client, not read yet
  std::string written;   // everything the server wrote
  size_t room = 0;       // bytes it takes before EAGAIN
  int error = 0;         // pending socket error (ECONNRESET...)
  bool eof = false;      // the client shut down its sending side
  bool shut = false;     // the server shut down its sending side
  bool closed = false;   // set by the test once the connection closed
  int misuse = 0;        // calls after close, writes after shutdown
};

}  // namespace uwsgi_prometheus
