// Forks while the server thread works: the child must never inherit a lock
// the server thread held (the handler's own lock stands for any library's,
// such as a sanitizer allocator's), and no fork may hang.
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http.h"
#include "verify_pool.h"

namespace uwsgi_prometheus {
namespace {

using Clock = std::chrono::steady_clock;

// The process' pthread_atfork handlers forward to this server, as the
// plugin's do to its one server.
std::atomic<HttpServer*> g_server{nullptr};

void Prepare() {
  if (HttpServer* s = g_server.load()) s->PrepareFork();
}
void Parent() {
  if (HttpServer* s = g_server.load()) s->ParentAfterFork();
}
void Child() {
  if (HttpServer* s = g_server.load()) s->ChildAfterFork();
}

void RegisterOnce() {
  static const bool registered = pthread_atfork(Prepare, Parent, Child) == 0;
  REQUIRE(registered);
}

struct Forwarding {
  explicit Forwarding(HttpServer* server) {
    RegisterOnce();
    g_server.store(server);
  }
  ~Forwarding() { g_server.store(nullptr); }
};

std::mutex g_handler_lock;  // held by the handler for most of each scrape

// A scrape-like handler: many small allocations under a lock.
void BusyHandler(const HttpRequest&, HttpResponse* resp) {
  std::lock_guard<std::mutex> hold(g_handler_lock);
  std::vector<std::string> parts;
  for (int i = 0; i < 2000; ++i) parts.push_back("series_" + std::to_string(i) + " 1\n");
  for (const auto& p : parts) resp->body += p;
}

// In the child: the handler's lock must be free, malloc must work.
// AddressSanitizer's allocator (GCC 12's runtime has no fork interceptor)
// is not locked around fork, so a child can find it held by this test's
// client thread, which is not ours to park: malloc is checked only with
// glibc's allocator, which is fork-safe.
[[noreturn]] void ChildBody() {
  if (!g_handler_lock.try_lock()) _exit(3);
#if defined(__SANITIZE_ADDRESS__)
  _exit(0);
#endif
  for (int i = 0; i < 100; ++i) {
    void* p = std::malloc(static_cast<size_t>(16 << (i % 12)));
    if (!p) _exit(4);
    std::free(p);
  }
  _exit(0);
}

// Waits for the child; a hang kills it and fails.
int Reap(pid_t pid, int timeout_ms = 5000) {
  int status = 0;
  for (int waited = 0; waited < timeout_ms; ++waited) {
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return -2;  // hung
}

int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One request on a new connection; true when a 200 came back.
bool Scrape(uint16_t port) {
  const int fd = Connect(port);
  if (fd < 0) return false;
  const char req[] = "GET / HTTP/1.0\r\n\r\n";
  bool ok = send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == sizeof req - 1;
  std::string in;
  char buf[65536];
  // SO_RCVTIMEO makes recv() fail with EINTR on a child's SIGCHLD.
  for (ssize_t n; ok && ((n = recv(fd, buf, sizeof buf, 0)) > 0 || (n < 0 && errno == EINTR));) {
    if (n > 0) in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return in.compare(0, 12, "HTTP/1.1 200") == 0;
}

HttpServerOptions Local() {
  HttpServerOptions options;
  options.address.host = "127.0.0.1";
  return options;
}

TEST_CASE("forks during scrapes never hand the child a lock of the server thread", "[fork]") {
  HttpServer server;
  std::string error;
  REQUIRE(server.Listen(Local(), &error));
  REQUIRE(server.Start(BusyHandler, &error));
  Forwarding forward(&server);
  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0}, failures{0};
  std::thread client([&] {
    while (!stop.load()) (Scrape(server.bound_port()) ? scrapes : failures)++;
  });
  int hung = 0, locked = 0, other = 0;
  const auto start = Clock::now();
  for (int i = 0; i < 200; ++i) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) ChildBody();
    const int rc = Reap(pid);
    hung += rc == -2;
    locked += rc == 3;
    other += rc != 0 && rc != -2 && rc != 3;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stop.store(true);
  client.join();
  CHECK(hung == 0);
  CHECK(locked == 0);  // the server thread was never inside the handler at a fork
  CHECK(other == 0);
  CHECK(scrapes.load() > 0);
  CHECK(failures.load() == 0);
  CHECK(seconds < 30);
}

TEST_CASE("a handler that forks is not held up by the fork protocol", "[fork]") {
  HttpServer server;
  std::string error;
  REQUIRE(server.Listen(Local(), &error));
  std::atomic<int> child_rc{-100};
  REQUIRE(server.Start([&](const HttpRequest&, HttpResponse* resp) {
    const pid_t pid = fork();  // on the server thread itself
    if (pid == 0) _exit(0);
    child_rc.store(Reap(pid));
    resp->body = "forked\n";
  }, &error));
  Forwarding forward(&server);
  const auto start = Clock::now();
  CHECK(Scrape(server.bound_port()));
  CHECK(child_rc.load() == 0);
  CHECK(Clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("forks before Start, after Stop and of an idle server do not wait", "[fork]") {
  HttpServer server;
  Forwarding forward(&server);
  std::string error;
  auto fork_time = [] {
    const auto start = Clock::now();
    const pid_t pid = fork();
    if (pid == 0) ChildBody();
    CHECK(Reap(pid) == 0);
    return Clock::now() - start;
  };
  CHECK(fork_time() < std::chrono::seconds(1));  // nothing yet
  REQUIRE(server.Listen(Local(), &error));
  CHECK(fork_time() < std::chrono::seconds(1));  // listening, no thread
  REQUIRE(server.Start(BusyHandler, &error));
  CHECK(fork_time() < std::chrono::seconds(1));  // thread asleep in epoll_wait
  CHECK(Scrape(server.bound_port()));            // still serving after the fork
  server.Stop();
  CHECK(fork_time() < std::chrono::seconds(1));  // stopped
}

TEST_CASE("Listen, Start and Stop racing forks from another thread", "[fork]") {
  HttpServer server;
  Forwarding forward(&server);
  std::atomic<bool> stop{false};
  std::atomic<int> forks{0}, bad{0};
  std::thread forker([&] {
    while (!stop.load()) {
      const pid_t pid = fork();
      if (pid == 0) ChildBody();
      bad += pid < 0 || Reap(pid) != 0;
      ++forks;
    }
  });
  for (int round = 0; round < 30; ++round) {
    std::string error;
    REQUIRE(server.Listen(Local(), &error));
    REQUIRE(server.Start(BusyHandler, &error));
    CHECK(Scrape(server.bound_port()));
    server.Stop();
  }
  stop.store(true);
  forker.join();
  CHECK(bad.load() == 0);
  CHECK(forks.load() > 0);
}

// The password checks' threads allocate while they start (the thread
// library, a sanitizer runtime, their crypt_data); a fork in that instant
// would leave the child an allocator lock that no thread of its own will
// release. Start() returns only once they wait for work, so a child forked
// right after it can allocate, under AddressSanitizer's allocator too (no
// other thread of this test runs then).
TEST_CASE("a fork right after the password pool starts hands the child no allocator lock",
          "[fork]") {
  for (int round = 0; round < 40; ++round) {
    VerifyPool pool;
    std::string error;
    VerifyPool::Options options;
    options.threads = 4;
    REQUIRE(pool.Start(options, &error));
    const pid_t pid = fork();
    if (pid == 0) {
      for (int i = 0; i < 200; ++i) {
        void* p = std::calloc(1, static_cast<size_t>(16) << (i % 13));
        if (!p) _exit(4);
        std::free(p);
      }
      _exit(0);
    }
    REQUIRE(pid > 0);
    REQUIRE(Reap(pid) == 0);
    pool.Stop();
  }
}

}  // namespace
}  // namespace uwsgi_prometheus
