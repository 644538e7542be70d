// Multi-process records -> metric families, with the semantics of
// prometheus_client's MultiProcessCollector: counters, histograms and
// summaries summed over processes; gauges by their mode (all/liveall one
// series per pid; min, max, sum and their live forms; mostrecent by
// timestamp); histogram buckets accumulated, _count from the +Inf bucket.
#pragma once

#include <vector>

#include <prometheus/metric_family.h>

#include "dbfile.h"
#include "dbkey.h"

namespace uwsgi_prometheus {

// Merges `files` (in directory order: float sums and the help text of each
// metric depend on it, as in prometheus_client) and appends one family per
// metric that has samples, unsorted. A metric's type and gauge mode come
// from the first file it appears in; entries of another type are ignored.
void MergeDbFiles(const KeyTable& keys, const std::vector<DbFile>& files,
                  std::vector<prometheus::MetricFamily>* out);

}  // namespace uwsgi_prometheus
