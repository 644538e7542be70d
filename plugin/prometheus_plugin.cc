// uWSGI glue: the plugin struct, its options and hooks. The endpoint runs on
// its own thread in the master; see README.md for what each option does.
#include <dlfcn.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <set>
#include <string>

#include "exporter.h"
#include "http.h"
#include "multiproc.h"
#include "request_stats.h"
#include "uwsgi_glue.h"
#include "uwsgi_source.h"

extern struct uwsgi_server uwsgi;

#ifndef UWSGI_PROMETHEUS_VERSION
#define UWSGI_PROMETHEUS_VERSION "0.1.0"
#endif

namespace uwsgi_prometheus {
namespace {

// Option values, written by uWSGI's option parser.
struct Config {
  char* socket = nullptr;
  char* path = nullptr;
  int collect_cores = 0;
  char* stats_uri = nullptr;
  char* buckets = nullptr;
  int per_app = 0;
  int per_worker = 0;
  char* multiproc_dir = nullptr;
} config;

// Runtime state, owned by the master. Heap objects are intentionally not
// destroyed by static destructors: workers inherit the memory and must not
// run any teardown of it.
struct State {
  HttpServer* server = nullptr;
  UwsgiSource* source = nullptr;
  Exporter* exporter = nullptr;
  RequestStats* requests = nullptr;  // shared with workers, written after each request
  std::vector<double> buckets;
  MultiprocCollector* multiproc = nullptr;
  std::vector<long> worker_pids;  // last seen, to notice workers that died
  HttpServerOptions server_options;
  pid_t server_pid = 0;  // the process the server thread runs in
  std::atomic<int64_t> last_cycle_ns{0};  // master loop heartbeat (CLOCK_MONOTONIC)
  bool atfork_registered = false;
} state;

void Log(const std::string& line) { uwsgi_log("[prometheus] %s\n", line.c_str()); }

[[noreturn]] void Fatal(const std::string& line) {
  Log(line);
  exit(1);
}

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The UWSGI_VERSION define inside a --cflags string.
std::string VersionIn(const std::string& cflags) {
  const std::string key = "-DUWSGI_VERSION=\"\\\"";
  size_t start = cflags.find(key);
  if (start == std::string::npos) return "(unknown version)";
  start += key.size();
  size_t end = cflags.find("\\\"", start);
  return cflags.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

// ABI guard: uWSGI does not check that a plugin was built for its layout. We
// were compiled with one uwsgi binary's --cflags (which carry its version and
// every define that changes struct uwsgi_server); refuse to run in another.
void CheckBuild() {
  using GetCflags = char* (*)();
  auto get_cflags = reinterpret_cast<GetCflags>(dlsym(RTLD_DEFAULT, "uwsgi_get_cflags"));
  if (!get_cflags) return;  // very old uWSGI: nothing to compare with
  char* running = get_cflags();
  if (!running) return;
  std::string ours = UWSGI_PROMETHEUS_BUILT_CFLAGS;
  std::string theirs = running;
  free(running);
  auto trim = [](std::string& s) {
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  };
  trim(ours);
  trim(theirs);
  if (ours == theirs) return;
  Log("this plugin was built for a different uWSGI build and cannot read its memory.");
  Log(std::string("built for: uWSGI ") + UWSGI_VERSION + " (" + UWSGI_PROMETHEUS_BUILT_BINARY +
      ")");
  Log("running in: uWSGI " + VersionIn(theirs));
  Log("built with cflags: " + ours);
  Log("running cflags:    " + theirs);
  Fatal("rebuild the plugin against the uwsgi you run: cmake -DUWSGI_BIN=$(command -v uwsgi) ... "
        "(or python3 uwsgiconfig.py --uwsgi $(command -v uwsgi)); see README.md");
}

void CheckConfig() {
  std::string path = config.path ? config.path : "/metrics";
  if (path.empty() || path[0] != '/' || path.find_first_of(" \t\r\n?#") != std::string::npos) {
    Fatal("--prometheus-path '" + path + "': must start with '/' and contain no spaces, '?' or '#'");
  }
  if (path == "/" || path == "/-/healthy") {
    Fatal("--prometheus-path '" + path + "': that path is taken by the landing page or the "
          "health probe; pick another, e.g. /metrics");
  }
  std::string error;
  state.buckets = DefaultDurationBounds();
  if (config.buckets && !ParseBuckets(config.buckets, &state.buckets, &error)) {
    Fatal(std::string("--prometheus-buckets '") + config.buckets + "': " + error);
  }
  const std::string socket = config.socket ? config.socket : ":9117";
  if (!ParseListenAddress(socket, &state.server_options.address, &error)) {
    Fatal("--prometheus-socket '" + socket + "': " + error);
  }
  if (state.server_options.address.kind == ListenAddress::Kind::kTcp &&
      state.server_options.address.port == 0) {
    Fatal("--prometheus-socket '" + socket + "': port 0 is not allowed; give a port, e.g. :9117");
  }
}

// The master loop's heartbeat: master_cycle runs at least once per
// master-interval (1 s by default). Before the loop starts (apps loading)
// the master counts as alive.
bool Healthy(std::string* reason) {
  const int64_t last = state.last_cycle_ns.load(std::memory_order_relaxed);
  if (last == 0) return true;
  const int interval = uwsgi.master_interval > 0 ? uwsgi.master_interval : 1;
  const int64_t limit_ns = static_cast<int64_t>(3 * interval + 5) * 1000000000;
  const int64_t age_ns = MonotonicNs() - last;
  if (age_ns <= limit_ns) return true;
  *reason = "uWSGI master loop has not run for " + std::to_string(age_ns / 1000000000) + " s";
  return false;
}

// Every fork of the master (workers, mules, spoolers...): the server
// thread parks while it happens, and the child closes the server's fds.
void PrepareFork() {
  if (state.server) state.server->PrepareFork();
}
void ParentAfterFork() {
  if (state.server) state.server->ParentAfterFork();
}
void ChildAfterFork() {
  if (state.server) state.server->ChildAfterFork();
}

// Request metrics: the table is mapped here, in the master before workers
// fork, so every worker (and every respawned one) writes into the same
// memory and counters survive worker restarts. The generic after-request
// hook list is used because a plugin's own after_request only runs for
// requests of its own modifier1; hooks added before the resolution loop
// (after postinit_apps) are resolved by symbol name.
void SetUpRequestStats() {
  RequestStatsOptions options;
  options.duration_bounds = state.buckets;
  options.workers = static_cast<uint32_t>(uwsgi.numproc > 0 ? uwsgi.numproc : 1);
  // Per-app: one slot per app id, plus slot 0 for requests no app served.
  options.apps = config.per_app ? static_cast<uint32_t>(uwsgi.max_apps) + 1 : 1;
  auto stats = std::make_unique<RequestStats>();
  std::string error;
  if (!stats->Create(options, &error)) Fatal("request metrics: " + error);
  state.requests = stats.release();
  uwsgi_string_new_list(&uwsgi.after_request_hooks,
                        const_cast<char*>("uwsgi_prometheus_after_request"));
  const bool per_app = config.per_app != 0;
  RequestStats::RenderOptions render;
  render.per_worker = config.per_worker != 0;
  // Per-app labels: each worker's slot j + 1 is that worker's app id j,
  // labelled with the mountpoint that worker reports (app ids are per
  // worker). Kept from the last snapshot taken when one cannot be read.
  auto last_labels = std::make_shared<std::vector<std::vector<std::string>>>();
  state.exporter->AddProvider([per_app, render, last_labels](
                                  const Snapshot& snapshot, bool taken,
                                  std::vector<prometheus::MetricFamily>* out) {
    RequestStats::RenderOptions options = render;
    if (per_app) {
      if (taken) {
        last_labels->resize(snapshot.workers.size());
        for (size_t w = 0; w < snapshot.workers.size(); ++w) {
          auto& labels = (*last_labels)[w];
          labels.assign(1, "(no app)");
          for (const auto& app : snapshot.workers[w].apps) {
            labels.push_back(SanitizeLabelValue(app.mountpoint, 512));
          }
        }
      }
      options.app_labels = *last_labels;
      if (options.app_labels.empty()) options.app_labels.resize(1);  // still per app
    }
    state.requests->AppendFamilies(options, out);
  });
}

// prometheus_client's multi-process mode: workers write .db files into the
// directory, the endpoint merges them into the same scrape.
void SetUpMultiproc() {
  if (!config.multiproc_dir) return;
  std::string dir = config.multiproc_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string option = "--prometheus-multiproc-dir '" + dir + "': ";
  if (dir.empty()) Fatal(option + "empty path");
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT || mkdir(dir.c_str(), 0755) != 0) {
      Fatal(option + "cannot create the directory: " + strerror(errno));
    }
  } else if (!S_ISDIR(st.st_mode)) {
    Fatal(option + "exists and is not a directory");
  }
  if (access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
    Fatal(option + "not readable and writable: " + strerror(errno));
  }
  // Values of a previous master are stale: start empty (workers that respawn
  // later keep their files, as they must for counters).
  std::string error;
  if (!MultiprocCollector::Clear(dir, &error)) Fatal(option + error);
  const char* env = getenv("PROMETHEUS_MULTIPROC_DIR");
  if (!env) {
    setenv("PROMETHEUS_MULTIPROC_DIR", dir.c_str(), 1);
  } else if (dir != env && std::string(env) != std::string(config.multiproc_dir)) {
    Log(option + "PROMETHEUS_MULTIPROC_DIR is already set to '" + env +
        "', which the application will write to; the plugin reads '" + dir + "'");
  }
  state.multiproc = new MultiprocCollector(dir);
  auto skipped_total = std::make_shared<uint64_t>(0);
  auto reported = std::make_shared<std::set<std::string>>();
  state.exporter->AddProvider([skipped_total, reported](const Snapshot&, bool,
                                                        std::vector<prometheus::MetricFamily>* out) {
    state.multiproc->Collect(out, [&](const std::string& file, const std::string& why) {
      ++*skipped_total;
      if (reported->size() < 1000 && reported->insert(file + why).second) {
        Log("multiproc: skipped " + file + ": " + why);
      }
    });
    prometheus::MetricFamily skipped{
        "uwsgi_prometheus_multiproc_skipped_files_total",
        "Multi-process .db files skipped by scrapes because they could not be read (see the log).",
        prometheus::MetricType::Counter, {}};
    prometheus::ClientMetric m;
    m.counter.value = static_cast<double>(*skipped_total);
    skipped.metric.push_back(m);
    out->push_back(std::move(skipped));
  });
}

// Workers that died since the last look: remove their live-gauge files, as
// prometheus_client's mark_process_dead does.
void MarkDeadWorkers() {
  if (!state.multiproc || !uwsgi.workers) return;
  state.worker_pids.resize(static_cast<size_t>(uwsgi.numproc));
  for (int i = 0; i < uwsgi.numproc; ++i) {
    const long pid = uwsgi.workers[i + 1].pid;
    long& known = state.worker_pids[static_cast<size_t>(i)];
    if (known > 0 && known != pid) {
      MultiprocCollector::MarkProcessDead(state.multiproc->dir(), known);
    }
    known = pid;
  }
}

bool StartServer(std::string* error) {
  auto server = std::make_unique<HttpServer>();
  if (!server->Listen(state.server_options, error)) return false;
  Exporter* exporter = state.exporter;
  exporter->SetServerStats(&server->stats());  // before its thread can scrape
  if (!server->Start([exporter](const HttpRequest& req, HttpResponse* resp) {
        exporter->Handle(req, resp);
      }, error)) {
    exporter->SetServerStats(state.server ? &state.server->stats() : nullptr);
    return false;
  }
  state.server = server.release();
  state.server_pid = getpid();
  return true;
}

void StopAtExit();

// preinit_apps: in the master, after the worker table exists and before
// workers fork. Binds the endpoint so a busy port stops start-up.
void PreinitApps() noexcept {
  try {
    if (uwsgi.mywid != 0) return;  // never in a worker
    if (!uwsgi.master_process) {
      Fatal("the prometheus plugin serves metrics from the uWSGI master: add 'master = true' "
            "to your configuration (or --master)");
    }
    CheckConfig();
    state.server_options.log = Log;
    ExporterOptions options;
    options.metrics_path = config.path ? config.path : "/metrics";
    options.model.collect_cores = config.collect_cores != 0;
    options.model.stats_uri = config.stats_uri ? config.stats_uri : StatsUriFromConfig();
    options.version = UWSGI_PROMETHEUS_VERSION;
    state.source = new UwsgiSource(options.model.collect_cores);
    state.exporter = new Exporter(state.source, options, Healthy);
    state.exporter->log = Log;
    SetUpRequestStats();
    SetUpMultiproc();
    if (!state.atfork_registered) {
      pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork);
      atexit(StopAtExit);
      state.atfork_registered = true;
    }
    std::string error;
    if (!StartServer(&error)) {
      Fatal("--prometheus-socket '" + state.server_options.address.ToString() + "': " + error);
    }
    Log("serving metrics on " + state.server_options.address.ToString() + options.metrics_path +
        (options.model.stats_uri.empty() ? "" : " (stats_uri=\"" + options.model.stats_uri + "\")"));
  } catch (const std::exception& e) {
    Fatal(std::string("cannot start: ") + e.what());
  }
}

