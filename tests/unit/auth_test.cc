// Basic auth: the header, the result cache, the password check pool with
// real crypt_r, and WebAccess deciding on requests from a real file.
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "basic_auth.h"
#include "file_watch.h"
#include "verify_pool.h"
#include "web_access.h"

using namespace uwsgi_prometheus;

namespace {

// bcrypt at cost 4 of "right" ($2y$) and "other" ($2b$), made with libxcrypt.
const char* const kRight = "$2y$04$fSI9sj/sKZq4bLTWTH9KiuM4Kgfjcp0Atxi/3p3.Bnb/cMpOhT8cK";
const char* const kOther = "$2b$04$Hkmh9RIy/t7pwkTxcHUr2Ox0ZVs02JGyBVJP2Rm2Pdldv2jpHruUa";

std::string Header(const std::string& user_and_password) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out = "Basic ";
  const std::string& in = user_and_password;
  for (size_t i = 0; i < in.size(); i += 3) {
    uint32_t n = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) n |= uint32_t(uint8_t(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= uint8_t(in[i + 2]);
    out += abc[n >> 18 & 63];
    out += abc[n >> 12 & 63];
    out += i + 1 < in.size() ? abc[n >> 6 & 63] : '=';
    out += i + 2 < in.size() ? abc[n & 63] : '=';
  }
  return out;
}

// Waits until the pool reports, then drains it into `outcomes`.
void WaitAndDrain(CompletionSource* source, std::vector<std::pair<size_t, uint64_t>>* outcomes,
                  size_t want) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (outcomes->size() < want && std::chrono::steady_clock::now() < end) {
    pollfd p{source->fd(), POLLIN, 0};
    if (poll(&p, 1, 100) == 1) {
      source->Drain([&](size_t slot, uint64_t outcome) { outcomes->emplace_back(slot, outcome); });
    }
  }
  REQUIRE(outcomes->size() == want);
}

void StartPool(VerifyPool* pool, int threads, size_t max_waiting) {
  VerifyPool::Options options;
  options.threads = threads;
  options.max_waiting = max_waiting;
  std::string error;
  REQUIRE(pool->Start(options, &error));
}

struct TempFile {
  TempFile() {
    char name[] = "/tmp/web-access-test-XXXXXX";
    REQUIRE(mkdtemp(name));
    dir = name;
    path = dir + "/web.yml";
  }
  ~TempFile() {
    unlink(path.c_str());
    rmdir(dir.c_str());
  }
  void Write(const std::string& text) const {
    FILE* f = fopen(path.c_str(), "w");
    REQUIRE(f);
    fputs(text.c_str(), f);
    fclose(f);
  }
  std::string dir, path;
};

}  // namespace

TEST_CASE("Basic credentials are read as Go's Request.BasicAuth reads them", "[auth]") {
  std::string user, password;
  REQUIRE(ParseBasicAuth(Header("alice:s3:cr et"), &user, &password));
  CHECK(user == "alice");
  CHECK(password == "s3:cr et");  // split at the first colon
  REQUIRE(ParseBasicAuth("bASIC " + Header("a:").substr(6), &user, &password));
  CHECK(user == "a");
  CHECK(password.empty());
  REQUIRE(ParseBasicAuth(Header("ab:cd"), &user, &password));  // one '=' of padding
  CHECK(password == "cd");
  for (const std::string bad : {std::string(), std::string("Basic"), std::string("Bearer abc"),
                                std::string("Basic YWxpY2U="),  // no colon
                                std::string("Basic YWxpY2U6eA"),  // missing padding
                                std::string("Basic YW=pY2U6eA=="), std::string("Basic ****"),
                                std::string("Basic  ") + Header("a:b").substr(6)}) {
    INFO(bad);
    CHECK_FALSE(ParseBasicAuth(bad, &user, &password));
  }
}

