#include "fork_gate.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

namespace uwsgi_prometheus {
namespace {

constexpr int64_t kNsPerSec = 1000 * 1000 * 1000;
constexpr int64_t kPollNs = 100 * 1000 * 1000;  // re-check at least this often

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word");

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * kNsPerSec + ts.tv_nsec;
}

}  // namespace

bool ForkGate::OnServerThread() const noexcept {
  return has_thread_.load(std::memory_order_acquire) &&
         pthread_equal(thread_.load(std::memory_order_relaxed), pthread_self());
}

// Sleeps until word_ may differ from `seen` (woken, changed, or timed out;
// timeout_ns < 0: no timeout).
void ForkGate::WaitWhile(uint32_t seen, int64_t timeout_ns) noexcept {
  timespec ts{static_cast<time_t>(timeout_ns / kNsPerSec), static_cast<long>(timeout_ns % kNsPerSec)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAIT_PRIVATE, seen,
          timeout_ns < 0 ? nullptr : &ts, nullptr, 0);
}

void ForkGate::WakeAll() noexcept {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word_), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

void ForkGate::SetState(uint32_t state) noexcept {
  uint32_t w = word_.load(std::memory_order_acquire);
  while (!word_.compare_exchange_weak(w, WithState(w, state), std::memory_order_acq_rel)) {
  }
  WakeAll();
}

void ForkGate::EnterOwnerSection() noexcept {
  uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if (Forks(w) != 0 || (w & kOwnerBit) != 0) {
      WaitWhile(w, kPollNs);  // a fork is in progress: it ends soon
      w = word_.load(std::memory_order_acquire);
    } else if (word_.compare_exchange_weak(w, w | kOwnerBit, std::memory_order_acq_rel)) {
      return;
    }
  }
}

void ForkGate::LeaveOwnerSection() noexcept {
  word_.fetch_and(~kOwnerBit, std::memory_order_acq_rel);
  WakeAll();
}

void ForkGate::ThreadStarting() noexcept { SetState(kRunning); }

void ForkGate::ThreadNotStarted() noexcept { SetState(kNoThread); }

void ForkGate::ThreadStarted() noexcept {
  thread_.store(pthread_self(), std::memory_order_relaxed);
  has_thread_.store(true, std::memory_order_release);
}

void ForkGate::ThreadExiting() noexcept {
  uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if (State(w) == kParkRequested) {
      Park();
      w = word_.load(std::memory_order_acquire);
    } else if (word_.compare_exchange_weak(w, WithState(w, kNoThread),
                                           std::memory_order_acq_rel)) {
      break;
    }
  }
  has_thread_.store(false, std::memory_order_release);
  WakeAll();
}

// On the server thread: says it is parked, then waits until no fork needs
// it parked any more.
void ForkGate::Park() noexcept {
  uint32_t w = word_.load(std::memory_order_acquire);
  while (State(w) == kParkRequested) {
    if (word_.compare_exchange_weak(w, WithState(w, kParked), std::memory_order_acq_rel)) {
      WakeAll();
      w = WithState(w, kParked);
      break;
    }
  }
  while (State(w) == kParked) {
    WaitWhile(w, -1);
    w = word_.load(std::memory_order_acquire);
  }
}

void ForkGate::BeforeFork(const std::atomic<int>* wake_fd) noexcept {
  if (OnServerThread()) return;  // forking from a handler: the thread is right here
  uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if ((w & kOwnerBit) != 0) {  // Listen/Start/Stop under way: let it finish
      WaitWhile(w, kPollNs);
      w = word_.load(std::memory_order_acquire);
      continue;
    }
    uint32_t next = w + kForkUnit;
    if (State(w) == kRunning) next = WithState(next, kParkRequested);
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel)) {
      w = next;
      break;
    }
  }
  if (State(w) != kParkRequested) return;  // no thread, or parked for another fork already
  const uint64_t one = 1;
  const int fd = wake_fd->load(std::memory_order_relaxed);
  if (fd >= 0 && write(fd, &one, sizeof one) < 0) {
    // EAGAIN: the counter is full, so the thread is awake anyway.
  }
  const int64_t deadline = MonotonicNs() + kMaxWaitNs;
  for (;;) {
    w = word_.load(std::memory_order_acquire);
    if (State(w) != kParkRequested) return;  // parked (or gone)
    const int64_t left = deadline - MonotonicNs();
    if (left <= 0) return;  // stuck in a handler: fork anyway
    WaitWhile(w, std::min(left, kPollNs));
  }
}

void ForkGate::AfterForkInParent() noexcept {
  if (OnServerThread()) return;
  uint32_t w = word_.load(std::memory_order_acquire);
  for (;;) {
    if (Forks(w) == 0) return;  // not counted by BeforeFork
    uint32_t next = w - kForkUnit;
    if (Forks(next) == 0 && (State(next) == kParkRequested || State(next) == kParked)) {
      next = WithState(next, kRunning);
    }
    if (word_.compare_exchange_weak(w, next, std::memory_order_acq_rel)) break;
  }
  WakeAll();
}

}  // namespace uwsgi_prometheus
