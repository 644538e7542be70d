#include "health.h"

#include <ctime>

namespace uwsgi_prometheus {

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

bool Heartbeat::Healthy(int64_t now_ns, int master_interval_s, std::string* reason) const {
  const int64_t last = last_ns_.load(std::memory_order_relaxed);
  if (last == 0) return true;
  const int interval = master_interval_s > 0 ? master_interval_s : 1;
  const int64_t limit_ns = static_cast<int64_t>(3 * interval + 5) * 1000000000;
  const int64_t age_ns = now_ns - last;
  if (age_ns <= limit_ns) return true;
  *reason = "uWSGI master loop has not run for " + std::to_string(age_ns / 1000000000) + " s";
  return false;
}

}  // namespace uwsgi_prometheus
