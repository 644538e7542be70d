// RenderScrape (model.h): the text exposition of a scrape written straight
// from the snapshot, with the bytes the reference path (BuildFamilies, then
// RenderText) would write.
#include <cstdlib>

#include "model.h"
#include "model_spec.h"
#include "render.h"
#include "scrape_rows.h"

namespace uwsgi_prometheus {

using prometheus::MetricType;

namespace model {
namespace {

// name{stats_uri="...",<middle>worker_id="N"} value
void WorkerSample(const Spec& spec, const Rows& rows, const WorkerRow& wr, std::string_view middle,
                  double value, TextBuffer* out) {
  Append(out, spec.name);
  out->push_back('{');
  Append(out, rows.uri_label);
  out->push_back(',');
  Append(out, middle);
  Append(out, "worker_id=\"");
  Append(out, wr.Id());
  Append(out, "\"} ");
  AppendValue(out, value);
  out->push_back('\n');
}

void RenderStatusSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  char middle[32];
  for (WorkerStatus st : kStatusesByName) {
    auto end = fmt::format_to_n(middle, sizeof middle, "status=\"{}\",", WorkerStatusName(st)).out;
    std::string_view m(middle, static_cast<size_t>(end - middle));
    for (const auto& wr : rows.workers) WorkerSample(spec, rows, wr, m, B(wr.w->status == st), out);
  }
}

// Cores: sorted by core_id (as text), then worker_id.
void RenderCoreSpec(const Spec& spec, const Rows& rows, TextBuffer* out) {
  for (const auto& core_id : rows.core_ids) {
    const int id = std::atoi(core_id.c_str());
    for (const auto& wr : rows.workers) {
      for (const auto& c : wr.w->cores) {
        if (c.id != id) continue;
        Append(out, spec.name);
        Append(out, "{core_id=\"");
        Append(out, core_id);
        Append(out, "\",");
        Append(out, rows.uri_label);
        Append(out, ",worker_id=\"");
        Append(out, wr.Id());
        Append(out, "\"} ");
        AppendValue(out, spec.value(&c));
        out->push_back('\n');
        break;  // one series per (core_id, worker_id), the first wins
      }
    }
  }
}

void RenderSeries(const Spec& spec, const Rows& rows, TextBuffer* out) {
  switch (spec.scope) {
    case Scope::kWorker:
      for (const auto& wr : rows.workers) {
        Append(out, spec.name);
        Append(out, wr.labels);
        AppendValue(out, spec.value(wr.w));
        out->push_back('\n');
      }
      return;
    case Scope::kWorkerStatus: return RenderStatusSpec(spec, rows, out);
    case Scope::kCore: return RenderCoreSpec(spec, rows, out);
    default: break;
  }
  const auto& list = rows.by_scope[static_cast<int>(spec.scope)];
  if (spec.type == MetricType::Summary) {  // the scrape duration summary
    const auto& self = As<SelfStats>(list.front().item);
    Append(out, spec.name);
    Append(out, "_sum ");
    AppendValue(out, self.scrape_duration_sum);
    out->push_back('\n');
    Append(out, spec.name);
    Append(out, "_count ");
    AppendValue(out, static_cast<double>(self.scrape_duration_count));
    out->push_back('\n');
    return;
  }
  for (const auto& row : list) {
    Append(out, spec.name);
    if (!row.labels.empty()) {
      out->push_back('{');
      Append(out, row.labels);
      out->push_back('}');
    }
    out->push_back(' ');
    AppendValue(out, spec.value(row.item));
    out->push_back('\n');
  }
}

}  // namespace
}  // namespace model

void RenderScrape(const Snapshot& snapshot, const ModelOptions& options, const SelfStats& self,
                  const std::vector<ServedFamily>& extra, TextBuffer* out) {
  using namespace model;  // NOLINT(google-build-using-namespace)
  InNameOrder(
      snapshot, options, self, extra,
      [&](const ServedFamily& f) { RenderFamily(f.family, f.bounds, out); },
      [&](const Spec& spec, const Rows& rows) {
        AppendHelpLine(out, spec.name, spec.help);
        AppendTypeLine(out, spec.name, spec.type);
        RenderSeries(spec, rows, out);
      });
}

}  // namespace uwsgi_prometheus
