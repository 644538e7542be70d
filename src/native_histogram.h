// Prometheus native (sparse, exponential) histograms of request duration and
// response size: the bucket arithmetic, the fixed bucket range a worker
// records into, and the sparse form (spans and deltas) a scrape sends.
//
// A native histogram of schema s has bucket boundaries at base^i with
// base = 2^(2^-s); bucket i holds (base^(i-1), base^i]. Values with
// |v| <= zero_threshold go to the zero bucket. Workers record into a fixed
// range of bucket indices [lowest, highest] (shared memory cannot grow):
// values at or below the lowest bucket's lower edge go to the zero bucket,
// whose threshold is that edge, and values above the highest bucket are
// counted in it. Nothing is dropped.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace uwsgi_prometheus {

inline constexpr int32_t kNativeMinSchema = -4;
inline constexpr int32_t kNativeMaxSchema = 8;
// Buckets one histogram may span (memory per worker stays bounded).
inline constexpr int32_t kNativeMaxBuckets = 4096;

// What --prometheus-native-* chose. Ranges are in base units (seconds,
// bytes); they are widened to whole buckets.
struct NativeOptions {
  bool enabled = true;
  int32_t schema = 3;  // bucket factor 2^(1/8) ~ 1.09, client_golang's for factor 1.1
  double duration_min = 1e-5;
  double duration_max = 1e4;
  double size_min = 1;
  double size_max = 1e9;
};

// Parses --prometheus-native-schema: an integer in -4..8, or "off".
bool ParseNativeSchema(const std::string& text, NativeOptions* out, std::string* error);
// Parses a range "MIN,MAX" (positive, finite, MIN < MAX).
bool ParseNativeRange(const std::string& text, double* min, double* max, std::string* error);
// Checks that the range min..max spans at most kNativeMaxBuckets buckets
// at `schema`.
bool CheckNativeRange(double min, double max, int32_t schema, std::string* error);
// Both ranges of `options` (when enabled).
bool CheckNativeOptions(const NativeOptions& options, std::string* error);

// What the bucket lookup needs for one schema. Write v = f * 2^e with f in
// [0.5, 1); within one power of two the 2^schema bucket boundaries are at
// f = 2^(j / 2^schema) / 2. For schema >= 1 the top schema + 1 bits of the
// mantissa pick one of 2^(schema + 1) cells, narrower than the narrowest
// bucket, so a cell holds at most one boundary: the lookup is a table read
// and one comparison. Made by FillNativeIndexer, read-only afterwards.
struct NativeIndexer {
  int32_t schema = 0;
  int32_t per_octave = 1;  // 2^schema for schema >= 1
  uint32_t cell_shift = 0;  // 52 - (schema + 1)
  uint16_t below[2 << kNativeMaxSchema];     // boundaries below the cell's start
  uint64_t boundary[2 << kNativeMaxSchema];  // mantissa of the boundary in the cell; ~0: none
};
void FillNativeIndexer(int32_t schema, NativeIndexer* out);

// The index of the bucket holding v > 0: the smallest i with v <= base^i
// (+Inf and NaN: INT32_MAX). No libm call and no data-dependent loop.
inline int32_t NativeIndex(double v, const NativeIndexer& ix) noexcept {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  int32_t biased = static_cast<int32_t>((bits >> 52) & 0x7ff);
  if (biased == 0x7ff) return INT32_MAX;
  int32_t scaled = 0;
  if (biased == 0) {  // subnormal: scale into the normal range
    v *= 0x1p64;
    std::memcpy(&bits, &v, sizeof bits);
    biased = static_cast<int32_t>((bits >> 52) & 0x7ff);
    scaled = 64;
  }
  const uint64_t mantissa = bits & ((uint64_t{1} << 52) - 1);
  const int32_t exponent = biased - 1022 - scaled;  // v = f * 2^exponent, f in [0.5, 1)
  if (ix.schema > 0) {
    const uint32_t cell = static_cast<uint32_t>(mantissa >> ix.cell_shift);
    const int32_t j = ix.below[cell] + (ix.boundary[cell] < mantissa ? 1 : 0);
    return j + (exponent - 1) * ix.per_octave;
  }
  // ceil(log2 v), then the ceiling of its division by 2^-schema.
  const int32_t log2_ceil = mantissa == 0 ? exponent - 1 : exponent;
  const int32_t width = int32_t{1} << -ix.schema;
  const int32_t shifted = log2_ceil + width - 1;  // floor(shifted / width), also below 0
  return shifted >= 0 ? shifted / width : -((width - 1 - shifted) / width);
}

