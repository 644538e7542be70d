#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include <catch2/catch.hpp>

#include "db_files.h"
#include "multiproc.h"
#include "render.h"

using namespace uwsgi_prometheus;
using prometheus::MetricFamily;

namespace {

// Files merged as the reader would hand them over: keys interned in `keys`.
class Records {
 public:
  Records& File(const std::string& name, const std::vector<DbTestEntry>& entries) {
    DbFile f;
    REQUIRE(ParseDbFileName(name, &f));
    for (const auto& e : entries) {
      std::string error;
      const int32_t id = keys_.Intern(e.key, &error);
      REQUIRE(id != KeyTable::kInvalid);
      f.entries.emplace_back(id, DbEntry{{}, e.value, e.timestamp});
    }
    files_.push_back(std::move(f));
    return *this;
  }
  // The merged exposition as served, families in merge order.
  std::string Text() const {
    std::vector<MetricFamily> families;
    MergeDbFiles(keys_, files_, &families);
    return RenderText(families, kMergedBoundSpelling);
  }

 private:
  KeyTable keys_;
  std::vector<DbFile> files_;
};

std::string Key(const std::string& metric, const std::string& sample, const std::string& labels,
                const std::string& help = "H.") {
  return "[\"" + metric + "\", \"" + sample + "\", {" + labels + "}, \"" + help + "\"]";
}

}  // namespace

TEST_CASE("counters add up over processes, one help text per metric", "[multiproc]") {
  Records r;
  r.File("counter_1.db", {{Key("jobs", "jobs_total", R"("k": "a")", "First."), 1}});
  r.File("counter_2.db", {{Key("jobs", "jobs_total", R"("k": "a")", "Second."), 2.5},
                          {Key("jobs", "jobs_created", R"("k": "a")"), 9}});
  CHECK(r.Text() == "# HELP jobs_total First.\n# TYPE jobs_total counter\n"
                    "jobs_total{k=\"a\"} 3.5\n");
}

TEST_CASE("gauges merge by their mode", "[multiproc]") {
  auto two = [](const std::string& mode, double a, double b) {
    Records r;
    r.File("gauge_" + mode + "_10.db", {{Key("g", "g", R"("x": "1")"), a, 1795000002}});
    r.File("gauge_" + mode + "_20.db", {{Key("g", "g", R"("x": "1")"), b, 1795000001}});
    const std::string text = r.Text();
    return text.substr(text.find("# TYPE g gauge\n") + 15);
  };
  CHECK(two("min", 4, -2) == "g{x=\"1\"} -2\n");
  CHECK(two("livemax", 4, -2) == "g{x=\"1\"} 4\n");
  CHECK(two("sum", 4, -2) == "g{x=\"1\"} 2\n");
  CHECK(two("mostrecent", 4, -2) == "g{x=\"1\"} 4\n");  // the newer timestamp
  CHECK(two("all", 4, -2) == "g{pid=\"10\",x=\"1\"} 4\ng{pid=\"20\",x=\"1\"} -2\n");
}

TEST_CASE("a mostrecent gauge without timestamps has no sample", "[multiproc]") {
  Records r;
  r.File("gauge_mostrecent_1.db", {{Key("g", "g", ""), 4}});
  CHECK(r.Text().empty());
}

TEST_CASE("the process' pid replaces an app's pid label", "[multiproc]") {
  Records r;
  r.File("gauge_liveall_30.db", {{Key("g", "g", R"("pid": "mine")"), 5}});
  CHECK(r.Text() == "# HELP g H.\n# TYPE g gauge\ng{pid=\"30\"} 5\n");
}

TEST_CASE("outside all/liveall, an app's pid label is dropped and its series merged",
          "[multiproc]") {
  auto merged = [](const std::string& mode) {
    Records r;
    r.File("gauge_" + mode + "_10.db", {{Key("g", "g", R"("pid": "a", "x": "1")"), 4, 1795000001},
                                        {Key("g", "g", R"("pid": "b", "x": "1")"), -2, 1795000003}});
    r.File("gauge_" + mode + "_20.db", {{Key("g", "g", R"("pid": "a", "x": "1")"), 3, 1795000002},
                                        {Key("g", "g", R"("x": "2")"), 5, 1795000002}});
    const std::string text = r.Text();
    return text.substr(text.find("# TYPE g gauge\n") + 15);
  };
  CHECK(merged("min") == "g{x=\"1\"} -2\ng{x=\"2\"} 5\n");
  CHECK(merged("livemax") == "g{x=\"1\"} 4\ng{x=\"2\"} 5\n");
  CHECK(merged("sum") == "g{x=\"1\"} 5\ng{x=\"2\"} 5\n");
  CHECK(merged("mostrecent") == "g{x=\"1\"} -2\ng{x=\"2\"} 5\n");  // the newest timestamp
}

