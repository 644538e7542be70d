// bcrypt password checks off the event loop: a few threads (at a lower
// CPU priority than the rest of the process) run libxcrypt's crypt_r, a
// bounded queue holds the checks waiting for them, and finished checks are
// reported to the event loop through an eventfd (a CompletionSource). A
// check costs 50-100 ms of CPU at cost 10: on the loop it would stall
// every scrape, and a client sending wrong passwords could keep it busy.
//
// Submit() refuses a check at once when the queue is full: the caller
// answers 429 without waiting. Jobs are fixed-size and preallocated, so
// the threads never allocate once started; they touch only their mutex,
// crypt_r and the eventfd, and nothing of theirs is used in a forked child
// (see ChildAfterFork).
//
// Fork safety: Start() returns only once every thread has finished starting
// (the thread library's and a sanitizer runtime's set-up allocate, and so
// does the thread's crypt_data) and waits for work. From then on a fork can
// only catch a thread waiting, computing in crypt_r or holding the pool's
// own mutex, which no child uses; Stop() joins them inside the server's
// owner section, which forks wait for.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "connection.h"

namespace uwsgi_prometheus {

class VerifyPool final : public CompletionSource {
 public:
  // bcrypt reads at most 72 bytes of a password; the rest never matters.
  static constexpr size_t kMaxPhraseBytes = 72;
  static constexpr size_t kHashBytes = 60;

  struct Options {
    int threads = 2;
    size_t max_waiting = 8;  // checks queued beyond the running ones
    int nice = 10;           // added to the threads' nice value (0: none)
  };

  VerifyPool() = default;
  ~VerifyPool() override;  // Stop()s
  VerifyPool(const VerifyPool&) = delete;
  VerifyPool& operator=(const VerifyPool&) = delete;

  // Makes the eventfd and starts the threads (with every asynchronous
  // signal blocked); returns once each of them waits for work. Returns
  // false with a message.
  bool Start(const Options& options, std::string* error);
  // Joins the threads after the checks they are running; drops the queue.
  void Stop();

  // On the loop's thread: queues a check of `password` against `hash` (a
  // bcrypt hash) for the session in `slot`, reported with `ticket` (below
  // 2^63). Returns false without queueing when max_waiting checks already
  // wait, or for a password with a NUL byte (it cannot match).
  bool Submit(size_t slot, uint64_t ticket, std::string_view password, std::string_view hash);

  // CompletionSource: each outcome is Outcome(ticket, matched).
  int fd() const override { return wake_fd_.load(std::memory_order_relaxed); }
  void Drain(const ResumeFn& resume) override;

  static uint64_t Outcome(uint64_t ticket, bool matched) { return ticket << 1 | (matched ? 1 : 0); }
  static uint64_t TicketOf(uint64_t outcome) { return outcome >> 1; }
  static bool MatchedOf(uint64_t outcome) { return (outcome & 1) != 0; }

  // Checks queued, running, or finished and not yet drained.
  size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

  // In a forked child: closes the eventfd (the threads do not exist there).
  // Async-signal-safe.
  void ChildAfterFork() noexcept;

 private:
  struct Job {
    size_t slot = 0;
    uint64_t ticket = 0;
    char phrase[kMaxPhraseBytes + 1] = {};
    char setting[kHashBytes + 1] = {};
    bool matched = false;
  };

  struct Done {
    size_t slot;
    uint64_t outcome;
  };

  static void* ThreadMain(void* pool);
  void WaitUntilStarted();
  void Work(void* crypt_data);

  Options options_;
  pthread_mutex_t mutex_ = PTHREAD_MUTEX_INITIALIZER;
  pthread_cond_t wake_ = PTHREAD_COND_INITIALIZER;
  pthread_cond_t ready_cond_ = PTHREAD_COND_INITIALIZER;
  bool stopping_ = false;          // under mutex_
  size_t ready_ = 0;               // under mutex_: threads done starting
  std::vector<Job> jobs_;          // threads + max_waiting, fixed
  std::vector<uint32_t> free_;     // indexes of free jobs
  std::vector<uint32_t> waiting_;  // FIFO of queued jobs (index 0 first)
  size_t waiting_head_ = 0;        //   ring: head and count
  size_t waiting_count_ = 0;
  std::vector<uint32_t> done_;  // finished jobs, not yet drained
  std::vector<Done> draining_;  // the loop's copy while it resumes sessions
  std::vector<pthread_t> threads_;
  std::atomic<int> wake_fd_{-1};
  std::atomic<size_t> in_flight_{0};
};

}  // namespace uwsgi_prometheus
