// The process_* numbers Prometheus client libraries export for their own
// process, read from Linux's /proc for the calling process.
#pragma once

#include "snapshot.h"

namespace uwsgi_prometheus {

// Fills `out` from /proc/self; sets out->valid = false if /proc is missing.
void ReadSelfProcess(ProcessSnapshot* out) noexcept;

}  // namespace uwsgi_prometheus
