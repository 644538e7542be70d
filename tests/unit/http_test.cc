// HttpServer over real sockets: 127.0.0.1 port 0 and UNIX sockets in a temp
// directory. Deadline tests use timeouts of a few hundred ms.
#include "http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace uwsgi_prometheus {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Echoes what the handler saw, so tests can check the parsed request.
void Echo(const HttpRequest& req, HttpResponse* resp) {
  if (req.path == "/throw") throw std::runtime_error("boom");
  if (req.path == "/throw-int") throw 42;
  resp->body = req.method + " path=" + req.path + " query=" + req.query + " accept=" + req.accept +
               " encoding=" + req.accept_encoding + "\n";
  resp->extra_headers.emplace_back("X-Test", "yes");
  resp->extra_headers.emplace_back("X-Injected", "a\r\nSet-Cookie: evil");
}

HttpServerOptions Local() {
  HttpServerOptions options;
  options.address.host = "127.0.0.1";
  return options;
}

struct TestServer {
  HttpServer server;
  explicit TestServer(const HttpServerOptions& options = Local(), HttpHandler handler = Echo) {
    std::string error;
    INFO(error);
    REQUIRE(server.Listen(options, &error));
    REQUIRE(server.Start(std::move(handler), &error));
  }
  uint16_t port() const { return server.bound_port(); }
  const HttpServerStats& stats() const { return server.stats(); }
};