TEST_CASE("the result cache is keyed by user, hash and password", "[auth]") {
  AuthCache cache;
  const auto key = cache.KeyFor("alice", kRight, "right");
  CHECK_FALSE(cache.Find(key));
  cache.Insert(key, true);
  CHECK(cache.Find(key) == true);
  CHECK_FALSE(cache.Find(cache.KeyFor("alice", kOther, "right")));  // the hash changed
  CHECK_FALSE(cache.Find(cache.KeyFor("alice", kRight, "wrong")));
  CHECK_FALSE(cache.Find(cache.KeyFor("alicer", kRight, "ight")));  // no ambiguous joins
  CHECK(AuthCache().KeyFor("alice", kRight, "right") != key);       // a key per process
}

TEST_CASE("failures never push a success out of the cache", "[auth]") {
  AuthCache cache;
  const auto good = cache.KeyFor("prometheus", kRight, "right");
  cache.Insert(good, true);
  for (int i = 0; i < 1000; ++i) {
    cache.Insert(cache.KeyFor("prometheus", kRight, "wrong" + std::to_string(i)), false);
  }
  CHECK(cache.size() == AuthCache::kEntries);
  CHECK(cache.Find(good) == true);
  CHECK(cache.Find(cache.KeyFor("prometheus", kRight, "wrong999")) == false);  // the latest kept
  CHECK_FALSE(cache.Find(cache.KeyFor("prometheus", kRight, "wrong0")));      // the oldest gone
  SECTION("successes replace failures first, then the least recently used success") {
    for (int i = 0; i < 150; ++i) {
      cache.Insert(cache.KeyFor("u" + std::to_string(i), kRight, "p"), true);
    }
    CHECK(cache.Find(cache.KeyFor("u149", kRight, "p")) == true);
    CHECK_FALSE(cache.Find(cache.KeyFor("prometheus", kRight, "wrong999")));
    CHECK_FALSE(cache.Find(good));
  }
}

TEST_CASE("the pool checks passwords with crypt_r and reports through its fd", "[auth]") {
  VerifyPool pool;
  StartPool(&pool, 2, 4);
  REQUIRE(pool.Submit(3, 10, "right", kRight));
  REQUIRE(pool.Submit(4, 11, "wrong", kRight));
  REQUIRE(pool.Submit(5, 12, "other", kOther));
  REQUIRE(pool.Submit(6, 13, std::string(100, 'x'), kOther));
  std::vector<std::pair<size_t, uint64_t>> outcomes;
  WaitAndDrain(&pool, &outcomes, 4);
  std::sort(outcomes.begin(), outcomes.end());
  CHECK(outcomes == std::vector<std::pair<size_t, uint64_t>>{{3, VerifyPool::Outcome(10, true)},
                                                             {4, VerifyPool::Outcome(11, false)},
                                                             {5, VerifyPool::Outcome(12, true)},
                                                             {6, VerifyPool::Outcome(13, false)}});
  CHECK(pool.in_flight() == 0);
  CHECK_FALSE(pool.Submit(1, 1, std::string("right\0x", 7), kRight));  // a NUL never matches
  pool.Stop();
  CHECK_FALSE(pool.Submit(1, 1, "right", kRight));
}

TEST_CASE("the pool refuses at once beyond its queue", "[auth]") {
  VerifyPool pool;
  StartPool(&pool, 1, 3);
  // The fake hash at cost 10 keeps the thread busy while the queue fills.
  const char* slow = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
  size_t accepted = 0;
  for (int i = 0; i < 20; ++i) accepted += pool.Submit(0, static_cast<uint64_t>(i), "x", slow);
  CHECK(accepted >= 3);
  CHECK(accepted <= 4);  // one running (if taken already) and three waiting
  std::vector<std::pair<size_t, uint64_t>> outcomes;
  WaitAndDrain(&pool, &outcomes, accepted);
}

