#include <catch2/catch.hpp>

#include <clocale>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "db_files.h"
#include "dbkey.h"
#include "go_float.h"
#include "native_histogram.h"
#include "request_stats.h"

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

namespace {

// LC_NUMERIC switched to German (decimal comma) for the scope, from a locale
// compiled at test time with localedef (Debian's `locales` has the source).
class GermanNumbers {
 public:
  GermanNumbers() {
    if (system("command -v localedef >/dev/null && test -f /usr/share/i18n/locales/de_DE") != 0)
      return;
    const std::string out = dir_.path() + "/de_DE.UTF-8";
    const std::string command = "localedef -i de_DE -f UTF-8 " + out + " >/dev/null 2>&1";
    if (system(command.c_str()) != 0 && !std::filesystem::exists(out + "/LC_NUMERIC")) return;
    const char* old = getenv("LOCPATH");
    if (old) old_locpath_ = old;
    had_locpath_ = old != nullptr;
    setenv("LOCPATH", dir_.path().c_str(), 1);
    active_ = setlocale(LC_NUMERIC, "de_DE.UTF-8") != nullptr;
  }
  ~GermanNumbers() {
    setlocale(LC_NUMERIC, "C");
    if (had_locpath_) {
      setenv("LOCPATH", old_locpath_.c_str(), 1);
    } else {
      unsetenv("LOCPATH");
    }
  }
  bool active() const { return active_; }

 private:
  TempDir dir_;
  std::string old_locpath_;
  bool had_locpath_ = false;
  bool active_ = false;
};

}  // namespace

TEST_CASE("numbers are read in the C locale whatever LC_NUMERIC says", "[go_float]") {
  GermanNumbers german;
  if (!german.active()) {
    WARN("no de_DE locale could be compiled (localedef, Debian's locales): not checked");
    return;
  }
  REQUIRE(std::strtod("0.5", nullptr) == 0.0);  // the trap: plain strtod stops at the dot

  char* end = nullptr;
  const char* text = "0.005,1";
  CHECK(StrtodC(text, &end) == 0.005);
  CHECK(end == text + 5);

  std::vector<double> buckets;
  std::string error;
  REQUIRE(ParseBuckets("0.005, 0.25,2.5", &buckets, &error));
  CHECK(buckets == std::vector<double>{0.005, 0.25, 2.5});

  double min = 0, max = 0;
  REQUIRE(ParseNativeRange("0.0001,60.5", &min, &max, &error));
  CHECK(min == 0.0001);
  CHECK(max == 60.5);

  KeyTable keys;
  const int32_t id = keys.Intern(R"(["h", "h_bucket", {"le": "0.025"}, ""])", &error);
  REQUIRE(id != KeyTable::kInvalid);
  CHECK(keys.has_le(id));
  CHECK(keys.le(id) == 0.025);
}
