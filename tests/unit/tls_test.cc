// TlsContext from configuration and PEM bytes, and TlsSocket serving a real
// OpenSSL client over a socketpair: handshake, data both ways, the
// direction it waits for, plain HTTP, a refused client certificate.
// Keys and certificates are made here with OpenSSL's API.
#include "tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "event_loop.h"

using namespace uwsgi_prometheus;

namespace {

std::string Pem(EVP_PKEY* key) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(b);
  return out;
}

std::string Pem(X509* cert) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(b);
  return out;
}

// A P-256 key and a self-signed certificate for it.
struct Identity {
  Identity() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
  ~Identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  EVP_PKEY* key;
  X509* cert;
};

struct Source final : TlsContextSource {
  TlsContext* CurrentTlsContext() override { return context.get(); }
  std::unique_ptr<TlsContext> context;
};

// The server's TlsSocket on one end of a socketpair, an OpenSSL client on
// the other; Pump() moves both along until neither can.
struct Pair {
  explicit Pair(SSL_CTX* client_ctx) {
    int fds[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
    fd.fd = fds[0];
    tls = std::make_unique<TlsSocket>(&source);
    client = SSL_new(client_ctx);
    SSL_set_fd(client, fds[1]);
    SSL_set_connect_state(client);
  }
  ~Pair() {
    tls->Release();
    SSL_free(client);
    close(fd.fd);
  }
  // Server reads until it has `want` bytes or cannot progress.
  std::string ServerRead(size_t want) {
    std::string got;
    for (int i = 0; i < 100 && got.size() < want; ++i) {
      SSL_do_handshake(client);  // the client's part, when it has one
      char buf[4096];
      const ssize_t n = tls->Read(buf, sizeof buf);
      if (n > 0) got.append(buf, static_cast<size_t>(n));
      if (n == 0 || (n < 0 && n != -EAGAIN)) {
        last = n;
        break;
      }
    }
    return got;
  }
  FdSocket fd;
  Source source;
  std::unique_ptr<TlsSocket> tls;
  SSL* client;
  ssize_t last = 0;
};

struct Fixture {
  Fixture() {
    files.cert = Pem(server.cert);
    files.key = Pem(server.key);
    config.cert_file = "/c.pem";
    config.key_file = "/k.pem";
    client_ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), server.cert);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, nullptr);
  }
  ~Fixture() { SSL_CTX_free(client_ctx); }
  std::unique_ptr<TlsContext> Build() {
    std::string error;
    auto c = TlsContext::Build(config, files, &error);
    INFO(error);
    REQUIRE(c);
    return c;
  }
  Identity server;
  TlsFiles files;
  TlsServerConfig config;
  SSL_CTX* client_ctx;
};

std::string BuildError(const TlsServerConfig& config, const TlsFiles& files) {
  std::string error;
  CHECK_FALSE(TlsContext::Build(config, files, &error));
  ERR_clear_error();
  return error;
}

}  // namespace

TEST_CASE("TLS context errors name the key, the file and what is wrong", "[tls]") {
  Fixture f;
  TlsFiles files = f.files;
  files.cert = "not a certificate";
  CHECK(BuildError(f.config, files) ==
        "tls_server_config.cert_file '/c.pem': no PEM certificate in it (no start line)");
  files = f.files;
  files.key = Pem(Identity().key);
  CHECK_THAT(BuildError(f.config, files),
             Catch::StartsWith("tls_server_config.key_file '/k.pem': does not match the "
                               "certificate of cert_file"));
  files.key = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
  CHECK_THAT(BuildError(f.config, files),
             Catch::StartsWith("tls_server_config.key_file '/k.pem': encrypted keys are not "
                               "supported"));
  TlsServerConfig config = f.config;
  config.cipher_suites = {"TLS_RSA_WITH_3DES_EDE_CBC_SHA"};
  CHECK_THAT(BuildError(config, f.files),
             Catch::StartsWith("tls_server_config.cipher_suites 'TLS_RSA_WITH_3DES_EDE_CBC_SHA': "
                               "not available in OpenSSL 3"));
  config = f.config;
  config.client_auth = ClientAuth::kRequireAndVerifyClientCert;
  config.client_ca_file = "/ca.pem";
  files = f.files;
  files.client_ca = "nothing";
  CHECK(BuildError(config, files) ==
        "tls_server_config.client_ca_file '/ca.pem': no PEM certificate in it");
}

