#include "multiproc.h"

namespace uwsgi_prometheus {

namespace {

// Keys remembered at most: a directory whose keys keep changing (labels
// with ever-new values) must not grow the table without bound.
constexpr size_t kMaxRememberedKeys = 200000;

}  // namespace

void MultiprocCollector::Collect(std::vector<prometheus::MetricFamily>* out,
                                 const SkipHandler& skipped) {
  if (keys_.size() + keys_.bad_size() > kMaxRememberedKeys) keys_.Clear();
  files_.clear();
  stats_.files_read += ReadMultiprocDir(dir_, max_file_bytes_, &keys_, &files_,
                                        [&](const SkippedFile& skip) {
                                          ++stats_.files_skipped;
                                          skipped(skip);
                                        });
  MergeDbFiles(keys_, files_, out);
}

}  // namespace uwsgi_prometheus
