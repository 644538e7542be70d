// Shared by the C++ benchmarks: the median wall time of a callable.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace uwsgi_prometheus {

// Runs f() `runs` times; returns the median duration in microseconds.
template <typename F>
double MedianUs(int runs, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < runs; ++i) {
    auto a = std::chrono::steady_clock::now();
    f();
    auto b = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(b - a).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace uwsgi_prometheus
