#include "web_config.h"

#include <yaml.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "file_watch.h"

namespace uwsgi_prometheus {
namespace {

// Go's tls.CipherSuites() names (Go 1.19, which Debian 12's exporters are
// built with); exporter-toolkit accepts these and no others.
constexpr const char* kTls13Suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                        "TLS_CHACHA20_POLY1305_SHA256"};
constexpr const char* kTls12Suites[] = {
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
};

constexpr std::pair<const char*, TlsVersion> kVersions[] = {{"TLS10", TlsVersion::kTls10},
                                                            {"TLS11", TlsVersion::kTls11},
                                                            {"TLS12", TlsVersion::kTls12},
                                                            {"TLS13", TlsVersion::kTls13}};

constexpr std::pair<const char*, TlsCurve> kCurves[] = {{"CurveP256", TlsCurve::kP256},
                                                        {"CurveP384", TlsCurve::kP384},
                                                        {"CurveP521", TlsCurve::kP521},
                                                        {"X25519", TlsCurve::kX25519}};

// "RequireClientCert" is exporter-toolkit's old spelling, still accepted.
constexpr std::pair<const char*, ClientAuth> kClientAuths[] = {
    {"NoClientCert", ClientAuth::kNoClientCert},
    {"RequestClientCert", ClientAuth::kRequestClientCert},
    {"RequireAnyClientCert", ClientAuth::kRequireAnyClientCert},
    {"RequireClientCert", ClientAuth::kRequireAnyClientCert},
    {"VerifyClientCertIfGiven", ClientAuth::kVerifyClientCertIfGiven},
    {"RequireAndVerifyClientCert", ClientAuth::kRequireAndVerifyClientCert}};

// exporter-toolkit's settable headers; an empty list allows any value.
struct HeaderRule {
  const char* name;
  std::vector<const char*> values;
};
const HeaderRule kHeaderRules[] = {{"Content-Security-Policy", {}},
                                   {"Strict-Transport-Security", {}},
                                   {"X-Content-Type-Options", {"nosniff"}},
                                   {"X-Frame-Options", {"deny", "sameorigin"}},
                                   {"X-XSS-Protection", {}}};

template <typename Table>
std::string Names(const Table& table) {
  std::string out;
  const size_t n = std::size(table);
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += i + 1 == n ? " or " : ", ";
    out += table[i].first;
  }
  return out;
}

std::string_view Text(const yaml_node_t* node) {
  return {reinterpret_cast<const char*>(node->data.scalar.value), node->data.scalar.length};
}

bool IsNull(const yaml_node_t* node) {
  if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
    return false;
  }
  const std::string_view t = Text(node);
  return t.empty() || t == "~" || t == "null" || t == "Null" || t == "NULL";
}

bool IsBcryptChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '/';
}

