#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <string>

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
