// One connection of the transport: buffers, deadlines and the read/write
// state machine, between a byte stream (Socket) and a protocol (Session).
// It knows nothing about HTTP and nothing about epoll: the event loop
// (event_loop.h) tells it when its socket is ready and when its deadline
// has passed; tests and fuzzers do the same with a fake Socket.
//
//   Open -> kReading --session queued a reply--> kWriting --sent, session
//              ^  ^                                 |      wants more--+
//              |  +--------------- bytes buffered --+                  |
//              |                                    |                  v
//              +-- first byte ---- kIdle <-- nothing buffered ---------+
//                                                   |
//                              sent, session said finish --> kLinger --> closed
//
// Deadlines: request_timeout covers kReading + kWriting, idle_timeout
// kIdle, and kLinger gets at most a second.
//
// The seam. Everything between the socket and the protocol goes through
// two small interfaces, so that layers can be added without touching the
// loop or this state machine:
//  - Socket is the byte stream. A SocketFilter (TLS, tls.h) is a Socket
//    wrapping the fd's Socket: Read() decrypts, Write() encrypts, its
//    handshake runs inside the first calls (returning -EAGAIN until it is
//    done), and it says which readiness it waits for (WaitsForWritable),
//    which the event loop asks epoll for.
//  - Session is the protocol. It is handed every buffered input byte and
//    appends replies to an OutputQueue; OnSent() is called whenever the
//    queue has drained, so a reply can also be produced piece by piece. A
//    response-body encoder (gzip) belongs on that side: the HTTP session
//    compresses the body before queueing it, or chunk by chunk in OnSent().
//  - A session may pause (kPause) while work it handed elsewhere runs (a
//    password check on a thread pool): the connection then waits for
//    nothing on its socket, keeps its deadline, and goes on when the loop
//    calls Resume() with the outcome that a CompletionSource reported.
//
// Paused: kReading --session paused--> kPaused --Resume(outcome)--> (as the
// session says: kWriting, kReading, closed); its deadline keeps running.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "close_reason.h"

namespace uwsgi_prometheus {

class ForkGate;

// A connection's byte stream. Results are as recv()/sendmsg()/shutdown()
// give them, but errors are returned as -errno (-EAGAIN: not now).
class Socket {
 public:
  virtual ~Socket() = default;
  // Bytes read (> 0), 0 at the end of the peer's stream, or -errno.
  virtual ssize_t Read(char* buf, size_t len) = 0;
  // Bytes written, or -errno. Never raises SIGPIPE.
  virtual ssize_t Write(const iovec* iov, int count) = 0;
  // Ends our sending side (the peer reads end of stream): 0 or -errno.
  virtual int ShutdownWrite() = 0;

  // After -EAGAIN from Read() (writing = false) or Write() (true): whether
  // the socket waits to become writable rather than readable. A plain
  // socket waits for what the call does; a TLS layer may have to write to
  // go on reading (its handshake) or to read to go on writing.
  virtual bool WaitsForWritable(bool writing) const { return writing; }
  // Input taken from the fd that Read() has not returned yet (the rest of
  // a TLS record): the fd will not report it as readable again.
  virtual bool HasBufferedInput() const { return false; }
  // For choosing which connection to close when there are too many
  // (EventLoop::EvictionRank). Doomed: the bytes received can never begin
  // a valid stream (not TLS on a TLS port), the connection will fail.
  // AwaitsPeer: the layer has answered the peer and waits for its next
  // message (a TLS handshake after the server's flight, until the first
  // request byte arrives).
  virtual bool Doomed() const { return false; }
  virtual bool AwaitsPeer() const { return false; }
  // Why the connection ends after Read() or Write() failed with `error`,
  // and what went wrong in words (for the log; may be empty).
  virtual CloseReason FailureReason(ssize_t /*error*/) const { return CloseReason::kReset; }
  virtual std::string FailureDetail() const { return std::string(); }
};

// A layer over the fd's Socket, such as TLS. The event loop keeps one per
// connection slot: Open() when a connection is accepted (false: it cannot
// serve it), Release() once the connection is closed, before its fd is.
class SocketFilter : public Socket {
 public:
  virtual bool Open(Socket* inner) = 0;
  virtual void Release() = 0;
};

// Bytes that several connections send at once (one scrape body served to
// concurrent clients): `owner` keeps `bytes` alive until every queue
// holding them has written them.
struct SharedBytes {
  std::shared_ptr<const void> owner;
  std::string_view bytes;
};

// Bytes waiting to be written, in a few chunks so that a large body can be
// queued without a copy. Small buffers are kept for the next reply; those
// over kKeepBufferBytes (scrape bodies) are freed once written, and shared
// bodies let go of, so an idle or closed connection holds no body, whatever
// it was sent before.
class OutputQueue {
 public:
  static constexpr int kMaxChunks = 4;
  static constexpr size_t kKeepBufferBytes = 16 * 1024;

