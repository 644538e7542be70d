// Keeps a server thread quiescent while its process forks.
//
// fork() copies only the calling thread. A lock that another thread held at
// that instant stays locked forever in the child: a new uWSGI worker once
// hung in the sanitizer allocator's lock, taken by the endpoint thread in
// the middle of a scrape. So, from pthread_atfork handlers:
//
//   prepare (forking thread)  asks the server thread to park, wakes it
//                             (eventfd) and waits until it has parked;
//   server thread             parks only at safe points, where it holds no
//                             lock of any library: between loop iterations,
//                             between events and between requests, never
//                             inside malloc, fmt or the handler;
//   parent                    lets it go on;
//   child                     the thread does not exist there: the owner
//                             closes its fds and makes the object inert.
//
// Guarantee: a fork waits at most for the request being handled (one
// scrape) plus a bounded amount of non-blocking socket work; if the
// thread has not parked after kMaxWaitNs (a handler stuck somewhere), the
// fork goes ahead rather than freeze the master.
//
// Also handled: the server thread forking itself (from a handler: nothing
// to wait for, skipped), forks before the thread starts or after it ended
// (nothing to wait for), forks from several threads at once (counted), and
// the owner's Listen/Start/Stop racing a fork from another thread: they
// run as owner sections, which a fork waits for and which wait for forks
// in progress, so a child never sees them half done.
//
// Only atomics, futex waits and wakes, clock_gettime and write() are used on
// the fork path: no malloc, no mutex of any library.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace uwsgi_prometheus {

class ForkGate {
 public:
  static constexpr int64_t kMaxWaitNs = int64_t{10} * 1000 * 1000 * 1000;

  // ---- Owner (the thread that starts and stops the server).
  // Brackets Listen/Start/Stop. Waits for forks in progress.
  void EnterOwnerSection() noexcept;
  void LeaveOwnerSection() noexcept;
  // In an owner section: the thread is about to be created / could not be.
  void ThreadStarting() noexcept;
  void ThreadNotStarted() noexcept;

  // ---- Server thread.
  void ThreadStarted() noexcept;  // first thing on the thread
  // Parks while a fork is in progress. Call where no lock is held.
  void SafePoint() noexcept {
    if (State(word_.load(std::memory_order_acquire)) == kParkRequested) Park();
  }
  // Last thing on the thread: after it, the thread makes no library call
  // of ours (it parks first if a fork is in progress).
  void ThreadExiting() noexcept;

  // ---- pthread_atfork handlers, in the forking thread. `wake_fd` holds
  // an eventfd the server thread polls (read only once no owner section
  // can change it).
  void BeforeFork(const std::atomic<int>* wake_fd) noexcept;
  void AfterForkInParent() noexcept;

 private:
  // word_: bits 0-1 thread state, bit 2 owner section, bits 3.. forks in
  // progress. One word, so every transition is one compare-and-swap and
  // one futex can wait for any change.
  enum : uint32_t { kNoThread = 0, kRunning = 1, kParkRequested = 2, kParked = 3 };
  static constexpr uint32_t kStateMask = 3;
  static constexpr uint32_t kOwnerBit = 4;
  static constexpr uint32_t kForkUnit = 8;

  static uint32_t State(uint32_t w) { return w & kStateMask; }
  static uint32_t Forks(uint32_t w) { return w / kForkUnit; }
  static uint32_t WithState(uint32_t w, uint32_t s) { return (w & ~kStateMask) | s; }

  bool OnServerThread() const noexcept;
  void SetState(uint32_t state) noexcept;
  void Park() noexcept;
  void WaitWhile(uint32_t seen, int64_t timeout_ns) noexcept;
  void WakeAll() noexcept;

  std::atomic<uint32_t> word_{0};
  std::atomic<pthread_t> thread_{};
  std::atomic<bool> has_thread_{false};
  static_assert(std::atomic<uint32_t>::is_always_lock_free &&
                    std::atomic<pthread_t>::is_always_lock_free,
                "the fork path must not take locks");
};

}  // namespace uwsgi_prometheus