// "" when `hash` is a bcrypt hash libxcrypt verifies, else the reason.
std::string BcryptProblem(std::string_view hash) {
  const bool prefix = hash.size() >= 7 && hash[0] == '$' && hash[1] == '2' &&
                      (hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y') && hash[3] == '$' &&
                      hash[6] == '$';
  if (!prefix || hash.size() != 60 || !std::all_of(hash.begin() + 7, hash.end(), IsBcryptChar) ||
      hash[4] < '0' || hash[4] > '9' || hash[5] < '0' || hash[5] > '9') {
    return "not a bcrypt hash: expected $2y$, $2b$ or $2a$, a two-digit cost and 53 characters "
           "of salt and hash (htpasswd -nBC 10 USER makes one)";
  }
  const int cost = (hash[4] - '0') * 10 + (hash[5] - '0');
  if (cost < 4 || cost > kMaxBcryptCost) {
    return "bcrypt cost " + std::to_string(cost) + " is outside 4-" +
           std::to_string(kMaxBcryptCost) + " (each check at cost 16 already takes seconds)";
  }
  return "";
}

std::string JoinDir(std::string_view dir, std::string_view path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return std::string(path);
  std::string out(dir);
  if (out.back() != '/') out += '/';
  out.append(path);
  return out;
}

class Parser {
 public:
  Parser(yaml_document_t* doc, std::string_view dir, std::string* error)
      : doc_(doc), dir_(dir), error_(error) {}

  bool Top(const yaml_node_t* root, WebConfig* config);

 private:
  using PairFn = std::function<bool(const std::string& key, const yaml_node_t* value)>;

  const yaml_node_t* Node(int index) { return yaml_document_get_node(doc_, index); }
  bool Fail(const yaml_node_t* node, const std::string& path, std::string_view reason);
  bool FailValue(const yaml_node_t* node, const std::string& path, std::string_view reason);
  bool Pairs(const yaml_node_t* map, const std::string& path, const PairFn& fn);
  bool Scalar(const yaml_node_t* node, const std::string& path, std::string* out);
  bool Bool(const yaml_node_t* node, const std::string& path, bool* out);
  bool ScalarList(const yaml_node_t* node, const std::string& path, std::vector<std::string>* out);
  template <typename Table, typename T>
  bool Enum(const yaml_node_t* node, const std::string& path, const Table& table,
            std::string_view what, T* out);
  bool Tls(const yaml_node_t* node, std::optional<TlsServerConfig>* out);
  bool TlsKey(const std::string& key, const yaml_node_t* value, TlsServerConfig* tls,
              bool* mentioned);
  bool TlsLists(const std::string& key, const yaml_node_t* value, TlsServerConfig* tls);
  bool TlsChecks(const yaml_node_t* node, TlsServerConfig* tls);
  bool Http(const yaml_node_t* node, WebConfig* config);
  bool Headers(const yaml_node_t* node, WebConfig* config);
  bool Users(const yaml_node_t* node, WebConfig* config);

  yaml_document_t* doc_;
  std::string_view dir_;
  std::string* error_;
  const yaml_node_t* key_ = nullptr;  // the key whose value is being read
};

bool Parser::Fail(const yaml_node_t* node, const std::string& path, std::string_view reason) {
  *error_ = path;
  if (!path.empty()) *error_ += ": ";
  error_->append(reason);
  if (node) *error_ += " (line " + std::to_string(node->start_mark.line + 1) + ")";
  return false;
}

// As Fail, with the scalar's value quoted after the path.
bool Parser::FailValue(const yaml_node_t* node, const std::string& path, std::string_view reason) {
  return Fail(node, path + " '" + std::string(Text(node)) + "'", reason);
}

bool Parser::Pairs(const yaml_node_t* map, const std::string& path, const PairFn& fn) {
  if (IsNull(map)) return true;
  if (map->type != YAML_MAPPING_NODE) return Fail(map, path, "must be a mapping of keys to values");
  std::set<std::string> seen;
  for (const yaml_node_pair_t* p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
       ++p) {
    const yaml_node_t* key = Node(p->key);
    const yaml_node_t* value = Node(p->value);
    if (!key || !value) return Fail(map, path, "malformed mapping");
    if (key->type != YAML_SCALAR_NODE) return Fail(key, path, "keys must be plain strings");
    const std::string name(Text(key));
    const std::string where = path.empty() ? name : path + "." + name;
    if (!seen.insert(name).second) return Fail(key, where, "key given twice");
    key_ = key;
    if (!fn(name, value)) return false;
  }
  return true;
}

bool Parser::Scalar(const yaml_node_t* node, const std::string& path, std::string* out) {
  if (IsNull(node)) {
    out->clear();
    return true;
  }
  if (node->type != YAML_SCALAR_NODE) return Fail(node, path, "must be a single value");
  out->assign(Text(node));
  return true;
}

bool Parser::Bool(const yaml_node_t* node, const std::string& path, bool* out) {
  static constexpr const char* kTrue[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                          "on",   "On",   "ON",   "y",   "Y"};
  static constexpr const char* kFalse[] = {"false", "False", "FALSE", "no", "No", "NO",
                                           "off",   "Off",   "OFF",   "n",  "N"};
  if (node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
    const std::string_view t = Text(node);
    for (const char* word : kTrue) {
      if (t == word) {
        *out = true;
        return true;
      }
    }
    for (const char* word : kFalse) {
      if (t == word) {
        *out = false;
        return true;
      }
    }
  }
  if (node->type != YAML_SCALAR_NODE) return Fail(node, path, "must be true or false");
  return FailValue(node, path, "must be true or false");
}

bool Parser::ScalarList(const yaml_node_t* node, const std::string& path,
                        std::vector<std::string>* out) {
  out->clear();
  if (IsNull(node)) return true;
  if (node->type != YAML_SEQUENCE_NODE) return Fail(node, path, "must be a list");
  for (const yaml_node_item_t* i = node->data.sequence.items.start;
       i < node->data.sequence.items.top; ++i) {
    const yaml_node_t* item = Node(*i);
    if (!item || item->type != YAML_SCALAR_NODE) {
      return Fail(item ? item : node, path, "list items must be single values");
    }
    out->emplace_back(Text(item));
  }
  return true;
}

template <typename Table, typename T>
bool Parser::Enum(const yaml_node_t* node, const std::string& path, const Table& table,
                  std::string_view what, T* out) {
  std::string text;
  if (!Scalar(node, path, &text)) return false;
  for (const auto& [name, value] : table) {
    if (text == name) {
      *out = value;
      return true;
    }
  }
  return FailValue(node, path, "unknown " + std::string(what) + "; use " + Names(table));
}

bool Parser::Top(const yaml_node_t* root, WebConfig* config) {
  *config = WebConfig();
  if (!root || IsNull(root)) return true;  // an empty file: plain HTTP, no authentication
  if (root->type != YAML_MAPPING_NODE) {
    return Fail(root, "",
                "the file must be a YAML mapping (tls_server_config, "
                "http_server_config, basic_auth_users)");
  }
  return Pairs(root, "", [&](const std::string& key, const yaml_node_t* value) {
    if (key == "tls_server_config") return Tls(value, &config->tls);
    if (key == "http_server_config") return Http(value, config);
    if (key == "basic_auth_users") return Users(value, config);
    return Fail(key_, key,
                "unknown key; use tls_server_config, http_server_config or basic_auth_users");
  });
}

bool Parser::Tls(const yaml_node_t* node, std::optional<TlsServerConfig>* out) {
  TlsServerConfig tls;
  bool mentioned = false;  // any of the keys that turn TLS on
  const bool ok =
      Pairs(node, "tls_server_config", [&](const std::string& key, const yaml_node_t* value) {
        return TlsKey(key, value, &tls, &mentioned);
      });
  if (!ok) return false;
  for (std::string* file : {&tls.cert_file, &tls.key_file, &tls.client_ca_file}) {
    *file = JoinDir(dir_, *file);
  }
  if (!mentioned) {
    out->reset();
    return true;
  }
  if (!TlsChecks(node, &tls)) return false;
  *out = std::move(tls);
  return true;
}

bool Parser::TlsKey(const std::string& key, const yaml_node_t* value, TlsServerConfig* tls,
                    bool* mentioned) {
  const std::string path = "tls_server_config." + key;
  std::string* file = key == "cert_file"        ? &tls->cert_file
                      : key == "key_file"       ? &tls->key_file
                      : key == "client_ca_file" ? &tls->client_ca_file
                                                : nullptr;
  if (file) {
    if (!Scalar(value, path, file)) return false;
    *mentioned |= !file->empty();
    return true;
  }
  if (key == "client_auth_type") {
    std::string text;
    if (!Scalar(value, path, &text)) return false;
    *mentioned |= !text.empty();
    return text.empty() || Enum(value, path, kClientAuths, "client auth type", &tls->client_auth);
  }
  if (key == "min_version") return Enum(value, path, kVersions, "TLS version", &tls->min_version);
  if (key == "max_version") return Enum(value, path, kVersions, "TLS version", &tls->max_version);
  if (key == "prefer_server_cipher_suites") {
    return Bool(value, path, &tls->prefer_server_cipher_suites);
  }
  if (key == "cipher_suites" || key == "curve_preferences") return TlsLists(key, value, tls);
  return Fail(key_, path,
              "unknown key; use cert_file, key_file, client_auth_type, client_ca_file, "
              "min_version, max_version, cipher_suites, curve_preferences or "
              "prefer_server_cipher_suites");
}

bool Parser::TlsLists(const std::string& key, const yaml_node_t* value, TlsServerConfig* tls) {
  const std::string path = "tls_server_config." + key;
  std::vector<std::string> names;
  if (!ScalarList(value, path, &names)) return false;
  for (const std::string& name : names) {
    if (key == "curve_preferences") {
      auto it = std::find_if(std::begin(kCurves), std::end(kCurves),
                             [&](const auto& c) { return name == c.first; });
      if (it == std::end(kCurves)) {
        return Fail(value, path + " '" + name + "'", "unknown curve; use " + Names(kCurves));
      }
      tls->curve_preferences.push_back(it->second);
      continue;
    }
    if (IsTls13CipherSuite(name)) continue;  // as Go: TLS 1.3 suites are not configurable
    if (std::none_of(std::begin(kTls12Suites), std::end(kTls12Suites),
                     [&](const char* s) { return name == s; })) {
      return Fail(value, path + " '" + name + "'",
                  "unknown cipher suite; use Go's names, such as "
                  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    }
    tls->cipher_suites.push_back(name);
  }
  if (key == "cipher_suites" && !names.empty() && tls->cipher_suites.empty()) {
    tls->cipher_suites.push_back("");  // only TLS 1.3 names: checked in TlsChecks
  }
  return true;
}

// What exporter-toolkit refuses once the section is read, and what would
// make every handshake fail.
bool Parser::TlsChecks(const yaml_node_t* node, TlsServerConfig* tls) {
  const std::string path = "tls_server_config";
  if (tls->cert_file.empty()) return Fail(node, path, "missing cert_file");
  if (tls->key_file.empty()) return Fail(node, path, "missing key_file");
  const bool verifies = tls->client_auth == ClientAuth::kVerifyClientCertIfGiven ||
                        tls->client_auth == ClientAuth::kRequireAndVerifyClientCert;
  if (!tls->client_ca_file.empty() && tls->client_auth == ClientAuth::kNoClientCert) {
    return Fail(node, path + ".client_ca_file",
                "a client CA is set without a client_auth_type that asks for certificates; "
                "set client_auth_type, e.g. RequireAndVerifyClientCert");
  }
  if (verifies && tls->client_ca_file.empty()) {
    return Fail(node, path + ".client_auth_type",
                std::string(ClientAuthName(tls->client_auth)) +
                    " verifies client certificates: set client_ca_file to the CA that signs them");
  }
  if (tls->min_version > tls->max_version) {
    return Fail(node, path,
                std::string("min_version ") + TlsVersionName(tls->min_version) +
                    " is above max_version " + TlsVersionName(tls->max_version));
  }
  if (tls->cipher_suites.size() == 1 && tls->cipher_suites[0].empty()) {
    tls->cipher_suites.clear();
    if (tls->min_version < TlsVersion::kTls13) {
      return Fail(node, path + ".cipher_suites",
                  "lists only TLS 1.3 suites, which are not configurable; TLS 1.0-1.2 "
                  "handshakes would have no suite: list TLS 1.2 suites or set min_version: TLS13");
    }
  }
  return true;
}

bool Parser::Http(const yaml_node_t* node, WebConfig* config) {
  return Pairs(node, "http_server_config", [&](const std::string& key, const yaml_node_t* value) {
    if (key == "headers") return Headers(value, config);
    if (key == "http2") return Bool(value, "http_server_config.http2", &config->http2);
    return Fail(key_, "http_server_config." + key, "unknown key; use headers or http2");
  });
}

bool Parser::Headers(const yaml_node_t* node, WebConfig* config) {
  config->headers.clear();
  const bool ok =
      Pairs(node, "http_server_config.headers", [&](const std::string& name, const yaml_node_t* v) {
        const std::string path = "http_server_config.headers." + name;
        auto rule = std::find_if(std::begin(kHeaderRules), std::end(kHeaderRules),
                                 [&](const HeaderRule& r) { return name == r.name; });
        if (rule == std::end(kHeaderRules)) {
          return Fail(key_, path,
                      "this header cannot be set; use Strict-Transport-Security, "
                      "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection or "
                      "Content-Security-Policy");
        }
        std::string value;
        if (!Scalar(v, path, &value)) return false;
        const bool allowed =
            rule->values.empty() || std::any_of(rule->values.begin(), rule->values.end(),
                                                [&](const char* a) { return value == a; });
        if (!allowed) {
          return FailValue(
              v, path, rule->values.size() == 1 ? "must be nosniff" : "must be deny or sameorigin");
        }
        if (std::any_of(value.begin(), value.end(), [](char c) {
              return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f;
            })) {
          return Fail(v, path, "control characters are not allowed in a header value");
        }
        config->headers.emplace_back(name, value);
        return true;
      });
  std::sort(config->headers.begin(), config->headers.end());
  return ok;
}

bool Parser::Users(const yaml_node_t* node, WebConfig* config) {
  return Pairs(node, "basic_auth_users", [&](const std::string& user, const yaml_node_t* value) {
    const std::string path = "basic_auth_users." + user;
    if (user.empty()) return Fail(value, "basic_auth_users", "a user name cannot be empty");
    if (user.find(':') != std::string::npos || std::any_of(user.begin(), user.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        })) {
      return Fail(value, "basic_auth_users '" + user + "'",
                  "a user name cannot contain ':' or control characters (Basic auth could "
                  "never match it)");
    }
    std::string hash;
    if (!Scalar(value, path, &hash)) return false;
    const std::string problem = BcryptProblem(hash);
    if (!problem.empty()) return Fail(value, path, problem);
    config->users[user] = hash;
    return true;
  });
}

// libyaml's parser and document, released on every path.
struct YamlDocument {
  YamlDocument() { yaml_parser_initialize(&parser); }
  ~YamlDocument() {
    if (loaded) yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
  }
  YamlDocument(const YamlDocument&) = delete;
  YamlDocument& operator=(const YamlDocument&) = delete;

  yaml_parser_t parser;
  yaml_document_t doc;
  bool loaded = false;
};

std::string YamlError(const yaml_parser_t& parser) {
  std::string out = "not valid YAML: ";
  out += parser.problem ? parser.problem : "syntax error";
  if (parser.context) {
    out += " ";
    out += parser.context;
  }
  out += " (line " + std::to_string(parser.problem_mark.line + 1) + ")";
  return out;
}

}  // namespace

