#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "go_float.h"

using namespace uwsgi_prometheus;

TEST_CASE("FloatToGoString spells numbers as prometheus_client does", "[go_float]") {
  SECTION("bucket bounds") {
    CHECK(FloatToGoString(1) == "1.0");
    CHECK(FloatToGoString(10) == "10.0");
    CHECK(FloatToGoString(0.005) == "0.005");
    CHECK(FloatToGoString(2.5) == "2.5");
    CHECK(FloatToGoString(1e-5) == "1e-05");
    CHECK(FloatToGoString(1e6) == "1e+06");
    CHECK(FloatToGoString(1234567) == "1.234567e+06");
    CHECK(FloatToGoString(1.0 / 0.0) == "+Inf");
    CHECK(FloatToGoString(-1.0 / 0.0) == "-Inf");
  }
  SECTION("every value of the golden file (written by prometheus_client itself)") {
    std::ifstream golden(UWSGI_PROMETHEUS_TEST_DIR "/golden/go_float.txt");
    REQUIRE(golden);
    std::string hex, want;
    int checked = 0;
    while (golden >> hex >> want) {
      const double value = std::strtod(hex.c_str(), nullptr);
      INFO(hex);
      CHECK(FloatToGoString(value) == want);
      ++checked;
    }
    CHECK(checked > 3000);
  }
}

TEST_CASE("FormatGoFloat writes FloatToGoString's text into the caller's buffer", "[go_float]") {
  char buf[kGoFloatChars];
  for (double v : {1.0, -0.0, 0.1, 1e-5, 1e6, 1234567.0, -1234567.0, 1e15, 1e16, 1.5e16,
                   -1.2345678901234567e-308, 5e-324, 1.7976931348623157e308}) {
    INFO(v);
    const std::string_view s = FormatGoFloat(v, buf, sizeof buf);
    CHECK(s.data() == buf);
    CHECK(s == FloatToGoString(v));
  }
  CHECK(FloatToGoString(1e15) == "1e+015");  // prometheus_client's "e+0" + exponent
  CHECK(FloatToGoString(-1.2345678901234567e-308) == "-1.2345678901234567e-308");
  SECTION("a short buffer is never overrun") {
    char small[6] = {'#', '#', '#', '#', '#', '#'};
    CHECK(FormatGoFloat(1234567.0, small, 5) == "1.234");
    CHECK(small[5] == '#');
  }
}

TEST_CASE("PythonFloatRepr spells as Python's repr", "[go_float]") {
  CHECK(PythonFloatRepr(1) == "1.0");
  CHECK(PythonFloatRepr(1234567) == "1234567.0");
  CHECK(PythonFloatRepr(1e16) == "1e+16");
  CHECK(PythonFloatRepr(0.0001) == "0.0001");
  CHECK(PythonFloatRepr(-1e-5) == "-1e-05");
  CHECK(PythonFloatRepr(-0.0) == "-0.0");
  CHECK(PythonFloatRepr(1.0 / 0.0) == "inf");
}
