// The table of built-in families (kSpecs in model.cc) as the scrape writers
// see it. Internal to the model: model.cc builds the reference families from
// it, scrape_text.cc and scrape_protobuf.cc write a scrape straight from the
// snapshot with it.
#pragma once

#include <vector>

#include <prometheus/metric_type.h>

#include "model_options.h"
#include "snapshot.h"

namespace uwsgi_prometheus {
namespace model {

// What one series of a family is about; the scope decides its labels.
enum class Scope { kServer, kSocket, kWorker, kWorkerStatus, kApp, kCore, kCache, kProcess, kSelf };
inline constexpr int kScopes = static_cast<int>(Scope::kSelf) + 1;

struct Spec {
  const char* name;
  const char* help;
  prometheus::MetricType type;
  Scope scope;
  double (*value)(const void* item);  // null for the status and summary families
};

template <typename T>
const T& As(const void* p) {
  return *static_cast<const T*>(p);
}

inline double B(bool v) { return v ? 1.0 : 0.0; }

// Every spec, sorted by family name (the order of the exposition).
const std::vector<const Spec*>& SpecsByName();

// Whether the family is part of this scrape (cores only when collected,
// uWSGI's families only when the snapshot was taken).
bool Enabled(const Spec& spec, const Snapshot& s, const ModelOptions& o, const SelfStats& self);

// Worker statuses in label-value order.
inline constexpr WorkerStatus kStatusesByName[] = {WorkerStatus::kBusy, WorkerStatus::kCheap,
                                                   WorkerStatus::kIdle, WorkerStatus::kPause,
                                                   WorkerStatus::kSig};

}  // namespace model
}  // namespace uwsgi_prometheus
