#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include <catch2/catch.hpp>

#include "config.h"
#include "families.h"
#include "native_histogram.h"
#include "request_stats.h"

using namespace uwsgi_prometheus;
using prometheus::MetricFamily;

namespace {

using Buckets = std::vector<std::pair<int32_t, uint64_t>>;

int32_t Index(double v, int32_t schema) {
  static NativeIndexer indexers[kNativeMaxSchema - kNativeMinSchema + 1];
  NativeIndexer& ix = indexers[schema - kNativeMinSchema];
  if (ix.schema != schema || ix.per_octave == 0) FillNativeIndexer(schema, &ix);
  return NativeIndex(v, ix);
}

// The definition, in long double: the smallest i with v <= 2^(i / 2^schema).
long double ExactKey(double v, int32_t schema) {
  return std::log2(static_cast<long double>(v)) * std::ldexp(1.0L, schema);
}

RequestObservation At(uint32_t worker, uint64_t us, uint64_t bytes) {
  return {worker, 0, us, bytes, 200, "GET"};
}

const NativeSeries& Native(const std::vector<NativeSeries>& all, const std::string& family,
                           size_t nth = 0) {
  for (const auto& n : all) {
    if (n.family == family && nth-- == 0) return n;
  }
  FAIL("no native series of " << family);
  throw 0;
}

struct Scrape {
  std::vector<MetricFamily> families;
  std::vector<NativeSeries> native;
};

Scrape Read(const RequestStats& stats, RequestStats::RenderOptions options = {}) {
  Scrape s;
  stats.AppendFamilies(options, &s.families, &s.native);
  return s;
}

// Each bucket of `later` holds at least what it held in `earlier`.
bool NeverBelow(const NativeHistogram& earlier, const NativeHistogram& later) {
  const Buckets after = NativeBuckets(later);
  for (const auto& [index, count] : NativeBuckets(earlier)) {
    bool found = false;
    for (const auto& [i, c] : after) found = found || (i == index && c >= count);
    if (!found) return false;
  }
  return later.zero_count >= earlier.zero_count && later.count >= earlier.count;
}

}  // namespace

TEST_CASE("bucket indices follow base^(i-1) < v <= base^i at every schema", "[native]") {
  for (int32_t schema = kNativeMinSchema; schema <= kNativeMaxSchema; ++schema) {
    CAPTURE(schema);
    const int32_t per_octave = schema > 0 ? 1 << schema : 1;
    for (int32_t i = -40 * per_octave; i <= 40 * per_octave; ++i) {
      CAPTURE(i);
      const double bound = NativeBound(i, schema);
      REQUIRE(Index(bound, schema) == i);  // upper bounds are inclusive
      REQUIRE(Index(std::nextafter(bound, INFINITY), schema) == i + 1);
      REQUIRE(Index(std::nextafter(bound, 0.0), schema) == i);
      REQUIRE(NativeBound(i - 1, schema) < bound);
    }
    CHECK(Index(1, schema) == 0);
    CHECK(Index(1e-300, schema) < Index(1e-100, schema));
    CHECK(Index(std::ldexp(1.0, -1074), schema) ==  // the smallest subnormal
          static_cast<int32_t>(std::ceil(-1074.0L * std::ldexp(1.0L, schema))));
    for (double subnormal : {std::ldexp(3.0, -1074), 1e-310, 2.5e-320}) {
      CHECK(Index(subnormal, schema) == static_cast<int32_t>(std::ceil(ExactKey(subnormal, schema))));
    }
    CHECK(Index(INFINITY, schema) == INT32_MAX);
  }
}

TEST_CASE("bucket indices match log2 away from boundaries", "[native]") {
  std::mt19937_64 random(42);
  std::uniform_real_distribution<double> exponent(-60, 60);
  for (int32_t schema = kNativeMinSchema; schema <= kNativeMaxSchema; ++schema) {
    CAPTURE(schema);
    for (int n = 0; n < 20000; ++n) {
      const double v = std::exp2(exponent(random));
      const long double key = ExactKey(v, schema);
      if (std::fabs(key - std::round(key)) < 1e-9L) continue;  // too close to call
      CAPTURE(v);
      REQUIRE(Index(v, schema) == static_cast<int32_t>(std::ceil(key)));
    }
  }
}

