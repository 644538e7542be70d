#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include <catch2/catch.hpp>
#include <prometheus/text_serializer.h>

#include "exporter.h"
#include "fake_source.h"
#include "model.h"
#include "protobuf.h"
#include "render.h"

using namespace uwsgi_prometheus;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Splits "series value" at the last space.
std::pair<std::string, double> Sample(const std::string& line) {
  auto sp = line.rfind(' ');
  return {line.substr(0, sp), std::strtod(line.c_str() + sp + 1, nullptr)};
}

std::vector<MetricFamily> Families(int workers) {
  ModelOptions o;
  o.collect_cores = true;
  o.stats_uri = "tcp://127.0.0.1:1717";
  SelfStats self;
  self.scrapes = 5;
  self.scrape_duration_sum = 0.0125;
  self.scrape_duration_count = 4;
  std::vector<MetricFamily> fs;
  Snapshot s = MakeSnapshot(workers, 2);
  s.process.valid = true;
  s.process.cpu_seconds = 1.25;
  s.process.start_time_seconds = 1795737857.5;
  BuildFamilies(s, o, self, &fs);
  return fs;
}

}  // namespace

TEST_CASE("text matches prometheus-cpp's TextSerializer line for line", "[render]") {
  auto fs = Families(6);
  // A histogram too, which the uWSGI families do not have.
  MetricFamily h{"x_seconds", "Latency.", MetricType::Histogram, {}};
  ClientMetric m;
  m.label = {{"code", "200"}};
  m.histogram.sample_count = 3;
  m.histogram.sample_sum = 0.75;
  m.histogram.bucket = {{1, 0.1}, {2, 0.5}, {3, std::numeric_limits<double>::infinity()}};
  h.metric.push_back(m);
  fs.push_back(h);

  const std::string ours = RenderText(fs);
  const std::string theirs = prometheus::TextSerializer().Serialize(fs);
  // Same comment lines in the same order; the same samples with the same
  // values (prometheus-cpp orders a histogram's _count/_sum before its
  // buckets and prints le="0.10000000000000001", so samples are compared as
  // a map with the bound parsed as a number).
  auto index = [](const std::string& text, std::vector<std::string>* comments) {
    std::map<std::string, double> samples;
    for (const auto& line : Lines(text)) {
      if (line[0] == '#') {
        comments->push_back(line);
        continue;
      }
      auto [series, value] = Sample(line);
      auto le = series.find("le=\"");
      if (le != std::string::npos) {
        auto end = series.find('"', le + 4);
        double bound = std::strtod(series.c_str() + le + 4, nullptr);
        series = series.substr(0, le + 4) + std::to_string(bound) + series.substr(end);
      }
      CHECK(samples.emplace(series, value).second);
    }
    return samples;
  };
  std::vector<std::string> ca, cb;
  auto a = index(ours, &ca);
  auto b = index(theirs, &cb);
  CHECK(ca == cb);
  REQUIRE(a.size() == b.size());
  for (const auto& [series, value] : a) {
    INFO(series);
    REQUIRE(b.count(series) == 1);
    CHECK(value == Approx(b.at(series)));
  }
}

TEST_CASE("label values and help are escaped", "[render]") {
  MetricFamily f{"x", "a \\ back\nslash", MetricType::Gauge, {}};
  ClientMetric m;
  m.label = {{"v", "q\"b\\n\nx"}};
  m.gauge.value = 1;
  f.metric.push_back(m);
  CHECK(RenderText({f}) ==
        "# HELP x a \\\\ back\\nslash\n# TYPE x gauge\nx{v=\"q\\\"b\\\\n\\nx\"} 1\n");
}

TEST_CASE("special values are written as Prometheus spells them", "[render]") {
  MetricFamily f{"x", "", MetricType::Gauge, {}};
  for (double v : {std::nan(""), double(INFINITY), -double(INFINITY), 0.5, 1e-7, 123456789012345678.0, -3.0}) {
    ClientMetric m;
    m.gauge.value = v;
    m.label = {{"i", std::to_string(f.metric.size())}};
    f.metric.push_back(m);
  }
  auto lines = Lines(RenderText({f}));
  REQUIRE(lines.size() == 8);
  CHECK(lines[1] == "x{i=\"0\"} NaN");
  CHECK(lines[2] == "x{i=\"1\"} +Inf");
  CHECK(lines[3] == "x{i=\"2\"} -Inf");
  CHECK(lines[4] == "x{i=\"3\"} 0.5");
  CHECK(lines[5] == "x{i=\"4\"} 1e-07");
  CHECK(Sample(lines[6]).second == 123456789012345678.0);
  CHECK(lines[7] == "x{i=\"6\"} -3");
}

