#include "tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>

namespace uwsgi_prometheus {
namespace {

// What Go's server answers to plain HTTP on a TLS port.
constexpr char kPlainHttpAnswer[] =
    "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

constexpr unsigned char kSessionContext[] = "uwsgi-prometheus";

// OpenSSL's reason for the last failure ("no start line"), and an empty
// error queue.
std::string OpenSslReason() {
  const unsigned long e = ERR_peek_last_error();
  const char* reason = e ? ERR_reason_error_string(e) : nullptr;
  std::string out = reason ? reason : "unknown OpenSSL error";
  ERR_clear_error();
  return out;
}

bool Fail(std::string* error, const char* key, const std::string& file, const std::string& what) {
  *error = std::string("tls_server_config.") + key + " '" + file + "': " + what;
  return false;
}

// Encrypted keys: Go's LoadX509KeyPair refuses them too; never prompt.
int NoPassword(char*, int, int, void*) { return 0; }

// RequestClientCert and RequireAnyClientCert take any certificate.
int AcceptAny(int, X509_STORE_CTX*) { return 1; }

// HTTP/1.1 is all the endpoint speaks: chosen when offered, otherwise no ALPN.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* out_len, const unsigned char* in,
               unsigned int in_len, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_len, kHttp11, sizeof kHttp11, in, in_len) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

int VersionOf(TlsVersion v) {
  switch (v) {
    case TlsVersion::kTls10:
      return TLS1_VERSION;
    case TlsVersion::kTls11:
      return TLS1_1_VERSION;
    case TlsVersion::kTls12:
      return TLS1_2_VERSION;
    case TlsVersion::kTls13:
      break;
  }
  return TLS1_3_VERSION;
}

const char* GroupOf(TlsCurve c) {
  switch (c) {
    case TlsCurve::kP256:
      return "P-256";
    case TlsCurve::kP384:
      return "P-384";
    case TlsCurve::kP521:
      return "P-521";
    case TlsCurve::kX25519:
      break;
  }
  return "X25519";
}

struct BioCloser {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Bio = std::unique_ptr<BIO, BioCloser>;

Bio MemoryBio(const std::string& bytes) {
  return Bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

bool LoadChain(SSL_CTX* ctx, const TlsServerConfig& config, const TlsFiles& files,
               std::string* error) {
  Bio bio = MemoryBio(files.cert);
  X509* leaf = PEM_read_bio_X509_AUX(bio.get(), nullptr, NoPassword, nullptr);
  if (!leaf) {
    return Fail(error, "cert_file", config.cert_file,
                "no PEM certificate in it (" + OpenSslReason() + ")");
  }
  const bool used = SSL_CTX_use_certificate(ctx, leaf) == 1;
  X509_free(leaf);
  if (!used) return Fail(error, "cert_file", config.cert_file, OpenSslReason());
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return Fail(error, "cert_file", config.cert_file, OpenSslReason());
    }
  }
  ERR_clear_error();  // the end of the chain reads as an error
  return true;
}

bool LoadKey(SSL_CTX* ctx, const TlsServerConfig& config, const TlsFiles& files,
             std::string* error) {
  Bio bio = MemoryBio(files.key);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr);
  if (!key) {
    const bool encrypted = files.key.find("ENCRYPTED") != std::string::npos;
    return Fail(error, "key_file", config.key_file,
                encrypted ? "encrypted keys are not supported; write it unencrypted (openssl "
                            "pkey -in KEY -out KEY.plain)"
                          : "no PEM private key in it (" + OpenSslReason() + ")");
  }
  const bool used = SSL_CTX_use_PrivateKey(ctx, key) == 1;
  EVP_PKEY_free(key);
  if (!used || SSL_CTX_check_private_key(ctx) != 1) {
    return Fail(error, "key_file", config.key_file,
                "does not match the certificate of cert_file (" + OpenSslReason() + ")");
  }
  return true;
}