void SetTimeouts(int fd) {
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

int Connect(uint16_t port, int rcvbuf = 0) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  SetTimeouts(fd);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

int ConnectUnix(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  SetTimeouts(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

void SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    REQUIRE(n > 0);
    off += static_cast<size_t>(n);
  }
}

// Everything until EOF (or an error such as a reset or the 3 s timeout).
std::string ReadAll(int fd) {
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

bool PeerClosed(int fd) {
  char c;
  const ssize_t n = recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::string Exchange(uint16_t port, const std::string& request) {
  Fd fd(Connect(port));
  SendAll(fd.fd, request);
  return ReadAll(fd.fd);
}

int Status(const std::string& response) {
  if (response.compare(0, 9, "HTTP/1.1 ") != 0 || response.size() < 12) return -1;
  return std::atoi(response.substr(9, 3).c_str());
}

std::string Header(const std::string& response, const std::string& name) {
  const std::string key = "\r\n" + name + ": ";
  const size_t at = response.find(key);
  const size_t head_end = response.find("\r\n\r\n");
  if (at == std::string::npos || at >= head_end) return "<none>";
  const size_t start = at + key.size();
  return response.substr(start, response.find("\r\n", start) - start);
}

std::string Body(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

// Reads one response (head + Content-Length bytes, or just the head);
// bytes after it stay in *pending for the next call.
std::string ReadResponse(int fd, std::string* pending, bool head_only = false) {
  char buf[65536];
  auto fill = [&] {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    pending->append(buf, static_cast<size_t>(n));
    return true;
  };
  size_t end;
  while ((end = pending->find("\r\n\r\n")) == std::string::npos) {
    if (!fill()) return "";
  }
  const std::string head = pending->substr(0, end + 4);
  const size_t total = end + 4 + (head_only ? 0 : std::stoul(Header(head, "Content-Length")));
  while (pending->size() < total) {
    if (!fill()) return "";
  }
  std::string response = pending->substr(0, total);
  pending->erase(0, total);
  return response;
}

const char kGet[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

TEST_CASE("listen addresses in every documented form are parsed", "[http]") {
  ListenAddress a;
  std::string error;
  REQUIRE(ParseListenAddress(":9117", &a, &error));
  CHECK((a.kind == ListenAddress::Kind::kTcp && a.host.empty() && a.port == 9117));
  REQUIRE(ParseListenAddress("127.0.0.1:9117", &a, &error));
  CHECK((a.host == "127.0.0.1" && a.port == 9117));
  REQUIRE(ParseListenAddress("[::1]:9117", &a, &error));
  CHECK((a.host == "::1" && a.port == 9117));
  CHECK(a.ToString() == "[::1]:9117");
  REQUIRE(ParseListenAddress("localhost:9117", &a, &error));
  CHECK(a.host == "localhost");
  REQUIRE(ParseListenAddress(":0", &a, &error));  // kernel-chosen port
  CHECK(a.port == 0);
  REQUIRE(ParseListenAddress("/run/metrics.sock", &a, &error));
  CHECK((a.kind == ListenAddress::Kind::kUnix && a.path == "/run/metrics.sock"));
  REQUIRE(ParseListenAddress("unix:metrics.sock", &a, &error));
  CHECK((a.kind == ListenAddress::Kind::kUnix && a.path == "metrics.sock"));
  CHECK(a.ToString() == "unix:metrics.sock");
  REQUIRE(ParseListenAddress("./m.sock", &a, &error));
  CHECK(a.path == "./m.sock");
}

TEST_CASE("junk listen addresses are rejected with a reason", "[http]") {
  ListenAddress a;
  std::string error;
  auto reject = [&](const std::string& text) {
    error.clear();
    INFO("address: '" << text << "'");
    CHECK_FALSE(ParseListenAddress(text, &a, &error));
    CHECK_FALSE(error.empty());
    return error;
  };
  CHECK_THAT(reject(""), Catch::Contains("empty"));
  CHECK_THAT(reject(":"), Catch::Contains("port is missing"));
  CHECK(reject(":0x") == "port '0x' is not a number");
  CHECK_THAT(reject("1.2.3.4:99999"), Catch::Contains("out of range"));
  CHECK_THAT(reject(":1234567"), Catch::Contains("out of range"));
  CHECK_THAT(reject("[::1"), Catch::Contains("']'"));
  CHECK_THAT(reject("[::1]"), Catch::Contains(":port"));
  CHECK_THAT(reject("[::1]9117"), Catch::Contains(":port"));
  CHECK_THAT(reject("[nope]:80"), Catch::Contains("not an IPv6 address"));
  CHECK_THAT(reject("::1:9117"), Catch::Contains("brackets"));
  CHECK_THAT(reject("9117"), Catch::Contains("missing ':port'"));
  CHECK_THAT(reject("bad host:80"), Catch::Contains("not a host name"));
  CHECK_THAT(reject("unix:"), Catch::Contains("empty"));
  CHECK_THAT(reject("/" + std::string(200, 'x')), Catch::Contains("too long"));
}

TEST_CASE("GET returns the handler's body with Content-Length", "[http]") {
  TestServer s;
  std::string response;
  SECTION("plain request") { response = Exchange(s.port(), "GET /metrics HTTP/1.0\r\n\r\n"); }
  SECTION("client half-closes after sending") {
    Fd fd(Connect(s.port()));
    SendAll(fd.fd, "GET /metrics HTTP/1.0\r\n\r\n");
    shutdown(fd.fd, SHUT_WR);
    response = ReadAll(fd.fd);
  }
  SECTION("bare LF line ends and leading empty lines") {
    response = Exchange(s.port(), "\r\n\nGET /metrics HTTP/1.0\nHost: x\n\n");
  }
  CHECK(Status(response) == 200);
  CHECK(Body(response) == "GET path=/metrics query= accept= encoding=\n");
  CHECK(Header(response, "Content-Length") == std::to_string(Body(response).size()));
  CHECK(Header(response, "Content-Type") == "text/plain; charset=utf-8");
  CHECK(Header(response, "Connection") == "close");
  CHECK(Header(response, "X-Test") == "yes");
  CHECK(Header(response, "X-Injected") == "<none>");  // CR/LF in a value: dropped
  CHECK(s.stats().requests.load() == 1);
}

TEST_CASE("HEAD returns the headers only with GET's Content-Length", "[http]") {
  TestServer s;
  const std::string response = Exchange(s.port(), "HEAD /metrics HTTP/1.0\r\n\r\n");
  CHECK(Status(response) == 200);
  CHECK(Body(response).empty());
  CHECK(Header(response, "Content-Length") ==
        std::to_string(std::string("HEAD path=/metrics query= accept= encoding=\n").size()));
}

TEST_CASE("a method other than GET and HEAD gets 405 with Allow", "[http]") {
  TestServer s;
  const std::string response =
      Exchange(s.port(), "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(Status(response) == 405);
  CHECK(Header(response, "Allow") == "GET, HEAD");
  CHECK(Header(response, "Connection") == "close");
  CHECK(s.stats().bad_requests.load() == 1);
  CHECK(s.stats().requests.load() == 0);
}

TEST_CASE("a malformed request gets 400 and the connection is closed", "[http]") {
  TestServer s;
  std::string request;
  SECTION("no spaces") { request = "HELLO\r\n\r\n"; }
  SECTION("HTTP/0.9 style") { request = "GET /\r\n\r\n"; }
  SECTION("unknown version") { request = "GET / HTTP/2.0\r\n\r\n"; }
  SECTION("header without colon") { request = "GET / HTTP/1.1\r\nHost x\r\n\r\n"; }
  SECTION("space before colon") { request = "GET / HTTP/1.1\r\nHost : x\r\n\r\n"; }
  SECTION("obsolete line folding") { request = "GET / HTTP/1.1\r\nA: b\r\n  c\r\n\r\n"; }
  SECTION("bad Content-Length") { request = "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"; }
  SECTION("TLS handshake, answered without waiting for a head") {
    request.assign("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  }
  const auto start = Clock::now();
  const std::string response = Exchange(s.port(), request);  // ReadAll: up to EOF
  CHECK(MsSince(start) < 1000);
  CHECK(Status(response) == 400);
  CHECK(Header(response, "Connection") == "close");
  CHECK(s.stats().bad_requests.load() == 1);
}

TEST_CASE("a request head over max_request_bytes gets 431", "[http]") {
  HttpServerOptions options = Local();
  options.max_request_bytes = 1024;
  TestServer s(options);
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n";
  SECTION("complete but too long") { request += "X-Big: " + std::string(2000, 'a') + "\r\n\r\n"; }
  SECTION("never ending, much larger than the cap") {
    request += "X-Big: " + std::string(100000, 'a');
  }
  const std::string response = Exchange(s.port(), request);
  CHECK(Status(response) == 431);
  CHECK(s.stats().bad_requests.load() == 1);
}

TEST_CASE("a request with a body gets 413", "[http]") {
  TestServer s;
  std::string request;
  SECTION("Content-Length") { request = "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"; }
  SECTION("chunked") {
    request = "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  }
  CHECK(Status(Exchange(s.port(), request)) == 413);
  // Content-Length: 0 is no body.
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\nContent-Length: 0\r\n\r\n")) == 200);
}

TEST_CASE("query string is split off and header names are case-insensitive", "[http]") {
  TestServer s;
  const std::string response =
      Exchange(s.port(),
               "GET /metrics?name[]=up&x=1 HTTP/1.0\r\naCCEPT:  text/plain;version=0.0.4 \r\n"
               "accept-encoding: gzip\r\nACCEPT: */*\r\n\r\n");
  CHECK(Body(response) ==
        "GET path=/metrics query=name[]=up&x=1 accept=text/plain;version=0.0.4, */* "
        "encoding=gzip\n");
}

TEST_CASE("keep-alive serves several requests on one connection", "[http]") {
  TestServer s;
  Fd fd(Connect(s.port()));
  std::string pending;
  SECTION("one after the other") {
    for (int i = 0; i < 3; ++i) {
      SendAll(fd.fd, kGet);
      const std::string response = ReadResponse(fd.fd, &pending);
      CHECK(Status(response) == 200);
      CHECK(Header(response, "Connection") == "keep-alive");
    }
    CHECK(s.stats().accepted.load() == 1);
  }
  SECTION("pipelined in one write, answered in order") {
    SendAll(fd.fd,
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK_THAT(Body(ReadResponse(fd.fd, &pending)), Catch::StartsWith("GET path=/a "));
    const std::string head = ReadResponse(fd.fd, &pending, /*head_only=*/true);
    CHECK(Status(head) == 200);
    const std::string last = ReadResponse(fd.fd, &pending);
    CHECK_THAT(Body(last), Catch::StartsWith("GET path=/c "));
    CHECK(Header(last, "Connection") == "close");
    CHECK(pending.empty());
    CHECK(PeerClosed(fd.fd));
  }
  SECTION("HTTP/1.0 closes unless asked to keep the connection alive") {
    SendAll(fd.fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    CHECK(Header(ReadResponse(fd.fd, &pending), "Connection") == "keep-alive");
    SendAll(fd.fd, "GET / HTTP/1.0\r\n\r\n");
    CHECK(Header(ReadResponse(fd.fd, &pending), "Connection") == "close");
    CHECK(PeerClosed(fd.fd));
  }
  SECTION("HTTP/1.1 closes on Connection: close") {
    SendAll(fd.fd, "GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n");
    CHECK(Header(ReadResponse(fd.fd, &pending), "Connection") == "close");
    CHECK(PeerClosed(fd.fd));
  }
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout_ms", "[http]") {
  HttpServerOptions options = Local();
  options.idle_timeout_ms = 200;
  TestServer s(options);
  Fd fd(Connect(s.port()));
  std::string pending;
  SendAll(fd.fd, kGet);
  REQUIRE(Status(ReadResponse(fd.fd, &pending)) == 200);
  const auto start = Clock::now();
  CHECK(PeerClosed(fd.fd));
  CHECK(MsSince(start) > 150);
  CHECK(MsSince(start) < 1500);
  CHECK(s.stats().Closed(CloseReason::kRequestTimeout) == 0);  // an idle end is not a timeout
}

TEST_CASE("a silent client is closed at the request deadline", "[http]") {
  HttpServerOptions options = Local();
  options.request_timeout_ms = 200;
  TestServer s(options);
  const auto start = Clock::now();
  Fd fd(Connect(s.port()));
  CHECK(PeerClosed(fd.fd));
  CHECK(MsSince(start) > 150);
  CHECK(MsSince(start) < 1500);
  CHECK(s.stats().Closed(CloseReason::kRequestTimeout) == 1);
}

TEST_CASE("a slowloris is closed at the deadline while others are answered promptly", "[http]") {
  HttpServerOptions options = Local();
  options.request_timeout_ms = 300;
  TestServer s(options);
  const auto start = Clock::now();
  Fd slow(Connect(s.port()));
  const std::string drip = "GET / HTTP/1.1\r\nX-Slow: " + std::string(1000, 'a');
  bool closed = false;
  for (size_t i = 0; i < drip.size() && !closed; ++i) {
    if (send(slow.fd, &drip[i], 1, MSG_NOSIGNAL) != 1) break;  // reset by the server
    if (i == 2) {
      const auto t = Clock::now();
      CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
      CHECK(MsSince(t) < 100);
    }
    pollfd p{slow.fd, POLLIN, 0};
    closed = poll(&p, 1, 50) == 1;
  }
  CHECK(PeerClosed(slow.fd));
  CHECK(MsSince(start) > 250);
  CHECK(MsSince(start) < 1500);
  CHECK(s.stats().Closed(CloseReason::kRequestTimeout) == 1);
}

TEST_CASE("over max_connections the oldest unfinished connection is evicted", "[http]") {
  HttpServerOptions options = Local();
  options.max_connections = 8;
  TestServer s(options);
  std::vector<Fd> silent;
  for (int i = 0; i < 20; ++i) silent.emplace_back(Connect(s.port()));
  const auto t = Clock::now();
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
  CHECK(MsSince(t) < 1000);
  CHECK(s.stats().Closed(CloseReason::kEvicted) >= 12);
  CHECK(s.stats().open_connections.load() <= 8);
  CHECK(PeerClosed(silent[0].fd));  // the oldest went first
}

TEST_CASE("silent connections are evicted before ones that have begun a request", "[http]") {
  HttpServerOptions options = Local();
  options.max_connections = 8;
  TestServer s(options);
  Fd begun(Connect(s.port()));
  SendAll(begun.fd, "GET / HT");  // the oldest, but it has sent something
  std::vector<Fd> silent;
  for (int i = 0; i < 7; ++i) silent.emplace_back(Connect(s.port()));
  // Silent for longer than a round trip's grace (half a second) ...
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  // ... unlike the newcomers, which are evicted only after them.
  for (int i = 0; i < 6; ++i) silent.emplace_back(Connect(s.port()));
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
  CHECK(s.stats().Closed(CloseReason::kEvicted) >= 7);
  for (int i = 0; i < 7; ++i) CHECK(PeerClosed(silent[i].fd));
  SendAll(begun.fd, "TP/1.0\r\n\r\n");
  CHECK(Status(ReadAll(begun.fd)) == 200);
}

uint64_t TotalClosed(const HttpServerStats& stats) {
  uint64_t total = 0;
  for (const auto& n : stats.closed) total += n.load();
  return total;
}

// Makes the server close one connection for `reason`.
void Provoke(TestServer& s, CloseReason reason) {
  std::string pending;
  Fd fd(Connect(s.port()));
  switch (reason) {
    case CloseReason::kDone:  // the response said Connection: close
      SendAll(fd.fd, "GET / HTTP/1.0\r\n\r\n");
      CHECK(Status(ReadAll(fd.fd)) == 200);
      break;
    case CloseReason::kClientClosed:  // hung up between requests
    case CloseReason::kIdleTimeout:   // ... or sent no new request
    case CloseReason::kShutdown:      // ... until the server stopped
      SendAll(fd.fd, kGet);
      REQUIRE(Status(ReadResponse(fd.fd, &pending)) == 200);
      if (reason == CloseReason::kIdleTimeout) CHECK(PeerClosed(fd.fd));
      if (reason == CloseReason::kShutdown) s.server.Stop();
      break;
    case CloseReason::kIncomplete:  // hung up in the middle of a request
      SendAll(fd.fd, "GET / HT");
      shutdown(fd.fd, SHUT_WR);
      CHECK(PeerClosed(fd.fd));
      break;
    case CloseReason::kRequestTimeout:  // silent
      CHECK(PeerClosed(fd.fd));
      break;
    case CloseReason::kBadRequest:
      SendAll(fd.fd, "HELLO\r\n\r\n");
      CHECK(Status(ReadAll(fd.fd)) == 400);
      break;
    case CloseReason::kTooLarge:
      SendAll(fd.fd, "GET / HTTP/1.1\r\nX: " + std::string(2000, 'a'));
      CHECK(Status(ReadAll(fd.fd)) == 431);
      break;
    case CloseReason::kReset: {  // the client aborts: close() sends an RST
      SendAll(fd.fd, "GET / HTTP/1.1\r\n");
      linger abort{1, 0};
      setsockopt(fd.fd, SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
      break;
    }
    default:
      FAIL("not provoked here");
  }
}

bool IsRoutine(CloseReason r) {
  return r == CloseReason::kDone || r == CloseReason::kClientClosed ||
         r == CloseReason::kIdleTimeout || r == CloseReason::kShutdown;
}

TEST_CASE("every closed connection is counted under the reason it was closed", "[http]") {
  const CloseReason expected = GENERATE(
      CloseReason::kDone, CloseReason::kClientClosed, CloseReason::kIncomplete,
      CloseReason::kIdleTimeout, CloseReason::kRequestTimeout, CloseReason::kBadRequest,
      CloseReason::kTooLarge, CloseReason::kReset, CloseReason::kShutdown);
  INFO("reason: " << CloseReasonName(expected));
  HttpServerOptions options = Local();
  options.request_timeout_ms = 300;
  options.idle_timeout_ms = 300;
  options.max_request_bytes = 1024;
  std::mutex lock;
  std::vector<std::string> lines;
  options.log = [&](const std::string& line) {
    std::lock_guard<std::mutex> hold(lock);
    lines.push_back(line);
  };
  TestServer s(options);
  Provoke(s, expected);
  for (int i = 0; i < 300 && s.stats().Closed(expected) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(s.stats().Closed(expected) == 1);
  CHECK(TotalClosed(s.stats()) == 1);
  CHECK(s.stats().open_connections.load() == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the line follows the count
  std::lock_guard<std::mutex> hold(lock);
  REQUIRE(lines.size() == (IsRoutine(expected) ? 0u : 1u));
  if (!lines.empty()) {
    CHECK_THAT(lines[0], Catch::Contains(std::string("(") + CloseReasonName(expected) + ")"));
  }
}

// Lowers RLIMIT_NOFILE for the whole test process; restores it on scope exit.
struct FdLimit {
  rlimit saved{};
  explicit FdLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved);
    rlimit lowered = saved;
    lowered.rlim_cur = soft;
    REQUIRE(setrlimit(RLIMIT_NOFILE, &lowered) == 0);
  }
  ~FdLimit() { setrlimit(RLIMIT_NOFILE, &saved); }
};

TEST_CASE("a request dribbling for seconds is evicted before a connection just accepted",
          "[http]") {
  HttpServerOptions options = Local();
  options.max_connections = 4;
  TestServer s(options);
  Fd slow(Connect(s.port()));
  SendAll(slow.fd, "GET / HT");  // a slowloris, or a TLS client stuck in its handshake
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  std::vector<Fd> fresh;
  for (int i = 0; i < 3; ++i) fresh.emplace_back(Connect(s.port()));
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
  CHECK(PeerClosed(slow.fd));
  CHECK(s.stats().Closed(CloseReason::kEvicted) == 1);  // the newcomers kept their places
}

TEST_CASE("a request begun but not complete is evicted before a connection just accepted",
          "[http]") {
  HttpServerOptions options = Local();
  options.max_connections = 4;
  TestServer s(options);
  Fd partial(Connect(s.port()));
  SendAll(partial.fd, "GET / HT");  // the oldest, dribbling (but not for long yet)
  std::vector<Fd> fresh;
  for (int i = 0; i < 3; ++i) fresh.emplace_back(Connect(s.port()));
  // Full: the next one takes the dribbler's place, not a newcomer's, which
  // may be a client a moment from its request.
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
  CHECK(PeerClosed(partial.fd));
  CHECK(s.stats().Closed(CloseReason::kEvicted) == 1);
}

TEST_CASE("out of fds accept evicts an unfinished connection instead of spinning", "[http]") {
  // Valgrind emulates RLIMIT_NOFILE by closing over-limit fds after accept4,
  // which resets the client; the kernel leaves it queued. Real kernels only.
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload != nullptr && std::strstr(preload, "valgrind") != nullptr) {
    WARN("skipped under valgrind");
    return;
  }
  TestServer s;
  // Leave exactly 8 free descriptors: 4 silent clients here + 4 in the server.
  rlim_t limit = 0;
  for (int free_fds = 0; free_fds < 8; ++limit) {
    if (fcntl(static_cast<int>(limit), F_GETFD) == -1) ++free_fds;
  }
  std::vector<Fd> silent;
  Fd good(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));  // its own fd, before the cap
  REQUIRE(good.fd >= 0);
  SetTimeouts(good.fd);
  FdLimit cap(limit + 1);  // +1: `good` took one of the 8
  for (int i = 0; i < 4; ++i) silent.emplace_back(Connect(s.port()));
  for (int i = 0; i < 100 && s.stats().accepted.load() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  REQUIRE(s.stats().accepted.load() == 4);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(s.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(good.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  SendAll(good.fd, "GET / HTTP/1.0\r\n\r\n");
  CHECK(Status(ReadAll(good.fd)) == 200);
  CHECK(s.stats().Closed(CloseReason::kEvicted) >= 1);
}

TEST_CASE("a 5 MB body reaches a slow reader completely", "[http]") {
  const size_t size = 5 << 20;
  TestServer s(Local(), [size](const HttpRequest&, HttpResponse* resp) {
    resp->body.resize(size);
    for (size_t i = 0; i < size; ++i) resp->body[i] = static_cast<char>('a' + i % 26);
  });
  Fd fd(Connect(s.port(), /*rcvbuf=*/4096));
  SendAll(fd.fd, "GET / HTTP/1.0\r\n\r\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the server hits EAGAIN
  std::string response;
  char buf[16384];
  for (ssize_t n; (n = recv(fd.fd, buf, sizeof buf, 0)) > 0;) {
    response.append(buf, static_cast<size_t>(n));
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  REQUIRE(Status(response) == 200);
  const std::string body = Body(response);
  REQUIRE(body.size() == size);
  bool intact = true;
  for (size_t i = 0; i < size && intact; ++i) intact = body[i] == static_cast<char>('a' + i % 26);
  CHECK(intact);
}

TEST_CASE("a client gone before its response costs no SIGPIPE", "[http]") {
  TestServer s(Local(), [](const HttpRequest& req, HttpResponse* resp) {
    if (req.path != "/big") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the client is gone by then
    resp->body.assign(8 << 20, 'x');
  });
  {
    Fd fd(Connect(s.port()));
    SendAll(fd.fd, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  }  // FIN now; the first bytes sent draw an RST, the next send fails with EPIPE.
  // MSG_NOSIGNAL (and the thread's signal mask) keep SIGPIPE from killing us.
  for (int i = 0; i < 200 && s.stats().open_connections.load() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(s.stats().open_connections.load() == 0);
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);  // and we are alive
}

TEST_CASE("a busy TCP address is reported as in use", "[http]") {
  TestServer first;
  HttpServerOptions options = Local();
  options.address.port = first.port();
  HttpServer second;
  std::string error;
  bool in_use = false;
  CHECK_FALSE(second.Listen(options, &error, &in_use));
  CHECK(in_use);
  CHECK(error == "127.0.0.1:" + std::to_string(first.port()) + ": address already in use");
  CHECK(Status(Exchange(first.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
}

TEST_CASE("listening on any address accepts IPv4 clients", "[http]") {
  HttpServerOptions options;
  std::string error;
  REQUIRE(ParseListenAddress(":0", &options.address, &error));
  TestServer s(options);
  CHECK(s.port() != 0);
  CHECK(Status(Exchange(s.port(), "GET / HTTP/1.0\r\n\r\n")) == 200);
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/http_test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    unlink((path + "/m.sock").c_str());
    rmdir(path.c_str());
  }
};

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST_CASE("UNIX socket files are served and replaced only when stale and removed on Stop",
          "[http]") {
  TempDir dir;
  const std::string path = dir.path + "/m.sock";
  HttpServerOptions options;
  std::string error;
  REQUIRE(ParseListenAddress("unix:" + path, &options.address, &error));

  SECTION("serves requests and removes its socket file on Stop") {
    HttpServer server;
    REQUIRE(server.Listen(options, &error));
    REQUIRE(server.Start(Echo, &error));
    CHECK(server.bound_port() == 0);
    Fd fd(ConnectUnix(path));
    SendAll(fd.fd, "GET /metrics HTTP/1.0\r\n\r\n");
    CHECK(Status(ReadAll(fd.fd)) == 200);
    server.Stop();
    CHECK_FALSE(Exists(path));
  }
  SECTION("replaces a stale socket file nobody listens on") {
    {
      Fd stale(socket(AF_UNIX, SOCK_STREAM, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
      REQUIRE(bind(stale.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    REQUIRE(Exists(path));
    HttpServer server;
    INFO(error);
    REQUIRE(server.Listen(options, &error));
    REQUIRE(server.Start(Echo, &error));
    Fd fd(ConnectUnix(path));
    SendAll(fd.fd, "GET / HTTP/1.0\r\n\r\n");
    CHECK(Status(ReadAll(fd.fd)) == 200);
  }
  SECTION("refuses a path another server listens on, leaving it alone") {
    HttpServer first;
    REQUIRE(first.Listen(options, &error));
    REQUIRE(first.Start(Echo, &error));
    {
      HttpServer second;
      bool in_use = false;
      CHECK_FALSE(second.Listen(options, &error, &in_use));
      CHECK(in_use);
      CHECK_THAT(error, Catch::Contains("in use"));
    }
    CHECK(Exists(path));
    Fd fd(ConnectUnix(path));
    SendAll(fd.fd, "GET / HTTP/1.0\r\n\r\n");
    CHECK(Status(ReadAll(fd.fd)) == 200);
  }
  SECTION("refuses a file that is not a socket") {
    Fd file(open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    REQUIRE(file.fd >= 0);
    HttpServer server;
    bool in_use = true;
    CHECK_FALSE(server.Listen(options, &error, &in_use));
    CHECK_FALSE(in_use);  // a mistake, not contention
    CHECK_THAT(error, Catch::Contains("not a socket"));
    server.Stop();
    CHECK(Exists(path));
  }
}

TEST_CASE("a handler that throws gets 500 and the server keeps working", "[http]") {
  TestServer s;
  CHECK(Status(Exchange(s.port(), "GET /throw HTTP/1.0\r\n\r\n")) == 500);
  CHECK(Status(Exchange(s.port(), "GET /throw-int HTTP/1.0\r\n\r\n")) == 500);
  CHECK(Status(Exchange(s.port(), "GET /fine HTTP/1.0\r\n\r\n")) == 200);
}

TEST_CASE("Stop is prompt and idempotent and unstarted servers are destroyed cleanly", "[http]") {
  std::string error;
  {
    HttpServer never;
    never.Stop();
    never.Stop();
    CHECK_FALSE(never.Start(Echo, &error));  // Listen() first
  }
  { HttpServer unstarted; }
  {
    HttpServer listening;
    REQUIRE(listening.Listen(Local(), &error));
  }
  TestServer s;
  Fd fd(Connect(s.port()));  // an open keep-alive connection
  std::string pending;
  SendAll(fd.fd, kGet);
  REQUIRE(Status(ReadResponse(fd.fd, &pending)) == 200);
  const auto start = Clock::now();
  s.server.Stop();
  CHECK(MsSince(start) < 500);
  s.server.Stop();
  CHECK(PeerClosed(fd.fd));
  CHECK(s.stats().open_connections.load() == 0);
}

// Counts the child's fds that are sockets bound to `port` (the listening
// socket and the server's side of connections), by kind.
void FindServerFds(uint16_t port, int* listen_fd, int* conn_fds, int max, int* conns) {
  *conns = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) continue;
    if (addr.sin_family != AF_INET || ntohs(addr.sin_port) != port) continue;
    int listening = 0;
    len = sizeof listening;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    if (listening) {
      *listen_fd = fd;
    } else if (*conns < max) {
      conn_fds[(*conns)++] = fd;
    }
  }
}

bool IsClosed(int fd) { return fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

TEST_CASE("ChildAfterFork closes the server's fds in a child only", "[http]") {
  TestServer s;
  Fd keep(Connect(s.port()));
  std::string pending;
  SendAll(keep.fd, kGet);
  REQUIRE(Status(ReadResponse(keep.fd, &pending)) == 200);
  const uint16_t port = s.port();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls from here on (the parent has threads).
    int listen_fd = -1, conn_fds[8], conns = 0;
    FindServerFds(port, &listen_fd, conn_fds, 8, &conns);
    if (listen_fd < 0 || conns != 1) _exit(2);
    s.server.ChildAfterFork();
    if (!IsClosed(listen_fd) || !IsClosed(conn_fds[0])) _exit(3);
    s.server.Stop();  // inert in the child: returns at once, joins nothing
    s.server.Stop();
    _exit(0);
  }
  int status = -1;
  for (int i = 0; i < 500 && waitpid(pid, &status, WNOHANG) == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (status == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);  // 2: fds not found, 3: still open
  // The parent's server is untouched: the old connection and new ones work.
  SendAll(keep.fd, kGet);
  CHECK(Status(ReadResponse(keep.fd, &pending)) == 200);
  CHECK(Status(Exchange(port, "GET / HTTP/1.0\r\n\r\n")) == 200);
}

}  // namespace
}  // namespace uwsgi_prometheus