// master_cycle: runs in the master loop. Keeps the heartbeat for /-/healthy,
// and restarts the endpoint if the master is a forked copy of the process
// that started it (daemonize2), where the thread does not exist.
void MasterCycle() noexcept {
  state.last_cycle_ns.store(MonotonicNs(), std::memory_order_relaxed);
  try {
    MarkDeadWorkers();
  } catch (const std::exception& e) {
    Log(std::string("cannot clean up a dead worker's files: ") + e.what());
  }
  if (!state.exporter || state.server_pid == getpid()) return;
  static int64_t last_try_ns = 0;
  const int64_t now = MonotonicNs();
  if (now - last_try_ns < 1000000000) return;
  last_try_ns = now;
  try {
    std::string error;
    if (StartServer(&error)) {
      Log("endpoint restarted in the new master process");
    } else {
      Log("cannot restart endpoint yet: " + error);
    }
  } catch (const std::exception& e) {
    Log(std::string("cannot restart endpoint: ") + e.what());
  }
}

void MasterCleanup() noexcept {
  if (state.server && state.server_pid == getpid()) {
    state.server->Stop();
  }
}

// uWSGI registers master_cleanup only when its master loop starts; an exit
// before that (a failing app with need-app, say) must still stop the thread
// before the process tears down what a scrape uses.
void StopAtExit() { MasterCleanup(); }

