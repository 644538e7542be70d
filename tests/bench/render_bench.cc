// Time to turn one snapshot into exposition text: the reference path
// (prometheus-cpp data model + renderer) against the direct renderer a
// scrape uses; and the same for the protobuf format (the reference model +
// encoder against the direct writer). Prints a table; run:
// build/tests/render_bench [runs]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "../unit/fake_source.h"
#include "median.h"
#include "model.h"
#include "protobuf.h"
#include "render.h"

using namespace uwsgi_prometheus;

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 200;
  ModelOptions o;
  o.stats_uri = "tcp://127.0.0.1:1717";
  SelfStats self;
  std::printf("| workers | text: reference us | direct us | ratio | bytes "
              "| protobuf: reference us | direct us | ratio | bytes |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int workers : {4, 16, 64, 256}) {
    Snapshot s = MakeSnapshot(workers);
    TextBuffer buf;
    size_t bytes = 0;
    double ref = MedianUs(runs, [&] {
      std::vector<prometheus::MetricFamily> fs;
      BuildFamilies(s, o, self, &fs);
      buf.clear();
      RenderText(fs, &buf);
      bytes = buf.size();
    });
    double direct = MedianUs(runs, [&] {
      buf.clear();
      RenderScrape(s, o, self, {}, &buf);
    });
    double proto_ref = MedianUs(runs, [&] {
      std::vector<prometheus::MetricFamily> fs;
      BuildFamilies(s, o, self, &fs);
      buf.clear();
      for (const auto& f : fs) EncodeFamily(f, nullptr, &buf);
    });
    size_t proto_bytes = 0;
    double proto = MedianUs(runs, [&] {
      buf.clear();
      EncodeScrape(s, o, self, {}, &buf);
      proto_bytes = buf.size();
    });
    std::printf("| %d | %.1f | %.1f | %.1fx | %zu | %.1f | %.1f | %.1fx | %zu |\n", workers, ref,
                direct, ref / direct, bytes, proto_ref, proto, proto_ref / proto, proto_bytes);
  }
  return 0;
}
