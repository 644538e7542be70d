// The live SnapshotSource: copies counters out of uWSGI's shared memory.
// This header does not include uwsgi.h; uwsgi_source.cc is the only file that
// knows the layout of uWSGI's workers, apps, cores, sockets and caches.
#pragma once

#include <string>

#include "snapshot.h"

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

}  // namespace uwsgi_prometheus
