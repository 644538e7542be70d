// The metrics endpoint's HTTP server: owns the listening socket, the epoll
// and wake-up fds, the thread and the fork gate, and wires the transport
// (EventLoop) to the protocol (HttpSession).
#include "http.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "event_loop.h"
#include "verify_pool.h"
#include "web_access.h"

namespace uwsgi_prometheus {
namespace {

static_assert(std::atomic<int>::is_always_lock_free && std::atomic<bool>::is_always_lock_free,
              "ChildAfterFork must be async-signal-safe");

constexpr int64_t kMs = 1000000;  // ns per ms

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int64_t Ms(int ms) { return int64_t{std::max(ms, 1)} * kMs; }

void CloseSlot(std::atomic<int>& slot) noexcept {
  const int fd = slot.exchange(-1, std::memory_order_relaxed);
  if (fd >= 0) close(fd);
}

bool Fail(std::string* error, std::string message) {
  *error = std::move(message);
  return false;
}

// Listen, Start and Stop run as the fork gate's owner sections.
class OwnerSection {
 public:
  explicit OwnerSection(ForkGate& gate) : gate_(gate) { gate_.EnterOwnerSection(); }
  ~OwnerSection() { gate_.LeaveOwnerSection(); }
  OwnerSection(const OwnerSection&) = delete;
  OwnerSection& operator=(const OwnerSection&) = delete;

