#include <string>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include "labels.h"

using namespace uwsgi_prometheus;

namespace {

std::string Escaped(std::string_view value) {
  TextBuffer out;
  AppendEscapedLabelValue(&out, value);
  return std::string(out.data(), out.size());
}

std::string EscapedHelp(std::string_view help) {
  TextBuffer out;
  AppendEscapedHelp(&out, help);
  return std::string(out.data(), out.size());
}

}  // namespace

TEST_CASE("label values are sanitized", "[labels]") {
  SECTION("invalid UTF-8 becomes U+FFFD") {
    CHECK(SanitizeLabelValue("a\xff" "b", 100) == "a\xEF\xBF\xBD" "b");
    CHECK(SanitizeLabelValue("\xC0\xAF", 100) == "\xEF\xBF\xBD\xEF\xBF\xBD");   // overlong
    CHECK(SanitizeLabelValue("\xED\xA0\x80", 100) ==
          "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");                               // surrogate
    CHECK(SanitizeLabelValue("\xE2\x82", 100) == "\xEF\xBF\xBD\xEF\xBF\xBD");   // truncated
  }
  SECTION("NUL becomes U+FFFD") {
    CHECK(SanitizeLabelValue(std::string("a\0b", 3), 100) == "a\xEF\xBF\xBD" "b");
  }
  SECTION("valid UTF-8 is kept") {
    CHECK(SanitizeLabelValue("/caf\xC3\xA9/\xF0\x9F\x98\x80", 100) ==
          "/caf\xC3\xA9/\xF0\x9F\x98\x80");
  }
  SECTION("length is capped on a character boundary") {
    CHECK(SanitizeLabelValue("abcdef", 4) == "abcd");
    CHECK(SanitizeLabelValue("ab\xC3\xA9", 3) == "ab");
  }
}

TEST_CASE("a label value is valid when sanitizing would keep it", "[labels]") {
  for (std::string v : {std::string("plain"), std::string("caf\xC3\xA9 \xE2\x98\x83"),
                        std::string(), std::string("a\xff"), std::string("a\0b", 3),
                        std::string("\xED\xA0\x80"), std::string("\xF4\x90\x80\x80")}) {
    INFO(v);
    CHECK(IsValidLabelValue(v) == (SanitizeLabelValue(v, v.size() + 1) == v));
  }
  CHECK(IsValidLabelValue("caf\xC3\xA9"));
  CHECK_FALSE(IsValidLabelValue("caf\xC3"));
}

TEST_CASE("label values and help text are escaped", "[labels]") {
  CHECK(Escaped("q\"b\\n\nx") == "q\\\"b\\\\n\\nx");
  CHECK(Escaped("plain /path") == "plain /path");
  CHECK(EscapedHelp("a \\ \"quoted\"\nline") == "a \\\\ \"quoted\"\\nline");
}

TEST_CASE("metric and label names follow the exposition format", "[labels]") {
  CHECK(IsValidMetricName("http_requests_total"));
  CHECK(IsValidMetricName("ns:rule_name"));
  CHECK(IsValidMetricName("_private"));
  CHECK_FALSE(IsValidMetricName(""));
  CHECK_FALSE(IsValidMetricName("1abc"));
  CHECK_FALSE(IsValidMetricName("bad name"));
  CHECK_FALSE(IsValidMetricName("caf\xC3\xA9"));
  CHECK(IsValidLabelName("le"));
  CHECK(IsValidLabelName("_x"));
  CHECK_FALSE(IsValidLabelName("__reserved"));
  CHECK_FALSE(IsValidLabelName("a:b"));
  CHECK_FALSE(IsValidLabelName(""));
}
