// The transport's event loop: one level-triggered epoll instance over the
// listening socket, a wake-up eventfd, an optional CompletionSource (work
// done elsewhere for paused sessions) and at most max_connections client
// connections (connection.h). It accepts, dispatches readiness to the
// connections, resumes paused ones, enforces their deadlines (scanning them
// once per iteration: max_connections is small) and the connection limit,
// and closes their sockets. It runs on one thread; nothing in it knows about
// HTTP or TLS.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "close_reason.h"
#include "connection.h"

namespace uwsgi_prometheus {

class ForkGate;

// A Socket over a connected, non-blocking socket fd.
class FdSocket final : public Socket {
 public:
  ssize_t Read(char* buf, size_t len) override;
  ssize_t Write(const iovec* iov, int count) override;
  int ShutdownWrite() override;
  int fd = -1;
  bool received = false;  // any byte read since accept (a TLS handshake's too)
};

struct EventLoopSetup {
  int epoll_fd = -1;  // with listen_fd, wake_fd and completions->fd()
  int listen_fd = -1;  //   registered (EPOLLIN, tags kListenTag, kWakeTag,
  int wake_fd = -1;    //   kResumeTag); wake_fd: check `stopping` and the fork gate
  CompletionSource* completions = nullptr;  // may be null: no session pauses
  size_t max_connections = 128;
  // max_connections + 2 slots (a new connection is published before the
  // eviction that makes room for it): each open connection's fd, for a
  // forked child to close (-1 = free). Owned by the caller.
  std::atomic<int>* published = nullptr;
  const std::atomic<bool>* stopping = nullptr;
  ForkGate* fork_gate = nullptr;
  ConnectionStats* stats = nullptr;
  CloseLog* close_log = nullptr;  // may be null
  ConnectionContext context;      // limits and clock for the connections
};

class EventLoop {
 public:
  static constexpr uint64_t kListenTag = ~uint64_t{0};
  static constexpr uint64_t kWakeTag = kListenTag - 1;
  static constexpr uint64_t kResumeTag = kListenTag - 2;

  using SessionFactory = std::function<std::unique_ptr<Session>(size_t slot)>;
  using FilterFactory = std::function<std::unique_ptr<SocketFilter>()>;

  // Makes one session (told its slot number, which a CompletionSource
  // names to resume it) and, with make_filter, one socket filter per
  // connection slot up front: nothing is allocated per connection
  // afterwards.
  EventLoop(const EventLoopSetup& setup, const SessionFactory& make_session,
            const FilterFactory& make_filter = nullptr);

  // Serves until *stopping is seen (after a wake-up), then closes every
  // connection.
  void Run();

 private:
  struct Slot {
    FdSocket socket;
    std::unique_ptr<SocketFilter> filter;  // over `socket`, if the loop has filters
    Socket* stream = nullptr;              // what the connection reads: filter or socket
    Connection conn;
    std::unique_ptr<Session> session;
    uint32_t generation = 0;  // in the epoll tag: spots events of a closed connection
    int64_t accepted_at = 0;  // ctx_.now at accept
    Connection::Interest registered = Connection::Interest::kReadable;  // with epoll
  };

  void SafePoint();
  int64_t ExpireAndNextDeadline();
  void Accept();
  bool Evict(bool unfinished_only);
  int EvictionRank(const Slot& s) const;
  void SetAccepting(bool on);
  void OnEvent(uint64_t tag, uint32_t events);
  void Resume(size_t slot, uint64_t outcome);
  void Sync(size_t slot);
  void Release(size_t slot);
  uint64_t Tag(size_t slot) const { return uint64_t{slots_[slot].generation} << 32 | slot; }

  EventLoopSetup setup_;
  ConnectionContext& ctx_;  // setup_.context
  std::vector<Slot> slots_;  // slot i <-> setup_.published[i]
  size_t open_ = 0;
  int64_t accept_resume_ = 0;  // != 0: accepting paused until then
};

}  // namespace uwsgi_prometheus
