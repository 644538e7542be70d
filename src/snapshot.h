// Plain copies of uWSGI's counters, taken at one moment. Nothing here knows
// uWSGI's structs: plugin/uwsgi_source.cc fills these, src/ renders them, and
// unit tests build them by hand.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace uwsgi_prometheus {

// What a worker is doing, as uWSGI's stats server reports it.
enum class WorkerStatus { kIdle, kBusy, kCheap, kPause, kSig };

const char* WorkerStatusName(WorkerStatus status);

struct AppSnapshot {
  int id = 0;
  std::string mountpoint;
  std::string chdir;
  int64_t startup_time = 0;  // seconds
  uint64_t requests = 0;
  uint64_t exceptions = 0;
};

struct CoreSnapshot {
  int id = 0;
  uint64_t requests = 0;
  uint64_t static_requests = 0;
  uint64_t routed_requests = 0;
  uint64_t offloaded_requests = 0;
  uint64_t write_errors = 0;
  uint64_t read_errors = 0;
  bool in_request = false;
};

struct WorkerSnapshot {
  int id = 0;  // uWSGI's worker id (1-based); 0 means a never-started slot
  bool accepting = false;
  uint64_t requests = 0;
  uint64_t delta_requests = 0;
  uint64_t exceptions = 0;
  uint64_t harakiri_count = 0;
  uint64_t signals = 0;
  int64_t signal_queue = 0;
  WorkerStatus status = WorkerStatus::kIdle;
  uint64_t rss_bytes = 0;
  uint64_t vsz_bytes = 0;
  uint64_t running_time_us = 0;   // total request time, microseconds
  int64_t last_spawn = 0;         // seconds since the epoch
  uint64_t respawn_count = 0;
  uint64_t tx_bytes = 0;
  uint64_t avg_rt_us = 0;         // uWSGI's running pseudo-average, microseconds
  int cores_count = 0;            // cores uWSGI reports for this worker
  std::vector<AppSnapshot> apps;
  std::vector<CoreSnapshot> cores;  // filled only when cores are collected
};

struct SocketSnapshot {
  std::string name;
  std::string proto;
  uint64_t queue = 0;
  uint64_t max_queue = 0;
  bool shared = false;
  bool can_offload = false;
};

struct CacheSnapshot {
  std::string name;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t full = 0;
  uint64_t items = 0;
  uint64_t max_items = 0;
};

// The uWSGI master process itself, as Prometheus client libraries report
// their own process.
struct ProcessSnapshot {
  bool valid = false;
  double cpu_seconds = 0;
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double start_time_seconds = 0;
  double open_fds = 0;
  double max_fds = 0;
};

struct Snapshot {
  uint64_t listen_queue = 0;
  uint64_t listen_queue_errors = 0;
  int64_t signal_queue = 0;
  std::vector<SocketSnapshot> sockets;
  std::vector<WorkerSnapshot> workers;  // every slot, including id 0 ones
  std::vector<CacheSnapshot> caches;
  ProcessSnapshot process;
};

// Where snapshots come from: the live uWSGI reader in plugin/, or a fake.
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Fills `out`; returns false (and leaves a reason in `error`) when the
  // counters cannot be read. Must not throw.
  virtual bool Take(Snapshot* out, std::string* error) noexcept = 0;
};

}  // namespace uwsgi_prometheus