TEST_CASE("histogram buckets are summed, then accumulated", "[multiproc]") {
  Records r;
  for (const char* file : {"histogram_1.db", "histogram_2.db"}) {
    r.File(file, {{Key("h", "h_bucket", R"("le": "0.5", "r": "x")"), 1},
                  {Key("h", "h_bucket", R"("le": "+Inf", "r": "x")"), 2},
                  {Key("h", "h_sum", R"("r": "x")"), 1.25}});
  }
  CHECK(r.Text() == "# HELP h H.\n# TYPE h histogram\n"
                    "h_bucket{r=\"x\",le=\"0.5\"} 2\nh_bucket{r=\"x\",le=\"+Inf\"} 6\n"
                    "h_sum{r=\"x\"} 2.5\nh_count{r=\"x\"} 6\n");
}

TEST_CASE("histogram bounds are served as prometheus_client spells them", "[multiproc]") {
  // MultiProcessCollector reads each stored le as a float, adds up equal
  // bounds, sorts them and writes floatToGoString: "1" and "1.0" are one
  // bucket, served as le="1.0".
  Records r;
  r.File("histogram_1.db", {{Key("h", "h_bucket", R"("le": "1")"), 1},
                            {Key("h", "h_bucket", R"("le": "1e3")"), 2},
                            {Key("h", "h_bucket", R"("le": "0.005")"), 4},
                            {Key("h", "h_bucket", R"("le": "+Inf")"), 8},
                            {Key("h", "h_sum", ""), 3}});
  r.File("histogram_2.db", {{Key("h", "h_bucket", R"("le": "1.0")"), 16},
                            {Key("h", "h_bucket", R"("le": "1000000.0")"), 32},
                            {Key("h", "h_bucket", R"("le": "-2.5")"), 64},
                            {Key("h", "h_bucket", R"("le": "1e-05")"), 128}});
  CHECK(r.Text() == "# HELP h H.\n# TYPE h histogram\n"
                    "h_bucket{le=\"-2.5\"} 64\nh_bucket{le=\"1e-05\"} 192\n"
                    "h_bucket{le=\"0.005\"} 196\nh_bucket{le=\"1.0\"} 213\n"
                    "h_bucket{le=\"1000.0\"} 215\nh_bucket{le=\"1e+06\"} 247\n"
                    "h_bucket{le=\"+Inf\"} 255\nh_sum 3\nh_count 255\n");
}

TEST_CASE("summaries keep _count and _sum", "[multiproc]") {
  Records r;
  r.File("summary_1.db", {{Key("s", "s_count", ""), 2}, {Key("s", "s_sum", ""), 0.5}});
  r.File("summary_2.db", {{Key("s", "s_count", ""), 1}, {Key("s", "s_sum", ""), 0.25}});
  CHECK(r.Text() == "# HELP s H.\n# TYPE s summary\ns_sum 0.75\ns_count 3\n");
}

TEST_CASE("a metric written as two types keeps the first", "[multiproc]") {
  Records r;
  r.File("counter_1.db", {{Key("x", "x_total", ""), 1}});
  r.File("gauge_sum_1.db", {{Key("x", "x", ""), 7}});
  CHECK(r.Text() == "# HELP x_total H.\n# TYPE x_total counter\nx_total 1\n");
}

