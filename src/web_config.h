// The endpoint's web configuration file: the YAML that Prometheus
// exporters take with --web.config.file (exporter-toolkit), with the same
// keys and defaults, parsed strictly (an unknown or repeated key is an
// error) into plain structs. Checks that need no file access happen here;
// loading certificates and keys is tls.h's job.
//
//   tls_server_config:     cert_file, key_file, client_auth_type,
//                          client_ca_file, min_version, max_version,
//                          cipher_suites, curve_preferences,
//                          prefer_server_cipher_suites
//   http_server_config:    headers (five security headers), http2 (ignored)
//   basic_auth_users:      user -> bcrypt hash
//
// Errors read "tls_server_config.min_version 'TLS14': unknown TLS version;
// use TLS10, TLS11, TLS12 or TLS13 (line 4)".
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace uwsgi_prometheus {

enum class ClientAuth : uint8_t {
  kNoClientCert,               // default
  kRequestClientCert,          // asked for, not required, not verified
  kRequireAnyClientCert,       // required, not verified
  kVerifyClientCertIfGiven,    // verified against client_ca_file when sent
  kRequireAndVerifyClientCert  // required and verified
};

enum class TlsVersion : uint8_t { kTls10, kTls11, kTls12, kTls13 };

enum class TlsCurve : uint8_t { kP256, kP384, kP521, kX25519 };

struct TlsServerConfig {
  std::string cert_file;       // absolute, or relative to the working directory
  std::string key_file;        //   when the configuration file's path was
  std::string client_ca_file;  //   (resolved against the file's directory)
  ClientAuth client_auth = ClientAuth::kNoClientCert;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  // IANA names as Go spells them (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
  // TLS 1.0-1.2 suites only: TLS 1.3 names are accepted and left out, as
  // Go does not configure TLS 1.3 suites either. Empty: the defaults.
  std::vector<std::string> cipher_suites;
  std::vector<TlsCurve> curve_preferences;  // empty: the defaults
  bool prefer_server_cipher_suites = true;
};

struct WebConfig {
  // Set when the section turns TLS on (it names a certificate, a key, a
  // client auth type or a client CA); a section with none of those leaves
  // the endpoint on plain HTTP, as exporter-toolkit does.
  std::optional<TlsServerConfig> tls;
  std::vector<std::pair<std::string, std::string>> headers;  // name, value; sorted by name
  bool http2 = true;                         // accepted; the endpoint speaks HTTP/1.1 only
  std::map<std::string, std::string> users;  // user -> bcrypt hash; empty: no authentication
};

// Largest configuration file read, in bytes.
inline constexpr size_t kMaxWebConfigBytes = 1 << 20;
// Highest bcrypt cost accepted: one check at cost 16 takes several seconds.
inline constexpr int kMaxBcryptCost = 16;

// Parses `text`; relative file names resolve against `dir` (the
// configuration file's directory; empty = as given). Returns false with a
// message naming the key, the value and the reason.
bool ParseWebConfig(std::string_view text, std::string_view dir, WebConfig* config,
                    std::string* error);

// Reads and parses the file at `path`. `content`, if set, gets the bytes
// read (also on a parse error).
bool LoadWebConfig(const std::string& path, WebConfig* config, std::string* error,
                   std::string* content = nullptr);

// The directory part of `path`, with its final '/' ("" for a bare name).
std::string DirectoryOf(const std::string& path);

// The names used in the file, for messages.
const char* TlsVersionName(TlsVersion version);
const char* ClientAuthName(ClientAuth auth);

// True for a TLS 1.3 suite name (TLS_AES_128_GCM_SHA256...).
bool IsTls13CipherSuite(std::string_view name);

}  // namespace uwsgi_prometheus