const char* TlsVersionName(TlsVersion version) {
  for (const auto& [name, value] : kVersions) {
    if (value == version) return name;
  }
  return "?";
}

const char* ClientAuthName(ClientAuth auth) {
  for (const auto& [name, value] : kClientAuths) {
    if (value == auth) return name;
  }
  return "?";
}

bool IsTls13CipherSuite(std::string_view name) {
  return std::any_of(std::begin(kTls13Suites), std::end(kTls13Suites),
                     [&](const char* s) { return name == s; });
}

bool ParseWebConfig(std::string_view text, std::string_view dir, WebConfig* config,
                    std::string* error) {
  YamlDocument y;
  yaml_parser_set_input_string(&y.parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  if (!yaml_parser_load(&y.parser, &y.doc)) {
    *error = YamlError(y.parser);
    return false;
  }
  y.loaded = true;
  const yaml_node_t* root = yaml_document_get_root_node(&y.doc);
  WebConfig parsed;
  if (!Parser(&y.doc, dir, error).Top(root, &parsed)) return false;
  // A second document would be ignored by the exporter; here it is a mistake.
  yaml_document_t next;
  if (!yaml_parser_load(&y.parser, &next)) {
    *error = YamlError(y.parser);
    return false;
  }
  const bool more = yaml_document_get_root_node(&next) != nullptr;
  yaml_document_delete(&next);
  if (more) {
    *error = "the file holds more than one YAML document ('---'); keep one";
    return false;
  }
  *config = std::move(parsed);
  return true;
}

bool LoadWebConfig(const std::string& path, WebConfig* config, std::string* error,
                   std::string* content) {
  std::string local;
  std::string& bytes = content ? *content : local;
  if (!ReadSmallFile(path, kMaxWebConfigBytes, &bytes, error)) return false;
  return ParseWebConfig(bytes, DirectoryOf(path), config, error);
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace uwsgi_prometheus
