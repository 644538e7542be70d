// Everything the plugin reads from uWSGI's memory: the live SnapshotSource
// (counters out of uWSGI's shared memory), the settings the plugin acts on,
// the workers' pids and a finished request. This header does not include
// uwsgi.h; uwsgi_source.cc is the only file that knows the layout of uWSGI's
// server, workers, apps, cores, sockets, caches and requests.
#pragma once

#include <string>
#include <vector>

#include "request_stats.h"
#include "snapshot.h"

struct wsgi_request;

namespace uwsgi_prometheus {

class UwsgiSource : public SnapshotSource {
 public:
  explicit UwsgiSource(bool collect_cores) : collect_cores_(collect_cores) {}
  bool Take(Snapshot* out, std::string* error) noexcept override;

 private:
  bool collect_cores_;
};

// The stats_uri uwsgi_exporter would have been given for this instance's
// stats server ("tcp://127.0.0.1:1717", "unix:///run/stats.sock",
// "http://127.0.0.1:1717"), or "" when it has none.
std::string StatsUriFromConfig();

// uWSGI's settings that the plugin acts on.
struct UwsgiSettings {
  bool master_process = false;  // --master
  bool in_worker = false;       // this process is a worker
  int workers = 0;              // --processes
  int max_apps = 0;             // app ids per worker
  int master_interval_s = 0;    // --master-interval (0: uWSGI's default)
};
UwsgiSettings ReadSettings();

// Which uWSGI this is, for log lines and the %(vassal) placeholder.
struct InstanceIdentity {
  bool vassal = false;      // started by an Emperor
  std::string config_file;  // the first config file given (--ini ...), as given; may be ""
};
InstanceIdentity ReadInstanceIdentity();

// Each worker slot's pid (0 for a slot without a worker), in slot order.
// False before uWSGI has allocated the worker table.
bool ReadWorkerPids(std::vector<long>* pids);

// What a finished request tells the request metrics. False for a request
// uWSGI does not account (do_not_account). Never blocks or allocates.
bool ReadObservation(const struct wsgi_request* request, RequestObservation* out) noexcept;

// Adds `symbol` to uWSGI's generic after-request hook list (resolved by
// name after postinit_apps).
void AddAfterRequestHook(const char* symbol);

}  // namespace uwsgi_prometheus
