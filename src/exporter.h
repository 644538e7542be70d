// The endpoint's routes: the metrics scrape, a health probe and a landing
// page. Knows nothing about uWSGI: the snapshot comes from a SnapshotSource
// and the health verdict from a callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <prometheus/metric_family.h>

#include "gzip.h"
#include "http.h"
#include "model.h"
#include "negotiate.h"
#include "snapshot.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {

struct ExporterOptions {
  ModelOptions model;
  std::string metrics_path = "/metrics";
  std::string version;        // the plugin's: landing page, uwsgi_prometheus_build_info
  std::string uwsgi_version;  // uWSGI's, in uwsgi_prometheus_build_info
  bool gzip = true;     // compress scrapes for clients that accept gzip
  bool protobuf = true;  // the protobuf format for clients that prefer it
  // Scrapes arriving within this time of a render, while one of its bodies
  // is still being sent to another client, get that same scrape: the same
  // body in the same format and coding, else the same snapshot encoded in
  // theirs. A burst of clients costs one snapshot and one copy of each
  // body, not one each.
  std::chrono::milliseconds share_window{500};
};

// Returns true when healthy; otherwise fills `reason`.
using HealthCheck = std::function<bool(std::string* reason)>;

// What one scrape asks of a provider.
struct ScrapeContext {
  bool taken = true;   // the snapshot was taken: its label values are valid
  bool native = true;  // native histograms wanted (the scrape may go out as protobuf)
};

// Extra families appended to every scrape (e.g. request histograms), each
// with the spelling of its bounds; gets the scrape's snapshot (valid only
// when it was taken) for label values.
using FamilyProvider =
    std::function<void(const Snapshot&, const ScrapeContext&, std::vector<ServedFamily>*)>;

class Exporter {
 public:
  Exporter(SnapshotSource* source, ExporterOptions options, HealthCheck health);

  void AddProvider(FamilyProvider provider) { providers_.push_back(std::move(provider)); }

  // The endpoint's own counters, served as uwsgi_prometheus_http_* families
  // (none when null). Set before the server thread starts.
  void SetServerStats(const HttpServerStats* stats) { server_stats_ = stats; }

  // The HttpHandler: called on the server thread, one request at a time.
  void Handle(const HttpRequest& request, HttpResponse* response) noexcept;

  // One scrape's body (used by Handle and by tests and benchmarks).
  void Scrape(std::string* body, ExpositionFormat format = ExpositionFormat::kText);

  // Called with a line to log when something goes wrong (rate-limited by the
  // caller's choice); defaults to nothing.
  std::function<void(const std::string&)> log;

 private:
  using Body = std::shared_ptr<const TextBuffer>;
  using WeakBody = std::weak_ptr<const TextBuffer>;

  // Takes a new scrape: the snapshot, the providers' families and the
  // self-metrics as they stand, kept until the next one. Native histograms
  // are read only for a scrape that may be served as protobuf (`native`).
  void Take(bool native);
  // Writes the last scrape taken in `format` (any number of times: the
  // same bytes each time).
  void Encode(ExpositionFormat format, TextBuffer* out) const;
  // The time since Take() goes into the scrape duration self-metric.
  void FinishScrape(std::chrono::steady_clock::time_point start);
  // The last scrape in `format`, remembered as the body to share.
  Body EncodeShared(ExpositionFormat format);
  // The last scrape's body in this format and coding, if it was taken
  // within the share window and is still being sent to another client
  // (else null).
  Body Shared(ExpositionFormat format, bool gzip) const;
  // Whether a body of the last scrape, in any format or coding, is.
  bool SharingLastScrape() const;
  void GiveBackFreeMemory();
  // The metrics route: format and coding negotiated from the request.
  void ServeMetrics(const HttpRequest& request, HttpResponse* response);

  SnapshotSource* source_;
  ExporterOptions options_;
  HealthCheck health_;
  std::vector<FamilyProvider> providers_;
  const HttpServerStats* server_stats_ = nullptr;
  Snapshot snapshot_;
  SelfStats self_;
  SelfStats taken_self_;  // self_ as the last scrape serves it
  std::vector<ServedFamily> families_;
  bool taken_native_ = false;  // families_ carry native histograms
  GzipEncoder gzip_;
  // The last scrape's bodies by format (ExpositionFormat) and coding
  // (identity, gzip), for sharing: held only by the connections sending them.
  WeakBody last_[2][2];
  std::chrono::steady_clock::time_point last_taken_;
  size_t size_hint_[2] = {0, 0};  // the last body's size by format, reserved for the next
  std::string last_error_;
  std::set<std::string> reported_clashes_;
};

}  // namespace uwsgi_prometheus
