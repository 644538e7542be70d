// Worker-side cost of the request metrics: nanoseconds per Observe() (what
// the after-request hook does), one thread alone and four threads of one
// worker sharing a slot, with classic histograms only and with native
// histograms as well. The two tables are measured in turns in the same run
// and each figure is the median of the runs. Prints a table and exits 1 when
// the native path is over its per-request budget: twice the classic path's
// cost in the same run (30 ns on a quiet machine, where the classic path
// takes 15 ns; a loaded machine slows both). Run:
// build/tests/observe_bench [runs]
#include <algorithm>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "request_stats.h"

using namespace uwsgi_prometheus;

namespace {

constexpr double kBudgetFactor = 2;  // native over classic-only, one thread alone

double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

struct Cost {
  double wall_ns;  // wall time / requests
  double cpu_ns;   // the threads' CPU time / requests: what preemption does not inflate
};

Cost NsPerObserve(RequestStats& stats, int threads, int per_thread) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  std::vector<double> cpu(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&stats, &cpu, per_thread, t] {
      static const int kCodes[] = {200, 200, 200, 404, 500, 302};
      const double cpu_start = ThreadCpuNs();
      for (int i = 0; i < per_thread; ++i) {
        stats.Observe({1, 0, static_cast<uint64_t>((i * 7919) % 300000), 512u + i % 4096,
                       kCodes[(i + t) % 6], i % 5 ? "GET" : "POST"});
      }
      cpu[t] = ThreadCpuNs() - cpu_start;
    });
  }
  for (auto& th : pool) th.join();
  auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  const double requests = static_cast<double>(threads) * per_thread;
  double cpu_ns = 0;
  for (double c : cpu) cpu_ns += c;
  return {ns.count() / requests, cpu_ns / requests};
}

bool Make(bool native, RequestStats* stats) {
  RequestStatsOptions o;
  o.duration_bounds = DefaultDurationBounds();
  o.workers = 4;
  o.native.enabled = native;
  std::string error;
  if (stats->Create(o, &error)) return true;
  std::fprintf(stderr, "%s\n", error.c_str());
  return false;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(1, std::atoi(argv[1])) : 7;
  RequestStats classic, native;
  if (!Make(false, &classic) || !Make(true, &native)) return 1;
  NsPerObserve(classic, 1, 100000);  // warm up
  NsPerObserve(native, 1, 100000);
  const int kThreads[] = {1, 4};
  std::vector<double> wall[2][2], cpu[2][2];  // [native][threads]
  for (int run = 0; run < runs; ++run) {
    for (int t = 0; t < 2; ++t) {
      for (int n = 0; n < 2; ++n) {
        const Cost c = NsPerObserve(n ? native : classic, kThreads[t], 2000000);
        wall[n][t].push_back(c.wall_ns);
        cpu[n][t].push_back(c.cpu_ns);
      }
    }
  }
  std::printf("median of %d runs, ns per request: wall / requests (CPU of the threads / "
              "requests)\n\n", runs);
  std::printf("| threads sharing one worker slot | classic only | classic + native | added |\n"
              "|---|---|---|---|\n");
  for (int t = 0; t < 2; ++t) {
    const double c = Median(wall[0][t]), n = Median(wall[1][t]);
    const double cc = Median(cpu[0][t]), nc = Median(cpu[1][t]);
    std::printf("| %d | %.1f (%.1f) | %.1f (%.1f) | %+.1f (%+.1f) |\n", kThreads[t], c, cc, n, nc,
                n - c, nc - cc);
  }
  const double alone = Median(wall[1][0]), budget = kBudgetFactor * Median(wall[0][0]);
  std::printf("\nbudget, one thread with native histograms: %.0fx classic = %.1f ns: %s (%.1f ns)\n",
              kBudgetFactor, budget, alone <= budget ? "within" : "OVER", alone);
  return alone <= budget ? 0 : 1;
}