TEST_CASE("histogram gets +Inf bucket, _sum and _count", "[render]") {
  MetricFamily f{"h", "", MetricType::Histogram, {}};
  ClientMetric m;
  m.histogram.sample_count = 4;
  m.histogram.sample_sum = 2.5;
  m.histogram.bucket = {{1, 0.005}, {3, 1}};
  f.metric.push_back(m);
  CHECK(RenderText({f}) ==
        "# TYPE h histogram\nh_bucket{le=\"0.005\"} 1\nh_bucket{le=\"1\"} 3\n"
        "h_bucket{le=\"+Inf\"} 4\nh_sum 2.5\nh_count 4\n");
}

TEST_CASE("bounds are spelled as the family's producer spells them", "[render]") {
  MetricFamily h{"h", "", MetricType::Histogram, {}};
  ClientMetric m;
  m.histogram.sample_count = 9;
  m.histogram.bucket = {{1, -2.5}, {2, 0}, {3, 1e-5}, {4, 0.005}, {5, 1},
                        {6, 100000}, {7, 1e6}, {8, 1e20}, {9, INFINITY}};
  h.metric.push_back(m);
  MetricFamily s{"s", "", MetricType::Summary, {}};
  ClientMetric q;
  q.summary.quantile = {{0.5, 1}, {1, 2}};
  s.metric.push_back(q);
  auto les = [](const std::string& text) {
    std::string out;
    for (size_t p = 0; (p = text.find("le=\"", p)) != std::string::npos; p += 4) {
      out += text.substr(p + 4, text.find('"', p + 4) - p - 4) + " ";
    }
    return out;
  };
  SECTION("shortest round trip: the plugin's own families") {
    CHECK(les(RenderText({h})) == "-2.5 0 1e-05 0.005 1 100000 1000000 1e+20 +Inf ");
    CHECK(RenderText({s}) == "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"1\"} 2\n"
                             "s_sum 0\ns_count 0\n");
  }
  SECTION("as prometheus_client writes them: families merged from its files") {
    CHECK(les(RenderText({h}, BoundSpelling::kPythonClient)) ==
          "-2.5 0.0 1e-05 0.005 1.0 100000.0 1e+06 1e+20 +Inf ");
    CHECK(RenderText({s}, BoundSpelling::kPythonClient) ==
          "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"1.0\"} 2\n"
          "s_sum 0\ns_count 0\n");
  }
}

TEST_CASE("a scrape of a fixed snapshot matches the golden file", "[render]") {
  std::vector<MetricFamily> fs = Families(2);
  std::string text = RenderText(fs);
  const std::string path = std::string(UWSGI_PROMETHEUS_TEST_DIR) + "/golden/two_workers.txt";
  if (std::getenv("UPDATE_GOLDEN")) {
    std::ofstream(path) << text;
  }
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream golden;
  golden << in.rdbuf();
  CHECK(text == golden.str());
}

TEST_CASE("exporter routes metrics, health, landing page and 404", "[render]") {
  FakeSource source(MakeSnapshot(2));
  ExporterOptions o;
  o.metrics_path = "/custom";
  bool healthy = true;
  Exporter exporter(&source, o, [&](std::string* why) {
    *why = "master stuck";
    return healthy;
  });
  HttpRequest req;
  HttpResponse resp;
  req.method = "GET";
  req.path = "/custom";
  exporter.Handle(req, &resp);
  CHECK(resp.status == 200);
  CHECK(resp.content_type == kTextContentType);
  CHECK(resp.Body().find("uwsgi_worker_requests_total{stats_uri=\"\",worker_id=\"2\"} 200\n") !=
        std::string::npos);
  CHECK(resp.Body().find("uwsgi_exporter_scrapes_total 1\n") != std::string::npos);

  resp = {};
  req.path = "/-/healthy";
  exporter.Handle(req, &resp);
  CHECK(resp.status == 200);
  healthy = false;
  resp = {};
  exporter.Handle(req, &resp);
  CHECK(resp.status == 503);
  CHECK(resp.body == "master stuck\n");

  resp = {};
  req.path = "/";
  exporter.Handle(req, &resp);
  CHECK(resp.status == 200);
  CHECK(resp.body.find("href=\"/custom\"") != std::string::npos);

  resp = {};
  req.path = "/metrics";
  exporter.Handle(req, &resp);
  CHECK(resp.status == 404);

  SECTION("a failing source gives uwsgi_up 0 and counts the error") {
    source.fail = true;
    std::string body;
    exporter.Scrape(&body);
    CHECK(body.find("uwsgi_up 0\n") != std::string::npos);
    CHECK(body.find("uwsgi_exporter_scrape_errors_total 1\n") != std::string::npos);
    CHECK(body.find("uwsgi_exporter_last_scrape_error 1\n") != std::string::npos);
    CHECK(body.find("uwsgi_worker_requests_total") == std::string::npos);
    source.fail = false;
    exporter.Scrape(&body);
    CHECK(body.find("uwsgi_up 1\n") != std::string::npos);
    CHECK(body.find("uwsgi_exporter_last_scrape_error 0\n") != std::string::npos);
  }
}

