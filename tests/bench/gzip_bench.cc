// gzip of a scrape body: zlib (which uWSGI already links) against libdeflate,
// at the levels worth considering, on the plugin's own exposition text.
// Prints bytes, median compression time and the compressor's heap.
//
//   build/tests/gzip_bench [runs] [scrape.txt ...]
//
// Without files it renders synthetic snapshots of 4, 64, 256 and 1,024
// workers (with and without per-core families); with files it compresses
// those (e.g. real scrapes saved with curl).
#include <malloc.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <libdeflate.h>

#include "../unit/fake_source.h"
#include "median.h"
#include "model.h"
#include "render.h"

using namespace uwsgi_prometheus;

namespace {

struct Input {
  std::string name;
  std::string text;
};

struct Result {
  size_t bytes = 0;
  double median_us = 0;
  size_t heap = 0;
};

size_t HeapInUse() { return mallinfo2().uordblks; }

Result Zlib(const std::string& in, int level, int runs) {
  Result r;
  const size_t before = HeapInUse();
  z_stream z{};
  if (deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<unsigned char> out(deflateBound(&z, in.size()));
  r.heap = HeapInUse() - before;
  r.median_us = MedianUs(runs, [&] {
    deflateReset(&z);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) std::abort();
    r.bytes = out.size() - z.avail_out;
  });
  deflateEnd(&z);
  return r;
}

Result Libdeflate(const std::string& in, int level, int runs) {
  Result r;
  const size_t before = HeapInUse();
  libdeflate_compressor* c = libdeflate_alloc_compressor(level);
  if (!c) std::abort();
  std::vector<char> out(libdeflate_gzip_compress_bound(c, in.size()));
  r.heap = HeapInUse() - before;
  r.median_us = MedianUs(runs, [&] {
    r.bytes = libdeflate_gzip_compress(c, in.data(), in.size(), out.data(), out.size());
    if (r.bytes == 0) std::abort();
  });
  libdeflate_free_compressor(c);
  return r;
}

std::vector<Input> SyntheticInputs() {
  std::vector<Input> inputs;
  ModelOptions o;
  o.stats_uri = "unix:///run/uwsgi/stats.sock";
  SelfStats self;
  for (bool cores : {false, true}) {
    o.collect_cores = cores;
    for (int workers : {4, 64, 256, 1024}) {
      TextBuffer buf;
      RenderScrape(MakeSnapshot(workers, cores ? 2 : 1), o, self, {}, &buf);
      inputs.push_back({std::to_string(workers) + (cores ? " +cores" : ""),
                        std::string(buf.data(), buf.size())});
    }
  }
  return inputs;
}

void PrintRow(const Input& in, const char* lib, int level, const Result& r, double base_us) {
  std::printf("| %s | %zu | %s %d | %zu | %.2f | %.0f | %.2fx | %zu |\n", in.name.c_str(),
              in.text.size(), lib, level, r.bytes,
              static_cast<double>(in.text.size()) / static_cast<double>(r.bytes), r.median_us,
              r.median_us / base_us, r.heap / 1024);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<Input> inputs;
  for (int i = 2; i < argc; ++i) {
    std::ifstream f(argv[i], std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    inputs.push_back({argv[i], ss.str()});
  }
  if (inputs.empty()) inputs = SyntheticInputs();
  std::printf("| input | identity B | codec | gzip B | ratio | median us | time vs zlib 6 | heap KiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Input& in : inputs) {
    const Result z6 = Zlib(in.text, 6, runs);
    for (int level : {1, 6}) {
      PrintRow(in, "zlib", level, level == 6 ? z6 : Zlib(in.text, level, runs), z6.median_us);
    }
    for (int level : {1, 6}) {
      PrintRow(in, "libdeflate", level, Libdeflate(in.text, level, runs), z6.median_us);
    }
  }
  return 0;
}
