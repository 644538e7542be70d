// libFuzzer target for the multi-process file reader: the bytes of one file,
// parsed in both layouts, every key parsed, and the result merged.
//   cmake -DUWSGI_PROMETHEUS_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++ ... ; build/tests/dbfile_fuzz -max_total_time=60
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "multiproc.h"
#include "render.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace uwsgi_prometheus;
  std::string copy(reinterpret_cast<const char*>(data), size);  // exact-size heap buffer
  std::vector<DbEntry> entries;
  DbLayout layout;
  std::string error;
  DbFile file;
  file.type = size % 4 == 0 ? "counter" : size % 4 == 1 ? "gauge" : size % 4 == 2 ? "histogram" : "summary";
  file.mode = "mostrecent";
  file.pid = "1";
  KeyTable keys;
  if (ParseDbFile(copy, &entries, &layout, &error)) {
    for (const auto& e : entries) {
      const int32_t id = keys.Intern(e.key, &error);
      if (id != KeyTable::kInvalid) file.entries.emplace_back(id, e);
    }
  }
  // Keys alone, too: the fuzzer finds JSON edge cases faster this way.
  const int32_t id = keys.Intern(std::string_view(copy), &error);
  if (id != KeyTable::kInvalid) file.entries.emplace_back(id, DbEntry{});
  // The same entries again as another process' file: exercises the merge.
  DbFile second = file;
  second.pid = "2";
  std::vector<prometheus::MetricFamily> families;
  MergeDbFiles(keys, {file, second}, &families);
  RenderText(families, kMergedBoundSpelling);
  return 0;
}