TEST_CASE("FileWatch sees edits in place within one clock tick", "[auth]") {
  TempFile f;
  f.Write("aaaa");
  FileWatch watch(f.path, 1024);
  std::string content, error;
  REQUIRE(watch.Read(&content, &error));
  CHECK(content == "aaaa");
  CHECK_FALSE(watch.Changed());
  f.Write("bbbb");  // same size, same inode, probably the same mtime
  CHECK(watch.Changed());
  REQUIRE(watch.Read(&content, &error));
  CHECK(content == "bbbb");
  CHECK_FALSE(watch.Changed());
  unlink(f.path.c_str());
  CHECK(watch.Changed());
  CHECK_FALSE(watch.Read(&content, &error));
  CHECK(error == "cannot open: no such file or directory");
  CHECK(watch.Changed());
}

// A WebAccess loaded from a file, with a pool and counters.
struct Guarded {
  explicit Guarded(const std::string& text) {
    f.Write(text);
    std::string error;
    REQUIRE(access.Load(f.path, &error));
    REQUIRE(pool.Start(VerifyPool::Options(), &error));
    access.SetPool(&pool);
    access.SetStats(&stats);
  }
  TempFile f;
  WebAccess access;
  VerifyPool pool;
  HttpStats stats;
};

TEST_CASE("WebAccess: cache hits inline, misses paused for the pool, refusals", "[auth]") {
  Guarded g(std::string("basic_auth_users:\n  prometheus: ") + kRight +
            "\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n");
  TempFile& f = g.f;
  WebAccess& access = g.access;
  HttpStats& stats = g.stats;
  std::vector<std::string> logged;
  access.SetLog([&](const std::string& line) { logged.push_back(line); });
  HttpRequest req;
  HttpResponse resp;
  uint64_t ticket = 0;
  using V = HttpGuard::Verdict;

  // Pauses, then reports the outcome; returns the verdict given on resume.
  auto check = [&](const std::string& credentials) {
    req.authorization = Header(credentials);
    const V first = access.Check(req, 9, &ticket, &resp);
    if (first != V::kWait) return first;
    std::vector<std::pair<size_t, uint64_t>> outcomes;
    WaitAndDrain(&access, &outcomes, 1);
    CHECK(outcomes[0].first == 9);
    CHECK(access.Resumed(outcomes[0].second, ticket + 1, &resp) == V::kWait);  // not ours
    return access.Resumed(outcomes[0].second, ticket, &resp);
  };

  CHECK(check("prometheus:right") == V::kAllow);
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kAllow);  // cached: inline
  CHECK(stats.password_checks == 1);
  CHECK(check("prometheus:wrong") == V::kRefuse);
  CHECK(resp.status == 401);
  CHECK(resp.body == "Unauthorized\n");
  CHECK(check("nobody:fakepassword") == V::kRefuse);  // the fake hash's own password
  CHECK(stats.password_checks == 3);
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kRefuse);  // cached failure
  req.authorization.clear();
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kRefuse);
  CHECK(stats.auth_missing == 1);
  CHECK(stats.auth_wrong == 3);
  HttpResponse ok;
  access.AddHeaders(&ok);
  CHECK(ok.extra_headers == std::vector<std::pair<std::string, std::string>>{
                                {"X-Frame-Options", "deny"}});

  f.Write("basic_auth_users: [");
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kRefuse);
  CHECK(resp.status == 500);
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kRefuse);
  REQUIRE(logged.size() == 1);
  CHECK(logged[0].find(": not valid YAML: ") != std::string::npos);
  f.Write("");
  CHECK(access.Check(req, 9, &ticket, &resp) == V::kAllow);  // no users now: open
  CHECK(logged.size() == 2);
  CHECK(stats.config_broken == 2);
}

