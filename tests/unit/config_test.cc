#include <string>

#include <catch2/catch.hpp>

#include "config.h"
#include "health.h"

using namespace uwsgi_prometheus;

namespace {

// The error ResolveConfig gives for `raw`, or "" when it accepts it.
std::string ErrorFor(const RawConfig& raw) {
  Config config;
  std::string error;
  return ResolveConfig(raw, &config, &error) ? std::string() : error;
}

RawConfig WithSocket(const std::string& socket) {
  RawConfig raw;
  raw.socket = socket;
  return raw;
}

}  // namespace

TEST_CASE("no options give the documented defaults", "[config]") {
  Config config;
  std::string error;
  REQUIRE(ResolveConfig(RawConfig{}, &config, &error));
  CHECK(config.address.ToString() == ":9117");
  CHECK(config.metrics_path == "/metrics");
  CHECK(config.buckets == DefaultDurationBounds());
  CHECK_FALSE(config.stats_uri);
  CHECK(config.multiproc_dir.empty());
  CHECK_FALSE((config.collect_cores || config.per_app || config.per_worker));
}

TEST_CASE("given options are kept", "[config]") {
  RawConfig raw;
  raw.socket = "127.0.0.1:9200";
  raw.path = "/m";
  raw.stats_uri = "tcp://x:1717";
  raw.buckets = "0.1,1";
  raw.multiproc_dir = "/run/mp//";
  raw.collect_cores = raw.per_app = raw.per_worker = true;
  Config config;
  std::string error;
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK((config.address.host == "127.0.0.1" && config.address.port == 9200));
  CHECK(config.metrics_path == "/m");
  CHECK(config.stats_uri == std::optional<std::string>("tcp://x:1717"));
  CHECK(config.buckets == std::vector<double>{0.1, 1});
  CHECK(config.multiproc_dir == "/run/mp");  // trailing slashes dropped
  CHECK((config.collect_cores && config.per_app && config.per_worker));
}

TEST_CASE("bad sockets are refused with the option and value", "[config]") {
  for (const char* bad : {"nonsense", ":99999", "127.0.0.1:", "[::1", ""}) {
    INFO(bad);
    CHECK(ErrorFor(WithSocket(bad)).rfind("--prometheus-socket '" + std::string(bad) + "': ", 0) == 0);
  }
  CHECK(ErrorFor(WithSocket(":0")) ==
        "--prometheus-socket ':0': port 0 is not allowed; give a port, e.g. :9117");
  CHECK(ErrorFor(WithSocket("/run/metrics.sock")).empty());
}

TEST_CASE("bad paths are refused", "[config]") {
  RawConfig raw;
  for (const char* bad : {"metrics", "/a b", "/m?x", "/m#x", ""}) {
    INFO(bad);
    raw.path = bad;
    CHECK(ErrorFor(raw) == "--prometheus-path '" + std::string(bad) +
                               "': must start with '/' and contain no spaces, '?' or '#'");
  }
  for (const char* taken : {"/", "/-/healthy"}) {
    raw.path = taken;
    CHECK(ErrorFor(raw).rfind("--prometheus-path '" + std::string(taken) +
                                  "': that path is taken by the landing page or the health probe",
                              0) == 0);
  }
}

TEST_CASE("bad buckets are refused with ParseBuckets' reason", "[config]") {
  RawConfig raw;
  raw.buckets = "1,0.5";
  CHECK(ErrorFor(raw) == "--prometheus-buckets '1,0.5': bucket bounds must be strictly increasing");
  for (const char* bad : {"", "abc", "-1", "inf", "1,1", "nan"}) {
    INFO(bad);
    raw.buckets = bad;
    CHECK(ErrorFor(raw).rfind("--prometheus-buckets '" + std::string(bad) + "': ", 0) == 0);
  }
  std::string many;
  for (int i = 1; i <= 33; ++i) many += std::to_string(i) + ",";
  raw.buckets = many;
  CHECK(ErrorFor(raw) == "--prometheus-buckets '" + many + "': at most 32 bucket bounds");
}

TEST_CASE("an empty multi-process directory is refused", "[config]") {
  RawConfig raw;
  raw.multiproc_dir = "";
  CHECK(ErrorFor(raw) == "--prometheus-multiproc-dir '': empty path");
  raw.multiproc_dir = "/";
  CHECK(ErrorFor(raw).empty());
}

