#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <string>

#include <catch2/catch.hpp>

#include "db_files.h"
#include "dbfile.h"
#include "dbkey.h"

using namespace uwsgi_prometheus;

namespace {

const std::vector<DbTestEntry> kEntries = {
    {R"(["c", "c_total", {"a": "b"}, "Help."])", 3.0, 1795000000.0},
    {R"(["c", "c_total", {"a": "longer value"}, "Help."])", 0.5, 1795000001.0},
};

// Copies `bytes` to the very end of a readable page that a PROT_NONE page
// follows: reading one byte too far crashes the test.
class GuardedCopy {
 public:
  explicit GuardedCopy(const std::string& bytes) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    size_ = (bytes.size() / page_ + 2) * page_;
    base_ = static_cast<char*>(
        mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(base_ != MAP_FAILED);
    char* guard = base_ + size_ - page_;
    REQUIRE(mprotect(guard, page_, PROT_NONE) == 0);
    data_ = guard - bytes.size();
    std::memcpy(data_, bytes.data(), bytes.size());
    view_ = std::string_view(data_, bytes.size());
  }
  ~GuardedCopy() { munmap(base_, size_); }
  std::string_view view() const { return view_; }

 private:
  size_t page_ = 0, size_ = 0;
  char* base_ = nullptr;
  char* data_ = nullptr;
  std::string_view view_;
};

}  // namespace

TEST_CASE("both prometheus_client layouts are read", "[dbfile]") {
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  std::string bytes;
  SECTION("a value per entry (0.16)") {
    bytes = DbBytes(kEntries, false);
    REQUIRE(ParseDbFile(bytes, &entries, &layout, &error));
    CHECK(layout == DbLayout::kValueOnly);
  }
  SECTION("a value and a timestamp per entry (0.18 on)") {
    bytes = DbBytes(kEntries, true);
    REQUIRE(ParseDbFile(bytes, &entries, &layout, &error));
    CHECK(layout == DbLayout::kValueAndTimestamp);
    CHECK(entries[1].timestamp == 1795000001.0);
  }
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].key == kEntries[0].key);
  CHECK(entries[0].value == 3.0);
  CHECK(entries[1].value == 0.5);
}

TEST_CASE("an empty file has no entries", "[dbfile]") {
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  CHECK(ParseDbFile(DbBytes({}, false, 100), &entries, &layout, &error));
  CHECK(entries.empty());
}

TEST_CASE("only the used part of a preallocated file counts", "[dbfile]") {
  const std::string bytes = DbBytes(kEntries, false, 4096);
  CHECK(UsedPart(bytes).size() == bytes.size() - 4096);
  CHECK(UsedPart("ab") == "ab");
  std::string bad_used = bytes;
  bad_used[0] = 2;  // used < 8: left for ParseDbFile to refuse
  CHECK(UsedPart(bad_used).size() == bytes.size());
}

TEST_CASE("a file still being written yields its complete entries", "[dbfile]") {
  const std::string bytes = DbBytes(kEntries, false);
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  REQUIRE(ParseDbFile(bytes.substr(0, bytes.size() - 3), &entries, &layout, &error));
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].value == 3.0);
}

TEST_CASE("bytes that are not a prometheus_client file are refused", "[dbfile]") {
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  CHECK_FALSE(ParseDbFile("short", &entries, &layout, &error));
  CHECK(error == "shorter than the 8-byte header");
  CHECK_FALSE(ParseDbFile(std::string("\x04\0\0\0\0\0\0\0", 8), &entries, &layout, &error));
  CHECK(error == "header says 4 bytes used");
  std::string garbage = DbBytes(kEntries, false);
  garbage[8] = 'x';  // first key length
  garbage[9] = 'x';
  CHECK_FALSE(ParseDbFile(garbage, &entries, &layout, &error));
  CHECK(error == "entries do not parse in either prometheus_client layout");
}

TEST_CASE("no prefix of a file is read past its end", "[dbfile]") {
  for (bool timestamps : {false, true}) {
    const std::string bytes = DbBytes(kEntries, timestamps);
    for (size_t n = 0; n <= bytes.size(); ++n) {
      GuardedCopy copy(bytes.substr(0, n));
      std::vector<DbEntry> entries;
      DbLayout layout;
      std::string error;
      ParseDbFile(copy.view(), &entries, &layout, &error);
      UsedPart(copy.view());
    }
  }
}

