// Families added to every scrape besides the snapshot's own: request metrics
// measured in the workers, and the prometheus_client multi-process merge.
// Each function returns a FamilyProvider for Exporter::AddProvider.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "exporter.h"
#include "multiproc.h"
#include "request_stats.h"
#include "snapshot.h"

namespace uwsgi_prometheus {

using LogFunction = std::function<void(const std::string&)>;

// Per-app labels of request metrics: labels[w][0] is "(no app)" (requests no
// app served), labels[w][j + 1] the mountpoint worker w reports for its app
// id j (app ids are per worker), sanitized.
std::vector<std::vector<std::string>> AppLabels(const Snapshot& snapshot);

// Updates `known` (labels as AppLabels gives them) with the apps each worker
// reports now. An app slot the worker does not report at the moment keeps
// its last label: a worker that loads its apps itself (lazy-apps) reports
// none from its respawn until they are loaded again, and its requests must
// stay in their series meanwhile.
void MergeAppLabels(const Snapshot& snapshot, std::vector<std::vector<std::string>>* known);

// The request metrics of `stats` (which must outlive the provider): summed
// over workers unless `per_worker`; with `per_app`, labelled by the app
// labels of every snapshot taken so far (MergeAppLabels), the latest first.
// Unless native histograms are off or the scrape does not want them
// (ScrapeContext::native), each histogram series carries its native
// histogram (ServedFamily::native), which the protobuf format sends.
FamilyProvider RequestStatsProvider(const RequestStats* stats, bool per_app, bool per_worker);

// The same families, and with `native` (non-null) the native histograms of
// their histogram series, read in the same pass (for the protobuf format;
// none when native histograms are off). RequestStatsProvider is this with
// native null.
using RequestFamiliesFunction = std::function<void(const Snapshot&, bool taken,
                                                   std::vector<ServedFamily>*,
                                                   std::vector<NativeSeries>* native)>;
RequestFamiliesFunction RequestFamilies(const RequestStats* stats, bool per_app, bool per_worker);

// The merged families of `collector` (which must outlive the provider) and
// its uwsgi_prometheus_multiproc_* families. A skipped file is logged once
// per file and reason (up to 1000 lines).
FamilyProvider MultiprocProvider(MultiprocCollector* collector, LogFunction log);

}  // namespace uwsgi_prometheus
