// Prints the merged exposition of a prometheus_client multi-process
// directory, as the plugin would serve it; skipped files go to stderr.
//   multiproc_dump DIR
#include <cstdio>

#include "model.h"
#include "multiproc.h"
#include "render.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  uwsgi_prometheus::MultiprocCollector collector(argv[1]);
  std::vector<prometheus::MetricFamily> families;
  collector.Collect(&families, [](const uwsgi_prometheus::SkippedFile& skip) {
    std::fprintf(stderr, "skipped %s: %s\n", skip.file.c_str(), skip.why.c_str());
  });
  uwsgi_prometheus::Normalize(&families);
  std::fputs(uwsgi_prometheus::RenderText(families, uwsgi_prometheus::kMergedBoundSpelling).c_str(),
             stdout);
  return 0;
}
