// One scrape's series, built once from the snapshot and shared by every
// built-in family of the direct writers (scrape_text.cc, scrape_protobuf.cc):
// each series' labels in label-name order, as text (a="x",b="y", escaped)
// and as protobuf LabelPair fields, sorted as the exposition sorts them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model_spec.h"
#include "render.h"

namespace uwsgi_prometheus {
namespace model {

struct Row {
  std::vector<std::string> key;  // label values, what the series sort by
  std::string labels;            // a="x",b="y"
  std::string pb;                // the LabelPair fields of the same labels
  const void* item;
};

// A started worker with its id in text; workers are kept sorted by that
// text, the order their series sort in.
struct WorkerRow {
  WorkerRow(const WorkerSnapshot* worker, int id);
  std::string_view Id() const { return std::string_view(digits, len); }

  const WorkerSnapshot* w;
  char digits[24];
  size_t len;
  std::string labels;  // {stats_uri="...",worker_id="N"} with the trailing space
  std::string pb_id;   // the worker_id LabelPair
};

// Worker, status and core series are written straight from `workers`, with
// the shared stats_uri label and the core ids; the other scopes have rows.
struct Rows {
  std::vector<Row> by_scope[kScopes];
  std::vector<WorkerRow> workers;
  std::string uri_label;               // stats_uri="..." escaped
  std::string uri_pb;                  // the stats_uri LabelPair
  std::vector<std::string> core_ids;   // "0", "1", ... in text order
  std::vector<std::string> core_pbs;   // their core_id LabelPairs, same order
};

void BuildRows(const Snapshot& s, const ModelOptions& o, const SelfStats& self, Rows* rows);

// Whether the family has any series in this scrape.
bool HasSeries(const Spec& spec, const Rows& rows);

// Visits the families of a scrape in name order: each built-in family with
// series in it (`spec_fn(spec, rows)`) and each of `extra` (`extra_fn`),
// which is sorted by name and holds no built-in name.
template <typename ExtraFn, typename SpecFn>
void InNameOrder(const Snapshot& s, const ModelOptions& o, const SelfStats& self,
                 const std::vector<ServedFamily>& extra, ExtraFn extra_fn, SpecFn spec_fn) {
  Rows rows;
  BuildRows(s, o, self, &rows);
  size_t e = 0;
  for (const Spec* spec : SpecsByName()) {
    for (; e < extra.size() && extra[e].family.name < spec->name; ++e) extra_fn(extra[e]);
    if (Enabled(*spec, s, o, self) && HasSeries(*spec, rows)) spec_fn(*spec, rows);
  }
  for (; e < extra.size(); ++e) extra_fn(extra[e]);
}

}  // namespace model
}  // namespace uwsgi_prometheus