TEST_CASE("the reader skips what it cannot use and says why", "[multiproc]") {
  TempDir dir;
  dir.Write("counter_1.db", DbBytes({{Key("c", "c_total", ""), 3}}, false, 64));
  dir.Write("counter_2.db", DbBytes({{Key("c", "c_total", ""), 1}, {"not json", 1}}, false));
  dir.Write("counter_3.db", std::string("\x40\0\0\0\0\0\0\0", 8) + std::string(56, 'x'));
  dir.Write("notes.db", "text");
  REQUIRE(mkfifo((dir.path() + "/gauge_all_4.db").c_str(), 0600) == 0);
  REQUIRE(symlink((dir.path() + "/counter_1.db").c_str(), (dir.path() + "/counter_5.db").c_str()) == 0);
  dir.Write("histogram_6.db", std::string(2 << 20, '\0'));
  dir.Write("ignored.txt", "not a .db file");
  std::map<std::string, SkipReason> skipped;
  KeyTable keys;
  std::vector<DbFile> files;
  const size_t read = ReadMultiprocDir(dir.path(), 1 << 20, &keys, &files,
                                       [&](const SkippedFile& s) { skipped[s.file] = s.reason; });
  CHECK(read == 2);
  CHECK(skipped == std::map<std::string, SkipReason>{{"counter_2.db", SkipReason::kInvalidKeys},
                                                     {"counter_3.db", SkipReason::kCorrupt},
                                                     {"notes.db", SkipReason::kFileName},
                                                     {"gauge_all_4.db", SkipReason::kNotRegular},
                                                     {"counter_5.db", SkipReason::kOpen},
                                                     {"histogram_6.db", SkipReason::kTooLarge}});
  std::vector<MetricFamily> families;
  MergeDbFiles(keys, files, &families);
  CHECK(RenderText(families, kMergedBoundSpelling) ==
        "# HELP c_total H.\n# TYPE c_total counter\nc_total 4\n");
}

TEST_CASE("a missing directory is reported once", "[multiproc]") {
  std::vector<SkippedFile> skipped;
  KeyTable keys;
  std::vector<DbFile> files;
  CHECK(ReadMultiprocDir("/nonexistent/multiproc", 1 << 20, &keys, &files,
                         [&](const SkippedFile& s) { skipped.push_back(s); }) == 0);
  REQUIRE(skipped.size() == 1);
  CHECK(skipped[0].reason == SkipReason::kDirectory);
  CHECK(skipped[0].why.rfind("cannot open directory: ", 0) == 0);
}

TEST_CASE("the directory is prepared for a new master", "[multiproc]") {
  TempDir dir;
  const std::string sub = dir.path() + "/mp";
  std::string error;
  REQUIRE(PrepareMultiprocDir(sub, &error));  // created
  TempDir again;
  again.Write("counter_1.db", "stale");
  again.Write("keep.txt", "other");
  REQUIRE(PrepareMultiprocDir(again.path(), &error));
  CHECK(access((again.path() + "/counter_1.db").c_str(), F_OK) != 0);
  CHECK(access((again.path() + "/keep.txt").c_str(), F_OK) == 0);
  CHECK_FALSE(PrepareMultiprocDir(again.path() + "/keep.txt", &error));
  CHECK(error == "exists and is not a directory");
  CHECK_FALSE(PrepareMultiprocDir("", &error));
  CHECK(error == "empty path");
}

TEST_CASE("a dead process' live gauges are removed, its other files kept", "[multiproc]") {
  TempDir dir;
  for (const char* name : {"gauge_liveall_9.db", "gauge_livesum_9.db", "gauge_all_9.db",
                           "counter_9.db", "gauge_liveall_90.db"}) {
    dir.Write(name, "x");
  }
  RemoveLiveGaugeFiles(dir.path(), 9);
  auto exists = [&](const char* name) { return access((dir.path() + "/" + name).c_str(), F_OK) == 0; };
  CHECK_FALSE(exists("gauge_liveall_9.db"));
  CHECK_FALSE(exists("gauge_livesum_9.db"));
  CHECK(exists("gauge_all_9.db"));
  CHECK(exists("counter_9.db"));
  CHECK(exists("gauge_liveall_90.db"));
}

TEST_CASE("a worker slot with a new pid removes the old pid's live gauges", "[multiproc]") {
  TempDir dir;
  dir.Write("gauge_liveall_11.db", "x");
  dir.Write("gauge_liveall_12.db", "x");
  MultiprocCollector collector(dir.path());
  collector.ForgetDeadProcesses({11, 12});
  collector.ForgetDeadProcesses({11, 13});  // worker 2 respawned
  CHECK(access((dir.path() + "/gauge_liveall_11.db").c_str(), F_OK) == 0);
  CHECK(access((dir.path() + "/gauge_liveall_12.db").c_str(), F_OK) != 0);
}
