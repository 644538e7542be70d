// TLS for the endpoint, with OpenSSL 3.
//
// TlsContext is an SSL_CTX made from the web configuration's
// tls_server_config and the bytes of its files (certificate chain, key,
// client CA), as exporter-toolkit configures Go's crypto/tls: versions,
// cipher suites by Go's names, curves, server cipher preference, and the
// five client certificate policies. Contexts are rebuilt when the files
// change (web_access.h); a connection keeps the context it started with.
//
// TlsSocket is the SocketFilter over the fd's Socket (connection.h): its
// own BIO calls the inner Socket, so nothing blocks, no SIGPIPE is raised,
// and tests run it over a fake socket. The handshake happens inside the
// first Read() calls under the connection's deadline; -EAGAIN says, through
// WaitsForWritable, which readiness it needs. Plain HTTP sent to it is
// answered "400 Bad Request" in plain text, as Go's server does.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <string>

#include "connection.h"
#include "web_config.h"

struct ssl_ctx_st;
struct ssl_st;

namespace uwsgi_prometheus {

// The bytes of the files tls_server_config names.
struct TlsFiles {
  std::string cert;       // PEM: the certificate, then any intermediates
  std::string key;        // PEM: its private key (not encrypted)
  std::string client_ca;  // PEM: CA certificates for client certificates, may be empty
};

class TlsContext {
 public:
  // Returns null with a message naming the key and file on error, such as
  // "tls_server_config.key_file '/etc/k.pem': does not match the
  // certificate".
  static std::unique_ptr<TlsContext> Build(const TlsServerConfig& config, const TlsFiles& files,
                                           std::string* error);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* get() const { return ctx_; }

 private:
  explicit TlsContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

// Gives new connections the context in use now (and may look for changed
// files first).
class TlsContextSource {
 public:
  virtual ~TlsContextSource() = default;
  virtual TlsContext* CurrentTlsContext() = 0;
};

class TlsSocket final : public SocketFilter {
 public:
  explicit TlsSocket(TlsContextSource* source) : source_(source) {}
  ~TlsSocket() override;

  bool Open(Socket* inner) override;
  void Release() override;
  ssize_t Read(char* buf, size_t len) override;
  ssize_t Write(const iovec* iov, int count) override;
  int ShutdownWrite() override;
  bool WaitsForWritable(bool) const override { return want_write_; }
  bool HasBufferedInput() const override;
  bool Doomed() const override { return doomed_; }
  bool AwaitsPeer() const override;
  CloseReason FailureReason(ssize_t) const override { return reason_; }
  std::string FailureDetail() const override { return detail_; }

  // For the BIO: the inner socket's result of the last call, and what
  // went through it.
  Socket* inner() const { return inner_; }
  void NoteInnerError(ssize_t error) { inner_error_ = error; }
  void NoteRead(const char* data);
  void NoteWritten() { wrote_ = true; }

 private:
  static constexpr size_t kJoinBytes = 16384;  // one TLS record's worth

  ssize_t Failed(int ret, bool reading);
  ssize_t FailedProtocol();

  TlsContextSource* source_;
  Socket* inner_ = nullptr;
  ssl_st* ssl_ = nullptr;
  bool want_write_ = false;
  bool read_ = false;    // any byte read from the peer yet
  bool doomed_ = false;  // the first byte read cannot begin a TLS record
  bool wrote_ = false;   // any byte written to the peer yet
  bool decrypted_ = false;  // any application byte returned by Read() yet
  ssize_t inner_error_ = 0;  // -errno from the inner socket, if that is what failed
  CloseReason reason_ = CloseReason::kReset;
  std::string detail_;
  std::string joined_;  // small chunks joined for one record
};

}  // namespace uwsgi_prometheus