TEST_CASE("file names give type, gauge mode and pid", "[dbfile]") {
  DbFile f;
  REQUIRE(ParseDbFileName("counter_12.db", &f));
  CHECK((f.type == "counter" && f.pid == "12"));
  REQUIRE(ParseDbFileName("gauge_livesum_7.db", &f));
  CHECK((f.type == "gauge" && f.mode == "livesum" && f.pid == "7"));
  REQUIRE(ParseDbFileName("gauge_all_12_x.db", &f));  // prometheus_client's reading
  CHECK(f.pid == "12");
  for (const char* bad : {"notes.db", "counter_12.txt", "gauge_odd_1.db", "gauge_all.db",
                          "timer_1.db", "gauge_all_.db", ".db"}) {
    INFO(bad);
    CHECK_FALSE(ParseDbFileName(bad, &f));
  }
}

TEST_CASE("keys are JSON arrays of metric, sample, labels and help", "[dbkey]") {
  DbKey key;
  std::string error;
  REQUIRE(ParseDbKey(R"( ["m", "m_total", {"z": "1", "a": "caf\u00e9 \ud83d\ude00 \"q\"\n"}, "H\\elp"] )",
                     &key, &error));
  CHECK(key.metric == "m");
  CHECK(key.sample == "m_total");
  REQUIRE(key.labels.size() == 2);
  CHECK(key.labels[0].first == "a");  // sorted by name
  CHECK(key.labels[0].second == "caf\xC3\xA9 \xF0\x9F\x98\x80 \"q\"\n");
  CHECK(key.help == "H\\elp");
  REQUIRE(ParseDbKey(R"(["m", "m", {}, ""])", &key, &error));
  CHECK(key.labels.empty());
}

TEST_CASE("keys that are not valid are refused with a reason", "[dbkey]") {
  DbKey key;
  std::string error;
  const char* bad[] = {
      "not json", R"(["m", "m", {}])", R"(["m", "m", {}, "h"] x)", R"(["bad name", "m", {}, ""])",
      R"(["m", "m", {"__x": "1"}, ""])", R"(["m", "m", {"a": "1", "a": "2"}, ""])",
      R"(["m", "m", {"a": 1}, ""])", R"(["m", "m", {"a": "\ud800"}, ""])",
      "[\"m\", \"m\", {\"a\": \"\x01\"}, \"\"]", R"(["m", "m", {"a": "\x"}, ""])",
      R"(["m", "m", {"a": "1"], ""])"};
  for (const char* json : bad) {
    INFO(json);
    CHECK_FALSE(ParseDbKey(json, &key, &error));
    CHECK_FALSE(error.empty());
  }
}

TEST_CASE("label values of keys are sanitized and capped", "[dbkey]") {
  DbKey key;
  std::string error;
  REQUIRE(ParseDbKey("[\"m\", \"m\", {\"v\": \"\xff\"}, \"h\xfe\xfe tail\"]", &key, &error));
  CHECK(key.labels[0].second == "\xEF\xBF\xBD");
  CHECK(key.help == "h\xEF\xBF\xBD\xEF\xBF\xBD tail");  // the whole help, not cut
  const std::string long_key = R"(["m", "m", {"v": ")" + std::string(5000, 'x') + R"("}, ""])";
  REQUIRE(ParseDbKey(long_key, &key, &error));
  CHECK(key.labels[0].second.size() == 1024);
}

TEST_CASE("the key table parses each key once and groups series", "[dbkey]") {
  KeyTable keys;
  std::string error;
  const int32_t a = keys.Intern(R"(["h", "h_bucket", {"le": "0.5", "r": "x"}, "Old."])", &error);
  const int32_t b = keys.Intern(R"(["h", "h_bucket", {"le": "0.5", "r": "x"}, "New."])", &error);
  const int32_t inf = keys.Intern(R"(["h", "h_bucket", {"le": "+Inf", "r": "x"}, "New."])", &error);
  REQUIRE((a >= 0 && b >= 0 && inf >= 0));
  CHECK(a != b);
  CHECK(keys.series(a) == keys.series(b));  // help text does not split a series
  CHECK(keys.series(a) != keys.series(inf));
  CHECK(keys.Intern(R"(["h", "h_bucket", {"le": "0.5", "r": "x"}, "Old."])", &error) == a);
  CHECK((keys.has_le(a) && keys.le(a) == 0.5 && std::isinf(keys.le(inf))));
  CHECK(keys.group(a) == keys.group(inf));
  CHECK(keys.Intern(R"(["h", "h_bucket", {"le": "half"}, ""])", &error) == KeyTable::kInvalid);
  CHECK(error == "bucket bound 'half' is not a number");
  error.clear();
  CHECK(keys.Intern(R"(["h", "h_bucket", {"le": "half"}, ""])", &error) == KeyTable::kInvalid);
  CHECK(error == "bucket bound 'half' is not a number");  // remembered
  CHECK(keys.bad_size() == 1);
  keys.Clear();
  CHECK((keys.size() == 0 && keys.series_count() == 0 && keys.bad_size() == 0));
}
