#include "native_histogram.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "go_float.h"

namespace uwsgi_prometheus {

namespace {

bool ParseNumber(const char* begin, const char* end, double* out) {
  while (begin < end && (*begin == ' ' || *begin == '\t')) ++begin;
  while (end > begin && (end[-1] == ' ' || end[-1] == '\t')) --end;
  if (begin == end) return false;
  const std::string text(begin, end);
  char* stop = nullptr;
  errno = 0;
  *out = StrtodC(text.c_str(), &stop);
  return stop == text.c_str() + text.size() && errno != ERANGE;
}

}  // namespace

bool ParseNativeSchema(const std::string& text, NativeOptions* out, std::string* error) {
  if (text == "off") {
    out->enabled = false;
    return true;
  }
  char* end = nullptr;
  errno = 0;
  const long schema = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || errno == ERANGE || schema < kNativeMinSchema ||
      schema > kNativeMaxSchema) {
    *error = "give an integer from -4 to 8 (3: bucket factor 1.09, each step up halves the "
             "factor's exponent), or off";
    return false;
  }
  out->enabled = true;
  out->schema = static_cast<int32_t>(schema);
  return true;
}

bool ParseNativeRange(const std::string& text, double* min, double* max, std::string* error) {
  const char* begin = text.c_str();
  const char* comma = std::strchr(begin, ',');
  double low = 0, high = 0;
  if (!comma || !ParseNumber(begin, comma, &low) ||
      !ParseNumber(comma + 1, begin + text.size(), &high)) {
    *error = "give the smallest and the largest value to resolve as MIN,MAX (e.g. 1e-5,1e4)";
    return false;
  }
  if (!std::isfinite(low) || !std::isfinite(high) || low <= 0 || high <= low) {
    *error = "MIN and MAX must be positive and finite, MIN below MAX";
    return false;
  }
  *min = low;
  *max = high;
  return true;
}

bool CheckNativeRange(double min, double max, int32_t schema, std::string* error) {
  auto indexer = std::make_unique<NativeIndexer>();
  FillNativeIndexer(schema, indexer.get());
  const NativeRange r = NativeRangeFor(min, max, *indexer);
  const int64_t buckets = int64_t{r.highest} - r.lowest + 1;
  if (buckets <= kNativeMaxBuckets) return true;
  char text[64];
  std::snprintf(text, sizeof text, "%g,%g", min, max);
  *error = std::string("the range ") + text + " needs " + std::to_string(buckets) +
           " buckets at schema " + std::to_string(schema) + ", more than " +
           std::to_string(kNativeMaxBuckets) + "; narrow the range or lower the schema";
  return false;
}

bool CheckNativeOptions(const NativeOptions& options, std::string* error) {
  return !options.enabled ||
         (CheckNativeRange(options.duration_min, options.duration_max, options.schema, error) &&
          CheckNativeRange(options.size_min, options.size_max, options.schema, error));
}

void FillNativeIndexer(int32_t schema, NativeIndexer* out) {
  *out = NativeIndexer();  // value-initialized: the tables are zero
  out->schema = schema;
  out->per_octave = 1;
  if (schema <= 0) return;
  const uint32_t n = uint32_t{1} << schema;
  out->per_octave = static_cast<int32_t>(n);
  out->cell_shift = 52 - static_cast<uint32_t>(schema + 1);
  for (uint32_t cell = 0; cell < 2 * n; ++cell) out->boundary[cell] = ~uint64_t{0};
  for (uint32_t j = 0; j < n; ++j) {
    const double fraction = std::exp2(static_cast<double>(j) / n) / 2;  // in [0.5, 1)
    uint64_t bits;
    std::memcpy(&bits, &fraction, sizeof bits);
    const uint64_t mantissa = bits & ((uint64_t{1} << 52) - 1);
    const uint32_t cell = static_cast<uint32_t>(mantissa >> out->cell_shift);
    out->boundary[cell] = mantissa;  // cells are narrower than buckets: one at most
    for (uint32_t later = cell + 1; later < 2 * n; ++later) ++out->below[later];
  }
}

double NativeBound(int32_t i, int32_t schema) {
  if (schema <= 0) return std::ldexp(1.0, i * (int32_t{1} << -schema));
  const int32_t n = int32_t{1} << schema;
  const int32_t whole = i >= 0 ? i / n : -((-i + n - 1) / n);
  const int32_t part = i - whole * n;
  return std::ldexp(std::exp2(static_cast<double>(part) / n), whole);
}

NativeRange NativeRangeFor(double min, double max, const NativeIndexer& indexer) {
  NativeRange r;
  r.lowest = NativeIndex(min, indexer);
  r.highest = NativeIndex(max, indexer);
  r.zero_threshold = NativeBound(r.lowest - 1, indexer.schema);
  return r;
}

NativeHistogram MakeNativeHistogram(int32_t schema, const NativeRange& range,
                                    const std::vector<uint64_t>& counts, double sum) {
  NativeHistogram h;
  h.schema = schema;
  h.zero_threshold = range.zero_threshold;
  h.sum = sum;
  if (counts.empty()) return h;
  h.zero_count = counts[0];
  h.count = counts[0];
  int64_t previous = 0;  // count of the last bucket the spans cover
  int32_t end = 0;       // index after that bucket
  for (size_t k = 1; k < counts.size(); ++k) {
    const uint64_t c = counts[k];
    if (c == 0) continue;
    h.count += c;
    const int32_t index = range.lowest + static_cast<int32_t>(k - 1);
    if (h.positive_spans.empty()) {
      h.positive_spans.push_back({index, 0});
    } else if (index - end > 2) {
      h.positive_spans.push_back({index - end, 0});
    } else {
      for (int32_t gap = end; gap < index; ++gap, previous = 0) {  // empty buckets sent as 0
        h.positive_deltas.push_back(-previous);
        ++h.positive_spans.back().length;
      }
    }
    h.positive_deltas.push_back(static_cast<int64_t>(c) - previous);
    ++h.positive_spans.back().length;
    previous = static_cast<int64_t>(c);
    end = index + 1;
  }
  return h;
}

std::vector<std::pair<int32_t, uint64_t>> NativeBuckets(const NativeHistogram& h) {
  std::vector<std::pair<int32_t, uint64_t>> out;
  int32_t index = 0;
  int64_t count = 0;
  size_t d = 0;
  for (size_t s = 0; s < h.positive_spans.size(); ++s) {
    index += h.positive_spans[s].offset;
    for (uint32_t k = 0; k < h.positive_spans[s].length && d < h.positive_deltas.size(); ++k) {
      count += h.positive_deltas[d++];
      out.emplace_back(index++, static_cast<uint64_t>(count));
    }
  }
  return out;
}

}  // namespace uwsgi_prometheus