bool LoadClientCa(SSL_CTX* ctx, const TlsServerConfig& config, const TlsFiles& files,
                  std::string* error) {
  if (config.client_ca_file.empty()) return true;
  Bio bio = MemoryBio(files.client_ca);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int count = 0;
  while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr)) {
    // Trusted for verification, and named in the certificate request.
    const bool ok = X509_STORE_add_cert(store, ca) == 1 && SSL_CTX_add_client_CA(ctx, ca) == 1;
    X509_free(ca);
    if (!ok) return Fail(error, "client_ca_file", config.client_ca_file, OpenSslReason());
    ++count;
  }
  ERR_clear_error();
  if (count == 0)
    return Fail(error, "client_ca_file", config.client_ca_file, "no PEM certificate in it");
  // As Go: every certificate of the file is a trust anchor, an intermediate
  // CA too (OpenSSL would otherwise want a chain up to a self-signed root).
  X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
  return true;
}

// Go's names (IANA's) to OpenSSL's, in the configured order.
bool CipherList(const TlsServerConfig& config, std::string* list, std::string* error) {
  SSL_CTX* all = SSL_CTX_new(TLS_server_method());
  if (!all) return Fail(error, "cipher_suites", "", OpenSslReason());
  SSL_CTX_set_security_level(all, 0);
  SSL_CTX_set_cipher_list(all, "ALL:COMPLEMENTOFALL");
  STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(all);
  bool ok = true;
  for (const std::string& name : config.cipher_suites) {
    const char* found = nullptr;
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers) && !found; ++i) {
      const SSL_CIPHER* c = sk_SSL_CIPHER_value(ciphers, i);
      if (name == SSL_CIPHER_standard_name(c)) found = SSL_CIPHER_get_name(c);
    }
    if (!found) {
      ok = Fail(error, "cipher_suites", name,
                "not available in " + std::string(OpenSSL_version(OPENSSL_VERSION)));
      break;
    }
    if (!list->empty()) *list += ':';
    *list += found;
  }
  SSL_CTX_free(all);
  return ok;
}

bool SetProtocol(SSL_CTX* ctx, const TlsServerConfig& config, std::string* error) {
  // TLS 1.0 and 1.1 sign with SHA-1, which OpenSSL 3 allows at level 0 only.
  if (config.min_version < TlsVersion::kTls12) SSL_CTX_set_security_level(ctx, 0);
  if (SSL_CTX_set_min_proto_version(ctx, VersionOf(config.min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, VersionOf(config.max_version)) != 1) {
    return Fail(error, "min_version", TlsVersionName(config.min_version), OpenSslReason());
  }
  std::string ciphers;
  if (!CipherList(config, &ciphers, error)) return false;
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    return Fail(error, "cipher_suites", ciphers, OpenSslReason());
  }
  std::string groups;
  for (TlsCurve c : config.curve_preferences)
    groups += (groups.empty() ? "" : ":") + std::string(GroupOf(c));
  if (!groups.empty() && SSL_CTX_set1_groups_list(ctx, groups.c_str()) != 1) {
    return Fail(error, "curve_preferences", groups, OpenSslReason());
  }
  uint64_t options = SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF;
  if (config.prefer_server_cipher_suites) options |= SSL_OP_CIPHER_SERVER_PREFERENCE;
  SSL_CTX_set_options(ctx, options);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  return true;
}

void SetClientAuth(SSL_CTX* ctx, ClientAuth auth) {
  switch (auth) {
    case ClientAuth::kNoClientCert:
      return SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    case ClientAuth::kRequestClientCert:
      return SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAny);
    case ClientAuth::kRequireAnyClientCert:
      return SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, AcceptAny);
    case ClientAuth::kVerifyClientCertIfGiven:
      return SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    case ClientAuth::kRequireAndVerifyClientCert:
      return SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
}

// ---- The BIO over the inner Socket -----------------------------------------

