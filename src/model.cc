#include "model.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <utility>

namespace uwsgi_prometheus {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

const char* WorkerStatusName(WorkerStatus status) {
  switch (status) {
    case WorkerStatus::kIdle: return "idle";
    case WorkerStatus::kBusy: return "busy";
    case WorkerStatus::kCheap: return "cheap";
    case WorkerStatus::kPause: return "pause";
    case WorkerStatus::kSig: return "sig";
  }
  return "idle";
}

namespace {

constexpr WorkerStatus kAllStatuses[] = {
    WorkerStatus::kBusy, WorkerStatus::kCheap, WorkerStatus::kIdle,
    WorkerStatus::kPause, WorkerStatus::kSig};

// Length of the valid UTF-8 sequence at s[i], or 0 if it is not valid.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c == 0) return 0;
  if (c < 0x80) return 1;
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;   // overlong
    if (c == 0xED) hi = 0x9F;   // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;   // overlong
    if (c == 0xF4) hi = 0x8F;   // > U+10FFFF
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if (k == 1 ? (cc < lo || cc > hi) : (cc < 0x80 || cc > 0xBF)) return 0;
  }
  return len;
}

// Builds one family at a time; every series gets the common labels.
class FamilyBuilder {
 public:
  FamilyBuilder(std::vector<MetricFamily>* out, Labels common)
      : out_(out), common_(std::move(common)) {}

  FamilyBuilder& Start(const char* name, const char* help, MetricType type,
                       bool with_common = true) {
    out_->push_back(MetricFamily{name, help, type, {}});
    with_common_ = with_common;
    return *this;
  }

