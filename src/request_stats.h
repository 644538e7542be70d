// Request metrics measured in the workers: a fixed-size, versioned table in
// memory that the master maps shared before it forks workers. Each worker
// adds into its own slots with relaxed atomic increments (no lock, no
// allocation, no system call); the scrape sums the slots.
//
// Layout: one header page, then `slots` records of `slot_bytes` each, every
// record starting on its own 128-byte boundary so two workers never write
// the same cache line (nor adjacent-line prefetch pairs). Slot index =
// (worker_id - 1) * apps + app_index. With native histograms, a second array
// follows the slots: one record of `native_record_bytes` per slot (same
// index), also 128-byte aligned, holding the native bucket counts.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

#include "native_histogram.h"

namespace uwsgi_prometheus {

inline constexpr uint64_t kRequestStatsMagic = 0x5052'4f4d'5251'5354ULL;  // "PROMRQST"
inline constexpr uint32_t kRequestStatsVersion = 2;
inline constexpr size_t kMaxDurationBuckets = 32;
inline constexpr size_t kSizeBuckets = 8;

// Methods with their own label value; anything else counts as "other".
inline constexpr const char* kMethods[] = {"GET",     "HEAD",  "POST",  "PUT",  "DELETE",
                                           "CONNECT", "OPTIONS", "TRACE", "PATCH", "other"};
inline constexpr size_t kMethodCount = sizeof(kMethods) / sizeof(kMethods[0]);

// Requests are counted per (method, status code) in a small lock-free
// open-addressing table per slot. Status codes outside 100..599 count as 0.
// A worker that sees more distinct pairs than the table holds counts the rest
// under method "other", code "other" (bounded memory and cardinality).
inline constexpr size_t kPairSlots = 64;

// The histogram families (each has a native histogram per series).
inline constexpr const char* kDurationFamily = "uwsgi_request_duration_seconds";
inline constexpr const char* kSizeFamily = "uwsgi_response_size_bytes";

// Response size buckets in bytes (headers + body).
inline constexpr double kSizeBounds[kSizeBuckets] = {100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

size_t MethodIndex(std::string_view method);

struct RequestStatsOptions {
  std::vector<double> duration_bounds;  // seconds, strictly increasing, finite
  uint32_t workers = 1;
  uint32_t apps = 1;  // app slots per worker (1 unless per-app)
  NativeOptions native;
};

// Parses "0.005,0.01,..." (also space separated). Returns false with a
// message when empty, unsorted, not finite, not positive or too many.
bool ParseBuckets(const std::string& text, std::vector<double>* out, std::string* error);

inline const std::vector<double>& DefaultDurationBounds() {
  static const std::vector<double>& bounds =  // never destroyed (used until exit)
      *new std::vector<double>{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
  return bounds;
}

struct RequestStatsHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_bytes;
  uint32_t slot_bytes;
  uint32_t slots;
  uint32_t workers;
  uint32_t apps;
  uint32_t duration_buckets;
  uint32_t pair_slots;
  uint32_t size_buckets;
  double duration_bounds_us[kMaxDurationBuckets];  // microseconds
  // Native histograms (none when native_enabled is 0).
  uint32_t native_enabled;
  int32_t native_schema;
  uint64_t native_offset;        // bytes from the table's start to the first record
  uint32_t native_record_bytes;  // one slot's record, a multiple of 128
  uint32_t native_reserved;
  NativeRange native_duration;  // seconds; counts at the record's start
  NativeRange native_size;      // bytes; counts right after the duration's
};

// One record. Buckets are not cumulative here (the scrape accumulates).
struct alignas(128) RequestSlot {
  std::atomic<uint64_t> duration_buckets[kMaxDurationBuckets + 1];  // last: > every bound
  std::atomic<uint64_t> duration_sum_us;
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> size_buckets[kSizeBuckets + 1];
  std::atomic<uint64_t> size_sum;
  std::atomic<uint64_t> overflow;  // requests whose (method, code) found no room
  struct Pair {
    std::atomic<uint32_t> key;  // 0 = free; else (method index + 1) << 16 | code
    std::atomic<uint64_t> count;
  } pairs[kPairSlots];
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "needs lock-free 64-bit atomics");

// One slot's native bucket counts: the duration's (NativeRange layout: zero
// bucket, then lowest..highest), then the size's. Counts only; the sample
// count and sum are the slot's (shared with the classic histograms).
struct NativeSlot {
  std::atomic<uint64_t>* duration;
  std::atomic<uint64_t>* size;
};

// A native histogram of one series, for the protobuf encoder: `family` and
// `labels` (sorted by name) are exactly those of the classic series in the
// families AppendFamilies returned in the same call.
struct NativeSeries {
  std::string family;  // kDurationFamily or kSizeFamily
  std::vector<prometheus::ClientMetric::Label> labels;
  NativeHistogram histogram;
};

// The native histogram of the series `family`{`labels`} (labels in any
// order), or null.
const NativeHistogram* FindNative(const std::vector<NativeSeries>& native,
                                  const std::string& family,
                                  const std::vector<prometheus::ClientMetric::Label>& labels);

// The observation one finished request makes.
struct RequestObservation {
  uint32_t worker_id;   // 1-based
  uint32_t app_index;   // < apps, clamped by the caller
  uint64_t duration_us;
  uint64_t response_bytes;
  int status;
  std::string_view method;
};

class RequestStats {
 public:
  // Maps the shared table (MAP_SHARED | MAP_ANONYMOUS). Call in the master
  // before workers fork. Returns false with a message on failure.
  bool Create(const RequestStatsOptions& options, std::string* error);
  // Attaches to an existing table (tests); checks magic and version.
  bool Attach(void* base, size_t bytes, std::string* error);
  RequestStats() = default;
  RequestStats(RequestStats&& other) noexcept
      : base_(other.base_),
        bytes_(other.bytes_),
        owned_(other.owned_),
        header_(other.header_),
        indexer_(other.indexer_) {
    other.base_ = nullptr;
    other.owned_ = false;
    other.header_ = nullptr;
  }
  RequestStats(const RequestStats&) = delete;
  RequestStats& operator=(const RequestStats&) = delete;
  RequestStats& operator=(RequestStats&&) = delete;
  ~RequestStats();

  // Worker side: a bucket lookup and relaxed atomic adds. Never blocks,
  // allocates or throws. Out-of-range worker ids are ignored.
  void Observe(const RequestObservation& o) noexcept;

  // Scrape side: appends histogram and counter families. `app_labels` names
  // app slots (mountpoints) when per-app; `per_worker` adds worker_id.
  struct RenderOptions {
    bool per_worker = false;
    // Per-app: app_labels[worker index][app slot] is the mountpoint label of
    // that worker's slot (app ids are per worker). Empty: not per app.
    std::vector<std::vector<std::string>> app_labels;
  };
  // With `native` (and native histograms enabled), also appends one native
  // histogram per histogram series, read in the same pass: its count is
  // never below the classic series' _count (requests finishing during the
  // read can make it higher), so the encoder sends it as sample_count.
  void AppendFamilies(const RenderOptions& options, std::vector<prometheus::MetricFamily>* out,
                      std::vector<NativeSeries>* native = nullptr) const;

  size_t bytes() const { return bytes_; }
  const RequestStatsHeader* header() const { return header_; }
  RequestSlot* slot(uint32_t index) const;
  NativeSlot native_slot(uint32_t index) const;  // null pointers when disabled

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  bool owned_ = false;
  RequestStatsHeader* header_ = nullptr;
  // The native bucket lookup for the header's schema: derived from it in
  // Create and Attach, in this process's memory (workers inherit it).
  NativeIndexer indexer_;
};

// The table's size; `native_record_bytes` is 0 without native histograms.
size_t RequestStatsBytes(uint32_t workers, uint32_t apps, uint32_t native_record_bytes);

}  // namespace uwsgi_prometheus
