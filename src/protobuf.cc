#include "protobuf.h"

#include <cmath>
#include <cstring>

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace protobuf {

size_t VarintSize(uint64_t value) {
  size_t n = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++n;
  }
  return n;
}

void AppendVarint(TextBuffer* out, uint64_t value) {
  char buf[10] = {};
  size_t n = 0;
  while (value >= 0x80) {
    buf[n++] = static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  buf[n++] = static_cast<char>(value);
  out->append(buf, buf + n);
}

void Writer::Tag(uint32_t field, WireType type) {
  AppendVarint(out_, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(type));
}

void Writer::Varint(uint32_t field, uint64_t value) {
  Tag(field, WireType::kVarint);
  AppendVarint(out_, value);
}

void Writer::Sint(uint32_t field, int64_t value) {
  Tag(field, WireType::kVarint);
  AppendVarint(out_, ZigZag(value));
}

void Writer::Double(uint32_t field, double value) {
  Tag(field, WireType::kFixed64);
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>(bits >> (8 * i));
  out_->append(buf, buf + sizeof buf);
}

void Writer::String(uint32_t field, std::string_view value) {
  Tag(field, WireType::kLengthDelimited);
  AppendVarint(out_, value.size());
  out_->append(value.data(), value.data() + value.size());
}

void Writer::PackedSint(uint32_t field, const std::vector<int64_t>& values) {
  if (values.empty()) return;
  size_t bytes = 0;
  for (int64_t v : values) bytes += VarintSize(ZigZag(v));
  Tag(field, WireType::kLengthDelimited);
  AppendVarint(out_, bytes);
  for (int64_t v : values) AppendVarint(out_, ZigZag(v));
}

size_t Writer::Begin(uint32_t field) {
  if (field != 0) Tag(field, WireType::kLengthDelimited);
  return out_->size();
}

// Moves the message's bytes up by the size of their length and writes the
// length in the gap.
void Writer::End(size_t mark) {
  const size_t length = out_->size() - mark;
  const size_t prefix = VarintSize(length);
  out_->resize(out_->size() + prefix);
  char* start = out_->data() + mark;
  std::memmove(start + prefix, start, length);
  uint64_t value = length;
  for (size_t i = 0; i < prefix; ++i, value >>= 7) {
    start[i] = static_cast<char>((value & 0x7f) | (i + 1 < prefix ? 0x80 : 0));
  }
}

}  // namespace protobuf

namespace {

using protobuf::Writer;

// metrics.proto's field numbers.
namespace field {
// MetricFamily
constexpr uint32_t kName = 1, kHelp = 2, kType = 3, kMetric = 4;
// Metric
constexpr uint32_t kLabel = 1, kGauge = 2, kCounter = 3, kSummary = 4, kUntyped = 5,
                   kTimestampMs = 6, kHistogram = 7;
// LabelPair
constexpr uint32_t kLabelName = 1, kLabelValue = 2;
// Gauge, Counter, Untyped
constexpr uint32_t kValue = 1;
// Summary (Histogram's count and sum have the same numbers)
constexpr uint32_t kSampleCount = 1, kSampleSum = 2, kQuantile = 3;
// Quantile
constexpr uint32_t kQuantileQuantile = 1, kQuantileValue = 2;
// Histogram
constexpr uint32_t kBucket = 3, kSchema = 5, kZeroThreshold = 6, kZeroCount = 7,
                   kPositiveSpan = 12, kPositiveDelta = 13;
// Bucket
constexpr uint32_t kCumulativeCount = 1, kUpperBound = 2;
// BucketSpan
constexpr uint32_t kSpanOffset = 1, kSpanLength = 2;
}  // namespace field

// metrics.proto's MetricType.
uint64_t TypeCode(MetricType type) {
  switch (type) {
    case MetricType::Counter: return 0;
    case MetricType::Gauge: return 1;
    case MetricType::Summary: return 2;
    case MetricType::Histogram: return 4;
    default: return 3;  // UNTYPED
  }
}

void EncodeValue(Writer* w, uint32_t which, double value) {
  const size_t m = w->Begin(which);
  w->Double(field::kValue, value);
  w->End(m);
}

void EncodeSummary(Writer* w, const ClientMetric::Summary& s) {
  const size_t m = w->Begin(field::kSummary);
  w->Varint(field::kSampleCount, s.sample_count);
  w->Double(field::kSampleSum, s.sample_sum);
  for (const auto& q : s.quantile) {
    const size_t qm = w->Begin(field::kQuantile);
    w->Double(field::kQuantileQuantile, q.quantile);
    w->Double(field::kQuantileValue, q.value);
    w->End(qm);
  }
  w->End(m);
}

// The native fields, in field-number order after the classic ones: schema,
// zero threshold and zero count always (an empty native histogram is still
// one), then the positive spans and deltas (NativeHistogram has no
// negative buckets: durations and sizes are never negative).
void EncodeNative(Writer* w, const NativeHistogram& n) {
  w->Sint(field::kSchema, n.schema);
  w->Double(field::kZeroThreshold, n.zero_threshold);
  w->Varint(field::kZeroCount, n.zero_count);
  for (const auto& span : n.positive_spans) {
    const size_t m = w->Begin(field::kPositiveSpan);
    w->Sint(field::kSpanOffset, span.offset);
    w->Varint(field::kSpanLength, span.length);
    w->End(m);
  }
  w->PackedSint(field::kPositiveDelta, n.positive_deltas);
}

// Whether `n` is a native histogram: Prometheus 2.42 takes one for native
// when it has deltas, a zero count or a zero threshold > 0, and a
// NativeHistogram always has the threshold. A default-constructed one has
// nothing: classic buckets only.
bool IsNative(const NativeHistogram& n) {
  return n.zero_threshold > 0 || n.zero_count != 0 || !n.positive_deltas.empty();
}

void EncodeHistogram(Writer* w, const ClientMetric::Histogram& h, const NativeHistogram* native) {
  if (native && !IsNative(*native)) native = nullptr;
  const size_t m = w->Begin(field::kHistogram);
  w->Varint(field::kSampleCount, native ? native->count : h.sample_count);
  w->Double(field::kSampleSum, h.sample_sum);
  size_t buckets = h.bucket.size();
  if (buckets > 0 && std::isinf(h.bucket.back().upper_bound) && h.bucket.back().upper_bound > 0 &&
      h.bucket.back().cumulative_count == h.sample_count) {
    --buckets;
  }
  for (size_t i = 0; i < buckets; ++i) {
    const size_t bm = w->Begin(field::kBucket);
    w->Varint(field::kCumulativeCount, h.bucket[i].cumulative_count);
    w->Double(field::kUpperBound, h.bucket[i].upper_bound);
    w->End(bm);
  }
  if (native) EncodeNative(w, *native);
  w->End(m);
}

void EncodeMetric(Writer* w, MetricType type, const ClientMetric& metric,
                  const NativeHistogram* native) {
  const size_t m = w->Begin(field::kMetric);
  for (const auto& label : metric.label) protobuf::AppendLabel(w->out(), label.name, label.value);
  // Fields in number order (as protobuf libraries write them): the
  // timestamp (6) goes between the other types' values and the histogram (7).
  switch (type) {
    case MetricType::Counter: EncodeValue(w, field::kCounter, metric.counter.value); break;
    case MetricType::Gauge: EncodeValue(w, field::kGauge, metric.gauge.value); break;
    case MetricType::Summary: EncodeSummary(w, metric.summary); break;
    case MetricType::Histogram: break;
    default: EncodeValue(w, field::kUntyped, metric.untyped.value); break;
  }
  if (metric.timestamp_ms != 0) {
    w->Varint(field::kTimestampMs, static_cast<uint64_t>(metric.timestamp_ms));
  }
  if (type == MetricType::Histogram) EncodeHistogram(w, metric.histogram, native);
  w->End(m);
}

}  // namespace

