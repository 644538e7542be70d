// The web configuration file: every key, its default, and every error
// message, on YAML text (no files but in the last cases).
#include "web_config.h"

#include <stdio.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

using namespace uwsgi_prometheus;

namespace {

const char* const kHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

WebConfig Parsed(const std::string& yaml, const std::string& dir = "/etc/uwsgi/") {
  WebConfig config;
  std::string error;
  INFO(yaml);
  REQUIRE(ParseWebConfig(yaml, dir, &config, &error));
  CHECK(error.empty());
  return config;
}

// The error for `yaml`, or "" when it parses.
std::string ErrorFor(const std::string& yaml) {
  WebConfig config;
  std::string error;
  return ParseWebConfig(yaml, "/etc/uwsgi/", &config, &error) ? std::string() : error;
}

const std::string kTls = "tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n";

}  // namespace

TEST_CASE("an empty file, comments only or empty sections: plain HTTP, open", "[web_config]") {
  for (const char* yaml : {"", "# nothing\n", "---\n", "tls_server_config:\n",
                           "tls_server_config: {}\nhttp_server_config: {}\nbasic_auth_users: {}\n",
                           "tls_server_config:\n  min_version: TLS13\n"}) {
    const WebConfig c = Parsed(yaml);
    CHECK_FALSE(c.tls);
    CHECK(c.headers.empty());
    CHECK(c.users.empty());
    CHECK(c.http2);
  }
}