TlsSocket* Owner(BIO* bio) { return static_cast<TlsSocket*>(BIO_get_data(bio)); }

int BioWrite(BIO* bio, const char* data, size_t len, size_t* written) {
  BIO_clear_retry_flags(bio);
  const iovec iov{const_cast<char*>(data), len};
  const ssize_t n = Owner(bio)->inner()->Write(&iov, 1);
  if (n > 0) {
    Owner(bio)->NoteWritten();
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0 || n == -EAGAIN || n == -EINTR) {
    BIO_set_retry_write(bio);
  } else {
    Owner(bio)->NoteInnerError(n);
  }
  return 0;
}

int BioRead(BIO* bio, char* data, size_t len, size_t* read) {
  BIO_clear_retry_flags(bio);
  const ssize_t n = Owner(bio)->inner()->Read(data, len);
  if (n > 0) {
    Owner(bio)->NoteRead(data);
    *read = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // what BIO_eof() tells OpenSSL
  } else if (n == -EAGAIN || n == -EINTR) {
    BIO_set_retry_read(bio);
  } else {
    Owner(bio)->NoteInnerError(n);
  }
  return 0;
}

long BioCtrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0;
    default:
      return 0;
  }
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

BIO_METHOD* SocketBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uwsgi-prometheus");
    if (m) {
      BIO_meth_set_write_ex(m, BioWrite);
      BIO_meth_set_read_ex(m, BioRead);
      BIO_meth_set_ctrl(m, BioCtrl);
      BIO_meth_set_create(m, BioCreate);
    }
    return m;
  }();
  return method;
}

}  // namespace

// ---- TlsContext -------------------------------------------------------------

std::unique_ptr<TlsContext> TlsContext::Build(const TlsServerConfig& config, const TlsFiles& files,
                                              std::string* error) {
  if (!SocketBioMethod()) {
    *error = "cannot make an OpenSSL BIO method: " + OpenSslReason();
    return nullptr;
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    *error = "cannot make an OpenSSL context: " + OpenSslReason();
    return nullptr;
  }
  std::unique_ptr<TlsContext> out(new TlsContext(ctx));
  SSL_CTX_set_default_passwd_cb(ctx, NoPassword);
  if (!SetProtocol(ctx, config, error) || !LoadChain(ctx, config, files, error) ||
      !LoadKey(ctx, config, files, error) || !LoadClientCa(ctx, config, files, error)) {
    return nullptr;
  }
  SetClientAuth(ctx, config.client_auth);
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// ---- TlsSocket --------------------------------------------------------------

TlsSocket::~TlsSocket() { Release(); }

bool TlsSocket::Open(Socket* inner) {
  Release();
  inner_ = inner;
  want_write_ = false;
  read_ = doomed_ = wrote_ = decrypted_ = false;
  inner_error_ = 0;
  reason_ = CloseReason::kReset;
  detail_.clear();
  TlsContext* context = source_->CurrentTlsContext();
  if (!context) return false;
  ssl_ = SSL_new(context->get());
  BIO* bio = ssl_ ? BIO_new(SocketBioMethod()) : nullptr;
  if (!bio) {
    Release();
    ERR_clear_error();
    return false;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);
  SSL_set_accept_state(ssl_);
  return true;
}

void TlsSocket::Release() {
  if (ssl_) SSL_free(ssl_);  // and its BIO
  ssl_ = nullptr;
  inner_ = nullptr;
  std::string().swap(joined_);  // a closed slot keeps no memory
}

bool TlsSocket::HasBufferedInput() const { return ssl_ && SSL_pending(ssl_) > 0; }

// A client's first record is a handshake record (type 22); a first byte
// with the high bit set may be an SSLv2-style ClientHello, which OpenSSL
// judges itself. Anything else (an HTTP request, a slowloris' letters)
// fails once OpenSSL has read the 5 bytes of a record header.
void TlsSocket::NoteRead(const char* data) {
  if (!read_) doomed_ = data[0] != 22 && (static_cast<unsigned char>(data[0]) & 0x80) == 0;
  read_ = true;
}

// From the server's first flight until the client's first request byte:
// during the handshake, and the round trip after it.
bool TlsSocket::AwaitsPeer() const { return ssl_ && wrote_ && !decrypted_; }

ssize_t TlsSocket::Read(char* buf, size_t len) {
  if (!ssl_) return -EBADF;
  ERR_clear_error();
  inner_error_ = 0;
  size_t n = 0;
  const int ok = SSL_read_ex(ssl_, buf, len, &n);
  if (ok == 1) {
    want_write_ = false;
    decrypted_ = true;
    return static_cast<ssize_t>(n);
  }
  return Failed(ok, /*reading=*/true);
}

// Small chunks (a response head, then its body) are joined into one
// record rather than sent as one record each. After -EAGAIN the caller
// offers the same bytes again (maybe more), which OpenSSL requires; the
// joined copy may move (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
ssize_t TlsSocket::Write(const iovec* iov, int count) {
  if (!ssl_) return -EBADF;
  int first = 0;
  while (first < count && iov[first].iov_len == 0) ++first;
  if (first == count) return 0;
  const char* data = static_cast<const char*>(iov[first].iov_base);
  size_t len = iov[first].iov_len;
  if (len < kJoinBytes && first + 1 < count) {
    joined_.clear();
    for (int i = first; i < count && joined_.size() < kJoinBytes; ++i) {
      joined_.append(static_cast<const char*>(iov[i].iov_base),
                     std::min(iov[i].iov_len, kJoinBytes - joined_.size()));
    }
    data = joined_.data();
    len = joined_.size();
  }
  ERR_clear_error();
  inner_error_ = 0;
  size_t n = 0;
  if (SSL_write_ex(ssl_, data, len, &n) != 1) return Failed(0, /*reading=*/false);
  return static_cast<ssize_t>(n);
}

// Best effort: a close_notify if the handshake is done, then the TCP FIN.
int TlsSocket::ShutdownWrite() {
  if (!ssl_) return -EBADF;
  if (SSL_is_init_finished(ssl_)) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }
  return inner_->ShutdownWrite();
}