  // Copies `bytes` to the end of the queue.
  void Append(std::string_view bytes);
  // Moves *buffer's bytes to the end of the queue without copying; *buffer
  // gets an empty string (with capacity to reuse) in exchange.
  void Adopt(std::string* buffer);
  // Queues shared bytes without copying, holding their owner until sent.
  void Share(SharedBytes shared);
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // For the transport: the unwritten bytes as iovecs (returns the count),
  // and how many of them were written.
  int Gather(iovec* iov, int max) const;
  void Consume(size_t bytes);
  // Drops everything queued.
  void Clear();
  // Drops everything queued and frees every buffer.
  void Release();

 private:
  // Owned bytes, or shared ones while `shared.owner` is set.
  struct Chunk {
    std::string own;
    SharedBytes shared;
    std::string_view bytes() const { return shared.owner ? shared.bytes : std::string_view(own); }
  };

  std::string* Tail();  // a chunk that can take appended bytes

  Chunk chunks_[kMaxChunks];
  int first_ = 0;        // first unwritten chunk
  int end_ = 0;          // one past the last chunk in use
  size_t offset_ = 0;    // bytes of chunks_[first_] already written
  size_t size_ = 0;      // unwritten bytes in all
};

// What a session asks for after it was handed input or an empty queue.
struct SessionStep {
  enum class Next : uint8_t {
    kRead,    // wait for (more) input; after OnSent: the reply is complete
    kWrite,   // a reply is queued: send it, then call OnSent()
    kFinish,  // send what is queued, then close gracefully for `reason`
    kClose,   // close now for `reason`, dropping anything queued
    kPause,   // wait, reading nothing, until Connection::Resume() (OnInput, OnSent)
  };
  Next next = Next::kRead;
  size_t consumed = 0;  // input bytes used up (OnInput only)
  CloseReason reason = CloseReason::kDone;
};

// The protocol side of one connection. One object serves one connection
// at a time and is reused (Reset) for the next.
class Session {
 public:
  virtual ~Session() = default;
  // A new connection starts.
  virtual void Reset() = 0;
  // `input` is every byte received and not consumed yet (at most the
  // transport's input limit); `eof` says the peer will send no more.
  virtual SessionStep OnInput(std::string_view input, bool eof, OutputQueue* out) = 0;
  // Everything queued has been written (after kWrite).
  virtual SessionStep OnSent(OutputQueue* out) = 0;
  // After kPause: the outcome of the work the session waited for, as its
  // CompletionSource reported it. An outcome that is not the one awaited
  // (stale: meant for an earlier connection) is answered with kPause.
  virtual SessionStep OnResume(uint64_t /*outcome*/, OutputQueue* /*out*/) {
    return {SessionStep::Next::kClose, 0, CloseReason::kError};
  }
};

// Work that paused sessions wait for, finished off the event loop's thread.
// The loop polls fd() and, when it is readable, calls Drain(), which hands
// each finished piece of work to `resume`: the connection slot of the
// session that asked for it (see EventLoop's session factory) and a word
// the session understands.
class CompletionSource {
 public:
  using ResumeFn = std::function<void(size_t slot, uint64_t outcome)>;
  virtual ~CompletionSource() = default;
  virtual int fd() const = 0;
  virtual void Drain(const ResumeFn& resume) = 0;
};

// Settings and clock shared by the connections of one loop.
struct ConnectionContext {
  size_t max_input_bytes = 8193;  // input buffered before the session must act
  int64_t request_timeout_ns = 0;
  int64_t idle_timeout_ns = 0;
  int64_t (*clock)() = nullptr;  // CLOCK_MONOTONIC ns, or a fake
  ForkGate* fork_gate = nullptr;  // parked at between requests, if set
  int64_t now = 0;                // last clock() reading
  uint64_t last_order = 0;        // for Connection::order()

