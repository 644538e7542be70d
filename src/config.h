// The plugin's options: RawConfig is what uWSGI's option parser read (text as
// given, flags as set); ResolveConfig checks and converts it into Config,
// with errors in the form "--prometheus-socket 'value': reason" that the
// plugin logs before it stops uWSGI.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "exporter.h"
#include "listen_address.h"
#include "request_stats.h"

namespace uwsgi_prometheus {

struct RawConfig {
  std::optional<std::string> socket;         // --prometheus-socket
  std::optional<std::string> path;           // --prometheus-path
  std::optional<std::string> stats_uri;      // --prometheus-stats-uri
  std::optional<std::string> buckets;        // --prometheus-buckets
  std::optional<std::string> multiproc_dir;  // --prometheus-multiproc-dir
  std::optional<std::string> web_config;     // --prometheus-web-config
  bool collect_cores = false;                // --prometheus-collect-cores
  bool per_app = false;                      // --prometheus-per-app
  bool per_worker = false;                   // --prometheus-per-worker
  bool bind_fail_fast = false;               // --prometheus-bind-fail-fast
  std::optional<std::string> bind_retry;     // --prometheus-bind-retry (seconds)
  std::optional<std::string> native_schema;          // --prometheus-native-schema
  std::optional<std::string> native_duration_range;  // --prometheus-native-duration-range
  std::optional<std::string> native_size_range;      // --prometheus-native-size-range
  // Not an option: what %(vassal) in --prometheus-socket stands for, the
  // instance's config file name (InstanceName); empty when it has none.
  std::string instance_name;
};

struct Config {
  ListenAddress address;                 // default :9117; never port 0
  std::string metrics_path = "/metrics";
  std::optional<std::string> stats_uri;  // unset: derived from uWSGI's --stats
  std::vector<double> buckets;           // request duration bounds, seconds
  std::string multiproc_dir;             // empty: off; no trailing '/'
  std::string web_config;                // empty: none (plain HTTP, open)
  bool collect_cores = false;
  bool per_app = false;
  bool per_worker = false;
  bool bind_fail_fast = false;   // a busy address stops start-up
  int bind_retry_max_s = 30;     // longest wait between bind attempts, 1..3600
  NativeOptions native;          // native histograms of request duration and size
};

// Fills `config` from `raw`; on the first bad option returns false with
// "--prometheus-<option> '<value>': <reason>" in `error`.
bool ResolveConfig(const RawConfig& raw, Config* config, std::string* error);

// The name %(vassal) stands for: the file name of `config_file` (as uWSGI
// got it: "app1.ini", "/etc/uwsgi/vassals/app1.yaml", "app.ini:section",
// "exec://app.sh") without directory, section and extension ("app1");
// "" when there is none.
std::string InstanceName(const std::string& config_file);

// "--prometheus-<option> '<value>': <reason>", for errors found later (a
// busy port, a directory that cannot be created).
std::string OptionError(std::string_view option, std::string_view value, std::string_view reason);

// The endpoint's options; `stats_uri` is used when the configuration names
// none.
// `version` is the plugin's, `uwsgi_version` the uWSGI it runs in (for
// uwsgi_prometheus_build_info).
ExporterOptions ExporterOptionsFor(const Config& config, const std::string& stats_uri,
                                   const std::string& version, const std::string& uwsgi_version);

// The request table for `workers` workers: one slot per worker, or with
// per_app one per app id of each worker plus slot 0 for requests no app
// served.
RequestStatsOptions RequestStatsOptionsFor(const Config& config, int workers, int max_apps);

}  // namespace uwsgi_prometheus
