#include <algorithm>
#include <map>
#include <set>

#include <catch2/catch.hpp>
#include <prometheus/check_names.h>

#include "families.h"
#include "fake_source.h"
#include "model.h"

using namespace uwsgi_prometheus;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

std::vector<MetricFamily> Build(const Snapshot& s, ModelOptions o = {}, SelfStats self = {}) {
  std::vector<MetricFamily> out;
  BuildFamilies(s, o, self, &out);
  return out;
}

}  // namespace

TEST_CASE("every uwsgi_exporter family is built with its type", "[model]") {
  ModelOptions o;
  o.collect_cores = true;
  auto fs = Build(MakeSnapshot(2, 2), o);
  const std::map<std::string, MetricType> expected = {
      {"uwsgi_listen_queue_length", MetricType::Gauge},
      {"uwsgi_listen_queue_errors", MetricType::Gauge},
      {"uwsgi_signal_queue_length", MetricType::Gauge},
      {"uwsgi_workers", MetricType::Gauge},
      {"uwsgi_socket_queue_length", MetricType::Gauge},
      {"uwsgi_socket_max_queue_length", MetricType::Gauge},
      {"uwsgi_socket_shared", MetricType::Gauge},
      {"uwsgi_socket_can_offload", MetricType::Gauge},
      {"uwsgi_worker_accepting", MetricType::Gauge},
      {"uwsgi_worker_delta_requests", MetricType::Gauge},
      {"uwsgi_worker_signal_queue_length", MetricType::Gauge},
      {"uwsgi_worker_rss_bytes", MetricType::Gauge},
      {"uwsgi_worker_vsz_bytes", MetricType::Gauge},
      {"uwsgi_worker_running_time_seconds", MetricType::Gauge},
      {"uwsgi_worker_last_spawn_time_seconds", MetricType::Gauge},
      {"uwsgi_worker_average_response_time_seconds", MetricType::Gauge},
      {"uwsgi_worker_apps", MetricType::Gauge},
      {"uwsgi_worker_cores", MetricType::Gauge},
      {"uwsgi_worker_busy", MetricType::Gauge},
      {"uwsgi_worker_idle", MetricType::Gauge},
      {"uwsgi_worker_cheap", MetricType::Gauge},
      {"uwsgi_worker_requests_total", MetricType::Counter},
      {"uwsgi_worker_exceptions_total", MetricType::Counter},
      {"uwsgi_worker_harakiri_count_total", MetricType::Counter},
      {"uwsgi_worker_signals_total", MetricType::Counter},
      {"uwsgi_worker_respawn_count_total", MetricType::Counter},
      {"uwsgi_worker_transmitted_bytes_total", MetricType::Counter},
      {"uwsgi_worker_app_startup_time_seconds", MetricType::Gauge},
      {"uwsgi_worker_app_requests_total", MetricType::Counter},
      {"uwsgi_worker_app_exceptions_total", MetricType::Counter},
      {"uwsgi_worker_core_busy", MetricType::Gauge},
      {"uwsgi_worker_core_requests_total", MetricType::Counter},
      {"uwsgi_worker_core_static_requests_total", MetricType::Counter},
      {"uwsgi_worker_core_routed_requests_total", MetricType::Counter},
      {"uwsgi_worker_core_offloaded_requests_total", MetricType::Counter},
      {"uwsgi_worker_core_write_errors_total", MetricType::Counter},
      {"uwsgi_worker_core_read_errors_total", MetricType::Counter},
      {"uwsgi_cache_hits", MetricType::Counter},
      {"uwsgi_cache_misses", MetricType::Counter},
      {"uwsgi_cache_full", MetricType::Counter},
      {"uwsgi_cache_items", MetricType::Gauge},
      {"uwsgi_cache_max_items", MetricType::Gauge},
      {"uwsgi_up", MetricType::Gauge},
      {"uwsgi_exporter_scrapes_total", MetricType::Counter},
      {"uwsgi_exporter_scrape_errors_total", MetricType::Counter},
      {"uwsgi_exporter_scrape_duration_seconds", MetricType::Summary},
      {"uwsgi_exporter_last_scrape_error", MetricType::Gauge},
  };
  for (const auto& [name, type] : expected) {
    INFO(name);
    const MetricFamily* f = Find(fs, name);
    REQUIRE(f != nullptr);
    CHECK(f->type == type);
    CHECK(!f->metric.empty());
  }
}