 private:
  ForkGate& gate_;
};

}  // namespace

HttpServer::HttpServer() : http_(std::make_unique<HttpContext>()) {}

HttpServer::~HttpServer() {
  // In a forked child the server's state may have been caught mid-update by
  // fork() (when the server thread itself forked, or a handler was stuck):
  // never destroy it there, leak it (the child usually execs or exits soon;
  // nothing else refers to it).
  if (forked_.load()) {
    (void)loop_.release();
    (void)http_.release();
    (void)close_log_.release();
    (void)pool_.release();  // its mutex may have been held by a thread that is not here
    (void)access_.release();
  }
  Stop();
}

void* HttpServer::ThreadMain(void* server) {
  auto* self = static_cast<HttpServer*>(server);
  self->gate_.ThreadStarted();
  try {
    self->loop_->Run();
  } catch (...) {  // Run() handles its own errors; never let one end the process
  }
  self->gate_.ThreadExiting();
  return nullptr;
}

bool HttpServer::UseWebConfig(const std::string& path, std::string* error) {
  if (thread_running_) return Fail(error, "already started");
  auto access = std::make_unique<WebAccess>();
  if (!access->Load(path, error)) return false;
  access_ = std::move(access);
  return true;
}

std::string HttpServer::SecuritySummary() const {
  if (!access_) return "plain HTTP, no authentication";
  const WebConfig& c = access_->config();
  std::string out = c.tls ? "HTTPS" : "plain HTTP";
  if (c.tls && c.tls->client_auth != ClientAuth::kNoClientCert) {
    out += std::string(" (client certificates: ") + ClientAuthName(c.tls->client_auth) + ")";
  }
  out += c.users.empty() ? ", no authentication"
                         : ", basic auth (" + std::to_string(c.users.size()) +
                               (c.users.size() == 1 ? " user)" : " users)");
  return out + ", web config " + access_->path();
}

// The password checks' threads, and the guard that every request passes.
bool HttpServer::StartGuard(std::string* error) {
  if (!access_) return true;
  pool_ = std::make_unique<VerifyPool>();
  if (!pool_->Start(VerifyPool::Options(), error)) return false;
  access_->SetPool(pool_.get());
  access_->SetLog(options_.log);
  access_->SetStats(&stats_);
  http_->guard = access_.get();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = EventLoop::kResumeTag;
  if (epoll_ctl(epoll_fd_.load(), EPOLL_CTL_ADD, pool_->fd(), &ev) == 0) return true;
  *error = "epoll: " + ErrnoText(errno);
  return false;
}

bool HttpServer::Listen(const HttpServerOptions& options, std::string* error, bool* in_use) {
  if (forked_.load()) return Fail(error, "server object was inherited across fork()");
  OwnerSection section(gate_);
  if (listen_fd_.load() >= 0 || thread_running_) return Fail(error, "already listening");
  options_ = options;
  options_.max_connections = std::max<size_t>(options_.max_connections, 1);
  BoundListener listener;
  if (!BindListener(options_.address, options_.listen_backlog, &listener, error, in_use)) {
    return false;
  }
  listener_ = listener;
  // Two spare slots: a new connection is published before the eviction
  // that makes room for it.
  conn_fds_ = std::vector<std::atomic<int>>(options_.max_connections + 2);
  for (auto& slot : conn_fds_) slot.store(-1, std::memory_order_relaxed);
  listen_fd_.store(listener.fd);
  return true;
}

bool HttpServer::Start(HttpHandler handler, std::string* error) {
  if (forked_.load()) return Fail(error, "server object was inherited across fork()");
  OwnerSection section(gate_);
  if (thread_running_) return Fail(error, "already started");
  if (listen_fd_.load() < 0) return Fail(error, "Listen() must succeed before Start()");
  if (!handler) return Fail(error, "no handler");
  http_->handler = std::move(handler);
  http_->max_request_bytes = options_.max_request_bytes;
  http_->stats = &stats_;
  epoll_fd_.store(epoll_create1(EPOLL_CLOEXEC));
  wake_fd_.store(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  epoll_event listen_ev{}, wake_ev{};
  listen_ev.events = wake_ev.events = EPOLLIN;
  listen_ev.data.u64 = EventLoop::kListenTag;
  wake_ev.data.u64 = EventLoop::kWakeTag;
  if (epoll_fd_.load() < 0 || wake_fd_.load() < 0 ||
      epoll_ctl(epoll_fd_.load(), EPOLL_CTL_ADD, listen_fd_.load(), &listen_ev) != 0 ||
      epoll_ctl(epoll_fd_.load(), EPOLL_CTL_ADD, wake_fd_.load(), &wake_ev) != 0) {
    *error = "epoll/eventfd: " + ErrnoText(errno);
    CloseSlot(epoll_fd_);
    CloseSlot(wake_fd_);
    return false;
  }
  stopping_.store(false);
  if (StartGuard(error) && StartThread(error)) return true;
  loop_.reset();
  if (pool_) pool_->Stop();
  http_->guard = nullptr;
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  return false;
}

// Makes the loop and starts the thread that runs it.
bool HttpServer::StartThread(std::string* error) {
  std::string failure;
  try {
    close_log_ = std::make_unique<CloseLog>(options_.log);
    EventLoopSetup setup;
    setup.epoll_fd = epoll_fd_.load();
    setup.listen_fd = listen_fd_.load();
    setup.wake_fd = wake_fd_.load();
    setup.max_connections = options_.max_connections;
    setup.published = conn_fds_.data();
    setup.stopping = &stopping_;
    setup.fork_gate = &gate_;
    setup.stats = &stats_;
    setup.close_log = close_log_.get();
    setup.completions = access_.get();
    setup.context.max_input_bytes = options_.max_request_bytes + 1;  // enough to tell "too large"
    setup.context.request_timeout_ns = Ms(options_.request_timeout_ms);
    setup.context.idle_timeout_ns = Ms(options_.idle_timeout_ms);
    setup.context.clock = NowNs;
    HttpContext* http = http_.get();
    WebAccess* access = access_.get();
    EventLoop::FilterFactory tls;
    if (access && access->config().tls) {
      tls = [access] { return std::make_unique<TlsSocket>(access); };
    }
    loop_ = std::make_unique<EventLoop>(
        setup, [http](size_t slot) { return std::make_unique<HttpSession>(http, slot); }, tls);
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
    gate_.ThreadStarting();
    const int rc = pthread_create(&thread_, nullptr, &HttpServer::ThreadMain, this);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    thread_running_ = rc == 0;
    if (rc == 0) pthread_setname_np(thread_, "prometheus-http");  // as top -H shows it
    if (rc != 0) {
      gate_.ThreadNotStarted();
      failure = ErrnoText(rc);
    }
  }
  if (thread_running_) return true;
  *error = "cannot start the server thread: " + failure;
  return false;
}

void HttpServer::Stop() {
  // A forked child has no server thread: nothing to join or wake, and its
  // fds are closed by ChildAfterFork. The socket file is the parent's.
  if (forked_.load()) return;
  stopping_.store(true, std::memory_order_release);
  // From the handler: the thread cannot join itself; it ends after this request.
  if (thread_running_ && pthread_equal(thread_, pthread_self())) return;
  OwnerSection section(gate_);
  if (thread_running_) {
    eventfd_write(wake_fd_.load(), 1);  // cannot fail: the counter is far from its max
    pthread_join(thread_, nullptr);     // the loop closed its connections on the way out
    thread_running_ = false;
  }
  Teardown();
}

void HttpServer::Teardown() {
  loop_.reset();
  if (pool_) pool_->Stop();  // after the loop: nothing submits any more
  close_log_.reset();
  for (auto& slot : conn_fds_) CloseSlot(slot);
  CloseSlot(listen_fd_);
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  RemoveSocketFile(options_.address, listener_);
  listener_.fd = -1;
  listener_.owns_file = false;
}

void HttpServer::PrepareFork() noexcept {
  if (!forked_.load(std::memory_order_relaxed)) gate_.BeforeFork(&wake_fd_);
}

void HttpServer::ParentAfterFork() noexcept {
  if (!forked_.load(std::memory_order_relaxed)) gate_.AfterForkInParent();
}

// Runs in a forked child from a pthread_atfork handler. The server thread
// was parked at a safe point (see fork_gate.h), unless it was the thread
// that forked or a handler was stuck; either way only atomic exchanges and
// close() are used here, no locks or allocation. conn_fds_ is never
// resized while the thread runs, so its storage is valid here. A
// connection accepted in the instant between accept4() and its slot store
// (or unpublished but not yet closed) leaks into the child; the opposite
// order could make the child close an unrelated fd, which is worse.
//
// Afterwards the object is inert. The thread is a raw pthread_t, not a
// std::thread: a std::thread copied by fork() is joinable, so destroying it
// calls std::terminate, joining waits on a thread id that means nothing in
// the child, and detach() releases resources of a thread that is not ours.
// A pthread_t needs none of that: Stop() returns at once, and the
// destructor leaks the loop instead of freeing it. Closing a parent's
// connection in the child sends no FIN: the parent still holds the socket.
void HttpServer::ChildAfterFork() noexcept {
  forked_.store(true);
  if (pool_) pool_->ChildAfterFork();
  for (auto& slot : conn_fds_) CloseSlot(slot);
  CloseSlot(listen_fd_);
  CloseSlot(epoll_fd_);
  CloseSlot(wake_fd_);
  listener_.owns_file = false;  // the socket file belongs to the parent
}

}  // namespace uwsgi_prometheus
