#include "model.h"

#include "labels.h"
#include "model_spec.h"
#include "render.h"

#include <algorithm>
#include <cstring>
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

namespace model {
namespace {

double D(uint64_t v) { return static_cast<double>(v); }
double D(int64_t v) { return static_cast<double>(v); }

#define GET(T, expr) [](const void* p) -> double { const T& x = As<T>(p); return (expr); }

// uwsgi_exporter's names, help texts and units; the additions are
// uwsgi_worker_status, process_* and uwsgi_prometheus_errors_total.
const Spec kSpecs[] = {
    {"uwsgi_listen_queue_length", "Length of listen queue.", MetricType::Gauge, Scope::kServer,
     GET(Snapshot, D(x.listen_queue))},
    {"uwsgi_listen_queue_errors", "Number of listen queue errors.", MetricType::Gauge,
     Scope::kServer, GET(Snapshot, D(x.listen_queue_errors))},
    {"uwsgi_signal_queue_length", "Length of signal queue.", MetricType::Gauge, Scope::kServer,
     GET(Snapshot, D(x.signal_queue))},
    {"uwsgi_workers", "Number of workers.", MetricType::Gauge, Scope::kServer,
     GET(Snapshot, static_cast<double>(std::count_if(x.workers.begin(), x.workers.end(),
                                                     [](const auto& w) { return w.id != 0; })))},
    {"uwsgi_socket_queue_length", "Length of socket queue.", MetricType::Gauge, Scope::kSocket,
     GET(SocketSnapshot, D(x.queue))},
    {"uwsgi_socket_max_queue_length", "Max length of socket queue.", MetricType::Gauge,
     Scope::kSocket, GET(SocketSnapshot, D(x.max_queue))},
    {"uwsgi_socket_shared", "Is shared socket?", MetricType::Gauge, Scope::kSocket,
     GET(SocketSnapshot, B(x.shared))},
    {"uwsgi_socket_can_offload", "Can socket offload?", MetricType::Gauge, Scope::kSocket,
     GET(SocketSnapshot, B(x.can_offload))},
    {"uwsgi_worker_accepting", "Is this worker accepting requests?", MetricType::Gauge,
     Scope::kWorker, GET(WorkerSnapshot, B(x.accepting))},
    {"uwsgi_worker_delta_requests", "Number of delta requests", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, D(x.delta_requests))},
    {"uwsgi_worker_signal_queue_length", "Length of signal queue.", MetricType::Gauge,
     Scope::kWorker, GET(WorkerSnapshot, D(x.signal_queue))},
    {"uwsgi_worker_rss_bytes", "Worker RSS bytes.", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, D(x.rss_bytes))},
    {"uwsgi_worker_vsz_bytes", "Worker VSZ bytes.", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, D(x.vsz_bytes))},
    {"uwsgi_worker_running_time_seconds", "Worker running time in seconds.", MetricType::Gauge,
     Scope::kWorker, GET(WorkerSnapshot, D(x.running_time_us) / 1e6)},
    {"uwsgi_worker_last_spawn_time_seconds", "Last spawn time in seconds since epoch.",
     MetricType::Gauge, Scope::kWorker, GET(WorkerSnapshot, D(x.last_spawn))},
    {"uwsgi_worker_average_response_time_seconds", "Average response time in seconds.",
     MetricType::Gauge, Scope::kWorker, GET(WorkerSnapshot, D(x.avg_rt_us) / 1e6)},
    {"uwsgi_worker_apps", "Number of apps.", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, static_cast<double>(x.apps.size()))},
    {"uwsgi_worker_cores", "Number of cores.", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, static_cast<double>(x.cores_count))},
    {"uwsgi_worker_busy", "Is core in busy?", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, B(x.status == WorkerStatus::kBusy))},
    {"uwsgi_worker_idle", "Is core in idle?", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, B(x.status == WorkerStatus::kIdle))},
    {"uwsgi_worker_cheap", "Is core in cheap mode?", MetricType::Gauge, Scope::kWorker,
     GET(WorkerSnapshot, B(x.status == WorkerStatus::kCheap))},
    {"uwsgi_worker_requests_total", "Total number of requests.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.requests))},
    {"uwsgi_worker_exceptions_total", "Total number of exceptions.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.exceptions))},
    {"uwsgi_worker_harakiri_count_total", "Total number of harakiri count.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.harakiri_count))},
    {"uwsgi_worker_signals_total", "Total number of signals.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.signals))},
    {"uwsgi_worker_respawn_count_total", "Total number of respawn count.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.respawn_count))},
    {"uwsgi_worker_transmitted_bytes_total", "Worker transmitted bytes.", MetricType::Counter,
     Scope::kWorker, GET(WorkerSnapshot, D(x.tx_bytes))},
    {"uwsgi_worker_status",
     "Current state of the worker (1 for the state it is in): idle, busy, cheap, pause or sig "
     "(running a signal handler).",
     MetricType::Gauge, Scope::kWorkerStatus, nullptr},
    {"uwsgi_worker_app_startup_time_seconds", "How long this app took to start.",
     MetricType::Gauge, Scope::kApp, GET(AppSnapshot, D(x.startup_time))},
    {"uwsgi_worker_app_requests_total", "Total number of requests.", MetricType::Counter,
     Scope::kApp, GET(AppSnapshot, D(x.requests))},
    {"uwsgi_worker_app_exceptions_total", "Total number of exceptions.", MetricType::Counter,
     Scope::kApp, GET(AppSnapshot, D(x.exceptions))},
    {"uwsgi_worker_core_busy", "Is core busy", MetricType::Gauge, Scope::kCore,
     GET(CoreSnapshot, B(x.in_request))},
    {"uwsgi_worker_core_requests_total", "Total number of requests.", MetricType::Counter,
     Scope::kCore, GET(CoreSnapshot, D(x.requests))},
    {"uwsgi_worker_core_static_requests_total", "Total number of static requests.",
     MetricType::Counter, Scope::kCore, GET(CoreSnapshot, D(x.static_requests))},
    {"uwsgi_worker_core_routed_requests_total", "Total number of routed requests.",
     MetricType::Counter, Scope::kCore, GET(CoreSnapshot, D(x.routed_requests))},
    {"uwsgi_worker_core_offloaded_requests_total", "Total number of offloaded requests.",
     MetricType::Counter, Scope::kCore, GET(CoreSnapshot, D(x.offloaded_requests))},
    {"uwsgi_worker_core_write_errors_total", "Total number of write errors.",
     MetricType::Counter, Scope::kCore, GET(CoreSnapshot, D(x.write_errors))},
    {"uwsgi_worker_core_read_errors_total", "Total number of read errors.", MetricType::Counter,
     Scope::kCore, GET(CoreSnapshot, D(x.read_errors))},
    // uwsgi_exporter names these counters without _total; kept for dashboards.
    {"uwsgi_cache_hits", "Total number of hits.", MetricType::Counter, Scope::kCache,
     GET(CacheSnapshot, D(x.hits))},
    {"uwsgi_cache_misses", "Total number of misses.", MetricType::Counter, Scope::kCache,
     GET(CacheSnapshot, D(x.misses))},
    {"uwsgi_cache_full", "Total Number of times cache full was hit.", MetricType::Counter,
     Scope::kCache, GET(CacheSnapshot, D(x.full))},
    {"uwsgi_cache_items", "Items in cache.", MetricType::Gauge, Scope::kCache,
     GET(CacheSnapshot, D(x.items))},
    {"uwsgi_cache_max_items", "Max items for this cache.", MetricType::Gauge, Scope::kCache,
     GET(CacheSnapshot, D(x.max_items))},
    {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
     MetricType::Counter, Scope::kProcess, GET(ProcessSnapshot, x.cpu_seconds)},
    {"process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge,
     Scope::kProcess, GET(ProcessSnapshot, x.resident_memory_bytes)},
    {"process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge,
     Scope::kProcess, GET(ProcessSnapshot, x.virtual_memory_bytes)},
    {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
     MetricType::Gauge, Scope::kProcess, GET(ProcessSnapshot, x.start_time_seconds)},
    {"process_open_fds", "Number of open file descriptors.", MetricType::Gauge, Scope::kProcess,
     GET(ProcessSnapshot, x.open_fds)},
    {"process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge,
     Scope::kProcess, GET(ProcessSnapshot, x.max_fds)},
    {"uwsgi_up", "Whether the uWSGI server is up.", MetricType::Gauge, Scope::kSelf,
     GET(SelfStats, B(x.up))},
    {"uwsgi_exporter_scrapes_total", "Total number of times uWSGI was scraped for metrics.",
     MetricType::Counter, Scope::kSelf, GET(SelfStats, D(x.scrapes))},
    {"uwsgi_exporter_scrape_errors_total",
     "Total number of times an error occurred scraping a uWSGI.", MetricType::Counter,
     Scope::kSelf, GET(SelfStats, D(x.scrape_errors))},
    {"uwsgi_exporter_last_scrape_error",
     "Whether the last scrape of metrics from uWSGI resulted in an error (1 for error, 0 for "
     "success).",
     MetricType::Gauge, Scope::kSelf, GET(SelfStats, B(x.last_scrape_error))},
    {"uwsgi_exporter_scrape_duration_seconds", "Duration of uWSGI scrape job.",
     MetricType::Summary, Scope::kSelf, nullptr},
    {"uwsgi_prometheus_errors_total",
     "Problems met while reading uWSGI's memory or building the scrape (details in the uWSGI "
     "log).",
     MetricType::Counter, Scope::kSelf, GET(SelfStats, D(x.errors))},
};

#undef GET

}  // namespace

const std::vector<const Spec*>& SpecsByName() {
  // Never destroyed: a scrape on the server thread may still be running while
  // the process exits.
  static const std::vector<const Spec*>& sorted = *[] {
    auto* v = new std::vector<const Spec*>;
    for (const auto& s : kSpecs) v->push_back(&s);
    std::sort(v->begin(), v->end(),
              [](const Spec* a, const Spec* b) { return std::strcmp(a->name, b->name) < 0; });
    return v;
  }();
  return sorted;
}

bool Enabled(const Spec& spec, const Snapshot& s, const ModelOptions& o, const SelfStats& self) {
  switch (spec.scope) {
    case Scope::kProcess: return s.process.valid;
    case Scope::kSelf: return true;
    case Scope::kCore: return self.up && o.collect_cores;
    default: return self.up;
  }
}

}  // namespace model

namespace {

using model::As;
using model::B;
using model::Scope;
using model::Spec;

// The reference path: prometheus-cpp's data model, what the direct writers
// (scrape_text.cc, scrape_protobuf.cc) are tested against.

struct Item {
  Labels labels;
  const void* item;
  WorkerStatus status = WorkerStatus::kIdle;
};

std::vector<Item> Items(Scope scope, const Snapshot& s, const ModelOptions& o,
                        const SelfStats& self) {
  std::vector<Item> items;
  auto sane = [&](std::string_view v) { return SanitizeLabelValue(v, o.max_label_value_bytes); };
  switch (scope) {
    case Scope::kServer:
      items.push_back({{}, &s});
      break;
    case Scope::kSocket: {
      std::set<std::pair<std::string, std::string>> seen;  // first (name, proto) wins
      for (const auto& sock : s.sockets) {
        auto name = sane(sock.name), proto = sane(sock.proto);
        if (!seen.emplace(name, proto).second) continue;
        items.push_back({{{"name", name}, {"proto", proto}}, &sock});
      }
      break;
    }
    case Scope::kWorker:
    case Scope::kWorkerStatus:
    case Scope::kApp:
    case Scope::kCore:
      for (const auto& w : s.workers) {
        if (w.id == 0) continue;  // never-started slot, skipped as uwsgi_exporter does
        const std::string id = std::to_string(w.id);
        if (scope == Scope::kWorker) items.push_back({{{"worker_id", id}}, &w});
        if (scope == Scope::kWorkerStatus) {
          for (WorkerStatus st : model::kStatusesByName) {
            items.push_back({{{"worker_id", id}, {"status", WorkerStatusName(st)}}, &w, st});
          }
        }
        if (scope == Scope::kApp) {
          for (const auto& a : w.apps) {
            items.push_back({{{"worker_id", id}, {"app_id", std::to_string(a.id)},
                              {"mountpoint", sane(a.mountpoint)}, {"chdir", sane(a.chdir)}},
                             &a});
          }
        }
        if (scope == Scope::kCore) {
          for (const auto& c : w.cores) {
            items.push_back({{{"worker_id", id}, {"core_id", std::to_string(c.id)}}, &c});
          }
        }
      }
      break;
    case Scope::kCache:
      for (const auto& c : s.caches) items.push_back({{{"name", sane(c.name)}}, &c});
      break;
    case Scope::kProcess:
      items.push_back({{}, &s.process});
      break;
    case Scope::kSelf:
      items.push_back({{}, &self});
      break;
  }
  return items;
}

bool LabelsLess(const ClientMetric& a, const ClientMetric& b) {
  return std::lexicographical_compare(
      a.label.begin(), a.label.end(), b.label.begin(), b.label.end(),
      [](const auto& x, const auto& y) {
        return std::tie(x.name, x.value) < std::tie(y.name, y.value);
      });
}

// Families sorted by name, each one's series by labels, repeated series
// dropped; `get` finds the MetricFamily in an element of `families`.
template <typename F, typename Get>
void NormalizeFamilies(std::vector<F>* families, Get get) {
  std::stable_sort(families->begin(), families->end(),
                   [&](const F& a, const F& b) { return get(a).name < get(b).name; });
  for (auto& family : *families) {
    auto& m = get(family).metric;
    std::stable_sort(m.begin(), m.end(), LabelsLess);
    m.erase(std::unique(m.begin(), m.end(),
                        [](const auto& a, const auto& b) { return a.label == b.label; }),
            m.end());
  }
}

}  // namespace

void Normalize(std::vector<MetricFamily>* families) {
  NormalizeFamilies(families, [](auto& f) -> auto& { return f; });
}

void Normalize(std::vector<ServedFamily>* families) {
  NormalizeFamilies(families, [](auto& f) -> auto& { return f.family; });
}

void BuildFamilies(const Snapshot& snapshot, const ModelOptions& options,
                   const SelfStats& self, std::vector<MetricFamily>* out) {
  std::vector<MetricFamily> families;
  const Labels common = {{"stats_uri", SanitizeLabelValue(options.stats_uri,
                                                          options.max_label_value_bytes)}};
  for (const Spec* s : model::SpecsByName()) {
    const Spec& spec = *s;
    if (!model::Enabled(spec, snapshot, options, self)) continue;
    MetricFamily family{spec.name, spec.help, spec.type, {}};
    const bool with_common = spec.scope != Scope::kProcess && spec.scope != Scope::kSelf;
    for (auto& item : Items(spec.scope, snapshot, options, self)) {
      ClientMetric m;
      m.label = std::move(item.labels);
      if (with_common) m.label.insert(m.label.end(), common.begin(), common.end());
      std::sort(m.label.begin(), m.label.end(),
                [](const auto& a, const auto& b) { return a.name < b.name; });
      double v = 0;
      if (spec.scope == Scope::kWorkerStatus) {
        v = B(As<WorkerSnapshot>(item.item).status == item.status);
      } else if (spec.value) {
        v = spec.value(item.item);
      }
      switch (spec.type) {
        case MetricType::Counter: m.counter.value = v; break;
        case MetricType::Gauge: m.gauge.value = v; break;
        case MetricType::Summary:
          m.summary.sample_count = self.scrape_duration_count;
          m.summary.sample_sum = self.scrape_duration_sum;
          break;
        default: m.untyped.value = v; break;
      }
      family.metric.push_back(std::move(m));
    }
    if (!family.metric.empty()) families.push_back(std::move(family));
  }
  Normalize(&families);
  out->insert(out->end(), std::make_move_iterator(families.begin()),
              std::make_move_iterator(families.end()));
}

bool IsBuiltInFamily(std::string_view name) {
  for (const Spec* spec : model::SpecsByName()) {
    if (name == spec->name) return true;
  }
  return false;
}

}  // namespace uwsgi_prometheus