TEST_CASE("the direct scrape renderer writes exactly the reference text", "[render]") {
  auto check = [](const Snapshot& s, const ModelOptions& o, const SelfStats& self,
                  std::vector<ServedFamily> extra) {
    std::vector<MetricFamily> built;
    BuildFamilies(s, o, self, &built);
    std::vector<ServedFamily> reference(extra);
    for (auto& f : built) reference.push_back({std::move(f)});
    Normalize(&reference);
    TextBuffer direct, expected, direct_pb, expected_pb;
    RenderScrape(s, o, self, extra, &direct);
    for (const auto& f : reference) RenderFamily(f.family, f.bounds, &expected);
    CHECK(std::string(direct.data(), direct.size()) == std::string(expected.data(), expected.size()));
    // and the protobuf writer, from the same rows, the reference's bytes
    EncodeScrape(s, o, self, extra, &direct_pb);
    for (const auto& f : reference) EncodeFamily(f.family, &f.native, &expected_pb);
    CHECK(direct_pb.size() > 0);
    CHECK(std::string(direct_pb.data(), direct_pb.size()) ==
          std::string(expected_pb.data(), expected_pb.size()));
    return std::string(direct.data(), direct.size());
  };
  ModelOptions o;
  o.stats_uri = "tcp://127.0.0.1:1717";
  SelfStats self;
  self.scrapes = 3;
  self.scrape_duration_sum = 0.5;
  self.scrape_duration_count = 2;

  SECTION("many workers, cores on and off") {
    Snapshot s = MakeSnapshot(23, 3);
    s.process.valid = true;
    s.process.cpu_seconds = 2.5;
    check(s, o, self, {});
    o.collect_cores = true;
    check(s, o, self, {});
  }
  SECTION("hostile labels, duplicates and never-started slots") {
    Snapshot s = MakeSnapshot(12, 2);
    s.workers[3].id = 0;
    s.workers[5].apps[0].mountpoint = "/we\"ird\\path\nx\xff";
    s.workers[5].apps.push_back(s.workers[5].apps[0]);
    s.workers[5].apps[1].id = 1;
    s.workers[5].apps[1].chdir = std::string(3000, 'c');
    s.workers[6].id = 7;  // two slots claiming the same id: first wins
    s.sockets.push_back(s.sockets[0]);
    s.sockets.push_back({"/run/\"s\".sock", "uwsgi", 1, 2, false, false});
    s.caches.push_back({"second", 1, 1, 1, 1, 1});
    s.caches.push_back({"default", 9, 9, 9, 9, 9});
    o.stats_uri = "unix:///tmp/\"x\"";
    o.collect_cores = true;
    check(s, o, self, {});
  }
  SECTION("statuses") {
    Snapshot s = MakeSnapshot(5);
    s.workers[2].status = WorkerStatus::kPause;
    s.workers[4].status = WorkerStatus::kSig;
    check(s, o, self, {});
  }
  SECTION("failed snapshot") {
    self.up = false;
    check(MakeSnapshot(3), o, self, {});
  }
  SECTION("extra families interleave by name, each with its bound spelling") {
    std::vector<ServedFamily> extra(4);  // sorted by name, as the exporter hands them over
    extra[0].family = {"aaa_first", "A.", MetricType::Counter, {}};
    extra[1] = {{"app_seconds", "P.", MetricType::Histogram, {}}, BoundSpelling::kPythonClient};
    extra[2].family = {"uwsgi_request_duration_seconds", "D.", MetricType::Histogram, {}};
    extra[3].family = {"zzz_last", "Z.", MetricType::Gauge, {}};
    for (auto& f : extra) f.family.metric.resize(1);
    for (size_t i : {1, 2}) {
      extra[i].family.metric[0].histogram.sample_count = 1;
      extra[i].family.metric[0].histogram.bucket = {{1, 0.1}, {1, 1}};
    }
    const std::string text = check(MakeSnapshot(2), o, self, extra);
    using Catch::Contains;
    CHECK_THAT(text, Contains("app_seconds_bucket{le=\"1.0\"} 1\n"));
    CHECK_THAT(text, Contains("uwsgi_request_duration_seconds_bucket{le=\"1\"} 1\n"));
  }
}

