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

bool ResolveNative(const RawConfig& raw, Config* config, std::string* error) {
  NativeOptions& native = config->native;
  native = NativeOptions();
  std::string reason;
  if (raw.native_schema && !ParseNativeSchema(*raw.native_schema, &native, &reason)) {
    *error = OptionError("native-schema", *raw.native_schema, reason);
    return false;
  }
  if (raw.native_duration_range &&
      !ParseNativeRange(*raw.native_duration_range, &native.duration_min, &native.duration_max,
                        &reason)) {
    *error = OptionError("native-duration-range", *raw.native_duration_range, reason);
    return false;
  }
  if (raw.native_size_range && !ParseNativeRange(*raw.native_size_range, &native.size_min,
                                                 &native.size_max, &reason)) {
    *error = OptionError("native-size-range", *raw.native_size_range, reason);
    return false;
  }
  if (!native.enabled) return true;
  // Too many buckets: blame the range when one was given, else the schema.
  const std::optional<std::string>* given[] = {&raw.native_duration_range,
                                               &raw.native_size_range};
  const char* names[] = {"native-duration-range", "native-size-range"};
  const double mins[] = {native.duration_min, native.size_min};
  const double maxs[] = {native.duration_max, native.size_max};
  for (int i = 0; i < 2; ++i) {
    if (CheckNativeRange(mins[i], maxs[i], native.schema, &reason)) continue;
    *error = *given[i] ? OptionError(names[i], **given[i], reason)
                       : OptionError("native-schema", raw.native_schema.value_or("3"), reason);
    return false;
  }
  return true;
}

constexpr std::string_view kVassal = "%(vassal)";

// --prometheus-socket with every %(vassal) replaced by the instance's name.
bool ExpandSocket(const RawConfig& raw, std::string* socket, std::string* error) {
  const std::string given = *socket;
  for (size_t at = socket->find(kVassal); at != std::string::npos;
       at = socket->find(kVassal, at + raw.instance_name.size())) {
    if (raw.instance_name.empty()) {
      *error = OptionError("socket", given,
                           "%(vassal) stands for the name of the instance's config file, and this "
                           "uWSGI was started without one (--ini, --yaml, --json, --xml); give the "
                           "address without it");
      return false;
    }
    socket->replace(at, kVassal.size(), raw.instance_name);
  }
  return true;
}

bool ResolveSocket(const RawConfig& raw, Config* config, std::string* error) {
  std::string socket = raw.socket.value_or(":9117");
  if (!ExpandSocket(raw, &socket, error)) return false;
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

bool ResolveBindRetry(const RawConfig& raw, Config* config, std::string* error) {
  config->bind_fail_fast = raw.bind_fail_fast;
  config->bind_retry_max_s = 30;
  if (!raw.bind_retry) return true;
  const std::string& text = *raw.bind_retry;
  const bool digits = !text.empty() && text.size() <= 4 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
  const int seconds = digits ? std::stoi(text) : 0;
  if (seconds < 1 || seconds > 3600) {
    *error = OptionError("bind-retry", text,
                         "give the longest wait between bind attempts in whole seconds, 1 to "
                         "3600 (default 30)");
    return false;
  }
  config->bind_retry_max_s = seconds;
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

std::string InstanceName(const std::string& config_file) {
  std::string name = config_file;
  const size_t scheme = name.find("://");
  if (scheme != std::string::npos) name.erase(0, scheme + 3);
  const size_t slash = name.rfind('/');
  if (slash != std::string::npos) name.erase(0, slash + 1);
  const size_t section = name.rfind(':');  // uWSGI's "file.ini:section"
  if (section != std::string::npos) name.erase(section);
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos && dot > 0) name.erase(dot);
  return name;
}

std::string OptionError(std::string_view option, std::string_view value, std::string_view reason) {
  std::string out = "--prometheus-";
  out.append(option).append(" '").append(value).append("': ").append(reason);
  return out;
}

bool ResolveConfig(const RawConfig& raw, Config* config, std::string* error) {
  if (!ResolvePath(raw, config, error) || !ResolveBuckets(raw, config, error) ||
      !ResolveSocket(raw, config, error) || !ResolveMultiprocDir(raw, config, error) ||
      !ResolveBindRetry(raw, config, error) || !ResolveWebConfig(raw, config, error) ||
      !ResolveNative(raw, config, error)) {
    return false;
  }
  config->stats_uri = raw.stats_uri;
  config->collect_cores = raw.collect_cores;
  config->per_app = raw.per_app;
  config->per_worker = raw.per_worker;
  return true;
}

ExporterOptions ExporterOptionsFor(const Config& config, const std::string& stats_uri,
                                   const std::string& version, const std::string& uwsgi_version) {
  ExporterOptions options;
  options.metrics_path = config.metrics_path;
  options.model.collect_cores = config.collect_cores;
  options.model.stats_uri = config.stats_uri.value_or(stats_uri);
  options.version = version;
  options.uwsgi_version = uwsgi_version;
  return options;
}

RequestStatsOptions RequestStatsOptionsFor(const Config& config, int workers, int max_apps) {
  RequestStatsOptions options;
  options.duration_bounds = config.buckets;
  options.workers = static_cast<uint32_t>(workers > 0 ? workers : 1);
  options.apps = config.per_app ? static_cast<uint32_t>(max_apps > 0 ? max_apps : 0) + 1 : 1;
  options.native = config.native;
  return options;
}

}  // namespace uwsgi_prometheus