ssize_t TlsSocket::Failed(int ret, bool reading) {
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      want_write_ = false;
      return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
      want_write_ = true;
      return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:  // close_notify, or the peer's FIN
      return reading ? 0 : -EPIPE;
    case SSL_ERROR_SSL:
      return FailedProtocol();
    default:  // SSL_ERROR_SYSCALL: the inner socket failed, or ended
      ERR_clear_error();
      reason_ = CloseReason::kReset;
      if (inner_error_ < 0) return inner_error_;
      return reading ? 0 : -EPIPE;
  }
}

ssize_t TlsSocket::FailedProtocol() {
  const unsigned long e = ERR_peek_error();
  const bool plain_http =
      ERR_GET_LIB(e) == ERR_LIB_SSL &&
      (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST || ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST);
  if (plain_http) {
    ERR_clear_error();
    // The rest of the request is read first: closing with unread input
    // would reset the connection and could destroy the answer.
    char discard[4096];
    for (int i = 0; i < 16 && inner_->Read(discard, sizeof discard) > 0; ++i) {
    }
    const iovec iov{const_cast<char*>(kPlainHttpAnswer), sizeof kPlainHttpAnswer - 1};
    inner_->Write(&iov, 1);  // one try: the client is not speaking TLS anyway
    inner_->ShutdownWrite();
    reason_ = CloseReason::kHttpToHttps;
    return -EPROTO;
  }
  detail_ = OpenSslReason();
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    detail_ += std::string(": ") + X509_verify_cert_error_string(verify);
  }
  reason_ = SSL_is_init_finished(ssl_) ? CloseReason::kReset : CloseReason::kTlsHandshake;
  return -EPROTO;
}

}  // namespace uwsgi_prometheus
