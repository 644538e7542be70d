#include "go_float.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>

namespace uwsgi_prometheus {
namespace {

// Shortest round-trip digits of |value| (no dot) and its decimal exponent:
// value = 0.d1d2d3... * 10^(exponent + 1), i.e. d1.d2d3... * 10^exponent.
void ShortestDigits(double value, std::string* digits, int* exponent) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(value), std::chars_format::scientific);
  std::string_view s(buf, static_cast<size_t>(res.ptr - buf));  // "1.2345e+06"
  const size_t e = s.find('e');
  digits->clear();
  for (char c : s.substr(0, e)) {
    if (c != '.') digits->push_back(c);
  }
  *exponent = std::atoi(std::string(s.substr(e + 1)).c_str());
}

std::string Fixed(const std::string& digits, int exponent) {
  std::string out;
  if (exponent < 0) {
    out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  } else {
    const size_t int_len = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_len) {
      out = digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return out;
}

std::string Scientific(const std::string& digits, int exponent) {
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  const int magnitude = std::abs(exponent);
  out += exponent < 0 ? "e-" : "e+";
  if (magnitude < 10) out += '0';
  out += std::to_string(magnitude);
  return out;
}

}  // namespace

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  std::string digits;
  int exponent = 0;
  ShortestDigits(value, &digits, &exponent);
  const std::string body = exponent < -4 || exponent >= 16 ? Scientific(digits, exponent)
                                                           : Fixed(digits, exponent);
  return value < 0 ? "-" + body : body;
}

std::string FloatToGoString(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  std::string s = PythonFloatRepr(value);
  const size_t dot = s.find('.');
  // From 1e6 up, Go writes an exponent where Python does not yet.
  if (value > 0 && dot != std::string::npos && dot > 6) {
    std::string mantissa = s.substr(0, 1) + "." + s.substr(1, dot - 1) + s.substr(dot + 1);
    const size_t keep = mantissa.find_last_not_of("0.");
    mantissa.erase(keep == std::string::npos ? 0 : keep + 1);
    return mantissa + "e+0" + std::to_string(dot - 1);
  }
  return s;
}

}  // namespace uwsgi_prometheus
