#include "scrape_rows.h"

#include <algorithm>
#include <cstring>
#include <set>
#include <utility>

#include "labels.h"
#include "protobuf.h"
#include "render.h"
#include "text_buffer.h"

namespace uwsgi_prometheus {
namespace model {
namespace {

// Collects one series' labels, given in label-name order, in both forms.
class RowBuilder {
 public:
  RowBuilder(TextBuffer* text, TextBuffer* pb) : text_(text), pb_(pb) {}
  RowBuilder& Label(std::string_view name, std::string_view value) {
    if (text_->size()) text_->push_back(',');
    Append(text_, name);
    Append(text_, "=\"");
    AppendEscapedLabelValue(text_, value);
    text_->push_back('"');
    protobuf::AppendLabel(pb_, name, value);
    key_.emplace_back(value);
    return *this;
  }
  Row Done(const void* item) {
    Row r{std::move(key_), std::string(text_->data(), text_->size()),
          std::string(pb_->data(), pb_->size()), item};
    text_->clear();
    pb_->clear();
    key_.clear();
    return r;
  }

 private:
  TextBuffer* text_;
  TextBuffer* pb_;
  std::vector<std::string> key_;
};

std::string LabelPair(std::string_view name, std::string_view value) {
  TextBuffer b;
  protobuf::AppendLabel(&b, name, value);
  return std::string(b.data(), b.size());
}

void SortRows(std::vector<Row>* rows) {
  std::stable_sort(rows->begin(), rows->end(),
                   [](const Row& a, const Row& b) { return a.key < b.key; });
  rows->erase(std::unique(rows->begin(), rows->end(),
                          [](const Row& a, const Row& b) { return a.key == b.key; }),
              rows->end());
}

// Started workers, sorted by id as text, each with its labels; the
// stats_uri label they share.
void BuildWorkerRows(const Snapshot& s, const std::string& uri, Rows* rows) {
  for (const auto& w : s.workers) {
    if (w.id != 0) rows->workers.emplace_back(&w, w.id);
  }
  std::stable_sort(rows->workers.begin(), rows->workers.end(),
                   [](const WorkerRow& a, const WorkerRow& b) { return a.Id() < b.Id(); });
  rows->workers.erase(std::unique(rows->workers.begin(), rows->workers.end(),
                                  [](const WorkerRow& a, const WorkerRow& b) {
                                    return a.Id() == b.Id();
                                  }),
                      rows->workers.end());
  {
    TextBuffer uri_label;
    Append(&uri_label, "stats_uri=\"");
    AppendEscapedLabelValue(&uri_label, uri);
    uri_label.push_back('"');
    rows->uri_label.assign(uri_label.data(), uri_label.size());
  }
  rows->uri_pb = LabelPair("stats_uri", uri);
  for (auto& wr : rows->workers) {
    wr.labels.reserve(rows->uri_label.size() + 32);
    wr.labels.append("{").append(rows->uri_label).append(",worker_id=\"");
    wr.labels.append(wr.Id()).append("\"} ");
    wr.pb_id = LabelPair("worker_id", wr.Id());
  }
}

}  // namespace

WorkerRow::WorkerRow(const WorkerSnapshot* worker, int id) : w(worker) {
  fmt::format_int text(id);  // points into itself: copy out
  len = text.size();
  std::memcpy(digits, text.data(), len);
}

void BuildRows(const Snapshot& s, const ModelOptions& o, const SelfStats& self, Rows* rows) {
  TextBuffer text, pb;
  RowBuilder b(&text, &pb);
  const std::string uri = SanitizeLabelValue(o.stats_uri, o.max_label_value_bytes);
  auto sane = [&](std::string_view v) { return SanitizeLabelValue(v, o.max_label_value_bytes); };
  auto& r = rows->by_scope;
  r[static_cast<int>(Scope::kServer)].push_back(b.Label("stats_uri", uri).Done(&s));
  r[static_cast<int>(Scope::kProcess)].push_back(b.Done(&s.process));
  r[static_cast<int>(Scope::kSelf)].push_back(b.Done(&self));
  {
    std::set<std::pair<std::string, std::string>> seen;  // first (name, proto) wins
    auto& out = r[static_cast<int>(Scope::kSocket)];
    for (const auto& sock : s.sockets) {
      auto name = sane(sock.name), proto = sane(sock.proto);
      if (!seen.emplace(name, proto).second) continue;
      out.push_back(b.Label("name", name).Label("proto", proto).Label("stats_uri", uri).Done(&sock));
    }
    SortRows(&out);
  }
  BuildWorkerRows(s, uri, rows);
  int max_cores = 0;
  for (const auto& wr : rows->workers) {
    const WorkerSnapshot& w = *wr.w;
    for (const auto& a : w.apps) {
      r[static_cast<int>(Scope::kApp)].push_back(b.Label("app_id", std::to_string(a.id))
                                                     .Label("chdir", sane(a.chdir))
                                                     .Label("mountpoint", sane(a.mountpoint))
                                                     .Label("stats_uri", uri)
                                                     .Label("worker_id", wr.Id())
                                                     .Done(&a));
    }
    for (const auto& c : w.cores) max_cores = std::max(max_cores, c.id + 1);
  }
  for (int c = 0; c < max_cores; ++c) rows->core_ids.push_back(std::to_string(c));
  std::sort(rows->core_ids.begin(), rows->core_ids.end());
  for (const auto& id : rows->core_ids) rows->core_pbs.push_back(LabelPair("core_id", id));
  for (const auto& c : s.caches) {
    r[static_cast<int>(Scope::kCache)].push_back(
        b.Label("name", sane(c.name)).Label("stats_uri", uri).Done(&c));
  }
  SortRows(&r[static_cast<int>(Scope::kApp)]);
  SortRows(&r[static_cast<int>(Scope::kCache)]);
}

bool HasSeries(const Spec& spec, const Rows& rows) {
  switch (spec.scope) {
    case Scope::kWorker:
    case Scope::kWorkerStatus: return !rows.workers.empty();
    case Scope::kCore: return !rows.core_ids.empty() && !rows.workers.empty();
    default: return !rows.by_scope[static_cast<int>(spec.scope)].empty();
  }
}

}  // namespace model
}  // namespace uwsgi_prometheus
