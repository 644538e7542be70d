#include "event_loop.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "fork_gate.h"

namespace uwsgi_prometheus {
namespace {

constexpr size_t kAcceptBatch = 16;    // connections accepted per readiness of the listener
constexpr int kSendBufferBytes = 128 * 1024;  // the kernel doubles it for bookkeeping

constexpr int64_t kMs = 1000000;               // ns per ms
constexpr int64_t kAcceptPauseNs = 100 * kMs;  // after EMFILE with nothing to evict
constexpr int kMaxEvents = 64;
// A new connection's first bytes need a round trip: until then it does not
// count as silent (see EventLoop::EvictionRank).
constexpr int64_t kFirstBytesGraceNs = 500 * kMs;
constexpr int64_t kSlowRequestNs = 2000 * kMs;  // a request or handshake begun this long ago

// accept4() errors that concern only the connection being accepted.
bool IsConnectionError(int err) {
  for (int e : {EINTR, ECONNABORTED, EPROTO, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH,
                EOPNOTSUPP, ENETUNREACH}) {
    if (err == e) return true;
  }
  return false;
}

}  // namespace

ssize_t FdSocket::Read(char* buf, size_t len) {
  const ssize_t n = recv(fd, buf, len, 0);
  received |= n > 0;
  return n >= 0 ? n : -errno;
}

ssize_t FdSocket::Write(const iovec* iov, int count) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = static_cast<size_t>(count);
  const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);  // MSG_NOSIGNAL: EPIPE, no SIGPIPE
  return n >= 0 ? n : -errno;
}

int FdSocket::ShutdownWrite() { return shutdown(fd, SHUT_WR) == 0 ? 0 : -errno; }

EventLoop::EventLoop(const EventLoopSetup& setup, const SessionFactory& make_session,
                     const FilterFactory& make_filter)
    : setup_(setup), ctx_(setup_.context), slots_(setup.max_connections + 2) {
  ctx_.fork_gate = setup_.fork_gate;
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].session = make_session(i);
    if (make_filter) slots_[i].filter = make_filter();
  }
}

void EventLoop::SafePoint() {
  if (setup_.fork_gate) setup_.fork_gate->SafePoint();
}

void EventLoop::Run() {
  epoll_event events[kMaxEvents];
  while (!setup_.stopping->load(std::memory_order_acquire)) {
    SafePoint();
    ctx_.Tick();
    const int64_t next = ExpireAndNextDeadline();
    const int timeout =
        next == INT64_MAX
            ? -1
            : static_cast<int>(std::min<int64_t>((next - ctx_.now + kMs - 1) / kMs, 60000));
    const int n = epoll_wait(setup_.epoll_fd, events, kMaxEvents, timeout);
    if (n < 0 && errno != EINTR) break;  // EBADF/EINVAL: cannot happen unless fds were stolen
    ctx_.Tick();
    for (int i = 0; i < n; ++i) {
      if (i > 0) SafePoint();
      const uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        eventfd_t value;
        eventfd_read(setup_.wake_fd, &value);  // stopping and the gate are checked above
      } else if (tag == kListenTag) {
        Accept();
      } else if (tag == kResumeTag) {
        setup_.completions->Drain([this](size_t slot, uint64_t outcome) {
          SafePoint();
          Resume(slot, outcome);
        });
      } else {
        OnEvent(tag, events[i].events);
      }
    }
  }
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].conn.Abort(CloseReason::kShutdown);
    Sync(i);
  }
}

int64_t EventLoop::ExpireAndNextDeadline() {
  int64_t next = INT64_MAX;
  if (accept_resume_ != 0) {
    if (ctx_.now >= accept_resume_) {
      SetAccepting(true);
    } else {
      next = accept_resume_;
    }
  }
  for (size_t i = 0; i < slots_.size(); ++i) {
    Connection& c = slots_[i].conn;
    if (c.closed()) continue;
    if (c.deadline() <= ctx_.now) {
      c.OnDeadline();
      Sync(i);
    } else {
      next = std::min(next, c.deadline());
    }
  }
  return next;
}