TEST_CASE("TLS keys and their defaults", "[web_config]") {
  SECTION("defaults as exporter-toolkit's") {
    const WebConfig c = Parsed(kTls);
    REQUIRE(c.tls);
    CHECK(c.tls->cert_file == "/etc/uwsgi/c.pem");
    CHECK(c.tls->key_file == "/etc/uwsgi/k.pem");
    CHECK(c.tls->client_ca_file.empty());
    CHECK(c.tls->client_auth == ClientAuth::kNoClientCert);
    CHECK(c.tls->min_version == TlsVersion::kTls12);
    CHECK(c.tls->max_version == TlsVersion::kTls13);
    CHECK(c.tls->cipher_suites.empty());
    CHECK(c.tls->curve_preferences.empty());
    CHECK(c.tls->prefer_server_cipher_suites);
  }
  SECTION("every key set; absolute paths kept, relative ones joined to the file's directory") {
    const WebConfig c = Parsed(
        "tls_server_config:\n  cert_file: /abs/c.pem\n  key_file: sub/k.pem\n"
        "  client_ca_file: ca.pem\n  client_auth_type: RequireAndVerifyClientCert\n"
        "  min_version: TLS10\n  max_version: TLS12\n"
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256,\n"
        "                  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n"
        "  curve_preferences:\n    - X25519\n    - CurveP521\n    - CurveP384\n    - CurveP256\n"
        "  prefer_server_cipher_suites: false\n");
    REQUIRE(c.tls);
    CHECK(c.tls->cert_file == "/abs/c.pem");
    CHECK(c.tls->key_file == "/etc/uwsgi/sub/k.pem");
    CHECK(c.tls->client_ca_file == "/etc/uwsgi/ca.pem");
    CHECK(c.tls->client_auth == ClientAuth::kRequireAndVerifyClientCert);
    CHECK(c.tls->min_version == TlsVersion::kTls10);
    CHECK(c.tls->max_version == TlsVersion::kTls12);
    // TLS 1.3 names are accepted and left out, as Go leaves them out
    CHECK(c.tls->cipher_suites == std::vector<std::string>{
                                      "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                                      "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"});
    CHECK(c.tls->curve_preferences == std::vector<TlsCurve>{TlsCurve::kX25519, TlsCurve::kP521,
                                                            TlsCurve::kP384, TlsCurve::kP256});
    CHECK_FALSE(c.tls->prefer_server_cipher_suites);
  }
  SECTION("each client auth type, and the old RequireClientCert spelling") {
    const std::pair<const char*, ClientAuth> cases[] = {
        {"NoClientCert", ClientAuth::kNoClientCert},
        {"RequestClientCert", ClientAuth::kRequestClientCert},
        {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
        {"RequireClientCert", ClientAuth::kRequireAnyClientCert},
        {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
        {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert}};
    for (const auto& [name, auth] : cases) {
      const bool ca = auth != ClientAuth::kNoClientCert;
      const WebConfig c = Parsed(kTls + "  client_auth_type: " + name + "\n" +
                                 (ca ? "  client_ca_file: /ca.pem\n" : ""));
      REQUIRE(c.tls);
      CHECK(c.tls->client_auth == auth);
    }
  }
  SECTION("without a directory, relative paths stay as given") {
    WebConfig c;
    std::string error;
    REQUIRE(ParseWebConfig(kTls, "", &c, &error));
    CHECK(c.tls->cert_file == "c.pem");
  }
  SECTION("YAML booleans as Go's yaml.v2 reads them") {
    for (const char* word : {"no", "False", "off", "N"}) {
      CHECK_FALSE(Parsed(kTls + "  prefer_server_cipher_suites: " + word + "\n")
                      .tls->prefer_server_cipher_suites);
    }
    CHECK(Parsed(kTls + "  prefer_server_cipher_suites: yes\n").tls->prefer_server_cipher_suites);
  }
}

TEST_CASE("a client auth type alone turns TLS on and asks for the certificate",
          "[web_config]") {
  CHECK(ErrorFor("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n") ==
        "tls_server_config: missing cert_file (line 2)");
  CHECK(ErrorFor("tls_server_config:\n  cert_file: c.pem\n") ==
        "tls_server_config: missing key_file (line 2)");
  CHECK(ErrorFor("tls_server_config:\n  client_ca_file: ca.pem\n") ==
        "tls_server_config: missing cert_file (line 2)");
}

TEST_CASE("TLS errors name the key, the value and the fix", "[web_config]") {
  CHECK(ErrorFor(kTls + "  client_auth_type: Sometimes\n") ==
        "tls_server_config.client_auth_type 'Sometimes': unknown client auth type; use "
        "NoClientCert, RequestClientCert, RequireAnyClientCert, RequireClientCert, "
        "VerifyClientCertIfGiven or RequireAndVerifyClientCert (line 4)");
  CHECK(ErrorFor(kTls + "  client_ca_file: ca.pem\n") ==
        "tls_server_config.client_ca_file: a client CA is set without a client_auth_type that "
        "asks for certificates; set client_auth_type, e.g. RequireAndVerifyClientCert (line 2)");
  CHECK(ErrorFor(kTls + "  client_auth_type: VerifyClientCertIfGiven\n") ==
        "tls_server_config.client_auth_type: VerifyClientCertIfGiven verifies client "
        "certificates: set client_ca_file to the CA that signs them (line 2)");
  CHECK(ErrorFor(kTls + "  min_version: TLS14\n") ==
        "tls_server_config.min_version 'TLS14': unknown TLS version; use TLS10, TLS11, TLS12 or "
        "TLS13 (line 4)");
  CHECK(ErrorFor(kTls + "  max_version: 1.2\n") ==
        "tls_server_config.max_version '1.2': unknown TLS version; use TLS10, TLS11, TLS12 or "
        "TLS13 (line 4)");
  CHECK(ErrorFor(kTls + "  min_version: TLS13\n  max_version: TLS12\n") ==
        "tls_server_config: min_version TLS13 is above max_version TLS12 (line 2)");
  CHECK(ErrorFor(kTls + "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n") ==
        "tls_server_config.cipher_suites 'TLS_RSA_WITH_RC4_128_SHA': unknown cipher suite; use "
        "Go's names, such as TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (line 4)");
  CHECK(ErrorFor(kTls + "  cipher_suites: [ECDHE-RSA-AES128-GCM-SHA256]\n").find(
            "unknown cipher suite") != std::string::npos);
  CHECK(ErrorFor(kTls + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n") ==
        "tls_server_config.cipher_suites: lists only TLS 1.3 suites, which are not "
        "configurable; TLS 1.0-1.2 handshakes would have no suite: list TLS 1.2 suites or set "
        "min_version: TLS13 (line 2)");
  CHECK(ErrorFor(kTls + "  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
            .empty());
  CHECK(ErrorFor(kTls + "  curve_preferences: [P-256]\n") ==
        "tls_server_config.curve_preferences 'P-256': unknown curve; use CurveP256, CurveP384, "
        "CurveP521 or X25519 (line 4)");
  CHECK(ErrorFor(kTls + "  cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n") ==
        "tls_server_config.cipher_suites: must be a list (line 4)");
  CHECK(ErrorFor(kTls + "  curve_preferences: [[X25519]]\n") ==
        "tls_server_config.curve_preferences: list items must be single values (line 4)");
  CHECK(ErrorFor(kTls + "  prefer_server_cipher_suites: maybe\n") ==
        "tls_server_config.prefer_server_cipher_suites 'maybe': must be true or false (line 4)");
  CHECK(ErrorFor(kTls + "  prefer_server_cipher_suites: \"true\"\n") ==
        "tls_server_config.prefer_server_cipher_suites 'true': must be true or false (line 4)");
  CHECK(ErrorFor(kTls + "  prefer_server_cipher_suites: [true]\n") ==
        "tls_server_config.prefer_server_cipher_suites: must be true or false (line 4)");
  CHECK(ErrorFor(kTls + "  cert_file: again.pem\n") ==
        "tls_server_config.cert_file: key given twice (line 4)");
  CHECK(ErrorFor(kTls + "  cert: c.pem\n") ==
        "tls_server_config.cert: unknown key; use cert_file, key_file, client_auth_type, "
        "client_ca_file, min_version, max_version, cipher_suites, curve_preferences or "
        "prefer_server_cipher_suites (line 4)");
  CHECK(ErrorFor("tls_server_config:\n  cert_file: [a, b]\n") ==
        "tls_server_config.cert_file: must be a single value (line 2)");
  CHECK(ErrorFor("tls_server_config: yes\n") ==
        "tls_server_config: must be a mapping of keys to values (line 1)");
}

TEST_CASE("http_server_config: the five headers exporters allow, http2 accepted",
          "[web_config]") {
  const WebConfig c = Parsed(
      "http_server_config:\n  http2: false\n  headers:\n"
      "    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"
      "    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1; mode=block\n"
      "    Content-Security-Policy: default-src 'self'\n");
  CHECK_FALSE(c.http2);
  CHECK(c.headers == std::vector<std::pair<std::string, std::string>>{
                         {"Content-Security-Policy", "default-src 'self'"},
                         {"Strict-Transport-Security", "max-age=31536000"},
                         {"X-Content-Type-Options", "nosniff"},
                         {"X-Frame-Options", "deny"},
                         {"X-XSS-Protection", "1; mode=block"}});
  CHECK(Parsed("http_server_config:\n  headers:\n    X-Frame-Options: sameorigin\n").headers ==
        std::vector<std::pair<std::string, std::string>>{{"X-Frame-Options", "sameorigin"}});
}

TEST_CASE("http_server_config errors", "[web_config]") {
  CHECK(ErrorFor("http_server_config:\n  headers:\n    Server: uwsgi\n") ==
        "http_server_config.headers.Server: this header cannot be set; use "
        "Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection "
        "or Content-Security-Policy (line 3)");
  CHECK(ErrorFor("http_server_config:\n  headers:\n    x-frame-options: deny\n").find(
            "this header cannot be set") != std::string::npos);
  CHECK(ErrorFor("http_server_config:\n  headers:\n    X-Frame-Options: allow\n") ==
        "http_server_config.headers.X-Frame-Options 'allow': must be deny or sameorigin "
        "(line 3)");
  CHECK(ErrorFor("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n") ==
        "http_server_config.headers.X-Content-Type-Options 'sniff': must be nosniff (line 3)");
  CHECK(ErrorFor("http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\r\\nSet-Cookie: a\"\n") ==
        "http_server_config.headers.X-XSS-Protection: control characters are not allowed in a "
        "header value (line 3)");
  CHECK(ErrorFor("http_server_config:\n  http2: sometimes\n") ==
        "http_server_config.http2 'sometimes': must be true or false (line 2)");
  CHECK(ErrorFor("http_server_config:\n  header: {}\n") ==
        "http_server_config.header: unknown key; use headers or http2 (line 2)");
  CHECK(ErrorFor("http_server_config:\n  headers: [X-Frame-Options]\n") ==
        "http_server_config.headers: must be a mapping of keys to values (line 2)");
}

TEST_CASE("basic_auth_users: user to bcrypt hash, $2y$, $2b$ and $2a$", "[web_config]") {
  const std::string b = std::string("$2b$") + (kHash + 4);
  const std::string a = std::string("$2a$04$") + (kHash + 7);
  const WebConfig c = Parsed(std::string("basic_auth_users:\n  alice: ") + kHash +
                             "\n  bob: '" + b + "'\n  \"carol smith\": " + a + "\n");
  CHECK(c.users == std::map<std::string, std::string>{
                       {"alice", kHash}, {"bob", b}, {"carol smith", a}});
}

TEST_CASE("basic_auth_users errors", "[web_config]") {
  const std::string bad_hash =
      "not a bcrypt hash: expected $2y$, $2b$ or $2a$, a two-digit cost and 53 characters of "
      "salt and hash (htpasswd -nBC 10 USER makes one)";
  CHECK(ErrorFor("basic_auth_users:\n  alice: secret\n") ==
        "basic_auth_users.alice: " + bad_hash + " (line 2)");
  CHECK(ErrorFor("basic_auth_users:\n  alice: $1$abc$def\n").find(bad_hash) != std::string::npos);
  CHECK(ErrorFor(std::string("basic_auth_users:\n  alice: ") + std::string(kHash).substr(0, 59) +
                 "\n")
            .find(bad_hash) != std::string::npos);
  CHECK(ErrorFor(std::string("basic_auth_users:\n  alice: $2y$10$") +
                 std::string(53, '!') + "\n")
            .find(bad_hash) != std::string::npos);
  CHECK(ErrorFor(std::string("basic_auth_users:\n  alice: $2y$03$") + (kHash + 7) + "\n") ==
        "basic_auth_users.alice: bcrypt cost 3 is outside 4-16 (each check at cost 16 already "
        "takes seconds) (line 2)");
  CHECK(ErrorFor(std::string("basic_auth_users:\n  alice: $2y$17$") + (kHash + 7) + "\n")
            .find("bcrypt cost 17 is outside 4-16") != std::string::npos);
  CHECK(ErrorFor("basic_auth_users:\n  alice:\n") ==
        "basic_auth_users.alice: " + bad_hash + " (line 2)");
  CHECK(ErrorFor(std::string("basic_auth_users:\n  'a:b': ") + kHash + "\n") ==
        "basic_auth_users 'a:b': a user name cannot contain ':' or control characters (Basic "
        "auth could never match it) (line 2)");
  CHECK(ErrorFor(std::string("basic_auth_users:\n  '': ") + kHash + "\n") ==
        "basic_auth_users: a user name cannot be empty (line 2)");
  CHECK(ErrorFor(std::string("basic_auth_users:\n  alice: ") + kHash + "\n  alice: " + kHash +
                 "\n") == "basic_auth_users.alice: key given twice (line 3)");
  CHECK(ErrorFor("basic_auth_users:\n  alice: [a]\n") ==
        "basic_auth_users.alice: must be a single value (line 2)");
  CHECK(ErrorFor("basic_auth_users:\n  [alice]: x\n") ==
        "basic_auth_users: keys must be plain strings (line 2)");
}

TEST_CASE("the file as a whole is strict", "[web_config]") {
  CHECK(ErrorFor("tls_config: {}\n") ==
        "tls_config: unknown key; use tls_server_config, http_server_config or "
        "basic_auth_users (line 1)");
  CHECK(ErrorFor("- a\n- b\n") ==
        "the file must be a YAML mapping (tls_server_config, http_server_config, "
        "basic_auth_users) (line 1)");
  CHECK(ErrorFor("just words\n").find("the file must be a YAML mapping") == 0);
  CHECK(ErrorFor("basic_auth_users: {}\nbasic_auth_users: {}\n") ==
        "basic_auth_users: key given twice (line 2)");
  CHECK(ErrorFor("tls_server_config:\n  cert_file: [unclosed\n").find("not valid YAML: ") == 0);
  CHECK(ErrorFor("a: b\n c: d\n").find("not valid YAML: ") == 0);
  CHECK(ErrorFor("tls_server_config: {}\n---\nbasic_auth_users: {}\n") ==
        "the file holds more than one YAML document ('---'); keep one");
  CHECK(ErrorFor(std::string("\xff\xfe\x00", 3)).find("not valid YAML") == 0);
}

TEST_CASE("LoadWebConfig reads the file and resolves against its directory", "[web_config]") {
  char dir[] = "/tmp/web-config-test-XXXXXX";
  REQUIRE(mkdtemp(dir));
  const std::string path = std::string(dir) + "/web.yml";
  WebConfig c;
  std::string error, content;
  CHECK_FALSE(LoadWebConfig(path, &c, &error));
  CHECK(error == "cannot open: no such file or directory");
  FILE* f = fopen(path.c_str(), "w");
  REQUIRE(f);
  fputs(kTls.c_str(), f);
  fclose(f);
  REQUIRE(LoadWebConfig(path, &c, &error, &content));
  CHECK(content == kTls);
  CHECK(c.tls->cert_file == std::string(dir) + "/c.pem");
  CHECK_FALSE(LoadWebConfig(dir, &c, &error));
  CHECK(error == "not a regular file");
  unlink(path.c_str());
  rmdir(dir);
}
