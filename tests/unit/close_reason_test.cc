// The rate-limited log of unusual connection closes, with a fake clock.
#include "close_reason.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace uwsgi_prometheus {
namespace {

constexpr int64_t kSec = 1000 * 1000 * 1000;

TEST_CASE("unusual closes are logged at most once per reason per interval", "[close_reason]") {
  std::vector<std::string> lines;
  CloseLog log([&lines](const std::string& line) { lines.push_back(line); });
  log.Note(CloseReason::kRequestTimeout, 5 * kSec);
  REQUIRE(lines.size() == 1);
  CHECK_THAT(lines[0], Catch::StartsWith("endpoint closed a connection (request_timeout): "));
  for (int i = 0; i < 3; ++i) log.Note(CloseReason::kRequestTimeout, (6 + i) * kSec);
  log.Note(CloseReason::kBadRequest, 7 * kSec);  // another reason has its own minute
  REQUIRE(lines.size() == 2);
  CHECK_THAT(lines[1], Catch::Contains("(bad_request)"));
  log.Note(CloseReason::kRequestTimeout, 64 * kSec);  // 59 s after the first line
  CHECK(lines.size() == 2);
  log.Note(CloseReason::kRequestTimeout, 65 * kSec);
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[2], Catch::Contains("; 4 more since the last such line"));
  log.Note(CloseReason::kRequestTimeout, 200 * kSec);
  REQUIRE(lines.size() == 4);
  CHECK_THAT(lines[3], !Catch::Contains("more since"));
}

TEST_CASE("routine closes are never logged", "[close_reason]") {
  int calls = 0;
  CloseLog log([&calls](const std::string&) { ++calls; });
  for (auto reason : {CloseReason::kDone, CloseReason::kClientClosed, CloseReason::kIdleTimeout,
                      CloseReason::kShutdown}) {
    log.Note(reason, 0);
  }
  CHECK(calls == 0);
  CloseLog silent(nullptr);
  silent.Note(CloseReason::kError, 0);  // no callback: nothing to do
}

TEST_CASE("a throwing log callback is contained", "[close_reason]") {
  CloseLog log([](const std::string&) { throw std::runtime_error("disk full"); });
  CHECK_NOTHROW(log.Note(CloseReason::kReset, 0));
}

TEST_CASE("every reason has a distinct label value", "[close_reason]") {
  std::vector<std::string> names;
  for (size_t i = 0; i < kCloseReasonCount; ++i) {
    names.push_back(CloseReasonName(static_cast<CloseReason>(i)));
  }
  CHECK(names.front() == "done");
  CHECK(names.back() == "shutdown");
  std::sort(names.begin(), names.end());
  CHECK(std::unique(names.begin(), names.end()) == names.end());
}

}  // namespace
}  // namespace uwsgi_prometheus