void OnLoad() noexcept { CheckBuild(); }

// --prometheus-multiproc-dir is acted on as soon as it is parsed: language
// plugins start their interpreters (and take their copy of the environment)
// before any later hook, and prometheus_client reads PROMETHEUS_MULTIPROC_DIR
// when it is imported.
void SetMultiprocDir(char* opt, char* value, void* data) {
  uwsgi_opt_set_str(opt, value, data);
  if (value && *value && !getenv("PROMETHEUS_MULTIPROC_DIR")) {
    setenv("PROMETHEUS_MULTIPROC_DIR", value, 1);
  }
}

struct uwsgi_option options[] = {
    {const_cast<char*>("prometheus-socket"), required_argument, 0,
     const_cast<char*>("address of the Prometheus endpoint: :9117 (default), 127.0.0.1:9117, "
                       "[::1]:9117 or a UNIX socket path"),
     uwsgi_opt_set_str, &config.socket, 0},
    {const_cast<char*>("prometheus-path"), required_argument, 0,
     const_cast<char*>("path of the metrics page (default /metrics)"), uwsgi_opt_set_str,
     &config.path, 0},
    {const_cast<char*>("prometheus-collect-cores"), no_argument, 0,
     const_cast<char*>("export per-core families (as uwsgi_exporter --collect.cores)"),
     uwsgi_opt_true, &config.collect_cores, 0},
    {const_cast<char*>("prometheus-stats-uri"), required_argument, 0,
     const_cast<char*>("value of the stats_uri label (default: derived from --stats, or empty)"),
     uwsgi_opt_set_str, &config.stats_uri, 0},
    {const_cast<char*>("prometheus-buckets"), required_argument, 0,
     const_cast<char*>("request duration histogram bounds in seconds, comma separated "
                       "(default .005,.01,.025,.05,.1,.25,.5,1,2.5,5,10)"),
     uwsgi_opt_set_str, &config.buckets, 0},
    {const_cast<char*>("prometheus-per-app"), no_argument, 0,
     const_cast<char*>("label request metrics with the app's mountpoint"), uwsgi_opt_true,
     &config.per_app, 0},
    {const_cast<char*>("prometheus-per-worker"), no_argument, 0,
     const_cast<char*>("label request metrics with worker_id instead of summing workers"),
     uwsgi_opt_true, &config.per_worker, 0},
    {const_cast<char*>("prometheus-multiproc-dir"), required_argument, 0,
     const_cast<char*>("merge prometheus_client multi-process metrics from this directory into "
                       "the scrape (sets PROMETHEUS_MULTIPROC_DIR for the workers)"),
     SetMultiprocDir, &config.multiproc_dir, 0},
    {nullptr, 0, 0, nullptr, nullptr, nullptr, 0},
};

}  // namespace
}  // namespace uwsgi_prometheus