TEST_CASE("the first bad option is the one reported", "[config]") {
  RawConfig raw;
  raw.path = "x";
  raw.socket = "nonsense";
  CHECK(ErrorFor(raw).rfind("--prometheus-path 'x'", 0) == 0);
}

TEST_CASE("exporter and request table options follow the configuration", "[config]") {
  Config config;
  std::string error;
  RawConfig raw;
  raw.per_app = true;
  REQUIRE(ResolveConfig(raw, &config, &error));
  ExporterOptions e = ExporterOptionsFor(config, "tcp://0.0.0.0:1717", "1.2.3", "2.0.21");
  CHECK(e.model.stats_uri == "tcp://0.0.0.0:1717");  // derived when not given
  CHECK(e.version == "1.2.3");
  CHECK(e.uwsgi_version == "2.0.21");
  config.stats_uri = "";
  CHECK(ExporterOptionsFor(config, "tcp://0.0.0.0:1717", "", "").model.stats_uri.empty());
  RequestStatsOptions r = RequestStatsOptionsFor(config, 4, 64);
  CHECK((r.workers == 4 && r.apps == 65));  // slot 0: requests no app served
  config.per_app = false;
  r = RequestStatsOptionsFor(config, 0, 64);
  CHECK((r.workers == 1 && r.apps == 1));
}

TEST_CASE("a busy address retries by default, fail-fast and the longest wait are options",
          "[config]") {
  Config config;
  std::string error;
  RawConfig raw;
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK_FALSE(config.bind_fail_fast);
  CHECK(config.bind_retry_max_s == 30);
  raw.bind_fail_fast = true;
  raw.bind_retry = "2";
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK(config.bind_fail_fast);
  CHECK(config.bind_retry_max_s == 2);
  for (const char* bad : {"0", "3601", "", "1.5", "-1", "30s", "99999999999"}) {
    INFO(bad);
    raw.bind_retry = bad;
    CHECK(ErrorFor(raw) == "--prometheus-bind-retry '" + std::string(bad) +
                               "': give the longest wait between bind attempts in whole "
                               "seconds, 1 to 3600 (default 30)");
  }
}

TEST_CASE("%(vassal) in the socket is the config file's name", "[config]") {
  RawConfig raw = WithSocket("/run/uwsgi/%(vassal).sock");
  raw.instance_name = "app1";
  Config config;
  std::string error;
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK(config.address.ToString() == "unix:/run/uwsgi/app1.sock");
  raw.socket = "/run/%(vassal)/%(vassal).sock";
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK(config.address.path == "/run/app1/app1.sock");
  SECTION("without a config file it is refused") {
    raw.instance_name.clear();
    CHECK(ErrorFor(raw).rfind("--prometheus-socket '/run/%(vassal)/%(vassal).sock': %(vassal) "
                              "stands for the name of the instance's config file",
                              0) == 0);
  }
  SECTION("names from every way uWSGI is given a file") {
    CHECK(InstanceName("app1.ini") == "app1");
    CHECK(InstanceName("/etc/uwsgi/vassals/app1.yaml") == "app1");
    CHECK(InstanceName("app.v2.ini") == "app.v2");
    CHECK(InstanceName("app.ini:production") == "app");
    CHECK(InstanceName("exec://vassals/app.sh") == "app");
    CHECK(InstanceName(".hidden") == ".hidden");
    CHECK(InstanceName("").empty());
  }
}

TEST_CASE("the master loop is healthy until its beats stop", "[health]") {
  Heartbeat heartbeat;
  std::string reason;
  CHECK(heartbeat.Healthy(1000000000000, 1, &reason));  // no beat yet: starting
  heartbeat.Beat(1000000000000);
  CHECK(heartbeat.Healthy(1000000000000 + 8000000000, 1, &reason));  // 3 * 1 + 5 s
  CHECK_FALSE(heartbeat.Healthy(1000000000000 + 9000000000, 1, &reason));
  CHECK(reason == "uWSGI master loop has not run for 9 s");
  CHECK(heartbeat.Healthy(1000000000000 + 9000000000, 2, &reason));  // a longer interval
  CHECK(MonotonicNs() > 0);
}
