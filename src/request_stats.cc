#include "request_stats.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <new>
#include <tuple>

#include "go_float.h"

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

namespace {

constexpr size_t kHeaderBytes = 4096;

size_t SlotBytes() { return sizeof(RequestSlot); }

static_assert(sizeof(RequestStatsHeader) <= kHeaderBytes, "the header outgrew its page");

uint32_t NativeRecordBytes(const NativeRange& duration, const NativeRange& size) {
  const size_t bytes = (duration.Slots() + size.Slots()) * sizeof(std::atomic<uint64_t>);
  return static_cast<uint32_t>((bytes + 127) / 128 * 128);
}

// The native part of a fresh header; false with a message on bad options.
bool SetUpNative(const NativeOptions& native, RequestStatsHeader* h, NativeIndexer* indexer,
                 std::string* error) {
  h->native_enabled = native.enabled ? 1 : 0;
  if (!native.enabled) return true;
  if (native.schema < kNativeMinSchema || native.schema > kNativeMaxSchema) {
    *error = "native histogram schema " + std::to_string(native.schema) + " is not in -4..8";
    return false;
  }
  if (!CheckNativeOptions(native, error)) return false;
  h->native_schema = native.schema;
  FillNativeIndexer(native.schema, indexer);
  h->native_duration = NativeRangeFor(native.duration_min, native.duration_max, *indexer);
  h->native_size = NativeRangeFor(native.size_min, native.size_max, *indexer);
  h->native_record_bytes = NativeRecordBytes(h->native_duration, h->native_size);
  return true;
}

bool NativeHeaderValid(const RequestStatsHeader& h) {
  if (!h.native_enabled) return h.native_record_bytes == 0;
  return h.native_schema >= kNativeMinSchema && h.native_schema <= kNativeMaxSchema &&
         h.native_duration.lowest <= h.native_duration.highest &&
         h.native_size.lowest <= h.native_size.highest &&
         h.native_duration.highest - h.native_duration.lowest < kNativeMaxBuckets &&
         h.native_size.highest - h.native_size.lowest < kNativeMaxBuckets &&
         h.native_record_bytes == NativeRecordBytes(h.native_duration, h.native_size) &&
         h.native_offset == kHeaderBytes + uint64_t{h.slots} * SlotBytes();
}

}  // namespace

size_t MethodIndex(std::string_view method) {
  for (size_t i = 0; i + 1 < kMethodCount; ++i) {
    if (method == kMethods[i]) return i;
  }
  return kMethodCount - 1;
}

size_t RequestStatsBytes(uint32_t workers, uint32_t apps, uint32_t native_record_bytes) {
  return kHeaderBytes + static_cast<size_t>(workers) * apps * (SlotBytes() + native_record_bytes);
}

bool ParseBuckets(const std::string& text, std::vector<double>* out, std::string* error) {
  out->clear();
  const char* p = text.c_str();
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t') ++p;
    if (!*p) break;
    char* end = nullptr;
    errno = 0;
    double v = StrtodC(p, &end);
    if (end == p || errno == ERANGE || (*end && *end != ',' && *end != ' ' && *end != '\t')) {
      *error = "'" + text + "' is not a list of numbers (e.g. 0.01,0.1,1,10)";
      return false;
    }
    if (!std::isfinite(v) || v <= 0) {
      *error = "bucket bounds must be positive and finite (+Inf is always added)";
      return false;
    }
    if (!out->empty() && v <= out->back()) {
      *error = "bucket bounds must be strictly increasing";
      return false;
    }
    out->push_back(v);
    p = end;
  }
  if (out->empty()) {
    *error = "no bucket bounds given";
    return false;
  }
  if (out->size() > kMaxDurationBuckets) {
    *error = "at most " + std::to_string(kMaxDurationBuckets) + " bucket bounds";
    return false;
  }
  return true;
}

