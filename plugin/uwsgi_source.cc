// Reads uWSGI's counters the way its stats server does
// (uwsgi_master_generate_stats in core/master_utils.c), without JSON and
// from a thread of the master: everything read here lives in memory that
// uWSGI maps shared before forking workers (workers, apps, cores, caches,
// uwsgi.shared) or in master memory that does not change after start-up
// (the socket and cache lists). The settings, worker pids and finished
// requests the plugin acts on are read here too, so that no other file
// depends on uWSGI's struct layouts.
#include "uwsgi_source.h"

#include <sys/ioctl.h>

#include "uwsgi_glue.h"

extern struct uwsgi_server uwsgi;

namespace uwsgi_prometheus {

namespace {

int64_t PipeQueue(int fd) {
  int queued = 0;
  if (fd < 0 || ioctl(fd, FIONREAD, &queued) != 0) return 0;
  return queued;
}

WorkerStatus StatusOf(const struct uwsgi_worker& w, bool busy) {
  // Same precedence as the stats server.
  if (w.cheaped) return WorkerStatus::kCheap;
  if (w.suspended && !busy) return WorkerStatus::kPause;
  if (w.sig) return WorkerStatus::kSig;
  return busy ? WorkerStatus::kBusy : WorkerStatus::kIdle;
}

std::string FixedString(const char* s, size_t max_len) {
  size_t len = 0;
  while (len < max_len && s[len]) ++len;
  return std::string(s, len);
}

void ReadSockets(std::vector<SocketSnapshot>* out) {
  out->clear();
  for (struct uwsgi_socket* s = uwsgi.sockets; s; s = s->next) {
    SocketSnapshot sock;
    sock.name = s->name ? s->name : "";
    sock.proto = s->proto_name ? s->proto_name : "uwsgi";
    sock.queue = s->queue;
    sock.max_queue = s->max_queue;
    sock.shared = s->shared != 0;
    sock.can_offload = s->can_offload != 0;
    out->push_back(std::move(sock));
  }
}

// The worker's cores: busy when any core is in a request (or the worker runs
// a signal handler); exceptions summed; per-core copies when collected.
void ReadCores(const struct uwsgi_worker& w, bool collect, WorkerSnapshot* ws) {
  bool busy = w.sig != 0;
  uint64_t exceptions = 0;
  ws->cores.clear();
  for (int j = 0; j < uwsgi.cores && w.cores; ++j) {
    const struct uwsgi_core& c = w.cores[j];
    busy = busy || c.in_request;
    exceptions += c.exceptions;
    if (!collect) continue;
    CoreSnapshot cs;
    cs.id = j;
    cs.requests = c.requests;
    cs.static_requests = c.static_requests;
    cs.routed_requests = c.routed_requests;
    cs.offloaded_requests = c.offloaded_requests;
    cs.write_errors = c.write_errors;
    cs.read_errors = c.read_errors;
    cs.in_request = c.in_request != 0;
    ws->cores.push_back(cs);
  }
  ws->exceptions = exceptions;
  ws->status = StatusOf(w, busy);
}

void ReadApps(const struct uwsgi_worker& w, WorkerSnapshot* ws) {
  ws->apps.clear();
  int apps = w.apps_cnt;
  if (apps > uwsgi.max_apps) apps = uwsgi.max_apps;
  for (int j = 0; j < apps && w.apps; ++j) {
    const struct uwsgi_app& a = w.apps[j];
    AppSnapshot as;
    as.id = j;
    size_t mp_len = a.mountpoint_len;
    if (mp_len > sizeof a.mountpoint) mp_len = sizeof a.mountpoint;
    as.mountpoint.assign(a.mountpoint, mp_len);
    as.chdir = FixedString(a.chdir, sizeof a.chdir);
    as.startup_time = a.startup_time;
    as.requests = a.requests;
    as.exceptions = a.exceptions;
    ws->apps.push_back(std::move(as));
  }
}

void ReadWorker(const struct uwsgi_worker& w, bool collect_cores, WorkerSnapshot* ws) {
  ws->id = w.id;
  ws->accepting = w.accepting != 0;
  ws->requests = w.requests;
  ws->delta_requests = w.delta_requests;
  ws->harakiri_count = w.harakiri_count;
  ws->signals = w.signals;
  ws->signal_queue = uwsgi.master_process ? PipeQueue(w.signal_pipe[1]) : 0;
  ws->rss_bytes = w.rss_size;
  ws->vsz_bytes = w.vsz_size;
  ws->running_time_us = w.running_time;
  ws->last_spawn = w.last_spawn;
  ws->respawn_count = w.respawn_count;
  ws->tx_bytes = w.tx;
  ws->avg_rt_us = w.avg_response_time;
  ws->cores_count = uwsgi.stats_no_cores ? 0 : uwsgi.cores;
  ReadCores(w, collect_cores, ws);
  ReadApps(w, ws);
}

void ReadCaches(std::vector<CacheSnapshot>* out) {
  out->clear();
  for (struct uwsgi_cache* c = uwsgi.caches; c; c = c->next) {
    CacheSnapshot cs;
    cs.name = c->name ? c->name : "default";
    cs.hits = c->hits;
    cs.misses = c->miss;
    cs.full = c->full;
    cs.items = c->n_items;
    cs.max_items = c->max_items;
    out->push_back(std::move(cs));
  }
}

}  // namespace

bool UwsgiSource::Take(Snapshot* out, std::string* error) noexcept {
  try {
    if (!uwsgi.workers || !uwsgi.shared) {
      *error = "uWSGI's worker table is not allocated yet";
      return false;
    }
    out->listen_queue = uwsgi.shared->backlog;
    out->listen_queue_errors = uwsgi.shared->backlog_errors;
    out->signal_queue = PipeQueue(uwsgi.shared->worker_signal_pipe[1]);
    ReadSockets(&out->sockets);
    out->workers.resize(uwsgi.numproc > 0 ? uwsgi.numproc : 0);
    for (int i = 0; i < uwsgi.numproc; ++i) {
      ReadWorker(uwsgi.workers[i + 1], collect_cores_, &out->workers[i]);  // slot 0 is the master
    }
    ReadCaches(&out->caches);
    return true;
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
}

std::string StatsUriFromConfig() {
  if (!uwsgi.stats || !*uwsgi.stats) return "";
  std::string stats = uwsgi.stats;
  if (uwsgi.stats_http) return "http://" + stats;
  if (stats.find('/') != std::string::npos) return "unix://" + stats;
  if (stats[0] == ':') stats = "0.0.0.0" + stats;
  return "tcp://" + stats;
}

UwsgiSettings ReadSettings() {
  UwsgiSettings s;
  s.master_process = uwsgi.master_process != 0;
  s.in_worker = uwsgi.mywid != 0;
  s.workers = uwsgi.numproc;
  s.max_apps = uwsgi.max_apps;
  s.master_interval_s = uwsgi.master_interval;
  return s;
}

// The Emperor starts a vassal as `uwsgi [--set k=v ...] --ini NAME ...`
// (core/emperor.c, uwsgi_emperor_spawn_vassal), and uWSGI keeps every option
// it was given, in order, in uwsgi.exported_opts (templates and includes
// under the keys inherit and include).
InstanceIdentity ReadInstanceIdentity() {
  InstanceIdentity id;
  id.vassal = uwsgi.has_emperor != 0;
  for (int i = 0; i < uwsgi.exported_opts_cnt && uwsgi.exported_opts; ++i) {
    const struct uwsgi_opt* opt = uwsgi.exported_opts[i];
    if (!opt || !opt->key || !opt->value) continue;
    const std::string key = opt->key;
    if (key == "ini" || key == "yaml" || key == "yml" || key == "json" || key == "js" ||
        key == "xml" || key == "config") {
      id.config_file = opt->value;
      break;
    }
  }
  return id;
}

bool ReadWorkerPids(std::vector<long>* pids) {
  if (!uwsgi.workers) return false;
  pids->resize(static_cast<size_t>(uwsgi.numproc > 0 ? uwsgi.numproc : 0));
  for (size_t i = 0; i < pids->size(); ++i) {
    (*pids)[i] = uwsgi.workers[i + 1].pid;  // slot 0 is the master
  }
  return true;
}

bool ReadObservation(const struct wsgi_request* request, RequestObservation* out) noexcept {
  if (request->do_not_account) return false;
  out->worker_id = uwsgi.mywid > 0 ? static_cast<uint32_t>(uwsgi.mywid) : 0;
  out->app_index = request->app_id >= 0 ? static_cast<uint32_t>(request->app_id) + 1 : 0;
  const uint64_t end = request->end_of_request;
  const uint64_t start = request->start_of_request;
  out->duration_us = end > start ? end - start : 0;
  out->response_bytes = request->response_size + request->headers_size;
  out->status = request->status;
  out->method = request->method ? std::string_view(request->method, request->method_len)
                                : std::string_view();
  return true;
}

void AddAfterRequestHook(const char* symbol) {
  uwsgi_string_new_list(&uwsgi.after_request_hooks, const_cast<char*>(symbol));
}

}  // namespace uwsgi_prometheus