TEST_CASE("the endpoint's own counters are served, every close reason included", "[render]") {
  FakeSource source(MakeSnapshot(1));
  Exporter exporter(&source, ExporterOptions(), nullptr);
  HttpServerStats stats;
  stats.accepted = 7;
  stats.requests = 5;
  stats.closed[static_cast<size_t>(CloseReason::kEvicted)] = 2;
  exporter.SetServerStats(&stats);
  std::string body;
  exporter.Scrape(&body);
  using Catch::Contains;
  CHECK_THAT(body, Contains("# TYPE uwsgi_prometheus_http_connections_closed_total counter\n"));
  CHECK_THAT(body, Contains("uwsgi_prometheus_http_connections_closed_total{reason=\"evicted\"} 2\n"));
  CHECK_THAT(body, Contains("uwsgi_prometheus_http_connections_closed_total{reason=\"shutdown\"} 0\n"));
  CHECK_THAT(body, Contains("uwsgi_prometheus_http_connections_accepted_total 7\n"));
  CHECK_THAT(body, Contains("uwsgi_prometheus_http_requests_total 5\n"));
  exporter.SetServerStats(nullptr);
  exporter.Scrape(&body);
  CHECK_THAT(body, !Contains("uwsgi_prometheus_http_"));
}

TEST_CASE("build_info names the plugin's and uWSGI's versions, whatever the source says",
          "[render]") {
  FakeSource source(MakeSnapshot(1));
  ExporterOptions options;
  options.version = "0.1.0";
  options.uwsgi_version = "2.0.21-debian";
  Exporter exporter(&source, options, nullptr);
  using Catch::Contains;
  for (bool fail : {false, true}) {
    source.fail = fail;
    std::string body;
    exporter.Scrape(&body);
    CHECK_THAT(body, Contains("# TYPE uwsgi_prometheus_build_info gauge\n"
                              "uwsgi_prometheus_build_info{uwsgi_version=\"2.0.21-debian\","
                              "version=\"0.1.0\"} 1\n"));
  }
}

namespace {

// The scrape counter in a body: which render it came from.
std::string ScrapesLine(std::string_view body) {
  size_t at = body.find("\nuwsgi_exporter_scrapes_total ");  // the sample, not its HELP line
  if (at == std::string_view::npos) return "";
  ++at;
  return std::string(body.substr(at, body.find('\n', at) - at));
}

}  // namespace

// (No ';' in the name: CMake would split it, and CTest would run a filter
// that matches nothing.)
TEST_CASE("scrapes of the same moment share one body, later ones render anew", "[render]") {
  FakeSource source(MakeSnapshot(4));
  ExporterOptions options;
  options.share_window = std::chrono::hours(1);
  Exporter exporter(&source, options, nullptr);
  HttpRequest req;
  req.method = "GET";
  req.path = "/metrics";
  HttpRequest gz = req;
  gz.accept_encoding = "gzip";

  HttpResponse first, second, third, fourth;
  exporter.Handle(req, &first);  // still "being sent": first holds its body
  exporter.Handle(req, &second);
  REQUIRE(first.shared_body.owner);
  CHECK(second.shared_body.owner == first.shared_body.owner);
  CHECK(ScrapesLine(first.Body()) == "uwsgi_exporter_scrapes_total 1");

  // A gzip client of the same moment gets that render compressed, once.
  exporter.Handle(gz, &third);
  exporter.Handle(gz, &fourth);
  CHECK(third.shared_body.owner != first.shared_body.owner);
  CHECK(fourth.shared_body.owner == third.shared_body.owner);

  // Once nobody is sending them, the bodies are gone and the next client
  // gets a new render, whatever the window.
  first = second = third = fourth = HttpResponse();
  HttpResponse later;
  exporter.Handle(req, &later);
  CHECK(ScrapesLine(later.Body()) == "uwsgi_exporter_scrapes_total 2");

  SECTION("outside the window a body still being sent is not reused") {
    ExporterOptions no_sharing;
    no_sharing.share_window = std::chrono::milliseconds(0);
    Exporter fresh(&source, no_sharing, nullptr);
    HttpResponse a, b;
    fresh.Handle(req, &a);
    fresh.Handle(req, &b);
    CHECK(a.shared_body.owner != b.shared_body.owner);
    CHECK(ScrapesLine(b.Body()) == "uwsgi_exporter_scrapes_total 2");
  }
}
