#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <thread>

#include <catch2/catch.hpp>

#include "families.h"
#include "model.h"
#include "render.h"
#include "request_stats.h"

using namespace uwsgi_prometheus;
using prometheus::MetricFamily;

namespace {

RequestObservation Obs(uint32_t worker, uint64_t us, int status = 200, const char* method = "GET",
                       uint64_t bytes = 500) {
  return {worker, 0, us, bytes, status, method};
}

const MetricFamily& Family(const std::vector<MetricFamily>& fs, const std::string& name) {
  for (const auto& f : fs) {
    if (f.name == name) return f;
  }
  FAIL("no family " << name);
  throw 0;
}

double Requests(const std::vector<MetricFamily>& fs, const std::string& code,
                const std::string& method) {
  for (const auto& m : Family(fs, "uwsgi_requests_total").metric) {
    std::string c, me;
    for (const auto& l : m.label) {
      if (l.name == "code") c = l.value;
      if (l.name == "method") me = l.value;
    }
    if (c == code && me == method) return m.counter.value;
  }
  return -1;
}

}  // namespace

TEST_CASE("slots are cache-line separated", "[request_stats]") {
  CHECK(sizeof(RequestSlot) % 128 == 0);
  CHECK(alignof(RequestSlot) == 128);
}

TEST_CASE("buckets are parsed and validated", "[request_stats]") {
  std::vector<double> b;
  std::string error;
  CHECK(ParseBuckets("0.1, 0.5,1,10", &b, &error));
  CHECK(b == std::vector<double>{0.1, 0.5, 1, 10});
  CHECK_FALSE(ParseBuckets("", &b, &error));
  CHECK_FALSE(ParseBuckets("1,0.5", &b, &error));
  CHECK(error.find("increasing") != std::string::npos);
  CHECK_FALSE(ParseBuckets("1,abc", &b, &error));
  CHECK_FALSE(ParseBuckets("-1", &b, &error));
  CHECK_FALSE(ParseBuckets("inf", &b, &error));
  CHECK_FALSE(ParseBuckets("1,1", &b, &error));
}

TEST_CASE("observations land in the right buckets and sum over workers", "[request_stats]") {
  auto stats = MakeRequestStats(3);
  stats.Observe(Obs(1, 3000));          // 3 ms  -> le=0.005
  stats.Observe(Obs(2, 5000));          // 5 ms  -> le=0.005 (inclusive)
  stats.Observe(Obs(3, 70000, 404));    // 70 ms -> le=0.1
  stats.Observe(Obs(1, 20000000, 500, "POST"));  // 20 s -> +Inf only
  stats.Observe(Obs(4, 1000));          // worker 4 does not exist: ignored
  std::vector<MetricFamily> fs;
  stats.AppendFamilies({}, &fs);
  const auto& h = Family(fs, "uwsgi_request_duration_seconds").metric.at(0).histogram;
  CHECK(h.sample_count == 4);
  CHECK(h.sample_sum == Approx(20.078));
  CHECK(h.bucket.front().upper_bound == 0.005);
  CHECK(h.bucket.front().cumulative_count == 2);
  CHECK(h.bucket[4].upper_bound == 0.1);
  CHECK(h.bucket[4].cumulative_count == 3);
  CHECK(h.bucket[10].cumulative_count == 3);  // le=10
  CHECK(std::isinf(h.bucket.back().upper_bound));
  CHECK(h.bucket.back().cumulative_count == 4);
  CHECK(Requests(fs, "200", "GET") == 2);
  CHECK(Requests(fs, "404", "GET") == 1);
  CHECK(Requests(fs, "500", "POST") == 1);
  const auto& size = Family(fs, "uwsgi_response_size_bytes").metric.at(0).histogram;
  CHECK(size.sample_sum == 2000);
  CHECK(size.bucket[1].cumulative_count == 4);  // le=1000
}

TEST_CASE("unknown methods and odd codes stay bounded", "[request_stats]") {
  auto stats = MakeRequestStats(1);
  stats.Observe(Obs(1, 10, 200, "BREW"));
  stats.Observe(Obs(1, 10, 200, "get"));
  stats.Observe(Obs(1, 10, 0, "GET"));
  stats.Observe(Obs(1, 10, 1000, "GET"));
  std::vector<MetricFamily> fs;
  stats.AppendFamilies({}, &fs);
  CHECK(Requests(fs, "200", "other") == 2);
  CHECK(Requests(fs, "0", "GET") == 2);
}

