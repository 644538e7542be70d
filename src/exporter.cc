#include "exporter.h"

#include <malloc.h>

#include "labels.h"
#include "negotiate.h"
#include "procfs.h"
#include "render.h"

namespace uwsgi_prometheus {
namespace {

ServedFamily Counter(const char* name, const char* help, uint64_t value) {
  prometheus::MetricFamily family{name, help, prometheus::MetricType::Counter, {}};
  family.metric.emplace_back();
  family.metric.back().counter.value = static_cast<double>(value);
  return {std::move(family)};
}

// The endpoint's self-metrics, from the server's atomics.
void AppendServerFamilies(const HttpServerStats& stats, std::vector<ServedFamily>* out) {
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
  out->push_back({std::move(refused)});
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
  out->push_back({std::move(closed)});
}

// uwsgi_prometheus_build_info: 1, labelled with what was built and where it
// runs (as uwsgi_exporter's uwsgi_exporter_build_info).
ServedFamily BuildInfo(const ExporterOptions& options) {
  prometheus::MetricFamily family{
      "uwsgi_prometheus_build_info",
      "A metric with a constant '1' value labeled by the version of the plugin and of the uWSGI "
      "it runs in.",
      prometheus::MetricType::Gauge, {}};
  family.metric.emplace_back();
  auto& m = family.metric.back();
  auto label = [&m](const char* name, const std::string& value) {
    m.label.push_back({name, SanitizeLabelValue(value, kMaxLabelValueBytes)});
  };
  label("uwsgi_version", options.uwsgi_version);
  label("version", options.version);
  m.gauge.value = 1;
  return {std::move(family)};
}

}  // namespace

Exporter::Exporter(SnapshotSource* source, ExporterOptions options, HealthCheck health)
    : source_(source), options_(std::move(options)), health_(std::move(health)) {}

void Exporter::Scrape(std::string* body, ExpositionFormat format) {
  const auto start = std::chrono::steady_clock::now();
  Take(format == ExpositionFormat::kProtobuf);
  TextBuffer out;
  Encode(format, &out);
  FinishScrape(start);
  body->assign(out.data(), out.size());
}

void Exporter::Take(bool native) {
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
  const ScrapeContext context{self_.up, native};
  for (auto& provider : providers_) provider(snapshot_, context, &families_);
  taken_native_ = native;
  if (server_stats_) AppendServerFamilies(*server_stats_, &families_);
  families_.push_back(BuildInfo(options_));
  if (!families_.empty()) {
    Normalize(&families_);
    // A provider family must not shadow a built-in one or repeat another:
    // keep the first, drop the rest, say so once.
    size_t kept = 0;
    for (size_t i = 0; i < families_.size(); ++i) {
      const auto& name = families_[i].family.name;
      if (IsBuiltInFamily(name) || (kept > 0 && families_[kept - 1].family.name == name)) {
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
  taken_self_ = self_;
  for (auto& by_coding : last_) {
    for (auto& body : by_coding) body.reset();
  }
  last_taken_ = std::chrono::steady_clock::now();
}

void Exporter::Encode(ExpositionFormat format, TextBuffer* out) const {
  out->clear();
  if (format == ExpositionFormat::kProtobuf) {
    EncodeScrape(snapshot_, options_.model, taken_self_, families_, out);
  } else {
    RenderScrape(snapshot_, options_.model, taken_self_, families_, out);
  }
}

void Exporter::FinishScrape(std::chrono::steady_clock::time_point start) {
  self_.scrape_duration_sum +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ++self_.scrape_duration_count;
}

Exporter::Body Exporter::EncodeShared(ExpositionFormat format) {
  const auto f = static_cast<size_t>(format);
  auto body = std::make_shared<TextBuffer>();
  body->reserve(size_hint_[f] + size_hint_[f] / 8);
  Encode(format, body.get());
  size_hint_[f] = body->size();
  last_[f][0] = body;
  return body;
}

// A scrape's temporaries (a few hundred kilobytes at 256 workers) are
// freed into this thread's malloc arena, which would keep their pages for
// good; hand whole free pages back to the kernel after each scrape (a few
// microseconds when there is nothing to give back).
void Exporter::GiveBackFreeMemory() { malloc_trim(0); }

Exporter::Body Exporter::Shared(ExpositionFormat format, bool gzip) const {
  if (std::chrono::steady_clock::now() - last_taken_ >= options_.share_window) return nullptr;
  return last_[static_cast<size_t>(format)][gzip ? 1 : 0].lock();
}

bool Exporter::SharingLastScrape() const {
  if (std::chrono::steady_clock::now() - last_taken_ >= options_.share_window) return false;
  for (const auto& by_coding : last_) {
    for (const auto& body : by_coding) {
      if (!body.expired()) return true;
    }
  }
  return false;
}

// As uwsgi_exporter answers, plus protobuf: the text format unless the
// client prefers protobuf, gzip whenever Accept-Encoding allows it. Clients
// asking at the same moment share one scrape (see share_window).
void Exporter::ServeMetrics(const HttpRequest& request, HttpResponse* response) {
  const ExpositionFormat format = ChooseFormat(request.accept, options_.protobuf);
  response->status = 200;
  response->content_type = std::string(ContentTypeOf(format));
  response->extra_headers.emplace_back(
      "Vary", options_.protobuf ? "Accept, Accept-Encoding" : "Accept-Encoding");
  const bool gzip =
      options_.gzip && ChooseCoding(request.accept_encoding) == ContentCoding::kGzip;
  Body body = gzip ? Shared(format, /*gzip=*/true) : nullptr;
  bool encoded = body != nullptr;
  if (!body) {
    body = Shared(format, /*gzip=*/false);
    if (!body) {
      // a protobuf body needs a scrape taken with the native histograms
      const bool native = format == ExpositionFormat::kProtobuf;
      if (SharingLastScrape() && (taken_native_ || !native)) {
        body = EncodeShared(format);
      } else {
        const auto start = std::chrono::steady_clock::now();
        Take(native);
        body = EncodeShared(format);
        FinishScrape(start);
      }
    }
    if (gzip) {
      auto compressed = std::make_shared<TextBuffer>();
      std::string error;
      if (gzip_.Encode(std::string_view(body->data(), body->size()), compressed.get(), &error)) {
        last_[static_cast<size_t>(format)][1] = compressed;
        body = std::move(compressed);
        encoded = true;
      } else {
        ++self_.errors;
        if (log) log(error + "; answering uncompressed");
      }
    }
  }
  if (encoded) response->extra_headers.emplace_back("Content-Encoding", "gzip");
  GiveBackFreeMemory();
  response->shared_body = {body, std::string_view(body->data(), body->size())};
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
    response->shared_body = SharedBytes();
    response->status = 500;
    response->content_type = "text/plain; charset=utf-8";
    response->body = std::string("internal error: ") + e.what() + "\n";
    if (log) log(std::string("scrape failed: ") + e.what());
  }
}

}  // namespace uwsgi_prometheus
