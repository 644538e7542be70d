// Numbers as prometheus_client writes them in label values (its
// floatToGoString: Python's repr of the float, "+Inf"/"-Inf"/"NaN", and an
// exponent from 1e6 up, as Go would). A histogram merged from prometheus_client's
// multi-process files must carry `le="1.0"`, not `le="1"`: to Prometheus the
// label value is a string, and a different spelling is a different series.
#pragma once

#include <string>

namespace uwsgi_prometheus {

// Python's repr(float): the shortest digits that read back to `value`, fixed
// notation for exponents -4..15 (always with a fractional part, "1.0"),
// scientific otherwise ("1e-05", "1.5e+16").
std::string PythonFloatRepr(double value);

// prometheus_client's floatToGoString, byte for byte.
std::string FloatToGoString(double value);

}  // namespace uwsgi_prometheus