TEST_CASE("more distinct pairs than the table holds go to other/other", "[request_stats]") {
  auto stats = MakeRequestStats(1);
  uint64_t total = 0;
  for (int code = 100; code < 300; ++code) {
    stats.Observe(Obs(1, 10, code));
    ++total;
  }
  std::vector<MetricFamily> fs;
  stats.AppendFamilies({}, &fs);
  double sum = 0;
  for (const auto& m : Family(fs, "uwsgi_requests_total").metric) sum += m.counter.value;
  CHECK(sum == total);
  CHECK(Requests(fs, "other", "other") == 200 - kPairSlots);
}

TEST_CASE("per-worker and per-app series", "[request_stats]") {
  auto stats = MakeRequestStats(2, 3);
  RequestObservation o = Obs(1, 10);
  o.app_index = 1;
  stats.Observe(o);
  o.worker_id = 2;
  o.app_index = 2;
  stats.Observe(o);
  stats.Observe(o);
  RequestStats::RenderOptions r;
  r.per_worker = true;
  r.app_labels = {{"(no app)", "/a", "/b"}, {"(no app)", "/c", "/a"}};  // ids are per worker
  std::vector<MetricFamily> fs;
  stats.AppendFamilies(r, &fs);
  const auto& d = Family(fs, "uwsgi_request_duration_seconds");
  REQUIRE(d.metric.size() == 2);
  CHECK(d.metric[0].label ==
        std::vector<prometheus::ClientMetric::Label>{{"mountpoint", "/a"}, {"worker_id", "1"}});
  // worker 2's slot 2 is its own app /a: the same series name, its own worker_id
  CHECK(d.metric[1].label ==
        std::vector<prometheus::ClientMetric::Label>{{"mountpoint", "/a"}, {"worker_id", "2"}});
  CHECK(d.metric[1].histogram.sample_count == 2);
  SECTION("summed over workers, apps with the same mountpoint are one series") {
    r.per_worker = false;
    std::vector<MetricFamily> summed;
    stats.AppendFamilies(r, &summed);
    const auto& s = Family(summed, "uwsgi_request_duration_seconds");
    REQUIRE(s.metric.size() == 1);
    CHECK(s.metric[0].histogram.sample_count == 3);
  }
}

TEST_CASE("threads and forked processes add without losing counts", "[request_stats]") {
  auto stats = MakeRequestStats(2);
  constexpr int kPerThread = 20000;
  // Worker 1: a forked process with 4 threads, like threads = 4.
  pid_t child = fork();
  if (child == 0) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&stats, t] {
        for (int i = 0; i < kPerThread; ++i) {
          stats.Observe(Obs(1, 1000 * (i % 50), 200 + (t % 2) * 100, t % 2 ? "POST" : "GET"));
        }
      });
    }
    for (auto& th : threads) th.join();
    _exit(0);
  }
  // Worker 2: this process, concurrently.
  for (int i = 0; i < kPerThread; ++i) stats.Observe(Obs(2, 1000, 404));
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  std::vector<MetricFamily> fs;
  stats.AppendFamilies({}, &fs);
  const auto& h = Family(fs, "uwsgi_request_duration_seconds").metric.at(0).histogram;
  CHECK(h.sample_count == 5 * kPerThread);
  CHECK(Requests(fs, "200", "GET") == 2 * kPerThread);
  CHECK(Requests(fs, "300", "POST") == 2 * kPerThread);
  CHECK(Requests(fs, "404", "GET") == kPerThread);
}

TEST_CASE("a table of another version is refused", "[request_stats]") {
  auto stats = MakeRequestStats(1);
  std::vector<char> copy(stats.bytes());
  std::memcpy(copy.data(), stats.header(), copy.size());
  reinterpret_cast<RequestStatsHeader*>(copy.data())->version = 99;
  RequestStats other;
  std::string error;
  CHECK_FALSE(other.Attach(copy.data(), copy.size(), &error));
  CHECK(error.find("version 99") != std::string::npos);
}

TEST_CASE("rendered request families pass the text format", "[request_stats]") {
  auto stats = MakeRequestStats(1);
  stats.Observe(Obs(1, 42000));
  std::vector<MetricFamily> fs;
  stats.AppendFamilies({}, &fs);
  Normalize(&fs);
  const std::string text = RenderText(fs);
  CHECK(text.find("uwsgi_request_duration_seconds_bucket{le=\"0.05\"} 1\n") != std::string::npos);
  CHECK(text.find("uwsgi_request_duration_seconds_bucket{le=\"0.025\"} 0\n") != std::string::npos);
  CHECK(text.find("uwsgi_request_duration_seconds_count 1\n") != std::string::npos);
  CHECK(text.find("uwsgi_requests_total{code=\"200\",method=\"GET\"} 1\n") != std::string::npos);
}
