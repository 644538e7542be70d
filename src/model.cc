#include "model.h"

#include "labels.h"
#include "protobuf.h"
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

namespace {

// Every family the snapshot yields, in one table shared by the two paths
// below: BuildFamilies (prometheus-cpp's data model, the reference) and
// RenderScrape (straight to text, what a scrape uses).
enum class Scope { kServer, kSocket, kWorker, kWorkerStatus, kApp, kCore, kCache, kProcess, kSelf };

struct Spec {
  const char* name;
  const char* help;
  MetricType type;
  Scope scope;
  double (*value)(const void* item);
};

template <typename T>
const T& As(const void* p) {
  return *static_cast<const T*>(p);
}

double D(uint64_t v) { return static_cast<double>(v); }
double D(int64_t v) { return static_cast<double>(v); }
double B(bool v) { return v ? 1.0 : 0.0; }

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

// kSpecs in name order (the order of the exposition).
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

// Statuses in label-value order.
constexpr WorkerStatus kStatusesByName[] = {WorkerStatus::kBusy, WorkerStatus::kCheap,
                                            WorkerStatus::kIdle, WorkerStatus::kPause,
                                            WorkerStatus::kSig};

bool Enabled(const Spec& spec, const Snapshot& s, const ModelOptions& o, const SelfStats& self) {
  switch (spec.scope) {
    case Scope::kProcess: return s.process.valid;
    case Scope::kSelf: return true;
    case Scope::kCore: return self.up && o.collect_cores;
    default: return self.up;
  }
}

// ---- Reference path: prometheus-cpp's data model --------------------------

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
          for (WorkerStatus st : kStatusesByName) {
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

// ---- Direct path: snapshot to text ----------------------------------------

// One series' labels, already escaped and in label-name order, with the
// values it sorts by.
struct Row {
  std::vector<std::string> key;
  std::string labels;  // a="x",b="y"
  const void* item;
  WorkerStatus status = WorkerStatus::kIdle;
};

class RowBuilder {
 public:
  explicit RowBuilder(TextBuffer* scratch) : scratch_(scratch) {}
  RowBuilder& Label(std::string_view name, std::string_view value) {
    if (scratch_->size()) scratch_->push_back(',');
    Append(scratch_, name);
    Append(scratch_, "=\"");
    AppendEscapedLabelValue(scratch_, value);
    scratch_->push_back('"');
    key_.emplace_back(value);
    return *this;
  }
  Row Done(const void* item, WorkerStatus status = WorkerStatus::kIdle) {
    Row r{std::move(key_), std::string(scratch_->data(), scratch_->size()), item, status};
    scratch_->clear();
    key_.clear();
    return r;
  }

 private:
  TextBuffer* scratch_;
  std::vector<std::string> key_;
};

void SortRows(std::vector<Row>* rows) {
  std::stable_sort(rows->begin(), rows->end(),
                   [](const Row& a, const Row& b) { return a.key < b.key; });
  rows->erase(std::unique(rows->begin(), rows->end(),
                          [](const Row& a, const Row& b) { return a.key == b.key; }),
              rows->end());
}

// A worker with its id in text; workers are kept sorted by that text, the
// order their series sort in.
struct WorkerRow {
  WorkerRow(const WorkerSnapshot* worker, int id) : w(worker) {
    fmt::format_int text(id);  // points into itself: copy out
    len = text.size();
    std::memcpy(digits, text.data(), len);
  }
  const WorkerSnapshot* w;
  char digits[24];
  size_t len;
  std::string labels;  // {stats_uri="...",worker_id="N"} with the trailing space
  std::string_view Id() const { return std::string_view(digits, len); }
};

// Rows of every scope, built once per scrape and shared by its families.
// Worker, status and core series are written straight from `workers`.
struct Rows {
  std::vector<Row> by_scope[static_cast<int>(Scope::kSelf) + 1];
  std::vector<WorkerRow> workers;
  std::string uri_label;  // stats_uri="..." escaped
  std::vector<std::string> core_ids;  // "0", "1", ... in text order
};

// Started workers, sorted by id as text, each with its label text; the
// escaped stats_uri label they share.
void BuildWorkerRows(const Snapshot& s, const std::string& uri, Rows* rows) {
  for (const auto& w : s.workers) {
    if (w.id != 0) rows->workers.emplace_back(&w, w.id);
  }
  std::stable_sort(rows->workers.begin(), rows->workers.end(),
                   [](const WorkerRow& a, const WorkerRow& b) { return a.Id() < b.Id(); });
  rows->workers.erase(std::unique(rows->workers.begin(), rows->workers.end(),
                                  [](const WorkerRow& a, const WorkerRow& b) {
                                    return a.Id() == b.Id();
                                  }),
                      rows->workers.end());
  {
    TextBuffer uri_label;
    Append(&uri_label, "stats_uri=\"");
    AppendEscapedLabelValue(&uri_label, uri);
    uri_label.push_back('"');
    rows->uri_label.assign(uri_label.data(), uri_label.size());
  }
  for (auto& wr : rows->workers) {
    wr.labels.reserve(rows->uri_label.size() + 32);
    wr.labels.append("{").append(rows->uri_label).append(",worker_id=\"");
    wr.labels.append(wr.Id()).append("\"} ");
  }
}

void BuildRows(const Snapshot& s, const ModelOptions& o, const SelfStats& self, Rows* rows) {
  TextBuffer scratch;
  RowBuilder b(&scratch);
  const std::string uri = SanitizeLabelValue(o.stats_uri, o.max_label_value_bytes);
  auto sane = [&](std::string_view v) { return SanitizeLabelValue(v, o.max_label_value_bytes); };
  auto& r = rows->by_scope;
  r[static_cast<int>(Scope::kServer)].push_back(b.Label("stats_uri", uri).Done(&s));
  r[static_cast<int>(Scope::kProcess)].push_back(b.Done(&s.process));
  r[static_cast<int>(Scope::kSelf)].push_back(b.Done(&self));
  {
    std::set<std::pair<std::string, std::string>> seen;
    auto& out = r[static_cast<int>(Scope::kSocket)];
    for (const auto& sock : s.sockets) {
      auto name = sane(sock.name), proto = sane(sock.proto);
      if (!seen.emplace(name, proto).second) continue;
      out.push_back(b.Label("name", name).Label("proto", proto).Label("stats_uri", uri).Done(&sock));
    }
    SortRows(&out);
  }
  BuildWorkerRows(s, uri, rows);
  int max_cores = 0;
  for (const auto& wr : rows->workers) {
    const WorkerSnapshot& w = *wr.w;
    for (const auto& a : w.apps) {
      r[static_cast<int>(Scope::kApp)].push_back(b.Label("app_id", std::to_string(a.id))
                                                     .Label("chdir", sane(a.chdir))
                                                     .Label("mountpoint", sane(a.mountpoint))
                                                     .Label("stats_uri", uri)
                                                     .Label("worker_id", wr.Id())
                                                     .Done(&a));
    }
    for (const auto& c : w.cores) max_cores = std::max(max_cores, c.id + 1);
  }
  for (int c = 0; c < max_cores; ++c) rows->core_ids.push_back(std::to_string(c));
  std::sort(rows->core_ids.begin(), rows->core_ids.end());
  for (const auto& c : s.caches) {
    r[static_cast<int>(Scope::kCache)].push_back(
        b.Label("name", sane(c.name)).Label("stats_uri", uri).Done(&c));
  }
  SortRows(&r[static_cast<int>(Scope::kApp)]);
  SortRows(&r[static_cast<int>(Scope::kCache)]);
}

double RowValue(const Spec& spec, const Row& row) {
  if (spec.scope == Scope::kWorkerStatus) {
    return B(As<WorkerSnapshot>(row.item).status == row.status);
  }
  return spec.value(row.item);
}

// name{stats_uri="...",<middle>worker_id="N"} value
void WorkerSample(const Spec& spec, const Rows& rows, const WorkerRow& wr, std::string_view middle,
                  double value, TextBuffer* out) {
  Append(out, spec.name);
  out->push_back('{');
  Append(out, rows.uri_label);
  out->push_back(',');
  Append(out, middle);
  Append(out, "worker_id=\"");
  Append(out, wr.Id());
  Append(out, "\"} ");
  AppendValue(out, value);
  out->push_back('\n');
}

void RenderWorkerSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  if (spec.scope == Scope::kWorker) {
    const std::string_view name(spec.name);
    for (const auto& wr : rows.workers) {
      Append(out, name);
      Append(out, wr.labels);
      AppendValue(out, spec.value(wr.w));
      out->push_back('\n');
    }
    return;
  }
  if (spec.scope == Scope::kWorkerStatus) {
    char middle[32];
    for (WorkerStatus st : kStatusesByName) {
      auto end = fmt::format_to_n(middle, sizeof middle, "status=\"{}\",", WorkerStatusName(st)).out;
      std::string_view m(middle, static_cast<size_t>(end - middle));
      for (const auto& wr : rows.workers) {
        WorkerSample(spec, rows, wr, m, B(wr.w->status == st), out);
      }
    }
    return;
  }
  // Cores: sorted by core_id (as text), then worker_id.
  for (const auto& core_id : rows.core_ids) {
    const int id = std::atoi(core_id.c_str());
    for (const auto& wr : rows.workers) {
      for (const auto& c : wr.w->cores) {
        if (c.id != id) continue;
        Append(out, spec.name);
        Append(out, "{core_id=\"");
        Append(out, core_id);
        Append(out, "\",");
        Append(out, rows.uri_label);
        Append(out, ",worker_id=\"");
        Append(out, wr.Id());
        Append(out, "\"} ");
        AppendValue(out, spec.value(&c));
        out->push_back('\n');
        break;  // one series per (core_id, worker_id), the first wins
      }
    }
  }
}

bool HasSeries(const Spec& spec, const Rows& rows) {
  switch (spec.scope) {
    case Scope::kWorker:
    case Scope::kWorkerStatus: return !rows.workers.empty();
    case Scope::kCore: return !rows.core_ids.empty() && !rows.workers.empty();
    default: return !rows.by_scope[static_cast<int>(spec.scope)].empty();
  }
}

void RenderSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  if (!HasSeries(spec, rows)) return;
  if (spec.scope == Scope::kWorker || spec.scope == Scope::kWorkerStatus ||
      spec.scope == Scope::kCore) {
    AppendHelpLine(out, spec.name, spec.help);
    AppendTypeLine(out, spec.name, spec.type);
    RenderWorkerSpec(spec, rows, out);
    return;
  }
  const auto& list = rows.by_scope[static_cast<int>(spec.scope)];
  AppendHelpLine(out, spec.name, spec.help);
  AppendTypeLine(out, spec.name, spec.type);
  if (spec.type == MetricType::Summary) {  // the scrape duration summary
    const auto& self = As<SelfStats>(list.front().item);
    Append(out, spec.name);
    Append(out, "_sum ");
    AppendValue(out, self.scrape_duration_sum);
    out->push_back('\n');
    Append(out, spec.name);
    Append(out, "_count ");
    AppendValue(out, D(self.scrape_duration_count));
    out->push_back('\n');
    return;
  }
  for (const auto& row : list) {
    Append(out, spec.name);
    if (!row.labels.empty()) {
      out->push_back('{');
      Append(out, row.labels);
      out->push_back('}');
    }
    out->push_back(' ');
    AppendValue(out, RowValue(spec, row));
    out->push_back('\n');
  }
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
  for (const auto& spec : kSpecs) {
    if (!Enabled(spec, snapshot, options, self)) continue;
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
  for (const auto& spec : kSpecs) {
    if (name == spec.name) return true;
  }
  return false;
}

void RenderScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out) {
  Rows rows;
  BuildRows(snapshot, options, self, &rows);
  const auto& specs = SpecsByName();
  size_t e = 0;
  for (const Spec* spec : specs) {
    for (; e < extra.size() && extra[e].family.name < spec->name; ++e) {
      RenderFamily(extra[e].family, extra[e].bounds, out);
    }
    if (Enabled(*spec, snapshot, options, self)) RenderSpec(*spec, rows, out);
  }
  for (; e < extra.size(); ++e) RenderFamily(extra[e].family, extra[e].bounds, out);
}

void EncodeScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out) {
  std::vector<MetricFamily> built;
  BuildFamilies(snapshot, options, self, &built);
  size_t e = 0;
  for (const auto& family : built) {
    for (; e < extra.size() && extra[e].family.name < family.name; ++e) {
      EncodeFamily(extra[e].family, &extra[e].native, out);
    }
    EncodeFamily(family, nullptr, out);
  }
  for (; e < extra.size(); ++e) EncodeFamily(extra[e].family, &extra[e].native, out);
}

}  // namespace uwsgi_prometheus