TEST_CASE("names and label names are valid Prometheus names", "[model]") {
  ModelOptions o;
  o.collect_cores = true;
  for (const auto& f : Build(MakeSnapshot(3, 2), o)) {
    INFO(f.name);
    CHECK(prometheus::CheckMetricName(f.name));
    for (const auto& m : f.metric) {
      for (const auto& l : m.label) CHECK(prometheus::CheckLabelName(l.name));
    }
  }
}

TEST_CASE("units are converted as uwsgi_exporter converts them", "[model]") {
  auto fs = Build(MakeSnapshot(2));
  const auto* running = Find(fs, "uwsgi_worker_running_time_seconds");
  REQUIRE(running);
  CHECK(running->metric[0].gauge.value == Approx(1.5));  // 1500000 us, worker 1
  const auto* avg = Find(fs, "uwsgi_worker_average_response_time_seconds");
  CHECK(avg->metric[0].gauge.value == Approx(0.00025));
  const auto* spawn = Find(fs, "uwsgi_worker_last_spawn_time_seconds");
  CHECK(spawn->metric[0].gauge.value == 1795737853.0);
}

TEST_CASE("workers with id 0 are skipped and counted out", "[model]") {
  Snapshot s = MakeSnapshot(3);
  s.workers[1].id = 0;  // a cheaper slot never started
  auto fs = Build(s);
  CHECK(Find(fs, "uwsgi_workers")->metric[0].gauge.value == 2);
  const auto* req = Find(fs, "uwsgi_worker_requests_total");
  REQUIRE(req->metric.size() == 2);
  CHECK(Label(req->metric[0], "worker_id") == "1");
  CHECK(Label(req->metric[1], "worker_id") == "3");
}

TEST_CASE("duplicate sockets appear once, the first wins", "[model]") {
  Snapshot s = MakeSnapshot(1);
  s.sockets.push_back({"127.0.0.1:8000", "uwsgi", 99, 99, true, true});
  auto fs = Build(s);
  const auto* q = Find(fs, "uwsgi_socket_queue_length");
  REQUIRE(q->metric.size() == 2);
  for (const auto& m : q->metric) {
    if (Label(m, "name") == "127.0.0.1:8000") CHECK(m.gauge.value == 2);
  }
}

TEST_CASE("every series carries stats_uri except the self families", "[model]") {
  ModelOptions o;
  o.stats_uri = "tcp://127.0.0.1:1717";
  for (const auto& f : Build(MakeSnapshot(2), o)) {
    INFO(f.name);
    const bool self = f.name == "uwsgi_up" || f.name.rfind("uwsgi_exporter_", 0) == 0 ||
                      f.name.rfind("process_", 0) == 0 || f.name.rfind("uwsgi_prometheus_", 0) == 0;
    for (const auto& m : f.metric) {
      CHECK(Label(m, "stats_uri") == (self ? "<absent>" : "tcp://127.0.0.1:1717"));
    }
  }
}

TEST_CASE("worker status is one-hot over all five states", "[model]") {
  Snapshot s = MakeSnapshot(5);
  s.workers[0].status = WorkerStatus::kIdle;
  s.workers[1].status = WorkerStatus::kBusy;
  s.workers[2].status = WorkerStatus::kCheap;
  s.workers[3].status = WorkerStatus::kPause;
  s.workers[4].status = WorkerStatus::kSig;
  auto fs = Build(s);
  const auto* st = Find(fs, "uwsgi_worker_status");
  REQUIRE(st);
  REQUIRE(st->metric.size() == 25);
  std::map<std::string, std::string> current;
  for (const auto& m : st->metric) {
    if (m.gauge.value == 1) {
      CHECK(current.count(Label(m, "worker_id")) == 0);
      current[Label(m, "worker_id")] = Label(m, "status");
    } else {
      CHECK(m.gauge.value == 0);
    }
  }
  CHECK(current == std::map<std::string, std::string>{
                       {"1", "idle"}, {"2", "busy"}, {"3", "cheap"}, {"4", "pause"}, {"5", "sig"}});
  // The exporter's three flags follow the same state.
  CHECK(Find(fs, "uwsgi_worker_busy")->metric[1].gauge.value == 1);
  CHECK(Find(fs, "uwsgi_worker_cheap")->metric[2].gauge.value == 1);
  CHECK(Find(fs, "uwsgi_worker_idle")->metric[3].gauge.value == 0);
}

