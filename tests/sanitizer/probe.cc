// Loaded into uwsgi (its `dlopen` option) by tests/integration/test_sanitizer.py
// in the sanitized build only: commits the error that SANITIZER_PROBE names
// ("asan" or "ubsan") as soon as it is loaded, to show that such a report
// fails a test.
#include <climits>
#include <cstdlib>
#include <cstring>

namespace {

volatile int big = INT_MAX;

__attribute__((constructor)) void Probe() {
  const char* what = std::getenv("SANITIZER_PROBE");
  if (what == nullptr) return;
  if (std::strcmp(what, "ubsan") == 0) {
    int sum = big;
    sum += big;  // signed overflow
    big = sum;
  } else if (std::strcmp(what, "asan") == 0) {
    volatile char* block = static_cast<char*>(std::malloc(8));
    std::free(const_cast<char*>(block));
    block[0] = 1;  // use after free
  }
}

}  // namespace
