#include "exporter.h"

#include "negotiate.h"
#include "procfs.h"
#include "render.h"

namespace uwsgi_prometheus {
namespace {

prometheus::MetricFamily Counter(const char* name, const char* help, uint64_t value) {
  prometheus::MetricFamily family{name, help, prometheus::MetricType::Counter, {}};
  family.metric.emplace_back();
  family.metric.back().counter.value = static_cast<double>(value);
  return family;
}

// The endpoint's self-metrics, from the server's atomics.
void AppendServerFamilies(const HttpServerStats& stats,
                          std::vector<prometheus::MetricFamily>* out) {
  out->push_back(Counter("uwsgi_prometheus_http_connections_accepted_total",
                         "Connections accepted by the metrics endpoint.",
                         stats.accepted.load(std::memory_order_relaxed)));
  out->push_back(Counter("uwsgi_prometheus_http_requests_total",
                         "Well-formed requests answered by the metrics endpoint.",
                         stats.requests.load(std::memory_order_relaxed)));
  prometheus::MetricFamily refused{
      "uwsgi_prometheus_http_requests_refused_total",
      "Requests refused by the web configuration's authentication, by reason: no_credentials, "
      "wrong_credentials (or unknown user), too_many_checks (answered 429: password checks "
      "queue full), config_error (answered 500: the file is broken).",
      prometheus::MetricType::Counter, {}};
  const std::pair<const char*, const std::atomic<uint64_t>*> reasons[] = {
      {"config_error", &stats.config_broken},
      {"no_credentials", &stats.auth_missing},
      {"too_many_checks", &stats.auth_throttled},
      {"wrong_credentials", &stats.auth_wrong}};
  for (const auto& [reason, counter] : reasons) {
    prometheus::ClientMetric m;
    m.label.push_back({"reason", reason});
    m.counter.value = static_cast<double>(counter->load(std::memory_order_relaxed));
    refused.metric.push_back(std::move(m));
  }
  out->push_back(std::move(refused));
  out->push_back(Counter("uwsgi_prometheus_http_password_checks_total",
                         "bcrypt password checks run (results not found in the cache).",
                         stats.password_checks.load(std::memory_order_relaxed)));
  prometheus::MetricFamily closed{
      "uwsgi_prometheus_http_connections_closed_total",
      "Connections of the metrics endpoint closed, by reason (unusual ones are logged).",
      prometheus::MetricType::Counter, {}};
  for (size_t i = 0; i < kCloseReasonCount; ++i) {
    const auto reason = static_cast<CloseReason>(i);
    prometheus::ClientMetric m;
    m.label.push_back({"reason", CloseReasonName(reason)});
    m.counter.value = static_cast<double>(stats.Closed(reason));
    closed.metric.push_back(std::move(m));
  }
  out->push_back(std::move(closed));
}

}  // namespace

Exporter::Exporter(SnapshotSource* source, ExporterOptions options, HealthCheck health)
    : source_(source), options_(std::move(options)), health_(std::move(health)) {}

void Exporter::Scrape(std::string* body) {
  Render();
  body->assign(buffer_.data(), buffer_.size());
}

void Exporter::Render() {
  const auto start = std::chrono::steady_clock::now();
  ++self_.scrapes;
  std::string error;
  self_.up = source_->Take(&snapshot_, &error);
  if (!self_.up) {
    ++self_.scrape_errors;
    ++self_.errors;
    if (log && error != last_error_) log("cannot read uWSGI's counters: " + error);
    last_error_ = error;
  }
  self_.last_scrape_error = !self_.up;
  ReadSelfProcess(&snapshot_.process);

  families_.clear();
  for (auto& provider : providers_) provider(snapshot_, self_.up, &families_);
  if (server_stats_) AppendServerFamilies(*server_stats_, &families_);
  if (!families_.empty()) {
    Normalize(&families_);
    // A provider family must not shadow a built-in one or repeat another:
    // keep the first, drop the rest, say so once.
    size_t kept = 0;
    for (size_t i = 0; i < families_.size(); ++i) {
      const auto& name = families_[i].name;
      if (IsBuiltInFamily(name) || (kept > 0 && families_[kept - 1].name == name)) {
        ++self_.errors;
        if (log && reported_clashes_.insert(name).second) {
          log("family " + name + " is served twice; keeping the first one");
        }
        continue;
      }
      if (kept != i) families_[kept] = std::move(families_[i]);
      ++kept;
    }
    families_.resize(kept);
  }
  buffer_.clear();
  RenderScrape(snapshot_, options_.model, self_, families_, &buffer_);

  self_.scrape_duration_sum +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++self_.scrape_duration_count;
}

// As uwsgi_exporter answers: the text format whatever the client prefers
// among formats not served here, gzip whenever Accept-Encoding allows it.
void Exporter::ServeMetrics(const HttpRequest& request, HttpResponse* response) {
  const ExpositionFormat format = ChooseFormat(request.accept, /*protobuf_offered=*/false);
  response->status = 200;
  response->content_type = std::string(ContentTypeOf(format));
  response->extra_headers.emplace_back("Vary", "Accept-Encoding");
  Render();
  const std::string_view text(buffer_.data(), buffer_.size());
  if (options_.gzip && ChooseCoding(request.accept_encoding) == ContentCoding::kGzip) {
    std::string_view encoded;
    std::string error;
    if (gzip_.Encode(text, &encoded, &error)) {
      response->body.assign(encoded.data(), encoded.size());
      response->extra_headers.emplace_back("Content-Encoding", "gzip");
      return;
    }
    ++self_.errors;
    if (log) log(error + "; answering uncompressed");
  }
  response->body.assign(text.data(), text.size());
}

void Exporter::Handle(const HttpRequest& request, HttpResponse* response) noexcept {
  try {
    if (request.path == options_.metrics_path) {
      ServeMetrics(request, response);
    } else if (request.path == "/-/healthy") {
      std::string reason;
      const bool ok = !health_ || health_(&reason);
      response->status = ok ? 200 : 503;
      response->body = ok ? "OK\n" : reason + "\n";
    } else if (request.path == "/") {
      response->status = 200;
      response->content_type = "text/html; charset=utf-8";
      response->body = fmt::format(
          "<!DOCTYPE html>\n<html><head><title>uWSGI exporter</title></head><body>\n"
          "<h1>uWSGI exporter</h1>\n<p>uwsgi-prometheus {}, serving from the uWSGI master.</p>\n"
          "<ul><li><a href=\"{}\">Metrics</a></li>\n"
          "<li><a href=\"/-/healthy\">Health</a></li></ul>\n</body></html>\n",
          options_.version, options_.metrics_path);
    } else {
      response->status = 404;
      response->body = "Not Found\n";
    }
  } catch (const std::exception& e) {
    ++self_.errors;
    response->status = 500;
    response->content_type = "text/plain; charset=utf-8";
    response->body = std::string("internal error: ") + e.what() + "\n";
    if (log) log(std::string("scrape failed: ") + e.what());
  }
}

}  // namespace uwsgi_prometheus