TEST_CASE("per-core families only when asked", "[model]") {
  auto without = Build(MakeSnapshot(2, 2));
  CHECK(Find(without, "uwsgi_worker_core_requests_total") == nullptr);
  ModelOptions o;
  o.collect_cores = true;
  auto with = Build(MakeSnapshot(2, 2), o);
  CHECK(Find(with, "uwsgi_worker_core_requests_total")->metric.size() == 4);
}

TEST_CASE("no caches means no cache families", "[model]") {
  Snapshot s = MakeSnapshot(1);
  s.caches.clear();
  CHECK(Find(Build(s), "uwsgi_cache_hits") == nullptr);
}

TEST_CASE("a failed snapshot yields uwsgi_up 0 and only self families", "[model]") {
  SelfStats self;
  self.up = false;
  self.scrapes = 3;
  self.scrape_errors = 1;
  self.last_scrape_error = true;
  auto fs = Build(MakeSnapshot(2), {}, self);
  CHECK(Find(fs, "uwsgi_up")->metric[0].gauge.value == 0);
  CHECK(Find(fs, "uwsgi_worker_requests_total") == nullptr);
  CHECK(Find(fs, "uwsgi_exporter_scrape_errors_total")->metric[0].counter.value == 1);
  CHECK(Find(fs, "uwsgi_exporter_last_scrape_error")->metric[0].gauge.value == 1);
}

TEST_CASE("families are sorted by name and series by labels", "[model]") {
  auto fs = Build(MakeSnapshot(12));
  CHECK(std::is_sorted(fs.begin(), fs.end(),
                       [](const auto& a, const auto& b) { return a.name < b.name; }));
  std::set<std::string> names;
  for (const auto& f : fs) CHECK(names.insert(f.name).second);
  const auto* req = Find(fs, "uwsgi_worker_requests_total");
  std::vector<std::string> ids;
  for (const auto& m : req->metric) ids.push_back(Label(m, "worker_id"));
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  // Two builds of the same snapshot are identical.
  auto again = Build(MakeSnapshot(12));
  REQUIRE(again.size() == fs.size());
  for (size_t i = 0; i < fs.size(); ++i) CHECK(again[i].metric.size() == fs[i].metric.size());
}

TEST_CASE("apps with hostile mountpoints still give distinct valid series", "[model]") {
  Snapshot s = MakeSnapshot(1);
  s.workers[0].apps[0].mountpoint = std::string(2000, 'x') + "\xff";
  AppSnapshot second = s.workers[0].apps[0];
  second.id = 1;
  second.mountpoint = std::string(2000, 'x') + "y";  // same after the cap
  s.workers[0].apps.push_back(second);
  auto fs = Build(s);
  const auto* req = Find(fs, "uwsgi_worker_app_requests_total");
  REQUIRE(req->metric.size() == 2);  // app_id keeps them apart
  CHECK(Label(req->metric[0], "mountpoint").size() == 512);
}

TEST_CASE("Normalize drops repeated series", "[model]") {
  std::vector<MetricFamily> fs(1);
  fs[0].name = "x";
  fs[0].type = MetricType::Gauge;
  fs[0].metric.resize(3);
  fs[0].metric[0].label = {{"a", "2"}};
  fs[0].metric[1].label = {{"a", "1"}};
  fs[0].metric[2].label = {{"a", "2"}};
  fs[0].metric[0].gauge.value = 7;
  fs[0].metric[2].gauge.value = 8;
  Normalize(&fs);
  REQUIRE(fs[0].metric.size() == 2);
  CHECK(fs[0].metric[1].gauge.value == 7);  // the first one wins
}