TEST_CASE("schema 3 is the bucket factor 1.1 of client_golang", "[native]") {
  CHECK(NativeBound(1, 3) == Approx(1.0905077327));
  CHECK(NativeBound(8, 3) == 2);
  CHECK(Index(0.003, 3) == -67);  // log2(0.003) * 8 = -67.05
  CHECK(Index(1e-5, 3) == -132);
  CHECK(Index(1e4, 3) == 107);
  CHECK(Index(1e9, 3) == 240);
  CHECK(Index(2, -1) == 1);
  CHECK(Index(3, -1) == 1);  // (1, 4]
  CHECK(Index(5, -1) == 2);
  CHECK(Index(0.25, -1) == -1);
  CHECK(Index(0.2, -1) == -1);  // (1/16, 1/4]
}

TEST_CASE("counts become spans and deltas, short gaps joined", "[native]") {
  const NativeRange range{-2, 12, NativeBound(-3, 3)};
  //                             zero  -2 -1  0  1  2  3  4  5  6  7  8  9 10 11 12
  const std::vector<uint64_t> counts{1, 0, 3, 0, 0, 2, 0, 0, 0, 0, 0, 5, 0, 0, 0, 7};
  const NativeHistogram h = MakeNativeHistogram(3, range, counts, 12.5);
  CHECK(h.schema == 3);
  CHECK(h.zero_threshold == NativeBound(-3, 3));
  CHECK(h.zero_count == 1);
  CHECK(h.count == 18);
  CHECK(h.sum == 12.5);
  REQUIRE(h.positive_spans.size() == 3);
  // -1..2 (two empty buckets inside), then 8 after a gap of 5, then 12 after 3
  CHECK(h.positive_spans[0].offset == -1);
  CHECK(h.positive_spans[0].length == 4);
  CHECK(h.positive_spans[1].offset == 5);
  CHECK(h.positive_spans[1].length == 1);
  CHECK(h.positive_spans[2].offset == 3);
  CHECK(h.positive_spans[2].length == 1);
  CHECK(h.positive_deltas == std::vector<int64_t>{3, -3, 0, 2, 3, 2});
  CHECK(NativeBuckets(h) == Buckets{{-1, 3}, {0, 0}, {1, 0}, {2, 2}, {8, 5}, {12, 7}});

  SECTION("no observation but the zero bucket: no spans") {
    const NativeHistogram z = MakeNativeHistogram(3, range, {4, 0, 0}, 0);
    CHECK(z.count == 4);
    CHECK(z.zero_count == 4);
    CHECK(z.zero_threshold > 0);
    CHECK(z.positive_spans.empty());
    CHECK(z.positive_deltas.empty());
  }
  SECTION("adjacent buckets make one span") {
    const NativeHistogram a = MakeNativeHistogram(3, range, {0, 1, 2, 3}, 0);
    REQUIRE(a.positive_spans.size() == 1);
    CHECK(a.positive_spans[0].offset == -2);
    CHECK(a.positive_spans[0].length == 3);
    CHECK(a.positive_deltas == std::vector<int64_t>{1, 1, 1});
  }
}

TEST_CASE("workers record native buckets next to the classic ones", "[native]") {
  auto stats = MakeRequestStats(2);
  stats.Observe(At(1, 3000, 500));   // 3 ms: bucket -67; 500 B: bucket ceil(8 log2 500) = 72
  stats.Observe(At(2, 3000, 500));
  stats.Observe(At(1, 1000000, 1));  // 1 s: bucket 0; 1 B: bucket 0
  const Scrape s = Read(stats);
  REQUIRE(s.native.size() == 2);
  const NativeHistogram& d = Native(s.native, "uwsgi_request_duration_seconds").histogram;
  CHECK(d.schema == 3);
  CHECK(d.count == 3);
  CHECK(d.zero_count == 0);
  CHECK(d.sum == Approx(1.006));
  CHECK(NativeBuckets(d) == Buckets{{-67, 2}, {0, 1}});
  const NativeHistogram& z = Native(s.native, "uwsgi_response_size_bytes").histogram;
  CHECK(NativeBuckets(z) == Buckets{{0, 1}, {72, 2}});
  CHECK(z.sum == 1001);
  const auto& classic = Find(s.families, "uwsgi_request_duration_seconds")->metric.at(0);
  CHECK(classic.histogram.sample_count == d.count);
  CHECK(classic.histogram.sample_sum == d.sum);
  CHECK(Native(s.native, "uwsgi_request_duration_seconds").labels == classic.label);
}