TEST_CASE("TlsSocket serves an OpenSSL client: handshake, both ways, close", "[tls]") {
  Fixture f;
  f.config.cipher_suites = {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"};
  f.config.curve_preferences = {TlsCurve::kX25519, TlsCurve::kP256};
  Pair p(f.client_ctx);
  p.source.context = f.Build();
  REQUIRE(p.tls->Open(&p.fd));
  SECTION("TLS 1.3") {}
  SECTION("TLS 1.2 with the configured suite") {
    SSL_set_max_proto_version(p.client, TLS1_2_VERSION);
  }
  CHECK(p.tls->Read(nullptr, 0) == -EAGAIN);  // nothing yet: waits to read
  CHECK_FALSE(p.tls->WaitsForWritable(false));
  CHECK_FALSE(p.tls->AwaitsPeer());
  SSL_do_handshake(p.client);  // ClientHello
  CHECK(p.ServerRead(1).empty());
  CHECK_FALSE(p.tls->Doomed());
  CHECK(p.tls->AwaitsPeer());  // answered; the client's turn
  REQUIRE(SSL_do_handshake(p.client) == 1);
  CHECK(p.ServerRead(1).empty());
  CHECK(p.tls->AwaitsPeer());  // handshake done, the request not begun
  CHECK(SSL_write(p.client, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
  CHECK(p.ServerRead(18) == "GET / HTTP/1.1\r\n\r\n");
  CHECK_FALSE(p.tls->AwaitsPeer());
  if (SSL_version(p.client) == TLS1_2_VERSION) {
    CHECK(std::string(SSL_get_cipher_name(p.client)) == "ECDHE-ECDSA-AES128-GCM-SHA256");
  }
  const std::string body(100000, 'x');
  iovec iov[2] = {{const_cast<char*>("head"), 4}, {const_cast<char*>(body.data()), body.size()}};
  ssize_t sent = p.tls->Write(iov, 2);
  CHECK(sent > 4);
  std::string got;
  char buf[16384];
  for (int i = 0; i < 1000 && got.size() < 4 + body.size(); ++i) {
    int n = SSL_read(p.client, buf, sizeof buf);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    if (sent < static_cast<ssize_t>(4 + body.size())) {
      const size_t done = static_cast<size_t>(sent);
      iovec rest = {const_cast<char*>(body.data()) + (done - 4), body.size() - (done - 4)};
      const ssize_t more = p.tls->Write(&rest, 1);
      if (more > 0) sent += more;
    }
  }
  CHECK(got.size() == 4 + body.size());
  CHECK(p.tls->ShutdownWrite() == 0);
  CHECK(SSL_read(p.client, buf, sizeof buf) == 0);  // close_notify
  SSL_shutdown(p.client);
  CHECK(p.ServerRead(1).empty());
  CHECK(p.last == 0);  // the client's close_notify: end of stream
}

TEST_CASE("plain HTTP to the TLS socket gets Go's 400 and its own close reason", "[tls]") {
  Fixture f;
  Pair p(f.client_ctx);
  p.source.context = f.Build();
  REQUIRE(p.tls->Open(&p.fd));
  const int client_fd = SSL_get_fd(p.client);
  std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
  SECTION("sent at once") {}
  SECTION("dribbled: doomed from the first byte") {
    REQUIRE(write(client_fd, "G", 1) == 1);
    char byte;
    CHECK(p.tls->Read(&byte, 1) == -EAGAIN);
    CHECK(p.tls->Doomed());
    CHECK_FALSE(p.tls->AwaitsPeer());
    REQUIRE(write(client_fd, "ET", 2) == 2);
    CHECK(p.tls->Read(&byte, 1) == -EAGAIN);
    request.erase(0, 3);
  }
  REQUIRE(write(client_fd, request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  char buf[256];
  CHECK(p.tls->Read(buf, sizeof buf) == -EPROTO);
  CHECK(p.tls->FailureReason(-EPROTO) == CloseReason::kHttpToHttps);
  const ssize_t n = read(client_fd, buf, sizeof buf);
  REQUIRE(n > 0);
  CHECK(std::string(buf, static_cast<size_t>(n)) ==
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
}

TEST_CASE("a required client certificate that is missing fails the handshake", "[tls]") {
  Fixture f;
  Identity ca;
  f.config.client_auth = ClientAuth::kRequireAndVerifyClientCert;
  f.config.client_ca_file = "/ca.pem";
  f.files.client_ca = Pem(ca.cert);
  Pair p(f.client_ctx);
  p.source.context = f.Build();
  REQUIRE(p.tls->Open(&p.fd));
  SSL_set_max_proto_version(p.client, TLS1_2_VERSION);  // the refusal comes in the handshake
  for (int i = 0; i < 10 && p.last == 0; ++i) {
    SSL_do_handshake(p.client);
    char buf[16];
    const ssize_t n = p.tls->Read(buf, sizeof buf);
    if (n != -EAGAIN) p.last = n;
  }
  CHECK(p.last == -EPROTO);
  CHECK(p.tls->FailureReason(-EPROTO) == CloseReason::kTlsHandshake);
  CHECK_THAT(p.tls->FailureDetail(), Catch::Contains("peer did not return a certificate"));
  ERR_clear_error();
}

TEST_CASE("a connection cannot open without a context", "[tls]") {
  Source none;
  TlsSocket tls(&none);
  FdSocket fd;
  CHECK_FALSE(tls.Open(&fd));
  char buf[1];
  CHECK(tls.Read(buf, 1) == -EBADF);
}
