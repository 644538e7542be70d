// Metric families -> Prometheus' protobuf exposition: a stream of
// io.prometheus.client.MetricFamily messages (client_model's metrics.proto),
// each preceded by its length as a varint ("encoding=delimited"). The same
// families as the text (render.h), with the same names, labels, help and
// values; only the bytes differ.
//
// Written here for this one fixed schema rather than with a protobuf
// library: no new dependency, and nothing that can clash with the protobuf
// a Python app loads into the worker processes (which the master forks,
// plugin included). Field numbers are those of metrics.proto, listed below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

#include "render.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {

// Appends the delimited message of one family; nothing for a family without
// series (the text writes nothing for it either). `native`, when not null,
// holds the native histogram (native_histogram.h) of each series of a
// histogram family, in the order of family.metric (a default-constructed
// entry: classic buckets only); a series with one sends its count. A trailing +Inf
// bucket equal to the count is left out, as client_golang does: the count
// is that bucket. Does not throw except std::bad_alloc.
void EncodeFamily(const prometheus::MetricFamily& family,
                  const std::vector<NativeHistogram>* native, TextBuffer* out);

// Every family of `families`, in order.
void EncodeFamilies(const std::vector<ServedFamily>& families, TextBuffer* out);

// The wire format's pieces, for the encoders and their tests.
namespace protobuf {

// Parts of the messages for a writer without a MetricFamily (the direct
// scrape writer, scrape_protobuf.cc); EncodeFamily writes the same bytes
// with them.
//
// One Metric.label field (a LabelPair).
void AppendLabel(TextBuffer* out, std::string_view name, std::string_view value);
// A MetricFamily of a delimited stream up to its metrics (help left out
// when empty); EndFamily(mark) closes it.
size_t BeginFamily(TextBuffer* out, std::string_view name, std::string_view help,
                   prometheus::MetricType type);
void EndFamily(TextBuffer* out, size_t mark);
// One Metric of a counter, gauge or untyped family: its Metric.label fields,
// already encoded (the concatenation of `labels`), then its value.
void AppendSample(TextBuffer* out, prometheus::MetricType type,
                  std::initializer_list<std::string_view> labels, double value);
// A Metric without labels holding a summary of count and sum only.
void AppendSummarySample(TextBuffer* out, uint64_t count, double sum);


enum class WireType : uint8_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2 };

inline uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}

size_t VarintSize(uint64_t value);
void AppendVarint(TextBuffer* out, uint64_t value);

// Fields of one message appended to a buffer. A nested message is written
// in place and its length inserted in front of it when it ends, so the
// encoder needs no size pass and no scratch buffer.
class Writer {
 public:
  explicit Writer(TextBuffer* out) : out_(out) {}

  void Varint(uint32_t field, uint64_t value);  // uint32/uint64/enum; int64 as two's complement
  void Sint(uint32_t field, int64_t value);     // sint32/sint64: zigzag
  void Double(uint32_t field, double value);    // fixed64, little-endian
  void String(uint32_t field, std::string_view value);
  // A packed repeated sint32/sint64; nothing when `values` is empty.
  void PackedSint(uint32_t field, const std::vector<int64_t>& values);

  // Begin starts a nested message in `field`, or with field 0 a top-level
  // message of a delimited stream (no tag); End(mark) closes it.
  size_t Begin(uint32_t field);
  void End(size_t mark);

  TextBuffer* out() const { return out_; }

 private:
  void Tag(uint32_t field, WireType type);
  TextBuffer* out_;
};

}  // namespace protobuf
}  // namespace uwsgi_prometheus