// base^i, the upper bound of bucket i.
double NativeBound(int32_t i, int32_t schema);

// One histogram's bucket range in shared memory: counts[0] is the zero
// bucket, counts[1 + i - lowest] bucket i.
struct NativeRange {
  int32_t lowest;
  int32_t highest;
  double zero_threshold;  // NativeBound(lowest - 1): the lowest bucket's lower edge
  uint32_t Slots() const { return static_cast<uint32_t>(highest - lowest) + 2; }
};
NativeRange NativeRangeFor(double min, double max, const NativeIndexer& indexer);

// Worker side: one relaxed atomic add into counts (NativeRange layout).
inline void NativeRecord(double v, const NativeRange& range, const NativeIndexer& indexer,
                         std::atomic<uint64_t>* counts) noexcept {
  size_t at = 0;
  if (v > range.zero_threshold) {
    int32_t i = NativeIndex(v, indexer);
    if (i < range.lowest) i = range.lowest;
    if (i > range.highest) i = range.highest;
    at = static_cast<size_t>(i - range.lowest) + 1;
  }
  counts[at].fetch_add(1, std::memory_order_relaxed);
}

// A run of consecutive buckets. `offset` is the gap in buckets from the end
// of the previous span (for the first span: the index of its first bucket).
struct BucketSpan {
  int32_t offset;
  uint32_t length;
};

// What the protobuf encoder writes into io.prometheus.client.Histogram
// next to the classic buckets of the same series. Fields map one to one:
// schema (sint32 5), zero_threshold (double 6), zero_count (uint64 7),
// positive_spans (BucketSpan 12: offset sint32 1, length uint32 2),
// positive_deltas (sint64 13); count and sum are sample_count (1) and
// sample_sum (2), shared with the classic buckets. Guarantees:
// - zero_threshold > 0, even when the zero bucket is empty;
// - count == zero_count + the sum of all bucket counts, exactly (what
//   Prometheus checks), and never below the classic _count of the same
//   read, so it is the sample_count to send;
// - positive buckets only (durations and sizes are never negative): no
//   negative spans or deltas to send;
// - spans in increasing bucket order, each of length >= 1, the first
//   offset absolute, the rest >= 3 (shorter gaps are joined as zero-count
//   buckets); positive_deltas has one entry per bucket the spans cover;
// - no observation: no spans, count == zero_count == 0, schema and
//   zero_threshold still set (send them: an empty native histogram is
//   still a native histogram);
// - every bucket count and zero_count only grow from scrape to scrape
//   (across worker respawns too), so Prometheus sees no counter reset.
struct NativeHistogram {
  int32_t schema = 0;
  double zero_threshold = 0;
  uint64_t zero_count = 0;
  uint64_t count = 0;
  double sum = 0;
  std::vector<BucketSpan> positive_spans;
  std::vector<int64_t> positive_deltas;  // first count, then each minus the previous
};

// The sparse form of counts (NativeRange layout): spans over the non-empty
// buckets, joined across gaps of at most two empty buckets (sent as zero
// counts), and the deltas of every bucket the spans cover.
NativeHistogram MakeNativeHistogram(int32_t schema, const NativeRange& range,
                                    const std::vector<uint64_t>& counts, double sum);

// The count of every bucket from spans and deltas: {index, count} pairs.
// For tests and for readers of NativeHistogram.
std::vector<std::pair<int32_t, uint64_t>> NativeBuckets(const NativeHistogram& h);

}  // namespace uwsgi_prometheus
