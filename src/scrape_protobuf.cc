// EncodeScrape (model.h): the protobuf exposition of a scrape written
// straight from the snapshot, with the bytes the reference path
// (BuildFamilies, then EncodeFamily) would write. The twin of
// scrape_text.cc, from the same rows: only the label form differs.
#include <cstdlib>

#include "model.h"
#include "model_spec.h"
#include "protobuf.h"
#include "scrape_rows.h"

namespace uwsgi_prometheus {

using prometheus::MetricType;

namespace model {
namespace {

void EncodeStatusSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  for (WorkerStatus st : kStatusesByName) {
    TextBuffer status;
    protobuf::AppendLabel(&status, "status", WorkerStatusName(st));
    const std::string_view pb(status.data(), status.size());
    for (const auto& wr : rows.workers) {
      protobuf::AppendSample(out, spec.type, {rows.uri_pb, pb, wr.pb_id}, B(wr.w->status == st));
    }
  }
}

// Cores: sorted by core_id (as text), then worker_id.
void EncodeCoreSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  for (size_t i = 0; i < rows.core_ids.size(); ++i) {
    const int id = std::atoi(rows.core_ids[i].c_str());
    for (const auto& wr : rows.workers) {
      for (const auto& c : wr.w->cores) {
        if (c.id != id) continue;
        protobuf::AppendSample(out, spec.type, {rows.core_pbs[i], rows.uri_pb, wr.pb_id},
                               spec.value(&c));
        break;  // one series per (core_id, worker_id), the first wins
      }
    }
  }
}

void EncodeSeries(const Spec& spec, const Rows& rows, TextBuffer* out) {
  switch (spec.scope) {
    case Scope::kWorker:
      for (const auto& wr : rows.workers) {
        protobuf::AppendSample(out, spec.type, {rows.uri_pb, wr.pb_id}, spec.value(wr.w));
      }
      return;
    case Scope::kWorkerStatus: return EncodeStatusSpec(spec, rows, out);
    case Scope::kCore: return EncodeCoreSpec(spec, rows, out);
    default: break;
  }
  const auto& list = rows.by_scope[static_cast<int>(spec.scope)];
  if (spec.type == MetricType::Summary) {  // the scrape duration summary
    const auto& self = As<SelfStats>(list.front().item);
    protobuf::AppendSummarySample(out, self.scrape_duration_count, self.scrape_duration_sum);
    return;
  }
  for (const auto& row : list) {
    protobuf::AppendSample(out, spec.type, {row.pb}, spec.value(row.item));
  }
}

}  // namespace
}  // namespace model

void EncodeScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out) {
  using namespace model;  // NOLINT(google-build-using-namespace)
  InNameOrder(
      snapshot, options, self, extra,
      [&](const ServedFamily& f) { EncodeFamily(f.family, &f.native, out); },
      [&](const Spec& spec, const Rows& rows) {
        const size_t mark = protobuf::BeginFamily(out, spec.name, spec.help, spec.type);
        EncodeSeries(spec, rows, out);
        protobuf::EndFamily(out, mark);
      });
}

}  // namespace uwsgi_prometheus
