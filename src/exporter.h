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
#include "snapshot.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {

struct ExporterOptions {
  ModelOptions model;
  std::string metrics_path = "/metrics";
  std::string version;        // the plugin's: landing page, uwsgi_prometheus_build_info
  std::string uwsgi_version;  // uWSGI's, in uwsgi_prometheus_build_info
  bool gzip = true;     // compress scrapes for clients that accept gzip
  // Scrapes arriving within this time of a render, while its body is still
  // being sent to another client, get that same body: a burst of clients
  // costs one render and one copy of the body, not one each.
  std::chrono::milliseconds share_window{500};
};

// Returns true when healthy; otherwise fills `reason`.
using HealthCheck = std::function<bool(std::string* reason)>;

// Extra families appended to every scrape (e.g. request histograms), each
// with the spelling of its bounds; gets the scrape's snapshot (valid only
// when it was taken) for label values.
using FamilyProvider =
    std::function<void(const Snapshot&, bool taken, std::vector<ServedFamily>*)>;

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
  void Scrape(std::string* body);

  // Called with a line to log when something goes wrong (rate-limited by the
  // caller's choice); defaults to nothing.
  std::function<void(const std::string&)> log;

 private:
  using Body = std::shared_ptr<const TextBuffer>;

  // Renders one scrape's text into *out.
  void Render(TextBuffer* out);
  // A new scrape, remembered as the one to share.
  Body RenderShared();
  // The last scrape's body in either coding, if it was rendered within the
  // share window and is still being sent to another client (else null).
  Body Shared(bool gzip) const;
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
  std::vector<ServedFamily> families_;
  GzipEncoder gzip_;
  // The last scrape, for sharing: held only by the connections sending it.
  std::weak_ptr<const TextBuffer> last_text_, last_gzip_;
  std::chrono::steady_clock::time_point last_rendered_;
  size_t size_hint_ = 0;  // the last body's size, reserved for the next
  std::string last_error_;
  std::set<std::string> reported_clashes_;
};

}  // namespace uwsgi_prometheus
