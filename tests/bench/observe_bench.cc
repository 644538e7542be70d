// Worker-side cost of the request metrics: nanoseconds per Observe() (what
// the after-request hook does), one thread alone and four threads of one
// worker sharing a slot. Prints a table; run: build/tests/observe_bench
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "request_stats.h"

using namespace uwsgi_prometheus;

namespace {

double NsPerObserve(RequestStats& stats, int threads, int per_thread) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&stats, per_thread, t] {
      static const int kCodes[] = {200, 200, 200, 404, 500, 302};
      for (int i = 0; i < per_thread; ++i) {
        stats.Observe({1, 0, static_cast<uint64_t>((i * 7919) % 300000), 512u + i % 4096,
                       kCodes[(i + t) % 6], i % 5 ? "GET" : "POST"});
      }
    });
  }
  for (auto& th : pool) th.join();
  auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  return ns.count() / (static_cast<double>(threads) * per_thread);
}

}  // namespace

int main() {
  RequestStats stats;
  RequestStatsOptions o;
  o.duration_bounds = DefaultDurationBounds();
  o.workers = 4;
  std::string error;
  if (!stats.Create(o, &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  NsPerObserve(stats, 1, 100000);  // warm up
  std::printf("| threads sharing one worker slot | ns per request (wall / requests) |\n|---|---|\n");
  for (int threads : {1, 4}) {
    std::printf("| %d | %.1f |\n", threads, NsPerObserve(stats, threads, 2000000));
  }
  return 0;
}
