#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "exporter.h"
#include "families.h"
#include "fake_source.h"
#include "http_session.h"
#include "model.h"
#include "protobuf.h"
#include "providers.h"
#include "request_stats.h"

using namespace uwsgi_prometheus;
using namespace uwsgi_prometheus::protobuf;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

std::string Bytes(const TextBuffer& b) { return std::string(b.data(), b.size()); }

std::string Hex(const std::string& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    if (!out.empty()) out += ' ';
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string VarintHex(uint64_t v) {
  TextBuffer b;
  AppendVarint(&b, v);
  CHECK(VarintSize(v) == b.size());
  return Hex(Bytes(b));
}

// A reader of the wire format written for these tests: the fields of one
// message as (number, wire type, varint value or bytes).
struct Field {
  uint32_t number;
  int type;
  uint64_t varint = 0;
  std::string bytes = {};  // length-delimited and fixed64 payloads
};

uint64_t ReadVarint(const std::string& s, size_t* pos) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    REQUIRE(*pos < s.size());
    const auto c = static_cast<unsigned char>(s[(*pos)++]);
    v |= static_cast<uint64_t>(c & 0x7f) << shift;
    if (!(c & 0x80)) return v;
  }
  FAIL("varint longer than 10 bytes");
  return v;
}

std::vector<Field> Fields(const std::string& message) {
  std::vector<Field> out;
  size_t pos = 0;
  while (pos < message.size()) {
    const uint64_t key = ReadVarint(message, &pos);
    Field f{static_cast<uint32_t>(key >> 3), static_cast<int>(key & 7)};
    if (f.type == 0) {
      f.varint = ReadVarint(message, &pos);
    } else {
      const size_t n = f.type == 1 ? 8 : ReadVarint(message, &pos);
      REQUIRE(f.type != 5);
      REQUIRE(pos + n <= message.size());
      f.bytes = message.substr(pos, n);
      pos += n;
    }
    out.push_back(f);
  }
  return out;
}

// The messages of a delimited stream.
std::vector<std::string> Messages(const std::string& stream) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    const uint64_t n = ReadVarint(stream, &pos);
    REQUIRE(pos + n <= stream.size());
    out.push_back(stream.substr(pos, n));
    pos += n;
  }
  return out;
}

std::vector<uint32_t> Numbers(const std::vector<Field>& fields) {
  std::vector<uint32_t> out;
  for (const auto& f : fields) out.push_back(f.number);
  return out;
}

const Field& Only(const std::vector<Field>& fields, uint32_t number) {
  const Field* found = nullptr;
  for (const auto& f : fields) {
    if (f.number == number) {
      REQUIRE(found == nullptr);
      found = &f;
    }
  }
  REQUIRE(found != nullptr);
  return *found;
}

MetricFamily Histogram(std::vector<ClientMetric::Bucket> buckets, uint64_t count) {
  MetricFamily f{"h_seconds", "H.", MetricType::Histogram, {}};
  f.metric.emplace_back();
  f.metric.back().histogram.sample_count = count;
  f.metric.back().histogram.sample_sum = 2.5;
  f.metric.back().histogram.bucket = std::move(buckets);
  return f;
}

}  // namespace

TEST_CASE("varints are little-endian groups of 7 bits", "[protobuf]") {
  CHECK(VarintHex(0) == "00");
  CHECK(VarintHex(1) == "01");
  CHECK(VarintHex(127) == "7f");
  CHECK(VarintHex(128) == "80 01");
  CHECK(VarintHex(300) == "ac 02");
  CHECK(VarintHex(16383) == "ff 7f");
  CHECK(VarintHex(16384) == "80 80 01");
  CHECK(VarintHex(std::numeric_limits<uint64_t>::max()) == "ff ff ff ff ff ff ff ff ff 01");
  SECTION("an int64 is its two's complement: ten bytes when negative") {
    TextBuffer b;
    Writer(&b).Varint(6, static_cast<uint64_t>(int64_t{-1}));
    CHECK(Hex(Bytes(b)) == "30 ff ff ff ff ff ff ff ff ff 01");
  }
}

TEST_CASE("zigzag maps small magnitudes of either sign to small varints", "[protobuf]") {
  CHECK(ZigZag(0) == 0);
  CHECK(ZigZag(-1) == 1);
  CHECK(ZigZag(1) == 2);
  CHECK(ZigZag(-2) == 3);
  CHECK(ZigZag(-4) == 7);  // the lowest schema
  CHECK(ZigZag(std::numeric_limits<int64_t>::max()) == std::numeric_limits<uint64_t>::max() - 1);
  CHECK(ZigZag(std::numeric_limits<int64_t>::min()) == std::numeric_limits<uint64_t>::max());
  TextBuffer b;
  Writer(&b).Sint(5, -4);
  CHECK(Hex(Bytes(b)) == "28 07");
}