namespace protobuf {

void AppendLabel(TextBuffer* out, std::string_view name, std::string_view value) {
  Writer w(out);
  const size_t m = w.Begin(field::kLabel);
  w.String(field::kLabelName, name);
  w.String(field::kLabelValue, value);
  w.End(m);
}

size_t BeginFamily(TextBuffer* out, std::string_view name, std::string_view help,
                   MetricType type) {
  Writer w(out);
  const size_t m = w.Begin(0);
  w.String(field::kName, name);
  if (!help.empty()) w.String(field::kHelp, help);
  w.Varint(field::kType, TypeCode(type));
  return m;
}

void EndFamily(TextBuffer* out, size_t mark) { Writer(out).End(mark); }

void AppendSample(TextBuffer* out, MetricType type, std::initializer_list<std::string_view> labels,
                  double value) {
  Writer w(out);
  const size_t m = w.Begin(field::kMetric);
  for (std::string_view part : labels) out->append(part.data(), part.data() + part.size());
  switch (type) {
    case MetricType::Counter: EncodeValue(&w, field::kCounter, value); break;
    case MetricType::Gauge: EncodeValue(&w, field::kGauge, value); break;
    default: EncodeValue(&w, field::kUntyped, value); break;
  }
  w.End(m);
}

void AppendSummarySample(TextBuffer* out, uint64_t count, double sum) {
  Writer w(out);
  const size_t m = w.Begin(field::kMetric);
  ClientMetric::Summary s;
  s.sample_count = count;
  s.sample_sum = sum;
  EncodeSummary(&w, s);
  w.End(m);
}

}  // namespace protobuf

void EncodeFamily(const MetricFamily& family, const std::vector<NativeHistogram>* native,
                  TextBuffer* out) {
  if (family.metric.empty()) return;
  Writer w(out);
  const size_t m = protobuf::BeginFamily(out, family.name, family.help, family.type);
  const bool with_native = native && family.type == MetricType::Histogram &&
                           native->size() == family.metric.size();
  for (size_t i = 0; i < family.metric.size(); ++i) {
    EncodeMetric(&w, family.type, family.metric[i], with_native ? &(*native)[i] : nullptr);
  }
  w.End(m);
}

void EncodeFamilies(const std::vector<ServedFamily>& families, TextBuffer* out) {
  for (const auto& f : families) EncodeFamily(f.family, &f.native, out);
}

}  // namespace uwsgi_prometheus