void EventLoop::Accept() {
  // Bounded so that a connect flood cannot starve the open connections;
  // the listening socket is level-triggered and reports the rest next time.
  for (size_t round = 0; round < kAcceptBatch; ++round) {
    if (round > 0) SafePoint();
    const int fd = accept4(setup_.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN) return;
      if (IsConnectionError(errno)) continue;  // that connection is gone; try the next
      // EMFILE/ENFILE: free one fd; the next iteration retries (the listening
      // socket stays ready). Nothing to evict, ENOBUFS, ENOMEM: back off.
      if ((errno == EMFILE || errno == ENFILE) && Evict(true)) return;
      SetAccepting(false);
      return;
    }
    // A fixed send buffer: the kernel would otherwise grow it to megabytes
    // for each client that reads slowly (socket memory is charged to the
    // container). A body larger than this waits in user space, where
    // clients of the same moment share one copy (exporter.h).
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &kSendBufferBytes, sizeof kSendBufferBytes);
    size_t i = 0;  // max_connections + 2 slots, open_ <= max_connections
    while (!slots_[i].conn.closed()) ++i;
    setup_.published[i].store(fd, std::memory_order_relaxed);  // publish first (fork)
    // As Go's servers: replies go out at once. A TLS reply is several
    // records, and Nagle would hold the next one for the client's delayed
    // ACK (40 ms). Fails harmlessly on a UNIX socket.
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setup_.stats->accepted.fetch_add(1, std::memory_order_relaxed);
    if (open_ >= setup_.max_connections) Evict(false);
    Slot& s = slots_[i];
    s.socket.fd = fd;
    s.socket.received = false;
    s.accepted_at = ctx_.now;
    s.registered = Connection::Interest::kReadable;
    const bool filtered = s.filter && s.filter->Open(&s.socket);
    s.stream = filtered ? static_cast<Socket*>(s.filter.get()) : &s.socket;
    s.conn.Open(s.stream, s.session.get(), &ctx_);
    ++open_;
    setup_.stats->open_connections.fetch_add(1, std::memory_order_relaxed);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = Tag(i);
    if ((s.filter && !filtered) || epoll_ctl(setup_.epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      s.conn.Abort(CloseReason::kError);
      Sync(i);
      continue;
    }
    // The request is often there already: answer it before later accepts in
    // this batch can evict the connection.
    OnEvent(ev.data.u64, EPOLLIN);
  }
}

// Eviction order, first to last:
//  0 lingering after its last reply, or doomed (not TLS on a TLS port);
//  1 silent: idle between requests, or no byte in the round trip's grace
//    since it was accepted;
//  2 slow: in the middle of a request or handshake for seconds;
//  3 in the middle of a request or handshake whose input is not complete
//    (a slowloris, or a ClientHello dribbled byte by byte);
//  4 just accepted, no byte yet: good clients look like this for a round
//    trip, so a flood of connections that never send must not push them
//    out before the dribblers;
//  5 waiting for the client after the server answered its handshake (a
//    TLS client, a round trip or two from its request);
//  6 being answered.
// Within a rank the connection waiting longest goes first.
int EventLoop::EvictionRank(const Slot& s) const {
  if (s.stream->Doomed()) return 0;
  switch (s.conn.phase()) {
    case Connection::Phase::kLinger:
      return 0;
    case Connection::Phase::kIdle:
      return 1;
    case Connection::Phase::kReading:
      if (s.socket.received) {
        // The request deadline was set when the request began.
        const int64_t began = s.conn.deadline() - ctx_.request_timeout_ns;
        if (ctx_.now - began >= kSlowRequestNs) return 2;
        return s.stream->AwaitsPeer() ? 5 : 3;
      }
      return ctx_.now - s.accepted_at >= kFirstBytesGraceNs ? 1 : 4;
    default:
      return 6;
  }
}

