// Who may use the endpoint, and the headers every response carries, from
// the web configuration file (web_config.h), as exporter-toolkit applies
// it: the file is looked at again before every request and re-read when it
// changed (file_watch.h), so a new password or header applies without a
// restart; a file broken at run time makes every request answer 500 (the
// error logged once) until it is fixed.
//
// Basic auth never blocks the loop: a result in the cache (basic_auth.h)
// is answered at once; otherwise the bcrypt check goes to the VerifyPool
// and the session pauses (Verdict kWait) until this object, as the loop's
// CompletionSource, reports the outcome; with the pool's queue full the
// request is answered 429 at once. Unknown users are checked against a
// fixed hash, so the time taken does not tell which users exist.
//
// With tls_server_config, it also makes the TLS context (tls.h) that new
// connections use, again whenever the file or the certificate, key or
// client CA files change (rotation without a restart). A context that
// cannot be made from changed files leaves the last good one serving
// handshakes, and requests are answered 500 until the files are fixed.
//
// Everything here runs on the server thread, except the pool's threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "basic_auth.h"
#include "connection.h"
#include "file_watch.h"
#include "http_session.h"
#include "tls.h"
#include "verify_pool.h"
#include "web_config.h"

namespace uwsgi_prometheus {

// The hash unknown users are checked against: exporter-toolkit's stand-in
// (a cost 10 bcrypt hash) with the highest cost among `users` (validated
// bcrypt hashes), so that an unknown user takes as long as the slowest
// known one; at cost 10 without users.
std::string StandInHash(const std::map<std::string, std::string>& users);

class WebAccess final : public HttpGuard, public CompletionSource, public TlsContextSource {
 public:
  using LogFn = std::function<void(const std::string&)>;

  WebAccess() = default;

  // Start-up: reads and checks the file at `path`. Returns false with the
  // problem ("basic_auth_users.alice: not a bcrypt hash ... (line 3)").
  bool Load(const std::string& path, std::string* error);
  const std::string& path() const { return file_.path(); }
  const WebConfig& config() const { return config_; }

  // Set before the server thread starts. `stats` gets the auth counters.
  void SetPool(VerifyPool* pool);
  void SetLog(LogFn log) { log_ = std::move(log); }
  void SetStats(HttpStats* stats) { stats_ = stats; }

  // HttpGuard.
  Verdict Check(const HttpRequest& request, size_t slot, uint64_t* ticket,
                HttpResponse* refusal) override;
  Verdict Resumed(uint64_t outcome, uint64_t ticket, HttpResponse* refusal) override;
  // The configured headers, on every response (a name already present in
  // the response is left alone).
  void AddHeaders(HttpResponse* response) const override;

  // TlsContextSource: looks for changed files first. Null without TLS.
  TlsContext* CurrentTlsContext() override;

  // CompletionSource: the pool's finished checks, cached, then reported.
  int fd() const override { return pool_ ? pool_->fd() : -1; }
  void Drain(const ResumeFn& resume) override;

 private:
  // A check in the pool, then (done) finished and waiting for Resumed(),
  // which allows it only if `user` still has the `hash` that was checked.
  struct Pending {
    uint64_t ticket;
    AuthCache::Key key;
    bool known_user;
    bool done;
    std::string user;
    std::string hash;
  };
  // Finished checks kept for Resumed(); a connection closed in between never
  // asks, so the oldest beyond this are dropped (and would be refused).
  static constexpr size_t kMaxDone = 256;

  void Refresh();
  bool Changed();
  bool Reload(std::string* error);
  bool LoadTls(const TlsServerConfig& tls, std::string* error);
  void Broken(const std::string& error);
  void Refuse(int status, HttpResponse* refusal) const;
  void Count(std::atomic<uint64_t> HttpStats::*counter) const;
  bool StillAllowed(uint64_t ticket, bool matched);
  void DropOldDone();

  FileWatch file_;
  WebConfig config_;                         // the last good configuration
  std::string stand_in_hash_;                // for unknown users, from config_
  std::vector<FileWatch> tls_files_;         // cert, key and client CA files in use
  std::unique_ptr<TlsContext> tls_context_;  // made from them
  bool tls_ = false;                         // the endpoint's scheme, fixed at start-up
  bool loaded_ = false;                      // Load() succeeded
  bool broken_ = false;                      // the file changed and is not usable: answer 500
  std::string last_error_;                   // logged; cleared when the file is good again
  AuthCache cache_;
  VerifyPool* pool_ = nullptr;
  std::vector<Pending> pending_;  // checks in the pool or done, oldest first
  uint64_t last_ticket_ = 0;
  LogFn log_;
  HttpStats* stats_ = nullptr;
};

}  // namespace uwsgi_prometheus
