// The transport's connection state machine with a protocol that is not HTTP
// (a line echo) over a fake socket and clock: the seam needs neither real
// sockets nor HTTP.
#include "connection.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "fake_socket.h"

namespace uwsgi_prometheus {
namespace {

constexpr int64_t kSec = 1000 * 1000 * 1000;
int64_t g_now = 0;
int64_t Now() { return g_now; }

// Echoes each line; "quit" answers and finishes, "big" answers 2 MiB.
struct LineEcho final : Session {
  void Reset() override {}
  SessionStep OnInput(std::string_view in, bool, OutputQueue* out) override {
    const size_t nl = in.find('\n');
    if (nl == std::string_view::npos) return {};  // kRead: wait for the rest
    const std::string_view line = in.substr(0, nl);
    if (line == "quit") {
      out->Append("bye\n");
      return {SessionStep::Next::kFinish, nl + 1, CloseReason::kDone};
    }
    if (line == "big") {
      std::string body(2 << 20, 'x');
      big_data = body.data();
      out->Adopt(&body);
      adopted_left_empty = body.empty();
    } else {
      out->Append(line);
      out->Append("\n");
    }
    return {SessionStep::Next::kWrite, nl + 1, CloseReason::kDone};
  }
  SessionStep OnSent(OutputQueue*) override { return {}; }
  const char* big_data = nullptr;
  bool adopted_left_empty = false;
};

// Answers "wait" lines only once resumed with the matching word; other
// lines are echoed.
struct PausingEcho final : Session {
  void Reset() override {}
  SessionStep OnInput(std::string_view in, bool eof, OutputQueue* out) override {
    if (in.substr(0, 5) == "wait\n") return {SessionStep::Next::kPause, 5, CloseReason::kDone};
    return echo.OnInput(in, eof, out);
  }
  SessionStep OnSent(OutputQueue*) override { return {}; }
  SessionStep OnResume(uint64_t outcome, OutputQueue* out) override {
    if (outcome != awaited) return {SessionStep::Next::kPause, 0, CloseReason::kDone};
    out->Append("resumed\n");
    return {SessionStep::Next::kWrite, 0, CloseReason::kDone};
  }
  LineEcho echo;
  uint64_t awaited = 7;
};

struct Harness {
  Harness() {
    ctx.max_input_bytes = 16;
    ctx.request_timeout_ns = 10 * kSec;
    ctx.idle_timeout_ns = 30 * kSec;
    ctx.clock = Now;
    socket.room = 1 << 30;
    g_now = 0;
    ctx.Tick();
    conn.Open(&socket, &echo, &ctx);
  }
  FakeSocket socket;
  LineEcho echo;
  ConnectionContext ctx;
  Connection conn;
};

TEST_CASE("lines split across reads are answered in order, writes resume", "[connection]") {
  Harness h;
  h.socket.incoming = "ab";
  h.conn.OnReady();
  CHECK(h.socket.written.empty());
  h.socket.incoming = "c\nde\nf";
  h.socket.room = 3;
  h.conn.OnReady();
  CHECK(h.conn.wants_write());  // "abc\n" did not fit
  CHECK(h.socket.written == "abc");
  h.socket.room = 100;
  h.conn.OnReady();  // the rest, then the pipelined "de"
  CHECK(h.socket.written == "abc\nde\n");
  CHECK(h.conn.phase() == Connection::Phase::kReading);  // "f" has begun the next
  CHECK(h.conn.buffered_input() == 1);
}

TEST_CASE("a finished connection lingers and keeps the session's reason", "[connection]") {
  Harness h;
  h.socket.incoming = "quit\n";
  h.conn.OnReady();
  CHECK(h.socket.written == "bye\n");
  CHECK(h.socket.shut);
  REQUIRE(h.conn.phase() == Connection::Phase::kLinger);
  SECTION("evicted while lingering") { h.conn.Abort(CloseReason::kEvicted); }
  SECTION("linger deadline") {
    g_now = h.conn.deadline();
    h.conn.OnDeadline();
  }
  SECTION("client closes") {
    h.socket.eof = true;
    h.conn.OnReady();
  }
  CHECK(h.conn.closed());
  CHECK(h.conn.close_reason() == CloseReason::kDone);
  CHECK(h.socket.misuse == 0);
}

TEST_CASE("deadlines and ends of input give their reasons", "[connection]") {
  Harness h;
  SECTION("silent: request timeout") {
    g_now = 10 * kSec;
    h.conn.OnDeadline();
    CHECK(h.conn.close_reason() == CloseReason::kRequestTimeout);
  }
  SECTION("answered, then nothing: idle timeout") {
    h.socket.incoming = "x\n";
    h.conn.OnReady();
    CHECK(h.conn.deadline() == 30 * kSec);
    h.conn.OnDeadline();
    CHECK(h.conn.close_reason() == CloseReason::kIdleTimeout);
  }
  SECTION("EOF between lines: client closed") {
    h.socket.eof = true;
    h.conn.OnReady();
    CHECK(h.conn.close_reason() == CloseReason::kClientClosed);
  }
  SECTION("EOF in a line: incomplete") {
    h.socket.incoming = "par";
    h.socket.eof = true;
    h.conn.OnReady();
    CHECK(h.conn.close_reason() == CloseReason::kIncomplete);
  }
  SECTION("a full buffer the session cannot use: too large, not a busy loop") {
    h.socket.incoming = std::string(40, 'z');
    h.conn.OnReady();
    CHECK(h.conn.close_reason() == CloseReason::kTooLarge);
  }
  CHECK(h.conn.closed());
}

TEST_CASE("an adopted buffer is written without a copy", "[connection]") {
  Harness h;
  h.socket.incoming = "big\n";
  h.socket.room = 1000;
  h.conn.OnReady();
  CHECK(h.echo.adopted_left_empty);
  CHECK(h.conn.queued_output() == (2u << 20) - 1000);
  OutputQueue q;
  std::string body(100, 'y');
  const char* data = body.data();
  q.Append("head");
  q.Adopt(&body);
  iovec iov[OutputQueue::kMaxChunks];
  REQUIRE(q.Gather(iov, OutputQueue::kMaxChunks) == 2);
  CHECK(iov[1].iov_base == data);
  q.Consume(50);
  REQUIRE(q.Gather(iov, OutputQueue::kMaxChunks) == 1);
  CHECK(iov[0].iov_len == 54);
  q.Consume(54);
  CHECK(q.empty());
}

TEST_CASE("shared bytes are sent without a copy and let go once written", "[connection]") {
  auto body = std::make_shared<const std::string>(100, 'z');
  std::weak_ptr<const std::string> watch = body;
  OutputQueue q;
  q.Append("head");
  q.Share({body, *body});
  body.reset();
  iovec iov[OutputQueue::kMaxChunks];
  REQUIRE(q.Gather(iov, OutputQueue::kMaxChunks) == 2);
  CHECK(iov[1].iov_base == watch.lock()->data());
  q.Consume(4 + 60);
  CHECK(!watch.expired());  // 40 bytes still to send
  q.Append("next");         // after a shared chunk: a chunk of its own
  REQUIRE(q.Gather(iov, OutputQueue::kMaxChunks) == 2);
  CHECK(iov[0].iov_len == 40);
  CHECK(iov[1].iov_len == 4);
  q.Consume(40);
  CHECK(watch.expired());  // written: the queue no longer holds it
  q.Consume(4);
  CHECK(q.empty());

  SECTION("no chunk left: appending after a shared chunk copies it") {
    auto shared = std::make_shared<const std::string>("0123456789");
    OutputQueue full;
    full.Append("a");
    std::string b = "b", c = "c";
    full.Adopt(&b);
    full.Adopt(&c);
    full.Share({shared, *shared});
    full.Consume(3 + 2);  // a, b, c and "01"
    full.Append("!");
    REQUIRE(full.Gather(iov, OutputQueue::kMaxChunks) == 1);
    CHECK(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len) == "23456789!");
    CHECK(full.size() == 9);
  }
}

TEST_CASE("a paused session waits for nothing on its socket until resumed", "[connection]") {
  Harness h;
  PausingEcho pausing;
  h.conn.Open(&h.socket, &pausing, &h.ctx);
  h.socket.incoming = "wait\nafter\n";
  h.conn.OnReady();
  REQUIRE(h.conn.phase() == Connection::Phase::kPaused);
  CHECK(h.conn.interest() == Connection::Interest::kNothing);
  CHECK(h.socket.written.empty());
  CHECK(h.conn.buffered_input() == 6);  // the pipelined line waits its turn
  SECTION("resumed with the awaited outcome: answers, then the pipelined line") {
    h.conn.Resume(3);  // stale: still paused
    CHECK(h.conn.phase() == Connection::Phase::kPaused);
    h.conn.Resume(7);
    CHECK(h.socket.written == "resumed\nafter\n");
    CHECK(h.conn.phase() == Connection::Phase::kIdle);
    CHECK(h.conn.interest() == Connection::Interest::kReadable);
  }
  SECTION("the request deadline keeps running while paused") {
    g_now = h.conn.deadline();
    h.conn.OnDeadline();
    CHECK(h.conn.close_reason() == CloseReason::kRequestTimeout);
    h.conn.Resume(7);  // after the close: ignored
    CHECK(h.socket.written.empty());
  }
  SECTION("a reset while paused closes at once") {
    h.socket.error = ECONNRESET;
    h.conn.OnReady();
    CHECK(h.conn.close_reason() == CloseReason::kReset);
  }
  SECTION("a hang-up after the client's EOF while paused closes: it would be reported forever") {
    h.socket.eof = true;
    h.conn.OnReady();
    REQUIRE(h.conn.phase() == Connection::Phase::kPaused);
    h.conn.OnHangup();
    CHECK(h.conn.closed());
    CHECK(h.conn.close_reason() == CloseReason::kIncomplete);
  }
  SECTION("a hang-up while paused with the input buffer full closes as a reset") {
    h.socket.incoming = std::string(64, 'x');
    h.conn.OnReady();  // fills the buffer: nothing more is read
    REQUIRE(h.conn.phase() == Connection::Phase::kPaused);
    h.socket.error = ECONNRESET;
    h.conn.OnHangup();
    CHECK(h.conn.closed());
    CHECK(h.conn.close_reason() == CloseReason::kReset);
  }
  SECTION("the client's EOF while paused: the answer still goes out") {
    h.socket.eof = true;
    h.conn.OnReady();
    CHECK(h.conn.phase() == Connection::Phase::kPaused);
    h.conn.Resume(7);
    CHECK(h.socket.written == "resumed\nafter\n");
  }
  CHECK(h.socket.misuse == 0);
}

// A socket that, like TLS, holds input the fd no longer reports, and may
// need the other direction.
struct BufferingSocket final : Socket {
  ssize_t Read(char* buf, size_t len) override {
    if (held.empty()) return -EAGAIN;
    const size_t n = std::min(len, held.size());
    std::memcpy(buf, held.data(), n);
    held.erase(0, n);
    return static_cast<ssize_t>(n);
  }
  ssize_t Write(const iovec* iov, int count) override {
    if (blocked_on_read) return -EAGAIN;
    size_t n = 0;
    for (int i = 0; i < count; ++i) {
      written.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
      n += iov[i].iov_len;
    }
    return static_cast<ssize_t>(n);
  }
  int ShutdownWrite() override { return 0; }
  bool WaitsForWritable(bool writing) const override { return !writing && handshake_writes; }
  bool HasBufferedInput() const override { return !held.empty(); }
  std::string held, written;
  bool handshake_writes = false, blocked_on_read = false;
};

TEST_CASE("a filter's buffered input and wait direction are honoured", "[connection]") {
  Harness h;
  BufferingSocket s;
  h.ctx.max_input_bytes = 8;
  h.conn.Open(&s, &h.echo, &h.ctx);
  SECTION("input beyond the limit that the fd will not report is read after each answer") {
    s.held = "a\nb\nc\nd\ne\nf\n";  // 12 bytes, more than one read's worth
    h.conn.OnReady();
    CHECK(s.written == "a\nb\nc\nd\ne\nf\n");
  }
  SECTION("a read that must write waits for writability, a write that must read for input") {
    s.handshake_writes = true;
    h.conn.OnReady();
    CHECK(h.conn.interest() == Connection::Interest::kWritable);
    s.handshake_writes = false;
    s.blocked_on_read = true;
    s.held = "x\n";
    h.conn.OnReady();
    CHECK(h.conn.phase() == Connection::Phase::kWriting);
    CHECK(h.conn.interest() == Connection::Interest::kReadable);
    s.blocked_on_read = false;
    h.conn.OnReady();
    CHECK(s.written == "x\n");
  }
}

}  // namespace
}  // namespace uwsgi_prometheus
