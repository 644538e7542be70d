#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "families.h"
#include "fake_source.h"
#include "providers.h"
#include "render.h"

using namespace uwsgi_prometheus;
using prometheus::MetricFamily;

TEST_CASE("per-app labels follow each worker's own apps", "[providers]") {
  Snapshot s = MakeSnapshot(2);
  s.workers[0].apps[0].mountpoint = "/a";
  s.workers[1].apps[0].mountpoint = std::string("/b\xff", 3);
  const auto labels = AppLabels(s);
  REQUIRE(labels.size() == 2);
  CHECK(labels[0] == std::vector<std::string>{"(no app)", "/a"});
  CHECK(labels[1] == std::vector<std::string>{"(no app)", "/b\xEF\xBF\xBD"});
}

TEST_CASE("request metrics keep the last known app labels", "[providers]") {
  RequestStats stats = MakeRequestStats(1, 2);
  stats.Observe({1, 1, 1000, 10, 200, "GET"});
  FamilyProvider provider = RequestStatsProvider(&stats, true, false);
  Snapshot s = MakeSnapshot(1);
  s.workers[0].apps[0].mountpoint = "/app";
  std::vector<MetricFamily> out;
  provider(s, true, &out);
  provider(Snapshot{}, false, &out);  // a snapshot that could not be taken
  REQUIRE(out.size() == 6);
  for (size_t i : {0, 3}) {
    REQUIRE(out[i].name == "uwsgi_request_duration_seconds");
    CHECK(Label(out[i].metric.at(0), "mountpoint") == "/app");
  }
}

TEST_CASE("request metrics are not labelled unless asked", "[providers]") {
  RequestStats stats = MakeRequestStats(2, 1);
  stats.Observe({2, 0, 1000, 10, 200, "GET"});
  std::vector<MetricFamily> out;
  RequestStatsProvider(&stats, false, true)(MakeSnapshot(2), true, &out);
  const auto* requests = Find(out, "uwsgi_requests_total");
  REQUIRE(requests);
  CHECK(Label(requests->metric.at(0), "worker_id") == "2");
  CHECK(Label(requests->metric.at(0), "mountpoint") == "<absent>");
}

TEST_CASE("multi-process provider: merged families, its own, skipped files logged once",
          "[providers]") {
  MultiprocCollector collector("/nonexistent/multiproc");
  std::vector<std::string> log;
  FamilyProvider provider =
      MultiprocProvider(&collector, [&](const std::string& line) { log.push_back(line); });
  std::vector<MetricFamily> out;
  provider(Snapshot{}, true, &out);
  provider(Snapshot{}, true, &out);
  REQUIRE(log.size() == 1);
  CHECK(log[0].rfind("multiproc: skipped /nonexistent/multiproc: cannot open directory: ", 0) == 0);
  const auto* skipped = Find(out, "uwsgi_prometheus_multiproc_skipped_files_total");
  REQUIRE(skipped);
  REQUIRE(skipped->metric.size() == kSkipReasonCount);
  CHECK(Label(skipped->metric[0], "reason") == "directory");
  CHECK(skipped->metric[0].counter.value == 1);  // the first scrape's family
  CHECK(collector.stats().skipped[0] == 2);
  REQUIRE(Find(out, "uwsgi_prometheus_multiproc_files"));
  CHECK(Find(out, "uwsgi_prometheus_multiproc_files")->metric[0].gauge.value == 0);
  REQUIRE(Find(out, "uwsgi_prometheus_multiproc_merge_duration_seconds"));
}
