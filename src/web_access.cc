#include "web_access.h"

#include <openssl/crypto.h>

#include <algorithm>

namespace uwsgi_prometheus {
namespace {

// exporter-toolkit's stand-in for unknown users: the bcrypt hash of
// "fakepassword" at cost 10, so that they take as long as known ones.
constexpr const char* kFakeHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

constexpr const char* kTextPlain = "text/plain; charset=utf-8";

// Zeroes a string's bytes when it goes out of scope (a password).
struct CleanseOnExit {
  std::string* bytes;
  ~CleanseOnExit() { OPENSSL_cleanse(bytes->data(), bytes->size()); }
};

}  // namespace

std::string StandInHash(const std::map<std::string, std::string>& users) {
  std::string hash = kFakeHash;
  int max_cost = 0;
  for (const auto& user : users) {
    const std::string& h = user.second;  // "$2y$NN$...", checked by ParseWebConfig
    if (h.size() > 6) max_cost = std::max(max_cost, (h[4] - '0') * 10 + (h[5] - '0'));
  }
  // Any salt and digest at a cost make a valid hash of that cost, which no
  // password is found to match.
  if (max_cost > 0) {
    hash[4] = static_cast<char>('0' + max_cost / 10);
    hash[5] = static_cast<char>('0' + max_cost % 10);
  }
  return hash;
}

bool WebAccess::Load(const std::string& path, std::string* error) {
  file_ = FileWatch(path, kMaxWebConfigBytes);
  if (!Reload(error)) return false;
  tls_ = config_.tls.has_value();
  loaded_ = true;
  return true;
}

void WebAccess::SetPool(VerifyPool* pool) {
  pool_ = pool;
  pending_.clear();
  pending_.reserve(64);
}

// Reads and parses the file; on success it becomes the configuration.
bool WebAccess::Reload(std::string* error) {
  std::string content;
  WebConfig parsed;
  if (!file_.Read(&content, error) ||
      !ParseWebConfig(content, DirectoryOf(file_.path()), &parsed, error)) {
    return false;
  }
  if (loaded_ && parsed.tls.has_value() != tls_) {
    *error = parsed.tls ? "tls_server_config now turns TLS on, but the endpoint serves plain HTTP "
                          "since start-up; restart uWSGI to switch"
                        : "tls_server_config no longer turns TLS on, but the endpoint serves "
                          "HTTPS since start-up; restart uWSGI to switch";
    return false;
  }
  if (parsed.tls && !LoadTls(*parsed.tls, error)) return false;
  config_ = std::move(parsed);
  stand_in_hash_ = StandInHash(config_.users);
  return true;
}

// Reads the files tls_server_config names and makes a context from them,
// which replaces the one in use only if all went well. The files are
// watched from now on either way: a failure is tried again once they
// change (or at once while one cannot be read).
bool WebAccess::LoadTls(const TlsServerConfig& tls, std::string* error) {
  std::vector<FileWatch>& watches = tls_files_;
  watches.clear();
  TlsFiles files;
  const std::pair<const char*, const std::string*> named[] = {
      {"cert_file", &tls.cert_file},
      {"key_file", &tls.key_file},
      {"client_ca_file", &tls.client_ca_file}};
  std::string* contents[] = {&files.cert, &files.key, &files.client_ca};
  for (size_t i = 0; i < 3; ++i) {
    if (named[i].second->empty()) continue;
    watches.emplace_back(*named[i].second, kMaxWebConfigBytes);
    if (!watches.back().Read(contents[i], error)) {
      *error = std::string("tls_server_config.") + named[i].first + " '" + *named[i].second +
               "': " + *error;
      return false;
    }
  }
  std::unique_ptr<TlsContext> context = TlsContext::Build(tls, files, error);
  OPENSSL_cleanse(files.key.data(), files.key.size());  // the context holds the key
  if (!context) return false;
  tls_context_ = std::move(context);
  return true;
}

bool WebAccess::Changed() {
  bool changed = file_.Changed();
  for (FileWatch& w : tls_files_) changed = w.Changed() || changed;
  return changed;
}

TlsContext* WebAccess::CurrentTlsContext() {
  Refresh();
  return tls_context_.get();
}

void WebAccess::Refresh() {
  if (!Changed()) return;
  std::string error;
  if (!Reload(&error)) return Broken(error);
  if (broken_ && log_) log_("--prometheus-web-config " + file_.path() + ": fixed, in use again");
  broken_ = false;
  last_error_.clear();
}

void WebAccess::Broken(const std::string& error) {
  broken_ = true;
  if (error == last_error_) return;
  last_error_ = error;
  if (log_) {
    log_("--prometheus-web-config " + file_.path() + ": " + error +
         "; every request is answered 500 until the file is fixed");
  }
}

void WebAccess::Count(std::atomic<uint64_t> HttpStats::*counter) const {
  if (stats_) (stats_->*counter).fetch_add(1, std::memory_order_relaxed);
}

HttpGuard::Verdict WebAccess::Check(const HttpRequest& request, size_t slot, uint64_t* ticket,
                                    HttpResponse* refusal) {
  Refresh();
  if (broken_) {
    Count(&HttpStats::config_broken);
    Refuse(500, refusal);
    return Verdict::kRefuse;
  }
  if (config_.users.empty()) return Verdict::kAllow;
  std::string user, password;
  const CleanseOnExit wipe{&password};
  if (!ParseBasicAuth(request.authorization, &user, &password) ||
      password.find('\0') != std::string::npos) {
    Count(&HttpStats::auth_missing);
    Refuse(401, refusal);
    return Verdict::kRefuse;
  }
  const auto it = config_.users.find(user);
  const bool known = it != config_.users.end();
  const std::string& hash = known ? it->second : stand_in_hash_;
  const AuthCache::Key key = cache_.KeyFor(user, hash, password);
  if (const auto hit = cache_.Find(key)) {
    if (*hit && known) return Verdict::kAllow;
    Count(&HttpStats::auth_wrong);
    Refuse(401, refusal);
    return Verdict::kRefuse;
  }
  *ticket = ++last_ticket_;
  if (!pool_ || !pool_->Submit(slot, *ticket, password, hash)) {
    Count(&HttpStats::auth_throttled);
    Refuse(429, refusal);
    return Verdict::kRefuse;
  }
  Count(&HttpStats::password_checks);
  pending_.push_back({*ticket, key, known, false, user, hash});
  return Verdict::kWait;
}

// The configuration may have changed while the password was checked: it is
// looked at again, and the check counts only for the user and hash it was
// made against.
HttpGuard::Verdict WebAccess::Resumed(uint64_t outcome, uint64_t ticket, HttpResponse* refusal) {
  if (VerifyPool::TicketOf(outcome) != ticket) return Verdict::kWait;
  Refresh();
  if (broken_) {
    StillAllowed(ticket, false);  // forgets the check
    Count(&HttpStats::config_broken);
    Refuse(500, refusal);
    return Verdict::kRefuse;
  }
  if (StillAllowed(ticket, VerifyPool::MatchedOf(outcome))) return Verdict::kAllow;
  Count(&HttpStats::auth_wrong);
  Refuse(401, refusal);
  return Verdict::kRefuse;
}

// Forgets the finished check `ticket`; true if it matched and its user
// still has the hash it was checked against (or basic auth is now off).
bool WebAccess::StillAllowed(uint64_t ticket, bool matched) {
  const auto it = std::find_if(pending_.begin(), pending_.end(),
                               [ticket](const Pending& p) { return p.done && p.ticket == ticket; });
  if (it == pending_.end()) return false;
  const std::string user = std::move(it->user);
  const std::string hash = std::move(it->hash);
  pending_.erase(it);
  if (config_.users.empty()) return true;
  const auto now = config_.users.find(user);
  return matched && now != config_.users.end() && now->second == hash;
}

void WebAccess::DropOldDone() {
  size_t done = 0;
  for (const Pending& p : pending_) done += p.done;
  for (auto it = pending_.begin(); done > kMaxDone && it != pending_.end();) {
    if (it->done) {
      it = pending_.erase(it);
      --done;
    } else {
      ++it;
    }
  }
}

// Every finished check is cached (also those whose connection has gone),
// then handed on with `matched` meaning "allowed": an unknown user never is.
void WebAccess::Drain(const ResumeFn& resume) {
  if (!pool_) return;
  pool_->Drain([this, &resume](size_t slot, uint64_t outcome) {
    const uint64_t ticket = VerifyPool::TicketOf(outcome);
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [ticket](const Pending& p) { return !p.done && p.ticket == ticket; });
    if (it == pending_.end()) return;
    const bool allowed = VerifyPool::MatchedOf(outcome) && it->known_user;
    cache_.Insert(it->key, allowed);
    it->done = true;  // until Resumed()
    resume(slot, VerifyPool::Outcome(ticket, allowed));
  });
  DropOldDone();
}

void WebAccess::Refuse(int status, HttpResponse* refusal) const {
  refusal->status = status;
  refusal->content_type = kTextPlain;
  refusal->extra_headers.clear();
  // As Go's http.Error, which exporter-toolkit answers with.
  refusal->extra_headers.emplace_back("X-Content-Type-Options", "nosniff");
  switch (status) {
    case 401:
      refusal->body = "Unauthorized\n";
      refusal->extra_headers.emplace_back("WWW-Authenticate", "Basic");
      break;
    case 429:
      refusal->body = "Too Many Requests\n";
      refusal->extra_headers.emplace_back("Retry-After", "1");
      break;
    default:
      refusal->body = "Internal Server Error\n";
      break;
  }
}

void WebAccess::AddHeaders(HttpResponse* response) const {
  for (const auto& [name, value] : config_.headers) {
    const bool present = std::any_of(response->extra_headers.begin(), response->extra_headers.end(),
                                     [&name = name](const auto& h) { return h.first == name; });
    if (!present) response->extra_headers.emplace_back(name, value);
  }
}

}  // namespace uwsgi_prometheus
