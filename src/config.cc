#include "config.h"

namespace uwsgi_prometheus {

namespace {

bool ResolvePath(const RawConfig& raw, Config* config, std::string* error) {
  const std::string path = raw.path.value_or("/metrics");
  if (path.empty() || path[0] != '/' || path.find_first_of(" \t\r\n?#") != std::string::npos) {
    *error = OptionError("path", path, "must start with '/' and contain no spaces, '?' or '#'");
    return false;
  }
  if (path == "/" || path == "/-/healthy") {
    *error = OptionError("path", path,
                         "that path is taken by the landing page or the health probe; pick "
                         "another, e.g. /metrics");
    return false;
  }
  config->metrics_path = path;
  return true;
}

bool ResolveBuckets(const RawConfig& raw, Config* config, std::string* error) {
  config->buckets = DefaultDurationBounds();
  if (!raw.buckets) return true;
  std::string reason;
  if (ParseBuckets(*raw.buckets, &config->buckets, &reason)) return true;
  *error = OptionError("buckets", *raw.buckets, reason);
  return false;
}

bool ResolveSocket(const RawConfig& raw, Config* config, std::string* error) {
  const std::string socket = raw.socket.value_or(":9117");
  std::string reason;
  if (!ParseListenAddress(socket, &config->address, &reason)) {
    *error = OptionError("socket", socket, reason);
    return false;
  }
  if (config->address.kind == ListenAddress::Kind::kTcp && config->address.port == 0) {
    *error = OptionError("socket", socket, "port 0 is not allowed; give a port, e.g. :9117");
    return false;
  }
  return true;
}

bool ResolveMultiprocDir(const RawConfig& raw, Config* config, std::string* error) {
  config->multiproc_dir.clear();
  if (!raw.multiproc_dir) return true;
  std::string dir = *raw.multiproc_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) {
    *error = OptionError("multiproc-dir", dir, "empty path");
    return false;
  }
  config->multiproc_dir = dir;
  return true;
}

bool ResolveWebConfig(const RawConfig& raw, Config* config, std::string* error) {
  config->web_config.clear();
  if (!raw.web_config) return true;
  if (raw.web_config->empty()) {
    *error = OptionError("web-config", "", "empty path; give the web configuration file");
    return false;
  }
  config->web_config = *raw.web_config;
  return true;
}

}  // namespace

std::string OptionError(std::string_view option, std::string_view value, std::string_view reason) {
  std::string out = "--prometheus-";
  out.append(option).append(" '").append(value).append("': ").append(reason);
  return out;
}

bool ResolveConfig(const RawConfig& raw, Config* config, std::string* error) {
  if (!ResolvePath(raw, config, error) || !ResolveBuckets(raw, config, error) ||
      !ResolveSocket(raw, config, error) || !ResolveMultiprocDir(raw, config, error) ||
      !ResolveWebConfig(raw, config, error)) {
    return false;
  }
  config->stats_uri = raw.stats_uri;
  config->collect_cores = raw.collect_cores;
  config->per_app = raw.per_app;
  config->per_worker = raw.per_worker;
  return true;
}

ExporterOptions ExporterOptionsFor(const Config& config, const std::string& stats_uri,
                                   const std::string& version) {
  ExporterOptions options;
  options.metrics_path = config.metrics_path;
  options.model.collect_cores = config.collect_cores;
  options.model.stats_uri = config.stats_uri.value_or(stats_uri);
  options.version = version;
  return options;
}

RequestStatsOptions RequestStatsOptionsFor(const Config& config, int workers, int max_apps) {
  RequestStatsOptions options;
  options.duration_bounds = config.buckets;
  options.workers = static_cast<uint32_t>(workers > 0 ? workers : 1);
  options.apps = config.per_app ? static_cast<uint32_t>(max_apps > 0 ? max_apps : 0) + 1 : 1;
  return options;
}

}  // namespace uwsgi_prometheus