TEST_CASE("values below the range go to the zero bucket, above it to the highest", "[native]") {
  auto stats = MakeRequestStats(1);
  stats.Observe(At(1, 0, 0));             // zero duration, empty response
  stats.Observe(At(1, 5, 0));             // 5 us: below 1e-5 s, the lowest bucket's lower edge
  stats.Observe(At(1, 10, 2000000000));   // 10 us: lowest bucket; 2 GB: above 1e9
  stats.Observe(At(1, 90000000000, 1));   // 25 hours: above 1e4 s
  const Scrape s = Read(stats);
  const NativeHistogram& d = Native(s.native, "uwsgi_request_duration_seconds").histogram;
  CHECK(d.zero_threshold == NativeBound(-133, 3));
  CHECK(d.zero_threshold == Approx(9.9e-6).epsilon(0.01));
  CHECK(d.zero_count == 2);
  CHECK(d.count == 4);
  CHECK(NativeBuckets(d) == Buckets{{-132, 1}, {107, 1}});
  const NativeHistogram& z = Native(s.native, "uwsgi_response_size_bytes").histogram;
  CHECK(z.zero_threshold == NativeBound(-1, 3));
  CHECK(z.zero_count == 2);
  CHECK(NativeBuckets(z) == Buckets{{0, 1}, {240, 1}});
  CHECK(z.count == 4);
}

TEST_CASE("native series follow per-worker and per-app labels", "[native]") {
  auto stats = MakeRequestStats(2, 2);
  RequestObservation o = At(1, 100, 10);
  o.app_index = 1;
  stats.Observe(o);
  o.worker_id = 2;
  stats.Observe(o);
  RequestStats::RenderOptions r;
  r.per_worker = true;
  r.app_labels = {{"(no app)", "/a"}, {"(no app)", "/a"}};
  const Scrape s = Read(stats, r);
  const auto& classic = Find(s.families, "uwsgi_response_size_bytes")->metric;
  REQUIRE(classic.size() == 2);
  for (size_t k = 0; k < 2; ++k) {
    const NativeSeries& n = Native(s.native, "uwsgi_response_size_bytes", k);
    CHECK(n.labels == classic[k].label);
    CHECK(n.histogram.count == 1);
  }
}

TEST_CASE("a respawned worker's native counts never go backwards", "[native]") {
  auto stats = MakeRequestStats(1);
  auto worker_life = [&stats](uint64_t us, int requests) {
    const pid_t child = fork();
    if (child == 0) {
      for (int i = 0; i < requests; ++i) stats.Observe(At(1, us, 100));
      _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    REQUIRE(WIFEXITED(status));
  };
  worker_life(2000, 100);
  const Scrape first = Read(stats);
  worker_life(500000, 30);  // the same worker id, a new process
  const Scrape second = Read(stats);
  for (const char* family : {"uwsgi_request_duration_seconds", "uwsgi_response_size_bytes"}) {
    CAPTURE(family);
    CHECK(NeverBelow(Native(first.native, family).histogram,
                     Native(second.native, family).histogram));
    CHECK(Native(second.native, family).histogram.count == 130);
  }
  CHECK(NativeBuckets(Native(second.native, "uwsgi_request_duration_seconds").histogram) ==
        Buckets{{Index(0.002, 3), 100}, {Index(0.5, 3), 30}});
}

TEST_CASE("a scrape during requests is consistent and monotonic", "[native]") {
  auto stats = MakeRequestStats(1);
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      stats.Observe(At(1, (i * 7919) % 3000000, i % 100000));
    }
  });
  NativeHistogram last;
  for (int n = 0; n < 2000; ++n) {
    const Scrape s = Read(stats);
    if (s.native.empty()) continue;
    const NativeHistogram& d = Native(s.native, "uwsgi_request_duration_seconds").histogram;
    const auto& classic = Find(s.families, "uwsgi_request_duration_seconds")->metric.at(0);
    uint64_t total = d.zero_count;
    for (const auto& bucket : NativeBuckets(d)) total += bucket.second;
    REQUIRE(total == d.count);
    REQUIRE(d.count >= classic.histogram.sample_count);
    REQUIRE(NeverBelow(last, d));
    last = d;
  }
  stop = true;
  worker.join();
}

