// Numbers as prometheus_client writes them in label values (its
// floatToGoString: Python's repr of the float, "+Inf"/"-Inf"/"NaN", and an
// exponent from 1e6 up, as Go would). A histogram merged from prometheus_client's
// multi-process files must carry `le="1.0"`, not `le="1"`: to Prometheus the
// label value is a string, and a different spelling is a different series.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace uwsgi_prometheus {

// Room for any spelling below ("-1.2345678901234567e-308" is 24 bytes).
inline constexpr size_t kGoFloatChars = 32;

// Python's repr(float): the shortest digits that read back to `value`, fixed
// notation for exponents -4..15 (always with a fractional part, "1.0"),
// scientific otherwise ("1e-05", "1.5e+16").
std::string PythonFloatRepr(double value);

// prometheus_client's floatToGoString, byte for byte.
std::string FloatToGoString(double value);

// The same, written into `buf` (at least kGoFloatChars bytes; output is cut
// at `size` otherwise) without allocating, for the scrape path. Returns the
// text in `buf`.
std::string_view FormatGoFloat(double value, char* buf, size_t size);

// strtod in the "C" locale, whatever the process' locale: an application
// loaded in the master may call setlocale(LC_ALL, "") (Python's
// locale.setlocale), and under a German LC_NUMERIC plain strtod reads the
// bucket bound "0.005" as 0 and stops at the dot.
double StrtodC(const char* text, char** end);

}  // namespace uwsgi_prometheus