TEST_CASE("doubles, strings and packed fields", "[protobuf]") {
  TextBuffer b;
  Writer w(&b);
  SECTION("a double is fixed64, little-endian") {
    w.Double(1, 1.0);
    CHECK(Hex(Bytes(b)) == "09 00 00 00 00 00 00 f0 3f");
  }
  SECTION("a string is its length and its bytes, unescaped") {
    w.String(2, "a\"\n\\");
    CHECK(Hex(Bytes(b)) == "12 04 61 22 0a 5c");
  }
  SECTION("packed sint64: one tag, the byte length, zigzag varints") {
    w.PackedSint(13, {1, -1, 2, -64, 64});
    CHECK(Hex(Bytes(b)) == "6a 06 02 01 04 7f 80 01");
  }
  SECTION("an empty packed field is left out") {
    w.PackedSint(10, {});
    CHECK(b.size() == 0);
  }
}

TEST_CASE("a nested message gets its length in front, however long", "[protobuf]") {
  for (size_t n : {0, 1, 124, 125, 126, 200, 16380, 20000}) {
    TextBuffer b;
    b.push_back('x');  // bytes before the message stay in place
    Writer w(&b);
    const size_t m = w.Begin(4);
    w.String(1, std::string(n, 'v'));
    w.End(m);
    const std::string out = Bytes(b);
    size_t pos = 2;
    REQUIRE(out.substr(0, 2) == "x\x22");
    const uint64_t length = ReadVarint(out, &pos);
    const size_t inner = 1 + VarintSize(n) + n;
    CHECK(length == inner);
    CHECK(out.size() == pos + inner);
    CHECK(Only(Fields(out.substr(pos)), 1).bytes == std::string(n, 'v'));
  }
}

TEST_CASE("a gauge family, byte for byte", "[protobuf]") {
  MetricFamily f{"g", "h", MetricType::Gauge, {}};
  f.metric.emplace_back();
  f.metric.back().label.push_back({"a", "b"});
  f.metric.back().gauge.value = 1;
  TextBuffer b;
  EncodeFamily(f, nullptr, &b);
  // length 29; name, help, type GAUGE, metric {label {a, b}, gauge {1.0}}
  CHECK(Hex(Bytes(b)) ==
        "1d 0a 01 67 12 01 68 18 01 22 13 0a 06 0a 01 61 12 01 62 12 09 09 00 00 00 00 00 00 f0 "
        "3f");
}

TEST_CASE("every type in its own field, with metrics.proto's type numbers", "[protobuf]") {
  const std::pair<MetricType, std::pair<uint64_t, uint32_t>> cases[] = {
      {MetricType::Counter, {0, 3}}, {MetricType::Gauge, {1, 2}},
      {MetricType::Summary, {2, 4}}, {MetricType::Untyped, {3, 5}},
      {MetricType::Histogram, {4, 7}}};
  for (const auto& [type, want] : cases) {
    MetricFamily f{"x_total", "", type, {}};
    f.metric.emplace_back();
    f.metric.back().timestamp_ms = 1700000000123;
    TextBuffer b;
    EncodeFamily(f, nullptr, &b);
    const auto messages = Messages(Bytes(b));
    REQUIRE(messages.size() == 1);
    const auto family = Fields(messages[0]);
    CHECK(Numbers(family) == std::vector<uint32_t>{1, 3, 4});  // empty help left out
    CHECK(Only(family, 1).bytes == "x_total");                 // names as given
    CHECK(Only(family, 3).varint == want.first);
    const auto metric = Fields(Only(family, 4).bytes);
    const std::vector<uint32_t> in_order =  // field numbers ascending
        want.second < 6 ? std::vector<uint32_t>{want.second, 6} : std::vector<uint32_t>{6, 7};
    CHECK(Numbers(metric) == in_order);
    CHECK(Only(metric, 6).varint == 1700000000123);
  }
}

TEST_CASE("a family without series is not written", "[protobuf]") {
  TextBuffer b;
  EncodeFamily(MetricFamily{"empty", "E.", MetricType::Gauge, {}}, nullptr, &b);
  CHECK(b.size() == 0);
}