TEST_CASE("native histograms can be turned off", "[native]") {
  RequestStatsOptions o;
  o.duration_bounds = DefaultDurationBounds();
  o.workers = 4;
  RequestStats on;
  std::string error;
  REQUIRE(on.Create(o, &error));
  o.native.enabled = false;
  RequestStats off;
  REQUIRE(off.Create(o, &error));
  // 241 + 242 counts of 8 bytes, rounded up to 128, per worker
  CHECK(on.bytes() - off.bytes() == 4 * 3968);
  off.Observe(At(1, 1000, 10));
  const Scrape s = Read(off);
  CHECK(s.native.empty());
  CHECK(Find(s.families, "uwsgi_request_duration_seconds")->metric.at(0).histogram.sample_count ==
        1);
}

TEST_CASE("a table with a damaged native header is refused", "[native]") {
  auto stats = MakeRequestStats(1);
  std::vector<char> copy(stats.bytes());
  std::memcpy(copy.data(), stats.header(), copy.size());
  reinterpret_cast<RequestStatsHeader*>(copy.data())->native_duration.highest += 100;  // outgrows the record
  RequestStats other;
  std::string error;
  CHECK_FALSE(other.Attach(copy.data(), copy.size(), &error));
}

TEST_CASE("native options are parsed with the option and value in errors", "[native][config]") {
  Config config;
  std::string error;
  REQUIRE(ResolveConfig({}, &config, &error));
  CHECK(config.native.enabled);
  CHECK(config.native.schema == 3);
  CHECK(config.native.duration_min == 1e-5);
  CHECK(config.native.duration_max == 1e4);
  CHECK(config.native.size_min == 1);
  CHECK(config.native.size_max == 1e9);
  CHECK(RequestStatsOptionsFor(config, 2, 1).native.schema == 3);

  RawConfig raw;
  raw.native_schema = "off";
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK_FALSE(config.native.enabled);
  raw.native_schema = "-4";
  raw.native_duration_range = "0.001, 60";
  raw.native_size_range = "100,1e6";
  REQUIRE(ResolveConfig(raw, &config, &error));
  CHECK(config.native.schema == -4);
  CHECK(config.native.duration_min == 0.001);
  CHECK(config.native.duration_max == 60);
  CHECK(config.native.size_min == 100);

  for (const char* bad : {"9", "-5", "3.5", "", "on", "3x"}) {
    raw = {};
    raw.native_schema = bad;
    CHECK_FALSE(ResolveConfig(raw, &config, &error));
    CHECK(error.find(std::string("--prometheus-native-schema '") + bad + "'") == 0);
  }
  for (const char* bad : {"1", "1e4,1e-5", "0,1", "-1,1", "1,inf", "a,b", "1,2,3", ","}) {
    raw = {};
    raw.native_duration_range = bad;
    CHECK_FALSE(ResolveConfig(raw, &config, &error));
    CHECK(error.find(std::string("--prometheus-native-duration-range '") + bad + "'") == 0);
  }
  SECTION("too many buckets: the schema or the range given is named") {
    raw = {};
    raw.native_schema = "8";  // 1e-5..1e4 s is 7,600 buckets at schema 8
    CHECK_FALSE(ResolveConfig(raw, &config, &error));
    CHECK(error.find("--prometheus-native-schema '8'") == 0);
    CHECK(error.find("narrow the range") != std::string::npos);
    raw.native_duration_range = "0.01,10";
    raw.native_size_range = "1,1e12";
    CHECK_FALSE(ResolveConfig(raw, &config, &error));
    CHECK(error.find("--prometheus-native-size-range '1,1e12'") == 0);
    raw.native_size_range = "100,1e5";
    CHECK(ResolveConfig(raw, &config, &error));
  }
}