bool RequestStats::Create(const RequestStatsOptions& options, std::string* error) {
  if (options.duration_bounds.empty() || options.duration_bounds.size() > kMaxDurationBuckets ||
      options.workers == 0 || options.apps == 0) {
    *error = "invalid request stats options";
    return false;
  }
  RequestStatsHeader native{};
  if (!SetUpNative(options.native, &native, &indexer_, error)) return false;
  const size_t bytes =
      RequestStatsBytes(options.workers, options.apps, native.native_record_bytes);
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    *error = std::string("cannot map ") + std::to_string(bytes) + " bytes of shared memory: " +
             strerror(errno);
    return false;
  }
  // Fresh anonymous memory is zero: every atomic starts at 0.
  auto* h = static_cast<RequestStatsHeader*>(base);
  *h = native;
  h->magic = kRequestStatsMagic;
  h->version = kRequestStatsVersion;
  h->header_bytes = kHeaderBytes;
  h->slot_bytes = static_cast<uint32_t>(SlotBytes());
  h->slots = options.workers * options.apps;
  h->workers = options.workers;
  h->apps = options.apps;
  h->duration_buckets = static_cast<uint32_t>(options.duration_bounds.size());
  h->pair_slots = kPairSlots;
  h->size_buckets = kSizeBuckets;
  for (size_t i = 0; i < options.duration_bounds.size(); ++i) {
    h->duration_bounds_us[i] = options.duration_bounds[i] * 1e6;
  }
  h->native_offset = kHeaderBytes + static_cast<uint64_t>(h->slots) * SlotBytes();
  base_ = base;
  bytes_ = bytes;
  owned_ = true;
  header_ = h;
  return true;
}

bool RequestStats::Attach(void* base, size_t bytes, std::string* error) {
  auto* h = static_cast<RequestStatsHeader*>(base);
  if (bytes < sizeof(RequestStatsHeader) || h->magic != kRequestStatsMagic) {
    *error = "request stats table has no valid header";
    return false;
  }
  if (h->version != kRequestStatsVersion || h->slot_bytes != SlotBytes() ||
      h->header_bytes != kHeaderBytes || h->pair_slots != kPairSlots ||
      h->duration_buckets > kMaxDurationBuckets || !NativeHeaderValid(*h) ||
      bytes < RequestStatsBytes(h->workers, h->apps, h->native_record_bytes)) {
    *error = "request stats table version " + std::to_string(h->version) +
             " does not match this build (version " + std::to_string(kRequestStatsVersion) + ")";
    return false;
  }
  base_ = base;
  bytes_ = bytes;
  owned_ = false;
  header_ = h;
  if (h->native_enabled) FillNativeIndexer(h->native_schema, &indexer_);
  return true;
}

RequestStats::~RequestStats() {
  if (owned_ && base_) munmap(base_, bytes_);
}

RequestSlot* RequestStats::slot(uint32_t index) const {
  auto* first = reinterpret_cast<char*>(base_) + kHeaderBytes;
  return reinterpret_cast<RequestSlot*>(first + static_cast<size_t>(index) * SlotBytes());
}

NativeSlot RequestStats::native_slot(uint32_t index) const {
  if (!header_->native_enabled) return {nullptr, nullptr};
  auto* record = reinterpret_cast<std::atomic<uint64_t>*>(
      reinterpret_cast<char*>(base_) + header_->native_offset +
      static_cast<size_t>(index) * header_->native_record_bytes);
  return {record, record + header_->native_duration.Slots()};
}

void RequestStats::Observe(const RequestObservation& o) noexcept {
  const RequestStatsHeader* h = header_;
  if (!h || o.worker_id == 0 || o.worker_id > h->workers) return;
  const uint32_t app = o.app_index < h->apps ? o.app_index : h->apps - 1;
  const uint32_t index = (o.worker_id - 1) * h->apps + app;
  RequestSlot* s = slot(index);
  constexpr auto relaxed = std::memory_order_relaxed;

  // Duration: first bucket whose bound is >= the observation ("le").
  const double us = static_cast<double>(o.duration_us);
  uint32_t b = 0;
  while (b < h->duration_buckets && us > h->duration_bounds_us[b]) ++b;
  s->duration_buckets[b].fetch_add(1, relaxed);
  s->duration_sum_us.fetch_add(o.duration_us, relaxed);

  const double size = static_cast<double>(o.response_bytes);
  uint32_t sb = 0;
  while (sb < kSizeBuckets && size > kSizeBounds[sb]) ++sb;
  s->size_buckets[sb].fetch_add(1, relaxed);
  s->size_sum.fetch_add(o.response_bytes, relaxed);

  const uint32_t code = (o.status >= 100 && o.status <= 599) ? static_cast<uint32_t>(o.status) : 0;
  const uint32_t key = static_cast<uint32_t>(MethodIndex(o.method) + 1) << 16 | code;
  uint32_t i = (key * 2654435761u) % kPairSlots;
  bool counted = false;
  for (size_t probe = 0; probe < kPairSlots; ++probe, i = (i + 1) % kPairSlots) {
    auto& pair = s->pairs[i];
    uint32_t seen = pair.key.load(std::memory_order_acquire);
    if (seen == 0) {
      uint32_t expected = 0;
      if (pair.key.compare_exchange_strong(expected, key, std::memory_order_acq_rel)) {
        seen = key;
      } else {
        seen = expected;  // another thread of this worker took it
      }
    }
    if (seen == key) {
      pair.count.fetch_add(1, relaxed);
      counted = true;
      break;
    }
  }
  if (!counted) s->overflow.fetch_add(1, relaxed);
  if (h->native_enabled) {
    const NativeSlot n = native_slot(index);
    NativeRecord(us * 1e-6, h->native_duration, indexer_, n.duration);
    NativeRecord(size, h->native_size, indexer_, n.size);
  }
  // Last, so that a scrape never sees more requests than observations.
  s->count.fetch_add(1, std::memory_order_release);
}