TEST_CASE("classic histograms: buckets without +Inf, no native field", "[protobuf]") {
  const double inf = std::numeric_limits<double>::infinity();
  auto buckets_of = [](const MetricFamily& f, const std::vector<NativeHistogram>* native) {
    TextBuffer b;
    EncodeFamily(f, native, &b);
    const auto metric = Fields(Only(Fields(Messages(Bytes(b)).at(0)), 4).bytes);
    return Fields(Only(metric, 7).bytes);
  };
  SECTION("a trailing +Inf bucket equal to the count is the count") {
    const auto h = buckets_of(Histogram({{1, 0.5}, {3, 1}, {4, inf}}, 4), nullptr);
    CHECK(Numbers(h) == std::vector<uint32_t>{1, 2, 3, 3});
    CHECK(Only(h, 1).varint == 4);
    const auto second = Fields(h[3].bytes);
    CHECK(Only(second, 1).varint == 3);
    CHECK(Only(second, 2).bytes == std::string("\0\0\0\0\0\0\xf0\x3f", 8));
  }
  SECTION("one that differs from the count is kept") {
    CHECK(Numbers(buckets_of(Histogram({{1, 0.5}, {5, inf}}, 4), nullptr)) ==
          std::vector<uint32_t>{1, 2, 3, 3});
  }
  SECTION("a default-constructed native histogram adds nothing") {
    std::vector<NativeHistogram> native(1);
    CHECK(Numbers(buckets_of(Histogram({{1, 0.5}}, 1), &native)) ==
          std::vector<uint32_t>{1, 2, 3});
  }
}

TEST_CASE("native histogram fields, when given", "[protobuf]") {
  MetricFamily f = Histogram({{1, 0.5}}, 7);
  std::vector<NativeHistogram> native(1);
  auto& n = native[0];
  n.schema = -4;
  n.zero_threshold = 0.5;
  n.zero_count = 2;
  n.count = 9;  // the native read's count, sent as the series' count
  n.positive_spans = {{-3, 2}, {3, 1}};
  n.positive_deltas = {1, 2, -1};
  TextBuffer b;
  EncodeFamily(f, &native, &b);
  const auto metric = Fields(Only(Fields(Messages(Bytes(b)).at(0)), 4).bytes);
  const auto h = Fields(Only(metric, 7).bytes);
  CHECK(Numbers(h) == std::vector<uint32_t>{1, 2, 3, 5, 6, 7, 12, 12, 13});
  CHECK(Only(h, 1).varint == 9);
  CHECK(Only(h, 5).varint == 7);  // zigzag(-4)
  CHECK(Only(h, 6).bytes == std::string("\0\0\0\0\0\0\xe0\x3f", 8));  // 0.5
  CHECK(Only(h, 7).varint == 2);
  CHECK(Hex(Only(h, 13).bytes) == "02 04 01");
  const auto first_span = Fields(h[6].bytes);
  CHECK(Only(first_span, 1).varint == 5);  // zigzag(-3)
  CHECK(Only(first_span, 2).varint == 2);
  SECTION("an empty one is still native: schema, threshold and zero count go out") {
    NativeHistogram empty;
    empty.schema = 3;
    empty.zero_threshold = 1e-9;
    native[0] = empty;
    TextBuffer c;
    EncodeFamily(f, &native, &c);
    const auto m = Fields(Only(Fields(Messages(Bytes(c)).at(0)), 4).bytes);
    CHECK(Numbers(Fields(Only(m, 7).bytes)) == std::vector<uint32_t>{1, 2, 3, 5, 6, 7});
  }
  SECTION("a list that does not match the series is ignored") {
    native.push_back(native[0]);
    TextBuffer c;
    EncodeFamily(f, &native, &c);
    const auto m = Fields(Only(Fields(Messages(Bytes(c)).at(0)), 4).bytes);
    CHECK(Numbers(Fields(Only(m, 7).bytes)) == std::vector<uint32_t>{1, 2, 3});
  }
}

TEST_CASE("a protobuf scrape has the text scrape's families in its order", "[protobuf]") {
  Snapshot s = MakeSnapshot(5, 2);
  s.process.valid = true;
  ModelOptions o;
  o.stats_uri = "unix:///run/\"x\".sock";
  o.collect_cores = true;
  SelfStats self;
  self.scrape_duration_count = 2;
  std::vector<ServedFamily> extra;
  extra.push_back({Histogram({{1, 0.5}}, 1)});
  extra.push_back({MetricFamily{"zz_last", "Z.", MetricType::Counter, {ClientMetric{}}}});
  TextBuffer text, proto;
  RenderScrape(s, o, self, extra, &text);
  EncodeScrape(s, o, self, extra, &proto);
  std::vector<std::string> text_names, proto_names;
  const std::string t = Bytes(text);
  for (size_t pos = 0; (pos = t.find("# TYPE ", pos)) != std::string::npos; pos += 7) {
    text_names.push_back(t.substr(pos + 7, t.find(' ', pos + 7) - pos - 7));
  }
  for (const auto& m : Messages(Bytes(proto))) proto_names.push_back(Only(Fields(m), 1).bytes);
  CHECK(proto_names.size() > 40);
  CHECK(proto_names == text_names);
}

