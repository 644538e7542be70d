#include "connection.h"

#include <errno.h>
#include <openssl/crypto.h>

#include <algorithm>

#include "fork_gate.h"

namespace uwsgi_prometheus {
namespace {

constexpr int64_t kLingerNs = int64_t{1000} * 1000 * 1000;  // drain time after the last reply
constexpr size_t kLingerMaxBytes = 256 * 1024;              // ... and at most this much input
constexpr size_t kReadChunk = 16384;

void Recycle(std::string* buffer) {
  if (buffer->capacity() > OutputQueue::kKeepBufferBytes) {
    std::string().swap(*buffer);
  } else {
    buffer->clear();
  }
}

}  // namespace

// ---- OutputQueue ------------------------------------------------------------

std::string* OutputQueue::Tail() {
  if (end_ == first_) {
    Clear();  // empty: start again from the first chunk
    return &chunks_[end_++].own;
  }
  Chunk& last = chunks_[end_ - 1];
  if (!last.shared.owner) return &last.own;
  if (end_ < kMaxChunks) return &chunks_[end_++].own;
  // No chunk left after a shared one: copy it, so that it can grow.
  const size_t skip = end_ - 1 == first_ ? offset_ : 0;
  last.own.assign(last.shared.bytes.substr(skip));
  last.shared = SharedBytes();
  if (end_ - 1 == first_) offset_ = 0;
  return &last.own;
}

void OutputQueue::Append(std::string_view bytes) {
  if (bytes.empty()) return;
  Tail()->append(bytes);
  size_ += bytes.size();
}

void OutputQueue::Adopt(std::string* buffer) {
  if (buffer->empty()) return;
  if (end_ == first_) Clear();
  if (end_ == kMaxChunks) {  // no free chunk: copy
    Append(*buffer);
    buffer->clear();
    return;
  }
  std::string& chunk = chunks_[end_++].own;
  chunk.clear();
  chunk.swap(*buffer);
  size_ += chunk.size();
}

void OutputQueue::Share(SharedBytes shared) {
  if (shared.bytes.empty()) return;
  if (end_ == first_) Clear();
  if (end_ == kMaxChunks) {  // no free chunk: copy
    Append(shared.bytes);
    return;
  }
  const size_t n = shared.bytes.size();
  chunks_[end_++].shared = std::move(shared);
  size_ += n;
}

int OutputQueue::Gather(iovec* iov, int max) const {
  int count = 0;
  for (int i = first_; i < end_ && count < max; ++i) {
    const std::string_view bytes = chunks_[i].bytes();
    const size_t skip = i == first_ ? offset_ : 0;
    if (bytes.size() <= skip) continue;
    iov[count++] = {const_cast<char*>(bytes.data()) + skip, bytes.size() - skip};
  }
  return count;
}

void OutputQueue::Consume(size_t bytes) {
  bytes = std::min(bytes, size_);
  size_ -= bytes;
  while (first_ < end_) {
    const size_t left = chunks_[first_].bytes().size() - offset_;
    if (bytes < left) {
      offset_ += bytes;
      break;
    }
    bytes -= left;
    chunks_[first_].shared = SharedBytes();  // sent: let go at once
    ++first_;
    offset_ = 0;
  }
  if (size_ == 0) Clear();
}

void OutputQueue::Clear() {
  for (int i = 0; i < end_; ++i) {
    Recycle(&chunks_[i].own);
    chunks_[i].shared = SharedBytes();
  }
  first_ = end_ = 0;
  offset_ = size_ = 0;
}

void OutputQueue::Release() {
  for (Chunk& chunk : chunks_) {
    std::string().swap(chunk.own);
    chunk.shared = SharedBytes();
  }
  first_ = end_ = 0;
  offset_ = size_ = 0;
}

// ---- Connection -------------------------------------------------------------

void Connection::Open(Socket* socket, Session* session, ConnectionContext* context) {
  socket_ = socket;
  session_ = session;
  ctx_ = context;
  phase_ = Phase::kReading;
  want_write_ = peer_eof_ = finishing_ = false;
  reason_ = CloseReason::kDone;
  deadline_ = ctx_->now + ctx_->request_timeout_ns;
  order_ = ++ctx_->last_order;
  drained_ = 0;
  in_.clear();
  out_.Clear();
  session_->Reset();
}

void Connection::OnReady() {
  try {
    switch (phase_) {
      case Phase::kClosed:
        return;
      case Phase::kWriting:
        if (!Flush()) return;
        if (finishing_) return Finish();
        if (Follow(session_->OnSent(&out_))) ServeAndReadBuffered();  // any pipelined request
        return;
      case Phase::kLinger:
        return Drain();
      case Phase::kPaused:
        Read();  // an error, or input while paused: keep it for later
        return;
      case Phase::kReading:
      case Phase::kIdle:
        Read();
        if (!closed()) ServeAndReadBuffered();
        return;
    }
  } catch (...) {  // std::bad_alloc: give up on this connection, keep serving
    Close(CloseReason::kError);
  }
}

void Connection::OnHangup() {
  if (phase_ != Phase::kPaused) return OnReady();
  try {
    Read();  // an error is closed for its own reason
  } catch (...) {
    Close(CloseReason::kError);
  }
  // Left open, the loop would be told of the hang-up again at once.
  Close(peer_eof_ ? CloseReason::kIncomplete : CloseReason::kReset);
}

void Connection::Resume(uint64_t outcome) {
  if (phase_ != Phase::kPaused) return;
  try {
    phase_ = paused_from_;
    if (Follow(session_->OnResume(outcome, &out_))) ServeAndReadBuffered();
  } catch (...) {
    Close(CloseReason::kError);
  }
}

void Connection::OnDeadline() {
  switch (phase_) {
    case Phase::kReading:
    case Phase::kWriting:
    case Phase::kPaused:
      return Close(CloseReason::kRequestTimeout);
    case Phase::kIdle:
      return Close(CloseReason::kIdleTimeout);
    case Phase::kLinger:
      return Close(reason_);  // the end of a normal close
    case Phase::kClosed:
      return;
  }
}

// Reads what the socket has, up to the input limit. Returns the number of
// bytes added.
size_t Connection::Read() {
  char buf[kReadChunk];
  // Never hold more than the limit: the session decides before that.
  const size_t limit = ctx_->max_input_bytes;
  const size_t before = in_.size();
  want_write_ = false;
  while (in_.size() < limit && !peer_eof_) {
    const ssize_t n = socket_->Read(buf, std::min(sizeof buf, limit - in_.size()));
    if (n > 0) {
      if (phase_ == Phase::kIdle) {  // first byte of the next request
        phase_ = Phase::kReading;
        deadline_ = ctx_->now + ctx_->request_timeout_ns;
      }
      in_.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      peer_eof_ = true;  // a complete request already sent is still answered
    } else if (n == -EAGAIN) {
      want_write_ = socket_->WaitsForWritable(false);
      break;
    } else if (n != -EINTR) {
      Close(socket_->FailureReason(n));
      break;
    }
  }
  return in_.size() - before;
}

// Hands the buffered input to the session until it waits for more, a reply
// is blocked, or the connection ends: pipelined requests are answered in
// order. Between requests the server thread holds no lock, so it may park
// there for a fork.
void Connection::Serve() {
  while (phase_ == Phase::kReading || phase_ == Phase::kIdle) {
    const SessionStep step = session_->OnInput(in_, peer_eof_, &out_);
    const size_t used = std::min(step.consumed, in_.size());
    OPENSSL_cleanse(in_.data(), used);  // a request may carry a password
    in_.erase(0, used);
    if (!Follow(step)) return;
    if (ctx_->fork_gate) ctx_->fork_gate->SafePoint();
  }
}

// Serves, then goes on with input the socket holds but the fd will not
// report (the rest of a TLS record) for as long as it adds bytes.
void Connection::ServeAndReadBuffered() {
  for (;;) {
    Serve();
    if ((phase_ != Phase::kReading && phase_ != Phase::kIdle) || !socket_->HasBufferedInput() ||
        in_.size() >= ctx_->max_input_bytes || Read() == 0 || closed()) {
      return;
    }
  }
}

// Carries out what the session asked for. Returns true when a reply has
// gone out and the session may be offered the buffered input again.
bool Connection::Follow(SessionStep step) {
  for (;;) {
    switch (step.next) {
      case SessionStep::Next::kRead:
        if (phase_ == Phase::kWriting) {
          Replied();
          return true;
        }
        // No more bytes will come, or none fit: waiting would be forever.
        if (peer_eof_) {
          Close(in_.empty() ? CloseReason::kClientClosed : CloseReason::kIncomplete);
        } else if (in_.size() >= ctx_->max_input_bytes) {
          Close(CloseReason::kTooLarge);
        }
        return false;
      case SessionStep::Next::kClose:
        Close(step.reason);
        return false;
      case SessionStep::Next::kPause:
        paused_from_ = phase_ == Phase::kWriting ? Phase::kWriting : Phase::kReading;
        phase_ = Phase::kPaused;
        want_write_ = false;
        return false;
      case SessionStep::Next::kWrite:
      case SessionStep::Next::kFinish:
        phase_ = Phase::kWriting;
        finishing_ = step.next == SessionStep::Next::kFinish;
        if (finishing_) reason_ = step.reason;
        ctx_->Tick();  // making the reply can take a while (a scrape)
        if (!Flush()) return false;
        if (finishing_) {
          Finish();
          return false;
        }
        step = session_->OnSent(&out_);
        break;
    }
  }
}

// A reply went out and the connection stays: wait for the next request
// (already begun if bytes are buffered).
void Connection::Replied() {
  phase_ = in_.empty() ? Phase::kIdle : Phase::kReading;
  deadline_ = ctx_->now + (in_.empty() ? ctx_->idle_timeout_ns : ctx_->request_timeout_ns);
  order_ = ++ctx_->last_order;
}

// Writes what is queued. Returns true when all of it is written.
bool Connection::Flush() {
  while (!out_.empty()) {
    iovec iov[OutputQueue::kMaxChunks];
    const int count = out_.Gather(iov, OutputQueue::kMaxChunks);
    const ssize_t n = socket_->Write(iov, count);
    if (n > 0) {
      out_.Consume(static_cast<size_t>(n));
    } else if (n == 0 || n == -EAGAIN) {
      want_write_ = n == 0 || socket_->WaitsForWritable(true);
      return false;
    } else if (n != -EINTR) {
      Close(socket_->FailureReason(n));
      return false;
    }
  }
  want_write_ = false;
  return true;
}

// Lingering close: stop sending (the client sees EOF) but drain its input
// for a moment, so unread bytes do not turn our close into an RST that
// could destroy the reply before the client reads it.
void Connection::Finish() {
  if (peer_eof_ || socket_->ShutdownWrite() != 0) return Close(reason_);
  phase_ = Phase::kLinger;
  deadline_ = ctx_->now + std::min(kLingerNs, ctx_->request_timeout_ns);
  in_.clear();
  drained_ = 0;
}

void Connection::Drain() {
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = socket_->Read(buf, sizeof buf);
    if (n == -EINTR) continue;
    if (n == -EAGAIN) {
      want_write_ = socket_->WaitsForWritable(false);
      return;
    }
    if (n <= 0 || (drained_ += static_cast<size_t>(n)) > kLingerMaxBytes) break;
  }
  Close(reason_);
}

void Connection::Close(CloseReason reason) {
  if (phase_ == Phase::kClosed) return;
  // Lingering, the exchange is over: whatever ends the linger (the client,
  // its deadline, an eviction, shutdown), the session's reason is counted.
  if (phase_ != Phase::kLinger) reason_ = reason;
  phase_ = Phase::kClosed;
  want_write_ = false;
  // A closed slot keeps no memory (nor bytes a forked worker would inherit):
  // the next connection may never come.
  OPENSSL_cleanse(in_.data(), in_.size());
  std::string().swap(in_);
  out_.Release();
}

}  // namespace uwsgi_prometheus
