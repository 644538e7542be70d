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

// The wire format's pieces, for the encoder and its tests.
namespace protobuf {

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

 private:
  void Tag(uint32_t field, WireType type);
  TextBuffer* out_;
};

}  // namespace protobuf
}  // namespace uwsgi_prometheus
