#include "bind_retry.h"

#include <algorithm>
#include <utility>

namespace uwsgi_prometheus {
namespace {

constexpr int64_t kSecond = 1000000000;

// Whole seconds, rounded to the nearest ("0 s" for under half a second).
std::string Seconds(int64_t ns) { return std::to_string((ns + kSecond / 2) / kSecond) + " s"; }

std::string Option(const std::string& address) {
  return "--prometheus-socket '" + address + "': ";
}

}  // namespace

BindRetry::BindRetry(std::string address, std::string instance, BindRetryOptions options)
    : address_(std::move(address)), instance_(std::move(instance)), options_(options) {
  options_.max_ns = std::max<int64_t>(options_.max_ns, 1);
  options_.first_ns = std::clamp<int64_t>(options_.first_ns, 1, options_.max_ns);
}

std::string BindRetry::Intervals() const {
  if (options_.first_ns == options_.max_ns) return Seconds(options_.max_ns);
  return Seconds(options_.first_ns) + " to " + Seconds(options_.max_ns);
}

std::vector<std::string> BindRetry::Failed(int64_t now_ns, const std::string& error) {
  std::vector<std::string> lines;
  if (failures_++ == 0) {
    first_failure_ns_ = last_logged_ns_ = now_ns;
    interval_ns_ = options_.first_ns;
    lines.push_back(Option(address_) + error + " (" + instance_ +
                    "); uWSGI starts without the metrics endpoint and binds it as soon as the "
                    "address is free (trying again every " + Intervals() + ")");
    lines.push_back(
        "fix: give every instance its own address, e.g. prometheus-socket = "
        "/run/uwsgi/metrics/%(vassal).sock for each vassal of an Emperor (README: \"Many "
        "instances on one host\"); set prometheus-bind-fail-fast = true to stop start-up on a "
        "busy address instead");
  } else if (now_ns - last_logged_ns_ >= options_.max_ns) {
    last_logged_ns_ = now_ns;
    lines.push_back(Option(address_) + error + " (" + instance_ + "), " +
                    std::to_string(failures_) + " attempts in " +
                    Seconds(now_ns - first_failure_ns_) +
                    "; still no metrics endpoint, next attempt in " + Seconds(interval_ns_));
  }
  next_ns_ = now_ns + interval_ns_;
  interval_ns_ = std::min(interval_ns_ * 2, options_.max_ns);
  return lines;
}

std::string BindRetry::Succeeded(int64_t now_ns) {
  std::string line;
  if (failures_ > 0) {
    line = Option(address_) + "bound after " + std::to_string(failures_) +
           " failed attempts in " + Seconds(now_ns - first_failure_ns_) +
           "; the metrics endpoint is up";
  }
  failures_ = 0;
  return line;
}

std::string DescribeInstance(bool vassal, const std::string& config_file, long pid) {
  std::string text;
  if (!config_file.empty()) text = (vassal ? "vassal " : "") + config_file + ", ";
  return text + "pid " + std::to_string(pid);
}

std::string FailFastMessage(const std::string& address, const std::string& instance,
                            const std::string& error) {
  return Option(address) + error + " (" + instance +
         "); stopping because prometheus-bind-fail-fast is set: give every instance its own "
         "address (README: \"Many instances on one host\"), or drop "
         "prometheus-bind-fail-fast to start without the endpoint and bind it when the "
         "address frees";
}

}  // namespace uwsgi_prometheus
