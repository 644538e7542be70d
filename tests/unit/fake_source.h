// Synthetic snapshots for tests and benchmarks.
#pragma once

#include <string>

#include "snapshot.h"

namespace uwsgi_prometheus {

// `workers` workers with one app each, two sockets, one cache; numbers derived
// from the worker index so every value is distinct and predictable.
inline Snapshot MakeSnapshot(int workers, int cores = 1) {
  Snapshot s;
  s.listen_queue = 3;
  s.listen_queue_errors = 0;
  s.signal_queue = 1;
  s.sockets.push_back({"127.0.0.1:8000", "uwsgi", 2, 100, false, false});
  s.sockets.push_back({"127.0.0.1:8080", "http", 0, 1024, true, true});
  for (int i = 1; i <= workers; ++i) {
    WorkerSnapshot w;
    w.id = i;
    w.accepting = true;
    w.requests = 100u * i;
    w.delta_requests = 10u * i;
    w.exceptions = i % 3;
    w.harakiri_count = i % 2;
    w.signals = 7;
    w.status = i % 2 ? WorkerStatus::kIdle : WorkerStatus::kBusy;
    w.rss_bytes = 1u << 20;
    w.vsz_bytes = 1u << 26;
    w.running_time_us = 1500000u * i;
    w.last_spawn = 1795737853;
    w.respawn_count = 1;
    w.tx_bytes = 4096u * i;
    w.avg_rt_us = 250;
    w.cores_count = cores;
    AppSnapshot app;
    app.mountpoint = "/app";
    app.chdir = "/srv/app";
    app.requests = w.requests;
    w.apps.push_back(app);
    for (int c = 0; c < cores; ++c) {
      CoreSnapshot core;
      core.id = c;
      core.requests = w.requests / cores;
      w.cores.push_back(core);
    }
    s.workers.push_back(w);
  }
  s.caches.push_back({"default", 5, 2, 0, 3, 100});
  return s;
}

class FakeSource : public SnapshotSource {
 public:
  explicit FakeSource(Snapshot s) : snapshot_(std::move(s)) {}
  bool Take(Snapshot* out, std::string* error) noexcept override {
    if (fail) {
      *error = "fake failure";
      return false;
    }
    *out = snapshot_;
    return true;
  }
  bool fail = false;

 private:
  Snapshot snapshot_;
};

}  // namespace uwsgi_prometheus
