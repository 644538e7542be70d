#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "bind_retry.h"
#include "listen_address.h"

using namespace uwsgi_prometheus;

namespace {

constexpr int64_t kS = 1000000000;
const std::string kBusy = "127.0.0.1:9117: address already in use";

BindRetry Retry(int max_s = 30) {
  BindRetryOptions options;
  options.max_ns = max_s * kS;
  return BindRetry("127.0.0.1:9117", "vassal app2.ini, pid 42", options);
}

}  // namespace

TEST_CASE("attempts back off from 1 s to the longest wait", "[bind_retry]") {
  BindRetry retry = Retry(10);
  int64_t now = 100 * kS;
  CHECK(retry.Due(now));  // the first attempt is always due
  std::vector<int64_t> waits;
  for (int i = 0; i < 7; ++i) {
    retry.Failed(now, kBusy);
    int64_t wait = 0;
    while (!retry.Due(now + wait)) wait += kS / 10;
    waits.push_back(wait / (kS / 10));
    now += wait;
  }
  CHECK(waits == std::vector<int64_t>{10, 20, 40, 80, 100, 100, 100});
  CHECK(retry.failures() == 7);
}

TEST_CASE("the log gets the failure and its fix, then a line per longest wait", "[bind_retry]") {
  BindRetry retry = Retry(30);
  int64_t now = 0;
  const auto first = retry.Failed(now, kBusy);
  REQUIRE(first.size() == 2);
  CHECK(first[0] ==
        "--prometheus-socket '127.0.0.1:9117': 127.0.0.1:9117: address already in use "
        "(vassal app2.ini, pid 42); uWSGI starts without the metrics endpoint and binds it as "
        "soon as the address is free (trying again every 1 s to 30 s)");
  CHECK(first[1].rfind("fix: give every instance its own address, e.g. prometheus-socket = "
                       "/run/uwsgi/metrics/%(vassal).sock",
                       0) == 0);
  CHECK_THAT(first[1], Catch::Contains("prometheus-bind-fail-fast = true"));

  // Attempts at 1, 3, 7, 15 s are silent; 31 s is one longest wait after the first line.
  std::vector<std::string> lines;
  int attempts = 1;
  for (now = 0; now <= 100 * kS; now += kS / 2) {
    if (!retry.Due(now)) continue;
    ++attempts;
    for (auto& line : retry.Failed(now, kBusy)) {
      lines.push_back(line + " @" + std::to_string(now / kS));
    }
  }
  REQUIRE(lines.size() == 3);  // at 31, 61 and 91 s, of 8 attempts
  CHECK(attempts == 8);
  CHECK(lines[0] ==
        "--prometheus-socket '127.0.0.1:9117': 127.0.0.1:9117: address already in use "
        "(vassal app2.ini, pid 42), 6 attempts in 31 s; still no metrics endpoint, next "
        "attempt in 30 s @31");
  CHECK_THAT(lines[2], Catch::EndsWith("8 attempts in 91 s; still no metrics endpoint, next "
                                       "attempt in 30 s @91"));

  CHECK(retry.Succeeded(now) ==
        "--prometheus-socket '127.0.0.1:9117': bound after 8 failed attempts in 101 s; the "
        "metrics endpoint is up");
  CHECK(retry.failures() == 0);
  CHECK(retry.Due(now));
  CHECK(retry.Failed(now, kBusy).size() == 2);  // a new episode starts with the fix again
}

TEST_CASE("a first attempt that succeeds logs nothing of its own", "[bind_retry]") {
  BindRetry retry = Retry();
  CHECK(retry.Succeeded(5 * kS).empty());
}

TEST_CASE("a longest wait under 1 s caps the first one too", "[bind_retry]") {
  BindRetryOptions options;
  options.max_ns = kS / 4;
  BindRetry retry("x", "pid 1", options);
  CHECK_THAT(retry.Failed(0, kBusy)[0], Catch::EndsWith("(trying again every 0 s)"));
  CHECK_FALSE(retry.Due(kS / 4 - 1));
  CHECK(retry.Due(kS / 4));
}

TEST_CASE("instances are described by their config file", "[bind_retry]") {
  CHECK(DescribeInstance(true, "app2.ini", 42) == "vassal app2.ini, pid 42");
  CHECK(DescribeInstance(false, "/etc/uwsgi/app.ini", 42) == "/etc/uwsgi/app.ini, pid 42");
  CHECK(DescribeInstance(false, "", 42) == "pid 42");
  CHECK(FailFastMessage(":9117", "pid 42", ":9117: address already in use") ==
        "--prometheus-socket ':9117': :9117: address already in use (pid 42); stopping because "
        "prometheus-bind-fail-fast is set: give every instance its own address (README: \"Many "
        "instances on one host\"), or drop prometheus-bind-fail-fast to start without the "
        "endpoint and bind it when the address frees");
}

TEST_CASE("host names are resolved once, numeric hosts kept", "[bind_retry]") {
  std::string error;
  ListenAddress a;
  REQUIRE(ParseListenAddress("localhost:9117", &a, &error));
  REQUIRE(ResolveListenHost(&a, &error));
  CHECK((a.host == "127.0.0.1" || a.host == "::1"));
  CHECK(a.port == 9117);
  for (const char* kept : {"127.0.0.1:1", "[::1]:1", ":1", "/run/m.sock"}) {
    INFO(kept);
    REQUIRE(ParseListenAddress(kept, &a, &error));
    const std::string before = a.ToString();
    REQUIRE(ResolveListenHost(&a, &error));
    CHECK(a.ToString() == before);
  }
}