namespace {

// One series' counts, summed over the slots it covers.
struct Sums {
  std::vector<uint64_t> duration;  // non-cumulative, + overflow bucket
  uint64_t duration_sum_us = 0;
  uint64_t count = 0;
  uint64_t size[kSizeBuckets + 1] = {};
  uint64_t size_sum = 0;
  std::map<std::pair<uint32_t, uint32_t>, uint64_t> pairs;  // (method, code)
  uint64_t overflow = 0;
  std::vector<uint64_t> native_duration;  // NativeRange layout; empty: not read
  std::vector<uint64_t> native_size;
};

// A series: (worker label, app label), each empty when not split by it.
using SeriesKey = std::pair<std::string, std::string>;

std::string AppLabel(const RequestStats::RenderOptions& options, uint32_t w, uint32_t a) {
  if (w < options.app_labels.size() && a < options.app_labels[w].size()) {
    return options.app_labels[w][a];
  }
  return a == 0 ? std::string("(no app)") : "(app " + std::to_string(a - 1) + ")";
}

void AddSlot(const RequestSlot& s, uint64_t count, uint32_t duration_buckets, Sums* sum) {
  constexpr auto relaxed = std::memory_order_relaxed;
  sum->duration.resize(duration_buckets + 1);
  for (uint32_t b = 0; b <= duration_buckets; ++b) {
    sum->duration[b] += s.duration_buckets[b].load(relaxed);
  }
  sum->duration_sum_us += s.duration_sum_us.load(relaxed);
  sum->count += count;
  for (size_t b = 0; b <= kSizeBuckets; ++b) sum->size[b] += s.size_buckets[b].load(relaxed);
  sum->size_sum += s.size_sum.load(relaxed);
  for (const auto& pair : s.pairs) {
    const uint32_t key = pair.key.load(std::memory_order_acquire);
    if (key == 0) continue;
    sum->pairs[{(key >> 16) - 1, key & 0xffff}] += pair.count.load(relaxed);
  }
  sum->overflow += s.overflow.load(relaxed);
}

// Adds a slot's native counts (read after its count, as the classic ones).
void AddNative(const NativeSlot& n, const RequestStatsHeader& h, Sums* sum) {
  constexpr auto relaxed = std::memory_order_relaxed;
  sum->native_duration.resize(h.native_duration.Slots());
  sum->native_size.resize(h.native_size.Slots());
  for (size_t b = 0; b < sum->native_duration.size(); ++b) {
    sum->native_duration[b] += n.duration[b].load(relaxed);
  }
  for (size_t b = 0; b < sum->native_size.size(); ++b) {
    sum->native_size[b] += n.size[b].load(relaxed);
  }
}

// The two native histograms of one series, labelled as its classic ones.
void AppendNative(const RequestStatsHeader& h, const std::vector<ClientMetric::Label>& labels,
                  const Sums& sum, std::vector<NativeSeries>* out) {
  out->push_back({kDurationFamily, labels,
                  MakeNativeHistogram(h.native_schema, h.native_duration, sum.native_duration,
                                      static_cast<double>(sum.duration_sum_us) / 1e6)});
  out->push_back({kSizeFamily, labels,
                  MakeNativeHistogram(h.native_schema, h.native_size, sum.native_size,
                                      static_cast<double>(sum.size_sum))});
}

// Consistency within one scrape: the +Inf bucket is _count. Buckets may have
// moved past the count read first; clamp so cumulative counts never exceed
// _count.
ClientMetric Histogram(std::vector<ClientMetric::Label> labels, const uint64_t* buckets,
                       const std::vector<double>& bounds, uint64_t count, double sum) {
  ClientMetric m;
  m.label = std::move(labels);
  uint64_t cumulative = 0;
  for (size_t b = 0; b < bounds.size(); ++b) {
    cumulative = std::min(count, cumulative + buckets[b]);
    m.histogram.bucket.push_back({cumulative, bounds[b]});
  }
  m.histogram.bucket.push_back({count, INFINITY});
  m.histogram.sample_count = count;
  m.histogram.sample_sum = sum;
  return m;
}

ClientMetric RequestCount(std::vector<ClientMetric::Label> labels, std::string code,
                          std::string method, uint64_t n) {
  ClientMetric r;
  r.label = std::move(labels);
  r.label.push_back({"code", std::move(code)});
  r.label.push_back({"method", std::move(method)});
  r.counter.value = static_cast<double>(n);
  return r;
}

std::vector<ClientMetric::Label> BaseLabels(const SeriesKey& key, bool per_app, bool per_worker) {
  std::vector<ClientMetric::Label> labels;
  if (per_app) labels.push_back({"mountpoint", key.second});
  if (per_worker) labels.push_back({"worker_id", key.first});
  return labels;
}

// The three families, one series per key; labels sorted by name.
// With `native`, also the native histograms (labels in name order, as
// BaseLabels makes them).
void AppendSeries(const std::map<SeriesKey, Sums>& series,
                  const std::vector<double>& duration_bounds, bool per_app, bool per_worker,
                  std::vector<MetricFamily>* out, const RequestStatsHeader* native_header,
                  std::vector<NativeSeries>* native) {
  const std::vector<double> size_bounds(std::begin(kSizeBounds), std::end(kSizeBounds));
  MetricFamily duration{kDurationFamily,
                        "Time from the start of a request to its end in the worker, in seconds.",
                        MetricType::Histogram, {}};
  MetricFamily size{kSizeFamily,
                    "Size of responses (headers and body), in bytes.", MetricType::Histogram, {}};
  MetricFamily requests{"uwsgi_requests_total",
                        "Requests finished by the workers, by HTTP status code and method.",
                        MetricType::Counter, {}};
  for (const auto& [key, sum] : series) {
    const auto labels = BaseLabels(key, per_app, per_worker);
    if (native) AppendNative(*native_header, labels, sum, native);
    duration.metric.push_back(Histogram(labels, sum.duration.data(), duration_bounds, sum.count,
                                        static_cast<double>(sum.duration_sum_us) / 1e6));
    size.metric.push_back(Histogram(labels, sum.size, size_bounds, sum.count,
                                    static_cast<double>(sum.size_sum)));
    for (const auto& [pair, n] : sum.pairs) {
      const char* method = pair.first < kMethodCount ? kMethods[pair.first] : "other";
      requests.metric.push_back(RequestCount(labels, std::to_string(pair.second), method, n));
    }
    if (sum.overflow) requests.metric.push_back(RequestCount(labels, "other", "other", sum.overflow));
  }
  for (auto* f : {&duration, &size, &requests}) {
    for (auto& m : f->metric) {
      std::sort(m.label.begin(), m.label.end(),
                [](const auto& a, const auto& b) { return a.name < b.name; });
    }
    out->push_back(std::move(*f));
  }
}

}  // namespace

