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
#include "render.h"

namespace uwsgi_prometheus {

// How the merged histograms' `le` must be spelled. MultiProcessCollector
// (prometheus_client 0.16, multiprocess.py _accumulate_metrics) does not keep
// the stored string: it reads it as float(le), adds up the buckets of equal
// bounds, sorts them by value and writes floatToGoString(bound): a stored "1"
// or "1.0" is served as le="1.0", "1e3" as le="1000.0", 1e6 as le="1e+06".
// The merge keeps bounds as numbers (KeyTable::le); serve the families it
// makes with this spelling.
inline constexpr BoundSpelling kMergedBoundSpelling = BoundSpelling::kPythonClient;

// Merges `files` (in directory order: float sums and the help text of each
// metric depend on it, as in prometheus_client) and appends one family per
// metric that has samples, unsorted. A metric's type and gauge mode come
// from the first file it appears in; entries of another type are ignored.
void MergeDbFiles(const KeyTable& keys, const std::vector<DbFile>& files,
                  std::vector<prometheus::MetricFamily>* out);

}  // namespace uwsgi_prometheus