namespace {

// The value of a counter family without labels in a protobuf body.
double CounterIn(std::string_view body, const std::string& name) {
  for (const auto& m : Messages(std::string(body))) {
    const auto family = Fields(m);
    if (Only(family, 1).bytes != name) continue;
    const auto value = Only(Fields(Only(Fields(Only(family, 4).bytes), 3).bytes), 1).bytes;
    double d;
    std::memcpy(&d, value.data(), sizeof d);
    return d;
  }
  return -1;
}

std::string HeaderOf(const HttpResponse& r, const std::string& name) {
  for (const auto& [n, v] : r.extra_headers) {
    if (n == name) return v;
  }
  return "<absent>";
}

}  // namespace

TEST_CASE("clients of the same moment share one snapshot, native histograms read only for protobuf",
          "[protobuf]") {
  constexpr const char* kAccept =
      "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
      "encoding=delimited";
  const HttpRequest text{"GET", "/metrics", "", "", "", ""};
  const HttpRequest proto{"GET", "/metrics", "", kAccept, "", ""};
  const HttpRequest proto_gz{"GET", "/metrics", "", kAccept, "gzip", ""};
  FakeSource source(MakeSnapshot(4));
  ExporterOptions sharing;
  sharing.share_window = std::chrono::hours(1);  // everything below is "the same moment"
  Exporter exporter(&source, sharing, nullptr);

  HttpResponse a, b, c, d, e;
  exporter.Handle(text, &a);  // still being sent: holds the scrape
  exporter.Handle(proto, &b);  // a text scrape has no native histograms: taken anew
  exporter.Handle(proto, &c);
  exporter.Handle(proto_gz, &d);
  exporter.Handle(text, &e);  // the protobuf scrape serves text as well
  CHECK(a.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(b.content_type ==
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
        "encoding=delimited");
  CHECK(HeaderOf(b, "Vary") == "Accept, Accept-Encoding");
  CHECK(HeaderOf(b, "Content-Encoding") == "<absent>");
  CHECK(HeaderOf(d, "Content-Encoding") == "gzip");
  CHECK(b.shared_body.owner != a.shared_body.owner);
  CHECK(c.shared_body.owner == b.shared_body.owner);  // one protobuf body
  CHECK(a.Body().find("uwsgi_exporter_scrapes_total 1\n") != std::string::npos);
  CHECK(CounterIn(b.Body(), "uwsgi_exporter_scrapes_total") == 2);
  CHECK(e.shared_body.owner != a.shared_body.owner);
  CHECK(e.Body().find("uwsgi_exporter_scrapes_total 2\n") != std::string::npos);
  std::string again;
  exporter.Scrape(&again, ExpositionFormat::kProtobuf);
  CHECK(CounterIn(again, "uwsgi_exporter_scrapes_total") == 3);

  SECTION("without protobuf offered, its clients get text") {
    ExporterOptions text_only;
    text_only.protobuf = false;
    Exporter plain(&source, text_only, nullptr);
    HttpResponse r;
    plain.Handle(proto, &r);
    CHECK(r.content_type == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(HeaderOf(r, "Vary") == "Accept-Encoding");
  }
  SECTION("a protobuf scrape after a text one carries the native histograms") {
    RequestStats stats = MakeRequestStats(4);
    stats.Observe({1, 0, 2000, 10, 200, "GET"});
    Exporter with_requests(&source, sharing, nullptr);
    with_requests.AddProvider(RequestStatsProvider(&stats, false, false));
    HttpResponse t, p;
    with_requests.Handle(text, &t);
    with_requests.Handle(proto, &p);
    bool found = false;
    for (const auto& m : Messages(std::string(p.Body()))) {
      const auto family = Fields(m);
      if (Only(family, 1).bytes != kDurationFamily) continue;
      const auto histogram = Fields(Only(Fields(Only(family, 4).bytes), 7).bytes);
      CHECK(Only(histogram, 1).varint == 1);  // the one request
      CHECK(Only(histogram, 5).varint == protobuf::ZigZag(3));  // schema 3: a native histogram
      found = true;
    }
    CHECK(found);
  }
}
