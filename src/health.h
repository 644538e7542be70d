// The /-/healthy verdict: the uWSGI master loop beats once per master cycle
// (at least once per master-interval, 1 s by default); the endpoint, on its
// own thread, reports unhealthy when the beats stop.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace uwsgi_prometheus {

// CLOCK_MONOTONIC in nanoseconds.
int64_t MonotonicNs();

class Heartbeat {
 public:
  // Called by the master loop.
  void Beat(int64_t now_ns) { last_ns_.store(now_ns, std::memory_order_relaxed); }

  // Healthy before the first beat (apps still loading) and while the last
  // beat is at most 3 intervals + 5 s old; otherwise fills `reason`.
  bool Healthy(int64_t now_ns, int master_interval_s, std::string* reason) const;

 private:
  std::atomic<int64_t> last_ns_{0};
};

}  // namespace uwsgi_prometheus