  void Tick() { now = clock(); }
};

class Connection {
 public:
  enum class Phase : uint8_t { kClosed, kReading, kWriting, kIdle, kLinger, kPaused };
  // What the connection waits for on its socket.
  enum class Interest : uint8_t { kReadable, kWritable, kNothing };

  // Starts serving a new connection; `socket`, `session` and `context`
  // must outlive it.
  void Open(Socket* socket, Session* session, ConnectionContext* context);
  // The socket is ready for what wants_write() says (or may be: spurious
  // calls are harmless).
  void OnReady();
  // The socket reported a hang-up or an error (EPOLLHUP, EPOLLERR). Only
  // these are reported while paused, and reading may not notice them (end
  // of stream already seen, input buffer full): a paused connection then
  // closes, kReset or, after the client's end of stream, kIncomplete.
  // Otherwise as OnReady().
  void OnHangup();
  // context->now has reached deadline(): closes the connection.
  void OnDeadline();
  // Closes at once, e.g. to evict it or at shutdown.
  void Abort(CloseReason reason) { Close(reason); }
  // A paused session's work is done: hands it `outcome` and goes on as it
  // says. Does nothing unless the connection is paused.
  void Resume(uint64_t outcome);

  bool closed() const { return phase_ == Phase::kClosed; }
  Phase phase() const { return phase_; }
  CloseReason close_reason() const { return reason_; }
  bool wants_write() const { return want_write_; }
  Interest interest() const {
    return phase_ == Phase::kPaused ? Interest::kNothing
           : want_write_            ? Interest::kWritable
                                    : Interest::kReadable;
  }
  int64_t deadline() const { return deadline_; }
  // When it last started waiting for a request (smaller = longer ago).
  uint64_t order() const { return order_; }
  size_t buffered_input() const { return in_.size(); }
  size_t queued_output() const { return out_.size(); }

 private:
  size_t Read();
  void Serve();
  void ServeAndReadBuffered();
  bool Follow(SessionStep step);
  void Replied();
  bool Flush();
  void Finish();
  void Drain();
  void Close(CloseReason reason);

  Socket* socket_ = nullptr;
  Session* session_ = nullptr;
  ConnectionContext* ctx_ = nullptr;
  Phase phase_ = Phase::kClosed;
  bool want_write_ = false;  // blocked on a write: wait for writability
  bool peer_eof_ = false;    // the client shut down its sending side
  bool finishing_ = false;   // close (gracefully) once the output is sent
  Phase paused_from_ = Phase::kReading;  // kPaused: the phase to go back to
  CloseReason reason_ = CloseReason::kDone;  // finishing_'s, then the close's
  int64_t deadline_ = 0;
  uint64_t order_ = 0;
  size_t drained_ = 0;  // bytes read and dropped in kLinger
  std::string in_;
  OutputQueue out_;
};

}  // namespace uwsgi_prometheus
