// Binding the endpoint while its address is taken: when to try again and
// what to say in the log.
//
// A busy metrics address (another uWSGI instance on the same port, such as
// two vassals of one Emperor with the default :9117) must not stop the
// application. The plugin lets uWSGI start without the endpoint and binds
// again from the master loop: attempts back off from `first_ns` to
// `max_ns` (1 s, 2 s, 4 s ... then every max), so the endpoint appears at
// most `max_ns` after the address frees. The log gets the first failure
// with the fix, then at most one line per `max_ns` (never one per
// attempt), and a line when the endpoint is finally bound. Times are
// monotonic nanoseconds; nothing here does I/O.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace uwsgi_prometheus {

struct BindRetryOptions {
  int64_t first_ns = int64_t{1000000000};
  int64_t max_ns = int64_t{30} * 1000000000;
};

class BindRetry {
 public:
  // `address` is the option's value as given (for messages), `instance`
  // says which uWSGI this is (DescribeInstance).
  BindRetry(std::string address, std::string instance, BindRetryOptions options);

  // An attempt is due at `now_ns` (always before the first failure).
  bool Due(int64_t now_ns) const { return failures_ == 0 || now_ns >= next_ns_; }
  // Failed attempts since the last success.
  uint64_t failures() const { return failures_; }

  // Records an attempt that failed with `error` (BindListener's message)
  // and schedules the next one. Returns the lines to log: two on the
  // first failure (what happened, the fix), then one per max interval,
  // otherwise none.
  std::vector<std::string> Failed(int64_t now_ns, const std::string& error);

  // Records that the endpoint is bound. Returns the line to log ("" when
  // the first attempt succeeded), and starts afresh.
  std::string Succeeded(int64_t now_ns);

 private:
  std::string Intervals() const;  // "1 s to 30 s"

  std::string address_;
  std::string instance_;
  BindRetryOptions options_;
  uint64_t failures_ = 0;
  int64_t first_failure_ns_ = 0;
  int64_t last_logged_ns_ = 0;
  int64_t next_ns_ = 0;
  int64_t interval_ns_ = 0;  // the wait before the attempt after the next failure
};

// "vassal app2.ini, pid 1234", "/etc/uwsgi/app.ini, pid 1234" or
// "pid 1234": which uWSGI instance a log line speaks for.
std::string DescribeInstance(bool vassal, const std::string& config_file, long pid);

// The lines to log when a busy address stops start-up because
// --prometheus-bind-fail-fast is set.
std::string FailFastMessage(const std::string& address, const std::string& instance,
                            const std::string& error);

}  // namespace uwsgi_prometheus
