#include "go_float.h"

#include <locale.h>
#include <stdlib.h>

#include <charconv>
#include <cmath>

namespace uwsgi_prometheus {
namespace {

// |value| = d1.d2d3... * 10^exponent, with the shortest digits that read
// back to value (never a trailing zero).
struct Decimal {
  char digits[24];
  size_t count = 0;
  int exponent = 0;
};

Decimal ShortestDigits(double value) {
  char buf[kGoFloatChars];
  const auto res =
      std::to_chars(buf, buf + sizeof buf, std::fabs(value), std::chars_format::scientific);
  Decimal d;
  const char* p = buf;  // "1.2345e+06"
  for (; p < res.ptr && *p != 'e'; ++p) {
    if (*p != '.') d.digits[d.count++] = *p;
  }
  if (p + 1 < res.ptr && p[1] == '+') ++p;  // from_chars reads "-05" but not "+06"
  if (p < res.ptr) std::from_chars(p + 1, res.ptr, d.exponent);
  return d;
}

// Appends to a caller's buffer, dropping what does not fit.
class Writer {
 public:
  Writer(char* buf, size_t size) : begin_(buf), p_(buf), end_(buf + size) {}
  void Put(char c) {
    if (p_ < end_) *p_++ = c;
  }
  void Put(std::string_view s) {
    for (char c : s) Put(c);
  }
  void Repeat(char c, size_t n) {
    for (size_t i = 0; i < n; ++i) Put(c);
  }
  void Digits(const Decimal& d, size_t from, size_t to) {
    for (size_t i = from; i < to && i < d.count; ++i) Put(d.digits[i]);
  }
  // d1[.d2...dn]: the mantissa of both exponent notations.
  void Mantissa(const Decimal& d) {
    Put(d.digits[0]);
    if (d.count > 1) Put('.');
    Digits(d, 1, d.count);
  }
  void Int(int v) {
    char buf[16];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    Put(std::string_view(buf, static_cast<size_t>(res.ptr - buf)));
  }
  std::string_view Text() const { return {begin_, static_cast<size_t>(p_ - begin_)}; }

 private:
  char* begin_;
  char* p_;
  char* end_;
};

// Python's repr of a finite, non-zero value's magnitude.
void PutRepr(const Decimal& d, Writer* out) {
  if (d.exponent < -4 || d.exponent >= 16) {
    out->Mantissa(d);
    out->Put(d.exponent < 0 ? "e-" : "e+");
    const int magnitude = std::abs(d.exponent);
    if (magnitude < 10) out->Put('0');
    out->Int(magnitude);
  } else if (d.exponent < 0) {
    out->Put("0.");
    out->Repeat('0', static_cast<size_t>(-d.exponent - 1));
    out->Digits(d, 0, d.count);
  } else {
    const size_t int_len = static_cast<size_t>(d.exponent) + 1;
    out->Digits(d, 0, int_len);
    if (d.count <= int_len) {
      out->Repeat('0', int_len - d.count);
      out->Put(".0");
    } else {
      out->Put('.');
      out->Digits(d, int_len, d.count);
    }
  }
}

// Everything but the numbers whose digits matter.
bool PutSpecial(double value, bool go, Writer* out) {
  if (std::isnan(value)) {
    out->Put(go ? "NaN" : "nan");
  } else if (std::isinf(value)) {
    out->Put(value > 0 ? (go ? "+Inf" : "inf") : (go ? "-Inf" : "-inf"));
  } else if (value == 0) {
    out->Put(std::signbit(value) ? "-0.0" : "0.0");
  } else {
    return false;
  }
  return true;
}

std::string_view Format(double value, bool go, char* buf, size_t size) {
  Writer out(buf, size);
  if (PutSpecial(value, go, &out)) return out.Text();
  const Decimal d = ShortestDigits(value);
  if (go && value > 0 && d.exponent >= 6 && d.exponent < 16) {
    // Python writes "1234567.0" (its dot past the sixth character); Go and
    // floatToGoString "1.234567e+06", the exponent always after "e+0".
    out.Mantissa(d);
    out.Put("e+0");
    out.Int(d.exponent);
    return out.Text();
  }
  if (value < 0) out.Put('-');
  PutRepr(d, &out);
  return out.Text();
}

}  // namespace

std::string_view FormatGoFloat(double value, char* buf, size_t size) {
  return Format(value, /*go=*/true, buf, size);
}

std::string FloatToGoString(double value) {
  char buf[kGoFloatChars];
  return std::string(FormatGoFloat(value, buf, sizeof buf));
}

std::string PythonFloatRepr(double value) {
  char buf[kGoFloatChars];
  return std::string(Format(value, /*go=*/false, buf, sizeof buf));
}

double StrtodC(const char* text, char** end) {
  // glibc's "C" locale object is static: newlocale cannot fail for it.
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", locale_t{});
  return c_locale ? strtod_l(text, end, c_locale) : strtod(text, end);
}

}  // namespace uwsgi_prometheus
