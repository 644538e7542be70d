#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "db_files.h"
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
  std::vector<ServedFamily> out;
  provider(s, {}, &out);
  provider(Snapshot{}, {false}, &out);  // a snapshot that could not be taken
  REQUIRE(out.size() == 6);
  for (size_t i : {0, 3}) {
    REQUIRE(out[i].family.name == "uwsgi_request_duration_seconds");
    CHECK(out[i].bounds == BoundSpelling::kShortest);  // le="1", as it always was
    CHECK(Label(out[i].family.metric.at(0), "mountpoint") == "/app");
  }
}

TEST_CASE("a worker reloading its apps keeps its requests under their mount point",
          "[providers]") {
  // lazy-apps: a respawned worker reports no apps until it has loaded them
  RequestStats stats = MakeRequestStats(2, 2);
  for (uint32_t worker : {1u, 2u}) stats.Observe({worker, 1, 1000, 10, 200, "GET"});
  FamilyProvider provider = RequestStatsProvider(&stats, true, false);
  Snapshot loaded = MakeSnapshot(2);
  for (auto& w : loaded.workers) w.apps[0].mountpoint = "/app";
  Snapshot reloading = loaded;
  reloading.workers[1].apps.clear();
  for (const Snapshot* s : {&loaded, &reloading, &reloading}) {
    std::vector<ServedFamily> out;
    provider(*s, {}, &out);
    const auto* duration = Find(out, "uwsgi_request_duration_seconds");
    REQUIRE(duration);
    REQUIRE(duration->metric.size() == 1);
    CHECK(Label(duration->metric[0], "mountpoint") == "/app");
    CHECK(duration->metric[0].histogram.sample_count == 2);
  }
  SECTION("a mount point reported anew replaces the old one") {
    Snapshot moved = loaded;
    moved.workers[1].apps[0].mountpoint = "/moved";
    std::vector<std::vector<std::string>> known = AppLabels(loaded);
    MergeAppLabels(reloading, &known);
    CHECK(known[1] == std::vector<std::string>{"(no app)", "/app"});
    MergeAppLabels(moved, &known);
    CHECK(known[1] == std::vector<std::string>{"(no app)", "/moved"});
    CHECK(known[0] == std::vector<std::string>{"(no app)", "/app"});
  }
}

TEST_CASE("request families come with native histograms of the same series", "[providers]") {
  RequestStats stats = MakeRequestStats(1, 2);
  stats.Observe({1, 1, 1000, 10, 200, "GET"});
  Snapshot s = MakeSnapshot(1);
  s.workers[0].apps[0].mountpoint = "/app";
  std::vector<ServedFamily> out;
  std::vector<NativeSeries> native;
  RequestFamilies(&stats, true, false)(s, true, &out, &native);
  REQUIRE(native.size() == 2);
  for (const char* name : {kDurationFamily, kSizeFamily}) {
    const auto& series = Find(out, name)->metric.at(0);
    const NativeHistogram* h = FindNative(native, name, series.label);
    REQUIRE(h);
    CHECK(h->count == series.histogram.sample_count);
    CHECK(Label(series, "mountpoint") == "/app");
  }
  CHECK_FALSE(FindNative(native, kDurationFamily, {{"mountpoint", "/other"}}));
}

TEST_CASE("the request provider gives each histogram series its native histogram", "[providers]") {
  RequestStats stats = MakeRequestStats(2, 1);
  stats.Observe({1, 0, 1000, 10, 200, "GET"});
  stats.Observe({2, 0, 3000000, 20000, 404, "GET"});
  std::vector<ServedFamily> out;
  RequestStatsProvider(&stats, false, true)(MakeSnapshot(2), {}, &out);
  size_t histograms = 0;
  for (const auto& served : out) {
    if (served.family.type != prometheus::MetricType::Histogram) {
      CHECK(served.native.empty());
      continue;
    }
    ++histograms;
    REQUIRE(served.native.size() == served.family.metric.size());
    for (size_t i = 0; i < served.native.size(); ++i) {
      const NativeHistogram& n = served.native[i];
      CHECK(n.zero_threshold > 0);  // a real native histogram, not a placeholder
      CHECK(n.count == served.family.metric[i].histogram.sample_count);
      CHECK(n.sum == served.family.metric[i].histogram.sample_sum);
      uint64_t buckets = n.zero_count;
      for (const auto& b : NativeBuckets(n)) buckets += b.second;
      CHECK(buckets == n.count);
    }
  }
  CHECK(histograms == 2);
  SECTION("none when the scrape does not want them (a text scrape)") {
    std::vector<ServedFamily> text;
    RequestStatsProvider(&stats, false, true)(MakeSnapshot(2), {true, false}, &text);
    CHECK(text.size() == out.size());
    for (const auto& served : text) CHECK(served.native.empty());
  }
}

TEST_CASE("request metrics are not labelled unless asked", "[providers]") {
  RequestStats stats = MakeRequestStats(2, 1);
  stats.Observe({2, 0, 1000, 10, 200, "GET"});
  std::vector<ServedFamily> out;
  RequestStatsProvider(&stats, false, true)(MakeSnapshot(2), {}, &out);
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
  std::vector<ServedFamily> out;
  provider(Snapshot{}, {}, &out);
  provider(Snapshot{}, {}, &out);
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

TEST_CASE("a scrape spells the app's bounds as prometheus_client, the plugin's as before",
          "[providers]") {
  TempDir dir;
  const std::string key = R"(["app_seconds", "app_seconds_bucket", {"le": "LE"}, "A."])";
  auto bucket = [&](const char* le) {
    return key.substr(0, key.find("LE")) + le + key.substr(key.find("LE") + 2);
  };
  dir.Write("histogram_1.db", DbBytes({{bucket("1.0"), 1}, {bucket("10.0"), 1},
                                       {bucket("+Inf"), 0},
                                       {R"(["app_seconds", "app_seconds_sum", {}, "A."])", 2}},
                                      false, 64));
  MultiprocCollector collector(dir.path());
  RequestStats stats = MakeRequestStats(1);
  stats.Observe({1, 0, 2000, 10, 200, "GET"});
  FakeSource source(MakeSnapshot(1));
  Exporter exporter(&source, ExporterOptions(), nullptr);
  exporter.AddProvider(RequestStatsProvider(&stats, false, false));
  exporter.AddProvider(MultiprocProvider(&collector, nullptr));

  std::vector<ServedFamily> served;
  MultiprocProvider(&collector, nullptr)(Snapshot{}, {}, &served);
  REQUIRE(Find(served, "app_seconds"));
  for (const auto& f : served) {
    INFO(f.family.name);
    CHECK(f.bounds == (f.family.name == "app_seconds" ? kMergedBoundSpelling
                                                      : BoundSpelling::kShortest));
  }

  std::string body;
  exporter.Scrape(&body);
  using Catch::Contains;
  CHECK_THAT(body, Contains("app_seconds_bucket{le=\"1.0\"} 1\n"
                            "app_seconds_bucket{le=\"10.0\"} 2\n"
                            "app_seconds_bucket{le=\"+Inf\"} 2\n"));
  CHECK_THAT(body, Contains("uwsgi_request_duration_seconds_bucket{le=\"1\"} 1\n"));
  CHECK_THAT(body, Contains("uwsgi_request_duration_seconds_bucket{le=\"0.005\"} 1\n"));
}
