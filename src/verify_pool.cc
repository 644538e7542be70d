#include "verify_pool.h"

#include <crypt.h>
#include <errno.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "listen_address.h"

namespace uwsgi_prometheus {
namespace {

// Holds the pool's mutex for one scope.
class Locked {
 public:
  explicit Locked(pthread_mutex_t* m) : m_(m) { pthread_mutex_lock(m_); }
  ~Locked() { pthread_mutex_unlock(m_); }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

 private:
  pthread_mutex_t* m_;
};

// crypt_r's result for a matching password is the hash itself; anything
// else (another hash, "*0" for a malformed one) does not match. Compared
// in constant time.
bool SameHash(const char* computed, const char* expected) {
  const size_t n = std::strlen(expected);
  if (!computed || std::strlen(computed) != n) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(computed[i] ^ expected[i]);
  return diff == 0;
}

}  // namespace

VerifyPool::~VerifyPool() { Stop(); }

bool VerifyPool::Start(const Options& options, std::string* error) {
  options_ = options;
  options_.threads = std::max(options_.threads, 1);
  const size_t capacity = static_cast<size_t>(options_.threads) + options_.max_waiting;
  jobs_.assign(capacity, Job());
  free_.clear();
  for (size_t i = 0; i < capacity; ++i) free_.push_back(static_cast<uint32_t>(capacity - 1 - i));
  waiting_.assign(capacity, 0);
  waiting_head_ = waiting_count_ = 0;
  done_.clear();
  done_.reserve(capacity);
  draining_.reserve(capacity);
  stopping_ = false;
  wake_fd_.store(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (fd() < 0) {
    *error = "eventfd: " + ErrnoText(errno);
    return false;
  }
  // Asynchronous signals belong to uWSGI's master thread.
  sigset_t all, saved;
  sigfillset(&all);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigdelset(&all, sig);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  int rc = 0;
  for (int i = 0; i < options_.threads && rc == 0; ++i) {
    pthread_t thread;
    rc = pthread_create(&thread, nullptr, &VerifyPool::ThreadMain, this);
    if (rc == 0) {
      threads_.push_back(thread);
      pthread_setname_np(thread, "prometheus-auth");
    }
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (rc == 0) {
    WaitUntilStarted();
    return true;
  }
  *error = "cannot start the password check threads: " + ErrnoText(rc);
  Stop();
  return false;
}

// A thread that is still starting may be inside an allocator (its own
// set-up, a sanitizer's, its crypt_data): a fork then would hand the child
// that allocator's lock, held by a thread the child does not have.
void VerifyPool::WaitUntilStarted() {
  Locked lock(&mutex_);
  while (ready_ < threads_.size()) pthread_cond_wait(&ready_cond_, &mutex_);
}

void VerifyPool::Stop() {
  {
    Locked lock(&mutex_);
    stopping_ = true;
    pthread_cond_broadcast(&wake_);
  }
  for (pthread_t t : threads_) pthread_join(t, nullptr);
  threads_.clear();
  ready_ = 0;
  const int fd = wake_fd_.exchange(-1);
  if (fd >= 0) close(fd);
}

void VerifyPool::ChildAfterFork() noexcept {
  const int fd = wake_fd_.exchange(-1, std::memory_order_relaxed);
  if (fd >= 0) close(fd);
}

bool VerifyPool::Submit(size_t slot, uint64_t ticket, std::string_view password,
                        std::string_view hash) {
  if (password.find('\0') != std::string_view::npos || hash.size() > kHashBytes) return false;
  Locked lock(&mutex_);
  if (stopping_ || threads_.empty() || waiting_count_ >= options_.max_waiting || free_.empty()) {
    return false;
  }
  const uint32_t index = free_.back();
  free_.pop_back();
  Job& job = jobs_[index];
  job.slot = slot;
  job.ticket = ticket;
  const size_t n = std::min(password.size(), kMaxPhraseBytes);
  std::memcpy(job.phrase, password.data(), n);
  job.phrase[n] = '\0';
  std::memcpy(job.setting, hash.data(), hash.size());
  job.setting[hash.size()] = '\0';
  job.matched = false;
  waiting_[(waiting_head_ + waiting_count_) % waiting_.size()] = index;
  ++waiting_count_;
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  pthread_cond_signal(&wake_);
  return true;
}

void* VerifyPool::ThreadMain(void* pool) {
  // Below the master and its endpoint thread: a flood of wrong passwords
  // then takes spare CPU, not theirs (Linux: nice is per thread).
  auto* self = static_cast<VerifyPool*>(pool);
  if (self->options_.nice > 0) {
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), self->options_.nice);
  }
  auto data = std::make_unique<crypt_data>();  // ~32 KiB: not on the stack
  self->Work(data.get());
  return nullptr;
}

void VerifyPool::Work(void* crypt_state) {
  auto* data = static_cast<crypt_data*>(crypt_state);
  {
    Locked lock(&mutex_);
    ++ready_;
    pthread_cond_broadcast(&ready_cond_);
  }
  for (;;) {
    uint32_t index;
    {
      Locked lock(&mutex_);
      while (!stopping_ && waiting_count_ == 0) pthread_cond_wait(&wake_, &mutex_);
      if (stopping_) return;
      index = waiting_[waiting_head_];
      waiting_head_ = (waiting_head_ + 1) % waiting_.size();
      --waiting_count_;
    }
    Job& job = jobs_[index];  // this thread's alone until it is freed below
    std::memset(data, 0, sizeof *data);
    job.matched = SameHash(crypt_r(job.phrase, job.setting, data), job.setting);
    std::memset(job.phrase, 0, sizeof job.phrase);
    {
      Locked lock(&mutex_);
      done_.push_back(index);  // within its capacity: the job is freed when drained
    }
    eventfd_write(wake_fd_.load(std::memory_order_relaxed), 1);
  }
}

void VerifyPool::Drain(const ResumeFn& resume) {
  eventfd_t ignored;
  eventfd_read(fd(), &ignored);
  {
    Locked lock(&mutex_);
    for (uint32_t index : done_) {  // within draining_'s capacity: no allocation
      draining_.push_back({jobs_[index].slot, Outcome(jobs_[index].ticket, jobs_[index].matched)});
      free_.push_back(index);
    }
    done_.clear();
  }
  in_flight_.fetch_sub(draining_.size(), std::memory_order_relaxed);
  // Sessions are resumed without the lock: the loop may park for a fork, and
  // a resumed session may submit its next check.
  for (const Done& d : draining_) resume(d.slot, d.outcome);
  draining_.clear();
}

}  // namespace uwsgi_prometheus
