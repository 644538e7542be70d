#include <catch2/catch.hpp>

#include "negotiate.h"

using namespace uwsgi_prometheus;

namespace {

// What Prometheus 2.42 sends on every scrape.
constexpr const char* kPrometheusAccept =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
// ... and with --enable-feature=native-histograms.
constexpr const char* kPrometheusNativeAccept =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
    "encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,"
    "application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

}  // namespace

TEST_CASE("Prometheus' default Accept gets the text format, never OpenMetrics", "[negotiate]") {
  CHECK(ChooseFormat(kPrometheusAccept, true) == ExpositionFormat::kText);
  CHECK(ChooseFormat(kPrometheusAccept, false) == ExpositionFormat::kText);
}

TEST_CASE("protobuf is chosen only when offered and preferred", "[negotiate]") {
  CHECK(ChooseFormat(kPrometheusNativeAccept, true) == ExpositionFormat::kProtobuf);
  CHECK(ChooseFormat(kPrometheusNativeAccept, false) == ExpositionFormat::kText);
  SECTION("text preferred by q") {
    CHECK(ChooseFormat("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                       "encoding=delimited;q=0.4,text/plain;q=0.5",
                       true) == ExpositionFormat::kText);
  }
  SECTION("equal q: the first in the header") {
    CHECK(ChooseFormat("text/plain,application/vnd.google.protobuf;"
                       "proto=io.prometheus.client.MetricFamily;encoding=delimited",
                       true) == ExpositionFormat::kText);
  }
  SECTION("other protobuf encodings and messages are not served") {
    CHECK(ChooseFormat("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                       "encoding=text",
                       true) == ExpositionFormat::kText);
    CHECK(ChooseFormat("application/vnd.google.protobuf;proto=other.Message;encoding=delimited",
                       true) == ExpositionFormat::kText);
  }
  SECTION("parameters are case-insensitive in name, quoted values allowed") {
    CHECK(ChooseFormat("Application/Vnd.Google.Protobuf; PROTO=\"io.prometheus.client.MetricFamily\"; "
                       "Encoding=delimited",
                       true) == ExpositionFormat::kProtobuf);
  }
  SECTION("q=0 refuses") {
    CHECK(ChooseFormat("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;"
                       "encoding=delimited;q=0",
                       true) == ExpositionFormat::kText);
  }
}

TEST_CASE("anything unknown or broken still gets text", "[negotiate]") {
  for (const char* accept : {"", "application/json", "*/*", "text/html;q=0.9",
                             "text/plain;version=9.9", ",,,;;;", "\"unterminated,",
                             "application/vnd.google.protobuf;q=abc", "text/plain;q=2"}) {
    INFO(accept);
    CHECK(ChooseFormat(accept, true) == ExpositionFormat::kText);
  }
}

TEST_CASE("content types are exact", "[negotiate]") {
  CHECK(ContentTypeOf(ExpositionFormat::kText) == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(ContentTypeOf(ExpositionFormat::kProtobuf) ==
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; "
        "encoding=delimited");
}

TEST_CASE("Accept-Encoding follows RFC 9110 q-values", "[negotiate]") {
  struct Case {
    const char* header;
    ContentCoding want;
  };
  const Case cases[] = {
      {"gzip", ContentCoding::kGzip},
      {"GZIP", ContentCoding::kGzip},
      {"x-gzip", ContentCoding::kGzip},
      {"gzip, deflate, br", ContentCoding::kGzip},
      {"br;q=1.0, gzip;q=0.8, *;q=0.1", ContentCoding::kGzip},
      {"gzip;q=0.5", ContentCoding::kGzip},
      {"*", ContentCoding::kGzip},
      {"identity;q=0, *", ContentCoding::kGzip},
      {"identity;q=0.5, gzip;q=0.5", ContentCoding::kGzip},
      {"", ContentCoding::kIdentity},
      {"identity", ContentCoding::kIdentity},
      {"deflate, br", ContentCoding::kIdentity},
      {"gzip;q=0", ContentCoding::kIdentity},
      {"gzip;q=0.000", ContentCoding::kIdentity},
      {"*;q=0", ContentCoding::kIdentity},
      {"gzip;q=0, *", ContentCoding::kIdentity},
      {"identity;q=1, gzip;q=0.5", ContentCoding::kIdentity},
      {"gzip;q=nonsense", ContentCoding::kIdentity},
      {"gzip;q=1.5", ContentCoding::kIdentity},
      // Refusing both: answered anyway, uncompressed.
      {"gzip;q=0, identity;q=0", ContentCoding::kIdentity},
  };
  for (const Case& c : cases) {
    INFO("Accept-Encoding: " << c.header);
    CHECK(ChooseCoding(c.header) == c.want);
  }
}