const NativeHistogram* FindNative(const std::vector<NativeSeries>& native,
                                  const std::string& family,
                                  const std::vector<ClientMetric::Label>& labels) {
  auto sorted = labels;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const auto& n : native) {
    if (n.family == family && n.labels == sorted) return &n.histogram;
  }
  return nullptr;
}

void RequestStats::AppendFamilies(const RenderOptions& options, std::vector<MetricFamily>* out,
                                  std::vector<NativeSeries>* native) const {
  const RequestStatsHeader* h = header_;
  if (!h) return;
  if (!h->native_enabled) native = nullptr;
  const bool per_app = !options.app_labels.empty() && h->apps > 1;
  // Group slots into series.
  std::map<SeriesKey, Sums> series;
  for (uint32_t w = 0; w < h->workers; ++w) {
    for (uint32_t a = 0; a < h->apps; ++a) {
      const RequestSlot* s = slot(w * h->apps + a);
      // Read the count first (acquire): every bucket it covers is visible,
      // so a histogram never has _count above its +Inf bucket.
      const uint64_t count = s->count.load(std::memory_order_acquire);
      if (count == 0) continue;
      Sums& sum = series[{options.per_worker ? std::to_string(w + 1) : std::string(),
                          per_app ? AppLabel(options, w, a) : std::string()}];
      AddSlot(*s, count, h->duration_buckets, &sum);
      if (native) AddNative(native_slot(w * h->apps + a), *h, &sum);
    }
  }
  std::vector<double> duration_bounds(h->duration_buckets);
  for (uint32_t b = 0; b < h->duration_buckets; ++b) {
    duration_bounds[b] = h->duration_bounds_us[b] / 1e6;
  }
  AppendSeries(series, duration_bounds, per_app, options.per_worker, out, h, native);
}

}  // namespace uwsgi_prometheus