// Runs in the worker after every request (uWSGI's generic after-request
// chain). A handful of relaxed atomic adds into shared memory.
extern "C" __attribute__((visibility("default"))) void uwsgi_prometheus_after_request(
    struct wsgi_request* wsgi_req) noexcept {
  using uwsgi_prometheus::state;
  if (!state.requests || wsgi_req->do_not_account) return;
  uwsgi_prometheus::RequestObservation o;
  o.worker_id = uwsgi.mywid > 0 ? static_cast<uint32_t>(uwsgi.mywid) : 0;
  o.app_index = wsgi_req->app_id >= 0 ? static_cast<uint32_t>(wsgi_req->app_id) + 1 : 0;
  const uint64_t end = wsgi_req->end_of_request;
  const uint64_t start = wsgi_req->start_of_request;
  o.duration_us = end > start ? end - start : 0;
  o.response_bytes = wsgi_req->response_size + wsgi_req->headers_size;
  o.status = wsgi_req->status;
  o.method = wsgi_req->method ? std::string_view(wsgi_req->method, wsgi_req->method_len)
                              : std::string_view();
  state.requests->Observe(o);
}

extern "C" __attribute__((visibility("default"))) struct uwsgi_plugin prometheus_plugin;

struct uwsgi_plugin prometheus_plugin = [] {
  struct uwsgi_plugin p;
  memset(&p, 0, sizeof p);
  p.name = "prometheus";
  p.options = uwsgi_prometheus::options;
  p.on_load = uwsgi_prometheus::OnLoad;
  p.preinit_apps = uwsgi_prometheus::PreinitApps;
  p.master_cycle = uwsgi_prometheus::MasterCycle;
  p.master_cleanup = uwsgi_prometheus::MasterCleanup;
  return p;
}();