TEST_CASE("WebAccess: a check that finishes after the file changed is judged by the new file",
          "[auth]") {
  Guarded g(std::string("basic_auth_users:\n  prometheus: ") + kRight + "\n  other: " + kOther +
            "\n");
  TempFile& f = g.f;
  WebAccess& access = g.access;
  HttpRequest req;
  req.authorization = Header("prometheus:right");
  HttpResponse resp;
  uint64_t ticket = 0;
  using V = HttpGuard::Verdict;
  REQUIRE(access.Check(req, 3, &ticket, &resp) == V::kWait);
  auto resumed = [&] {
    std::vector<std::pair<size_t, uint64_t>> outcomes;
    WaitAndDrain(&access, &outcomes, 1);
    return access.Resumed(outcomes[0].second, ticket, &resp);
  };
  SECTION("unchanged: allowed") { CHECK(resumed() == V::kAllow); }
  SECTION("the user's hash changed: refused") {
    f.Write(std::string("basic_auth_users:\n  prometheus: ") + kOther + "\n");
    CHECK(resumed() == V::kRefuse);
    CHECK(resp.status == 401);
  }
  SECTION("the user was removed: refused") {
    f.Write(std::string("basic_auth_users:\n  other: ") + kOther + "\n");
    CHECK(resumed() == V::kRefuse);
    CHECK(resp.status == 401);
  }
  SECTION("the file is broken now: 500") {
    f.Write("basic_auth_users: [");
    CHECK(resumed() == V::kRefuse);
    CHECK(resp.status == 500);
    CHECK(g.stats.config_broken == 1);
  }
  SECTION("basic auth is off now: allowed") {
    f.Write("");
    CHECK(resumed() == V::kAllow);
  }
}

TEST_CASE("unknown users are checked at the highest cost among the users", "[auth]") {
  CHECK(StandInHash({}).substr(0, 7) == "$2y$10$");
  CHECK(StandInHash({{"a", kRight}}).substr(0, 7) == "$2y$04$");
  const std::string cost12 = std::string("$2y$12$") + std::string(kRight).substr(7);
  const std::string cost11 = std::string("$2b$11$") + std::string(kOther).substr(7);
  const std::string hash = StandInHash({{"a", kRight}, {"b", cost12}, {"c", cost11}});
  CHECK(hash.substr(0, 7) == "$2y$12$");
  CHECK(hash.size() == 60);
  SECTION("and it is a hash that crypt_r computes, matching no password") {
    VerifyPool pool;
    StartPool(&pool, 1, 4);
    REQUIRE(pool.Submit(1, 1, "fakepassword", StandInHash({{"a", kRight}})));
    std::vector<std::pair<size_t, uint64_t>> outcomes;
    WaitAndDrain(&pool, &outcomes, 1);
    CHECK_FALSE(VerifyPool::MatchedOf(outcomes[0].second));
  }
}

namespace {

// Pauses every request, then allows it; remembers the header it was shown.
struct PausingGuard final : HttpGuard {
  Verdict Check(const HttpRequest& request, size_t, uint64_t* ticket, HttpResponse*) override {
    seen = request.authorization;
    *ticket = 1;
    return Verdict::kWait;
  }
  Verdict Resumed(uint64_t outcome, uint64_t ticket, HttpResponse*) override {
    return outcome == ticket ? Verdict::kAllow : Verdict::kWait;
  }
  void AddHeaders(HttpResponse*) const override {}
  std::string seen;
};

}  // namespace

TEST_CASE("the Authorization header is not kept once the guard has seen it", "[auth]") {
  PausingGuard guard;
  HttpStats stats;
  HttpContext ctx;
  ctx.guard = &guard;
  ctx.stats = &stats;
  std::string handled = "not called";
  ctx.handler = [&](const HttpRequest& request, HttpResponse*) { handled = request.authorization; };
  HttpSession session(&ctx);
  session.Reset();
  OutputQueue out;
  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: " + Header("prometheus:right") +
      "\r\n\r\n";
  REQUIRE(session.OnInput(request, false, &out).next == SessionStep::Next::kPause);
  CHECK(guard.seen == Header("prometheus:right"));
  CHECK(ctx.request.authorization.empty());
  CHECK(session.OnResume(1, &out).next == SessionStep::Next::kWrite);
  CHECK(handled.empty());  // the paused copy was cleared too
}
