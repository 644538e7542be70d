// uWSGI glue: the plugin struct, its options and hooks. The endpoint runs on
// its own thread in the master; see README.md for what each option does.
// Decisions live in src/ (config.h resolves the options, providers.h adds
// request and multi-process families, health.h judges the heartbeat);
// uwsgi_source.cc reads uWSGI's memory.
#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "bind_retry.h"
#include "config.h"
#include "exporter.h"
#include "health.h"
#include "http.h"
#include "multiproc.h"
#include "providers.h"
#include "request_stats.h"
#include "uwsgi_glue.h"
#include "uwsgi_source.h"

#ifndef UWSGI_PROMETHEUS_VERSION
#define UWSGI_PROMETHEUS_VERSION "0.1.0"
#endif

namespace uwsgi_prometheus {
namespace {

// Option values, written by uWSGI's option parser.
struct Options {
  char* socket = nullptr;
  char* path = nullptr;
  int collect_cores = 0;
  char* stats_uri = nullptr;
  char* buckets = nullptr;
  int per_app = 0;
  int per_worker = 0;
  char* multiproc_dir = nullptr;
  int bind_fail_fast = 0;
  char* bind_retry = nullptr;
  char* web_config = nullptr;
  char* native_schema = nullptr;
  char* native_duration_range = nullptr;
  char* native_size_range = nullptr;
} options;

// Runtime state, owned by the master. Heap objects are intentionally not
// destroyed by static destructors: workers inherit the memory and must not
// run any teardown of it.
struct State {
  Config config;
  // Published before it first binds, so that a fork from any thread (an
  // app's thread in the master) finds it and its fork gate from then on.
  std::atomic<HttpServer*> server{nullptr};
  UwsgiSource* source = nullptr;
  Exporter* exporter = nullptr;
  RequestStats* requests = nullptr;  // shared with workers, written after each request
  MultiprocCollector* multiproc = nullptr;
  pid_t server_pid = 0;   // the process the server object belongs to
  pid_t running_pid = 0;  // the process the endpoint serves in (0: none yet)
  ListenAddress bind_address;  // config.address, its host name resolved once
  BindRetry* retry = nullptr;  // binding again while the address is taken
  std::string serving;         // "serving metrics on ...", logged once bound
  Heartbeat heartbeat;   // master loop, for /-/healthy
  bool atfork_registered = false;
} state;

void Log(const std::string& line) { uwsgi_log("[prometheus] %s\n", line.c_str()); }

[[noreturn]] void Fatal(const std::string& line) {
  Log(line);
  exit(1);
}

std::optional<std::string> Given(const char* value) {
  if (!value) return std::nullopt;
  return std::string(value);
}

RawConfig RawOptions() {
  RawConfig raw;
  raw.socket = Given(options.socket);
  raw.path = Given(options.path);
  raw.stats_uri = Given(options.stats_uri);
  raw.buckets = Given(options.buckets);
  raw.multiproc_dir = Given(options.multiproc_dir);
  raw.web_config = Given(options.web_config);
  raw.collect_cores = options.collect_cores != 0;
  raw.per_app = options.per_app != 0;
  raw.per_worker = options.per_worker != 0;
  raw.bind_fail_fast = options.bind_fail_fast != 0;
  raw.bind_retry = Given(options.bind_retry);
  raw.native_schema = Given(options.native_schema);
  raw.native_duration_range = Given(options.native_duration_range);
  raw.native_size_range = Given(options.native_size_range);
  raw.instance_name = InstanceName(ReadInstanceIdentity().config_file);
  return raw;
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

bool Healthy(std::string* reason) {
  return state.heartbeat.Healthy(MonotonicNs(), ReadSettings().master_interval_s, reason);
}

// Every fork of the master (workers, mules, spoolers...): the server
// thread parks while it happens, and the child closes the server's fds.
void PrepareFork() {
  if (HttpServer* server = state.server.load()) server->PrepareFork();
}
void ParentAfterFork() {
  if (HttpServer* server = state.server.load()) server->ParentAfterFork();
}
void ChildAfterFork() {
  if (HttpServer* server = state.server.load()) server->ChildAfterFork();
}

// Request metrics: the table is mapped here, in the master before workers
// fork, so every worker (and every respawned one) writes into the same
// memory and counters survive worker restarts. The generic after-request
// hook list is used because a plugin's own after_request only runs for
// requests of its own modifier1.
void SetUpRequestStats(const UwsgiSettings& settings) {
  auto stats = std::make_unique<RequestStats>();
  std::string error;
  if (!stats->Create(RequestStatsOptionsFor(state.config, settings.workers, settings.max_apps),
                     &error)) {
    Fatal("request metrics: " + error);
  }
  state.requests = stats.release();
  AddAfterRequestHook("uwsgi_prometheus_after_request");
  state.exporter->AddProvider(
      RequestStatsProvider(state.requests, state.config.per_app, state.config.per_worker));
}

// prometheus_client's multi-process mode: workers write .db files into the
// directory, the endpoint merges them into the same scrape.
void SetUpMultiproc() {
  const std::string& dir = state.config.multiproc_dir;
  if (dir.empty()) return;
  std::string error;
  if (!PrepareMultiprocDir(dir, &error)) Fatal(OptionError("multiproc-dir", dir, error));
  const char* env = getenv("PROMETHEUS_MULTIPROC_DIR");
  if (!env) {
    setenv("PROMETHEUS_MULTIPROC_DIR", dir.c_str(), 1);
  } else if (dir != env && std::string(env) != options.multiproc_dir) {
    Log(OptionError("multiproc-dir", dir,
                    std::string("PROMETHEUS_MULTIPROC_DIR is already set to '") + env +
                        "', which the application will write to; the plugin reads '" + dir +
                        "'"));
  }
  state.multiproc = new MultiprocCollector(dir);
  state.exporter->AddProvider(MultiprocProvider(state.multiproc, Log));
}

// The server object of this process, made once with its web configuration
// and published before it first binds, so that forks from any thread find
// it. A process forked from the one that made it (daemonize2) holds an
// inert copy and gets a new object. Null with a message on a bad web
// configuration.
HttpServer* ServerOfThisProcess(std::string* error) {
  HttpServer* server = state.server.load();
  if (server && state.server_pid == getpid()) return server;
  auto made = std::make_unique<HttpServer>();
  const std::string& web_config = state.config.web_config;
  if (!web_config.empty() && !made->UseWebConfig(web_config, error)) {
    *error = OptionError("web-config", web_config, *error);
    return nullptr;
  }
  server = made.release();  // never deleted: a forked copy may still point to it
  state.server.store(server);
  state.server_pid = getpid();
  return server;
}

// Binds and starts the endpoint, on the same server object at every
// attempt (its Listen and Start are owner sections of its fork gate).
// Errors are BindListener's, without the option's name.
bool StartServer(std::string* error, bool* in_use) {
  HttpServer* server = ServerOfThisProcess(error);
  if (!server) return false;
  HttpServerOptions server_options;
  server_options.address = state.bind_address;
  server_options.log = Log;
  if (!server->Listen(server_options, error, in_use)) return false;
  Exporter* exporter = state.exporter;
  exporter->SetServerStats(&server->stats());  // before its thread can scrape
  if (!server->Start([exporter](const HttpRequest& req, HttpResponse* resp) {
        exporter->Handle(req, resp);
      }, error)) {
    server->Stop();  // closes the socket, so that the next attempt can bind again
    return false;
  }
  state.running_pid = getpid();
  return true;
}

void StopAtExit();

// "vassal app2.ini, pid 1234": the instance, as log lines name it.
std::string InstanceText() {
  const InstanceIdentity id = ReadInstanceIdentity();
  return DescribeInstance(id.vassal, id.config_file, static_cast<long>(getpid()));
}

// Binds the endpoint and starts its thread. When the address is taken,
// uWSGI goes on without the endpoint and MasterCycle binds again with
// backoff (unless --prometheus-bind-fail-fast); any other failure at
// start-up is a mistake in the configuration and stops uWSGI.
void BindEndpoint(bool at_start) {
  const int64_t now = MonotonicNs();
  std::string error;
  bool in_use = false;
  if (StartServer(&error, &in_use)) {
    const std::string line = state.retry->Succeeded(now);
    if (!line.empty()) Log(line);
    Log(state.serving);
    return;
  }
  const std::string address = state.config.address.ToString();
  if (at_start && in_use && state.config.bind_fail_fast) {
    Fatal(FailFastMessage(address, InstanceText(), error));
  }
  if (at_start && !in_use) Fatal(OptionError("socket", address, error));
  for (const std::string& line : state.retry->Failed(now, error)) Log(line);
}

// One line that says where the endpoint is exposed and how (a mistyped
// option name is ignored by uWSGI unless it runs with strict = true),
// logged once it is bound.
std::string ServingLine(const ExporterOptions& exporter_options) {
  const ListenAddress& address = state.config.address;
  const bool any = address.kind == ListenAddress::Kind::kTcp && address.host.empty();
  const std::string& stats_uri = exporter_options.model.stats_uri;
  return "serving metrics on " + address.ToString() + exporter_options.metrics_path +
         (any ? " (every interface)" : "") + ": " + state.server.load()->SecuritySummary() +
         (stats_uri.empty() ? "" : "; stats_uri=\"" + stats_uri + "\"");
}

void Start(const UwsgiSettings& settings) {
  std::string error;
  if (!ResolveConfig(RawOptions(), &state.config, &error)) Fatal(error);
  const ExporterOptions exporter_options = ExporterOptionsFor(
      state.config, StatsUriFromConfig(), UWSGI_PROMETHEUS_VERSION, UWSGI_VERSION);
  state.source = new UwsgiSource(state.config.collect_cores);
  state.exporter = new Exporter(state.source, exporter_options, Healthy);
  state.exporter->log = Log;
  SetUpRequestStats(settings);
  SetUpMultiproc();
  if (!state.atfork_registered) {
    pthread_atfork(PrepareFork, ParentAfterFork, ChildAfterFork);
    // OpenSSL registers its own exit cleanup when it initialises, and exit
    // runs handlers last registered first: initialised now, it is torn down
    // only after StopAtExit has stopped the server thread that uses it.
    // Without a web configuration the endpoint uses none of OpenSSL's state
    // (only OPENSSL_cleanse, a plain function), and initialising it would
    // cost the master about 1.7 MiB of resident libcrypto pages.
    if (!state.config.web_config.empty()) {
      OPENSSL_init_crypto(0, nullptr);
      OPENSSL_init_ssl(0, nullptr);
    }
    atexit(StopAtExit);
    state.atfork_registered = true;
  }
  if (!ServerOfThisProcess(&error)) Fatal(error);
  state.bind_address = state.config.address;
  const std::string address = state.config.address.ToString();
  if (!ResolveListenHost(&state.bind_address, &error)) Fatal(OptionError("socket", address, error));
  state.serving = ServingLine(exporter_options);
  BindRetryOptions retry;
  retry.max_ns = int64_t{state.config.bind_retry_max_s} * 1000000000;
  state.retry = new BindRetry(address, InstanceText(), retry);
  BindEndpoint(/*at_start=*/true);
}

// preinit_apps: in the master, after the worker table exists and before
// workers fork. A bad option stops start-up here; so does a busy address
// with --prometheus-bind-fail-fast.
void PreinitApps() noexcept {
  try {
    const UwsgiSettings settings = ReadSettings();
    if (settings.in_worker) return;
    if (!settings.master_process) {
      Fatal("the prometheus plugin serves metrics from the uWSGI master: add 'master = true' "
            "to your configuration (or --master)");
    }
    Start(settings);
  } catch (const std::exception& e) {
    Fatal(std::string("cannot start: ") + e.what());
  }
}

// Workers that died since the last look: their live-gauge files go.
void ForgetDeadWorkers() {
  std::vector<long> pids;
  if (state.multiproc && ReadWorkerPids(&pids)) state.multiproc->ForgetDeadProcesses(pids);
}

// master_cycle: runs in the master loop (at least once per master-interval,
// 1 s by default). Keeps the heartbeat for /-/healthy, cleans up after dead
// workers, and binds the endpoint when it does not run in this process:
// its address was taken at start-up, or this master is a forked copy of
// the process that started it (daemonize2), where its thread does not
// exist. Binding and starting run as owner sections of the server's fork
// gate, so a fork from any thread finds the endpoint either not started or
// started and parked.
void MasterCycle() noexcept {
  state.heartbeat.Beat(MonotonicNs());
  try {
    ForgetDeadWorkers();
  } catch (const std::exception& e) {
    Log(std::string("cannot clean up a dead worker's files: ") + e.what());
  }
  if (!state.retry || state.running_pid == getpid()) return;
  if (!state.retry->Due(MonotonicNs())) return;
  try {
    BindEndpoint(/*at_start=*/false);
  } catch (const std::exception& e) {
    Log(std::string("cannot start the endpoint: ") + e.what());
  }
}

void MasterCleanup() noexcept {
  HttpServer* server = state.server.load();
  if (server && state.server_pid == getpid()) {
    server->Stop();
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

struct uwsgi_option option_table[] = {
    {const_cast<char*>("prometheus-socket"), required_argument, 0,
     const_cast<char*>("address of the Prometheus endpoint: :9117 (default), 127.0.0.1:9117, "
                       "[::1]:9117 or a UNIX socket path"),
     uwsgi_opt_set_str, &options.socket, 0},
    {const_cast<char*>("prometheus-path"), required_argument, 0,
     const_cast<char*>("path of the metrics page (default /metrics)"), uwsgi_opt_set_str,
     &options.path, 0},
    {const_cast<char*>("prometheus-collect-cores"), no_argument, 0,
     const_cast<char*>("export per-core families (as uwsgi_exporter --collect.cores)"),
     uwsgi_opt_true, &options.collect_cores, 0},
    {const_cast<char*>("prometheus-stats-uri"), required_argument, 0,
     const_cast<char*>("value of the stats_uri label (default: derived from --stats, or empty)"),
     uwsgi_opt_set_str, &options.stats_uri, 0},
    {const_cast<char*>("prometheus-buckets"), required_argument, 0,
     const_cast<char*>("request duration histogram bounds in seconds, comma separated "
                       "(default .005,.01,.025,.05,.1,.25,.5,1,2.5,5,10)"),
     uwsgi_opt_set_str, &options.buckets, 0},
    {const_cast<char*>("prometheus-native-schema"), required_argument, 0,
     const_cast<char*>("resolution of the native histograms of request duration and response "
                       "size, -4..8 (default 3: bucket factor 1.09), or off"),
     uwsgi_opt_set_str, &options.native_schema, 0},
    {const_cast<char*>("prometheus-native-duration-range"), required_argument, 0,
     const_cast<char*>("durations in seconds the native histogram resolves, MIN,MAX (default "
                       "1e-5,1e4; below: zero bucket, above: highest bucket)"),
     uwsgi_opt_set_str, &options.native_duration_range, 0},
    {const_cast<char*>("prometheus-native-size-range"), required_argument, 0,
     const_cast<char*>("response sizes in bytes the native histogram resolves, MIN,MAX "
                       "(default 1,1e9)"),
     uwsgi_opt_set_str, &options.native_size_range, 0},
    {const_cast<char*>("prometheus-per-app"), no_argument, 0,
     const_cast<char*>("label request metrics with the app's mountpoint"), uwsgi_opt_true,
     &options.per_app, 0},
    {const_cast<char*>("prometheus-per-worker"), no_argument, 0,
     const_cast<char*>("label request metrics with worker_id instead of summing workers"),
     uwsgi_opt_true, &options.per_worker, 0},
    {const_cast<char*>("prometheus-web-config"), required_argument, 0,
     const_cast<char*>("web configuration file, as exporters' --web.config.file: TLS, client "
                       "certificates, basic auth users and headers (re-read when it changes)"),
     uwsgi_opt_set_str, &options.web_config, 0},
    {const_cast<char*>("prometheus-multiproc-dir"), required_argument, 0,
     const_cast<char*>("merge prometheus_client multi-process metrics from this directory into "
                       "the scrape (sets PROMETHEUS_MULTIPROC_DIR for the workers)"),
     SetMultiprocDir, &options.multiproc_dir, 0},
    {const_cast<char*>("prometheus-bind-fail-fast"), no_argument, 0,
     const_cast<char*>("stop start-up when the endpoint's address is in use (default: start "
                       "without the endpoint and bind it when the address frees)"),
     uwsgi_opt_true, &options.bind_fail_fast, 0},
    {const_cast<char*>("prometheus-bind-retry"), required_argument, 0,
     const_cast<char*>("longest wait in seconds between attempts to bind a busy address "
                       "(default 30; they start at 1 s and double)"),
     uwsgi_opt_set_str, &options.bind_retry, 0},
    {nullptr, 0, 0, nullptr, nullptr, nullptr, 0},
};

}  // namespace
}  // namespace uwsgi_prometheus

// Runs in the worker after every request (uWSGI's generic after-request
// chain). A handful of relaxed atomic adds into shared memory.
extern "C" __attribute__((visibility("default"))) void uwsgi_prometheus_after_request(
    struct wsgi_request* wsgi_req) noexcept {
  using uwsgi_prometheus::state;
  uwsgi_prometheus::RequestObservation o;
  if (!state.requests || !uwsgi_prometheus::ReadObservation(wsgi_req, &o)) return;
  state.requests->Observe(o);
}

extern "C" __attribute__((visibility("default"))) struct uwsgi_plugin prometheus_plugin;

struct uwsgi_plugin prometheus_plugin = [] {
  struct uwsgi_plugin p;
  memset(&p, 0, sizeof p);
  p.name = "prometheus";
  p.options = uwsgi_prometheus::option_table;
  p.on_load = uwsgi_prometheus::OnLoad;
  p.preinit_apps = uwsgi_prometheus::PreinitApps;
  p.master_cycle = uwsgi_prometheus::MasterCycle;
  p.master_cleanup = uwsgi_prometheus::MasterCleanup;
  return p;
}();