// Closes the connection of the lowest rank (EvictionRank), the one waiting
// longest among them; being answered (rank 6) only if not unfinished_only.
bool EventLoop::Evict(bool unfinished_only) {
  size_t victim = slots_.size();
  int victim_rank = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Connection& c = slots_[i].conn;
    if (c.closed()) continue;
    const int rank = EvictionRank(slots_[i]);
    if (unfinished_only && rank == 6) continue;
    if (victim == slots_.size() || rank < victim_rank ||
        (rank == victim_rank && c.order() < slots_[victim].conn.order())) {
      victim = i;
      victim_rank = rank;
    }
  }
  if (victim == slots_.size()) return false;
  slots_[victim].conn.Abort(CloseReason::kEvicted);
  Sync(victim);
  return true;
}

void EventLoop::SetAccepting(bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenTag;
  if (on) {
    accept_resume_ =
        epoll_ctl(setup_.epoll_fd, EPOLL_CTL_ADD, setup_.listen_fd, &ev) == 0 || errno == EEXIST
            ? 0
            : ctx_.now + kAcceptPauseNs;
  } else {
    epoll_ctl(setup_.epoll_fd, EPOLL_CTL_DEL, setup_.listen_fd, nullptr);
    accept_resume_ = ctx_.now + kAcceptPauseNs;
  }
}

void EventLoop::OnEvent(uint64_t tag, uint32_t events) {
  const size_t i = static_cast<size_t>(tag & 0xffffffffu);
  if (i >= slots_.size()) return;
  Slot& s = slots_[i];
  // Closed (and maybe reused) earlier in this batch: the generation tells.
  if (s.conn.closed() || s.generation != static_cast<uint32_t>(tag >> 32)) return;
  // A paused connection waits for nothing: told of a hang-up, it must end
  // it, or level-triggered epoll reports it again and again.
  if (events & (EPOLLHUP | EPOLLERR)) {
    s.conn.OnHangup();
  } else {
    s.conn.OnReady();
  }
  Sync(i);
}

// A CompletionSource finished work for the session in `slot`. A slot closed
// (or reused) since is told too: its session recognizes a stale outcome.
void EventLoop::Resume(size_t slot, uint64_t outcome) {
  if (slot >= slots_.size() || slots_[slot].conn.closed()) return;
  ctx_.Tick();
  slots_[slot].conn.Resume(outcome);
  Sync(slot);
}

// After a connection was handled: waits for the readiness it now needs
// (none while its session is paused: only errors and hang-ups are then
// reported), or closes its socket if it has ended.
void EventLoop::Sync(size_t i) {
  Slot& s = slots_[i];
  const Connection::Interest interest = s.conn.interest();
  if (!s.conn.closed() && interest != s.registered) {
    epoll_event ev{};
    ev.events = interest == Connection::Interest::kWritable   ? EPOLLOUT
                 : interest == Connection::Interest::kReadable ? EPOLLIN | EPOLLRDHUP
                                                               : 0;
    ev.data.u64 = Tag(i);
    if (epoll_ctl(setup_.epoll_fd, EPOLL_CTL_MOD, s.socket.fd, &ev) == 0) {
      s.registered = interest;
    } else {
      s.conn.Abort(CloseReason::kError);
    }
  }
  if (s.conn.closed() && s.socket.fd >= 0) Release(i);
}

void EventLoop::Release(size_t i) {
  Slot& s = slots_[i];
  // Counted before the client can see the close.
  const CloseReason reason = s.conn.close_reason();
  setup_.stats->closed[static_cast<size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  setup_.stats->open_connections.fetch_sub(1, std::memory_order_relaxed);
  --open_;
  // Deregister first: a copy of the fd in a forked child would otherwise
  // keep the socket (and its epoll registration) alive.
  epoll_ctl(setup_.epoll_fd, EPOLL_CTL_DEL, s.socket.fd, nullptr);
  const std::string detail =
      setup_.close_log && s.stream ? s.stream->FailureDetail() : std::string();
  if (s.filter) s.filter->Release();
  // Unpublish before close(): once closed, the number can be reused by
  // another thread of the process, and a child must never close that one.
  setup_.published[i].store(-1, std::memory_order_relaxed);
  close(s.socket.fd);
  s.socket.fd = -1;
  ++s.generation;
  if (setup_.close_log) setup_.close_log->Note(reason, ctx_.now, detail);
}

}  // namespace uwsgi_prometheus