  void Add(double value, Labels labels = {}) {
    ClientMetric metric;
    if (with_common_) {
      labels.insert(labels.end(), common_.begin(), common_.end());
    }
    std::sort(labels.begin(), labels.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    metric.label = std::move(labels);
    switch (out_->back().type) {
      case MetricType::Counter: metric.counter.value = value; break;
      case MetricType::Gauge: metric.gauge.value = value; break;
      default: metric.untyped.value = value; break;
    }
    out_->back().metric.push_back(std::move(metric));
  }

  void AddMetric(ClientMetric metric) {
    out_->back().metric.push_back(std::move(metric));
  }

 private:
  std::vector<MetricFamily>* out_;
  Labels common_;
  bool with_common_ = true;
};

double D(uint64_t v) { return static_cast<double>(v); }
double D(int64_t v) { return static_cast<double>(v); }

void AddServerFamilies(const Snapshot& s, FamilyBuilder& f) {
  f.Start("uwsgi_listen_queue_length", "Length of listen queue.", MetricType::Gauge)
      .Add(D(s.listen_queue));
  f.Start("uwsgi_listen_queue_errors", "Number of listen queue errors.", MetricType::Gauge)
      .Add(D(s.listen_queue_errors));
  f.Start("uwsgi_signal_queue_length", "Length of signal queue.", MetricType::Gauge)
      .Add(D(s.signal_queue));
  uint64_t workers = 0;
  for (const auto& w : s.workers) workers += w.id != 0;
  f.Start("uwsgi_workers", "Number of workers.", MetricType::Gauge).Add(D(workers));
}

void AddSocketFamilies(const Snapshot& s, const ModelOptions& o, FamilyBuilder& f) {
  // Sockets with the same (name, proto) appear once; the first one wins.
  std::vector<std::pair<Labels, const SocketSnapshot*>> sockets;
  std::set<std::pair<std::string, std::string>> seen;
  for (const auto& sock : s.sockets) {
    auto name = SanitizeLabelValue(sock.name, o.max_label_value_bytes);
    auto proto = SanitizeLabelValue(sock.proto, o.max_label_value_bytes);
    if (!seen.emplace(name, proto).second) continue;
    sockets.push_back({Labels{{"name", std::move(name)}, {"proto", std::move(proto)}}, &sock});
  }
  struct Field {
    const char* name;
    const char* help;
    double (*get)(const SocketSnapshot&);
  };
  static const Field kFields[] = {
      {"uwsgi_socket_queue_length", "Length of socket queue.",
       [](const SocketSnapshot& x) { return D(x.queue); }},
      {"uwsgi_socket_max_queue_length", "Max length of socket queue.",
       [](const SocketSnapshot& x) { return D(x.max_queue); }},
      {"uwsgi_socket_shared", "Is shared socket?",
       [](const SocketSnapshot& x) { return x.shared ? 1.0 : 0.0; }},
      {"uwsgi_socket_can_offload", "Can socket offload?",
       [](const SocketSnapshot& x) { return x.can_offload ? 1.0 : 0.0; }},
  };
  for (const auto& field : kFields) {
    f.Start(field.name, field.help, MetricType::Gauge);
    for (const auto& [labels, sock] : sockets) f.Add(field.get(*sock), labels);
  }
}

void AddWorkerFamilies(const Snapshot& s, const ModelOptions& o, FamilyBuilder& f) {
  struct Field {
    const char* name;
    const char* help;
    MetricType type;
    double (*get)(const WorkerSnapshot&);
  };
  static const Field kFields[] = {
      {"uwsgi_worker_accepting", "Is this worker accepting requests?", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return w.accepting ? 1.0 : 0.0; }},
      {"uwsgi_worker_delta_requests", "Number of delta requests", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return D(w.delta_requests); }},
      {"uwsgi_worker_signal_queue_length", "Length of signal queue.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return D(w.signal_queue); }},
      {"uwsgi_worker_rss_bytes", "Worker RSS bytes.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return D(w.rss_bytes); }},
      {"uwsgi_worker_vsz_bytes", "Worker VSZ bytes.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return D(w.vsz_bytes); }},
      {"uwsgi_worker_running_time_seconds", "Worker running time in seconds.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return D(w.running_time_us) / 1e6; }},
      {"uwsgi_worker_last_spawn_time_seconds", "Last spawn time in seconds since epoch.",
       MetricType::Gauge, [](const WorkerSnapshot& w) { return D(w.last_spawn); }},
      {"uwsgi_worker_average_response_time_seconds", "Average response time in seconds.",
       MetricType::Gauge, [](const WorkerSnapshot& w) { return D(w.avg_rt_us) / 1e6; }},
      {"uwsgi_worker_apps", "Number of apps.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return static_cast<double>(w.apps.size()); }},
      {"uwsgi_worker_cores", "Number of cores.", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return static_cast<double>(w.cores_count); }},
      {"uwsgi_worker_busy", "Is core in busy?", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return w.status == WorkerStatus::kBusy ? 1.0 : 0.0; }},
      {"uwsgi_worker_idle", "Is core in idle?", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return w.status == WorkerStatus::kIdle ? 1.0 : 0.0; }},
      {"uwsgi_worker_cheap", "Is core in cheap mode?", MetricType::Gauge,
       [](const WorkerSnapshot& w) { return w.status == WorkerStatus::kCheap ? 1.0 : 0.0; }},
      {"uwsgi_worker_requests_total", "Total number of requests.", MetricType::Counter,
       [](const WorkerSnapshot& w) { return D(w.requests); }},
      {"uwsgi_worker_exceptions_total", "Total number of exceptions.", MetricType::Counter,
       [](const WorkerSnapshot& w) { return D(w.exceptions); }},
      {"uwsgi_worker_harakiri_count_total", "Total number of harakiri count.",
       MetricType::Counter, [](const WorkerSnapshot& w) { return D(w.harakiri_count); }},
      {"uwsgi_worker_signals_total", "Total number of signals.", MetricType::Counter,
       [](const WorkerSnapshot& w) { return D(w.signals); }},
      {"uwsgi_worker_respawn_count_total", "Total number of respawn count.",
       MetricType::Counter, [](const WorkerSnapshot& w) { return D(w.respawn_count); }},
      {"uwsgi_worker_transmitted_bytes_total", "Worker transmitted bytes.",
       MetricType::Counter, [](const WorkerSnapshot& w) { return D(w.tx_bytes); }},
  };

  std::vector<const WorkerSnapshot*> workers;
  std::vector<std::string> ids;
  for (const auto& w : s.workers) {
    if (w.id == 0) continue;  // never-started slot, as uwsgi_exporter skips it
    workers.push_back(&w);
    ids.push_back(std::to_string(w.id));
  }

  for (const auto& field : kFields) {
    f.Start(field.name, field.help, field.type);
    for (size_t i = 0; i < workers.size(); ++i) {
      f.Add(field.get(*workers[i]), {{"worker_id", ids[i]}});
    }
  }

  // Beyond uwsgi_exporter: every state uWSGI's stats server knows, one series
  // per state, so a paused worker or one stuck in a signal handler shows.
  f.Start("uwsgi_worker_status",
          "Current state of the worker (1 for the state it is in): idle, busy, cheap, "
          "pause or sig (running a signal handler).",
          MetricType::Gauge);
  for (size_t i = 0; i < workers.size(); ++i) {
    for (WorkerStatus st : kAllStatuses) {
      f.Add(workers[i]->status == st ? 1.0 : 0.0,
            {{"worker_id", ids[i]}, {"status", WorkerStatusName(st)}});
    }
  }

  struct AppField {
    const char* name;
    const char* help;
    MetricType type;
    double (*get)(const AppSnapshot&);
  };
  static const AppField kAppFields[] = {
      {"uwsgi_worker_app_startup_time_seconds", "How long this app took to start.",
       MetricType::Gauge, [](const AppSnapshot& a) { return D(a.startup_time); }},
      {"uwsgi_worker_app_requests_total", "Total number of requests.", MetricType::Counter,
       [](const AppSnapshot& a) { return D(a.requests); }},
      {"uwsgi_worker_app_exceptions_total", "Total number of exceptions.", MetricType::Counter,
       [](const AppSnapshot& a) { return D(a.exceptions); }},
  };
  std::vector<std::pair<Labels, const AppSnapshot*>> apps;
  for (size_t i = 0; i < workers.size(); ++i) {
    for (const auto& app : workers[i]->apps) {
      apps.push_back({Labels{{"worker_id", ids[i]},
                             {"app_id", std::to_string(app.id)},
                             {"mountpoint", SanitizeLabelValue(app.mountpoint, o.max_label_value_bytes)},
                             {"chdir", SanitizeLabelValue(app.chdir, o.max_label_value_bytes)}},
                      &app});
    }
  }
  for (const auto& field : kAppFields) {
    f.Start(field.name, field.help, field.type);
    for (const auto& [labels, app] : apps) f.Add(field.get(*app), labels);
  }

  if (!o.collect_cores) return;
  struct CoreField {
    const char* name;
    const char* help;
    MetricType type;
    double (*get)(const CoreSnapshot&);
  };
  static const CoreField kCoreFields[] = {
      {"uwsgi_worker_core_busy", "Is core busy", MetricType::Gauge,
       [](const CoreSnapshot& c) { return c.in_request ? 1.0 : 0.0; }},
      {"uwsgi_worker_core_requests_total", "Total number of requests.", MetricType::Counter,
       [](const CoreSnapshot& c) { return D(c.requests); }},
      {"uwsgi_worker_core_static_requests_total", "Total number of static requests.",
       MetricType::Counter, [](const CoreSnapshot& c) { return D(c.static_requests); }},
      {"uwsgi_worker_core_routed_requests_total", "Total number of routed requests.",
       MetricType::Counter, [](const CoreSnapshot& c) { return D(c.routed_requests); }},
      {"uwsgi_worker_core_offloaded_requests_total", "Total number of offloaded requests.",
       MetricType::Counter, [](const CoreSnapshot& c) { return D(c.offloaded_requests); }},
      {"uwsgi_worker_core_write_errors_total", "Total number of write errors.",
       MetricType::Counter, [](const CoreSnapshot& c) { return D(c.write_errors); }},
      {"uwsgi_worker_core_read_errors_total", "Total number of read errors.",
       MetricType::Counter, [](const CoreSnapshot& c) { return D(c.read_errors); }},
  };
  for (const auto& field : kCoreFields) {
    f.Start(field.name, field.help, field.type);
    for (size_t i = 0; i < workers.size(); ++i) {
      for (const auto& core : workers[i]->cores) {
        f.Add(field.get(core), {{"worker_id", ids[i]}, {"core_id", std::to_string(core.id)}});
      }
    }
  }
}

void AddCacheFamilies(const Snapshot& s, const ModelOptions& o, FamilyBuilder& f) {
  struct Field {
    const char* name;
    const char* help;
    MetricType type;
    double (*get)(const CacheSnapshot&);
  };
  // uwsgi_exporter names these counters without _total; kept for dashboards.
  static const Field kFields[] = {
      {"uwsgi_cache_hits", "Total number of hits.", MetricType::Counter,
       [](const CacheSnapshot& c) { return D(c.hits); }},
      {"uwsgi_cache_misses", "Total number of misses.", MetricType::Counter,
       [](const CacheSnapshot& c) { return D(c.misses); }},
      {"uwsgi_cache_full", "Total Number of times cache full was hit.", MetricType::Counter,
       [](const CacheSnapshot& c) { return D(c.full); }},
      {"uwsgi_cache_items", "Items in cache.", MetricType::Gauge,
       [](const CacheSnapshot& c) { return D(c.items); }},
      {"uwsgi_cache_max_items", "Max items for this cache.", MetricType::Gauge,
       [](const CacheSnapshot& c) { return D(c.max_items); }},
  };
  if (s.caches.empty()) return;  // as uwsgi_exporter: no caches, no families
  for (const auto& field : kFields) {
    f.Start(field.name, field.help, field.type);
    for (const auto& cache : s.caches) {
      f.Add(field.get(cache), {{"name", SanitizeLabelValue(cache.name, o.max_label_value_bytes)}});
    }
  }
}

void AddProcessFamilies(const ProcessSnapshot& p, FamilyBuilder& f) {
  if (!p.valid) return;
  f.Start("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
          MetricType::Counter, false)
      .Add(p.cpu_seconds);
  f.Start("process_resident_memory_bytes", "Resident memory size in bytes.",
          MetricType::Gauge, false)
      .Add(p.resident_memory_bytes);
  f.Start("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
          false)
      .Add(p.virtual_memory_bytes);
  f.Start("process_start_time_seconds",
          "Start time of the process since unix epoch in seconds.", MetricType::Gauge, false)
      .Add(p.start_time_seconds);
  f.Start("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, false)
      .Add(p.open_fds);
  f.Start("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
          false)
      .Add(p.max_fds);
}

void AddSelfFamilies(const SelfStats& self, FamilyBuilder& f) {
  f.Start("uwsgi_up", "Whether the uWSGI server is up.", MetricType::Gauge, false)
      .Add(self.up ? 1 : 0);
  f.Start("uwsgi_exporter_scrapes_total",
          "Total number of times uWSGI was scraped for metrics.", MetricType::Counter, false)
      .Add(D(self.scrapes));
  f.Start("uwsgi_exporter_scrape_errors_total",
          "Total number of times an error occurred scraping a uWSGI.", MetricType::Counter,
          false)
      .Add(D(self.scrape_errors));
  f.Start("uwsgi_exporter_last_scrape_error",
          "Whether the last scrape of metrics from uWSGI resulted in an error (1 for error, 0 "
          "for success).",
          MetricType::Gauge, false)
      .Add(self.last_scrape_error ? 1 : 0);
  f.Start("uwsgi_exporter_scrape_duration_seconds", "Duration of uWSGI scrape job.",
          MetricType::Summary, false);
  ClientMetric summary;
  summary.summary.sample_count = self.scrape_duration_count;
  summary.summary.sample_sum = self.scrape_duration_sum;
  f.AddMetric(std::move(summary));
  f.Start("uwsgi_prometheus_errors_total",
          "Problems met while reading uWSGI's memory or building the scrape (details in the "
          "uWSGI log).",
          MetricType::Counter, false)
      .Add(D(self.errors));
}

bool LabelsLess(const ClientMetric& a, const ClientMetric& b) {
  return std::lexicographical_compare(
      a.label.begin(), a.label.end(), b.label.begin(), b.label.end(),
      [](const auto& x, const auto& y) {
        return std::tie(x.name, x.value) < std::tie(y.name, y.value);
      });
}

}  // namespace

std::string SanitizeLabelValue(std::string_view value, size_t max_bytes) {
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(std::min(value.size(), max_bytes));
  size_t i = 0;
  while (i < value.size()) {
    size_t len = Utf8SequenceLength(value, i);
    std::string_view piece = len ? value.substr(i, len) : std::string_view(kReplacement, 3);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += len ? len : 1;
  }
  return out;
}

void Normalize(std::vector<MetricFamily>* families) {
  std::stable_sort(families->begin(), families->end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& family : *families) {
    auto& m = family.metric;
    std::stable_sort(m.begin(), m.end(), LabelsLess);
    m.erase(std::unique(m.begin(), m.end(),
                        [](const auto& a, const auto& b) { return a.label == b.label; }),
            m.end());
  }
}

void BuildFamilies(const Snapshot& snapshot, const ModelOptions& options,
                   const SelfStats& self, std::vector<MetricFamily>* out) {
  std::vector<MetricFamily> families;
  FamilyBuilder f(&families,
                  {{"stats_uri", SanitizeLabelValue(options.stats_uri,
                                                    options.max_label_value_bytes)}});
  if (self.up) {
    AddServerFamilies(snapshot, f);
    AddSocketFamilies(snapshot, options, f);
    AddWorkerFamilies(snapshot, options, f);
    AddCacheFamilies(snapshot, options, f);
  }
  AddProcessFamilies(snapshot.process, f);
  AddSelfFamilies(self, f);
  Normalize(&families);
  out->insert(out->end(), std::make_move_iterator(families.begin()),
              std::make_move_iterator(families.end()));
}

}  // namespace uwsgi_prometheus
