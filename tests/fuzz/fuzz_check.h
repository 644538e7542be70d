// FUZZ_CHECK: an invariant of a fuzz target. Fails loudly in the libFuzzer
// build (clang, sanitizers) and in the corpus replay (gcc, no sanitizer).
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
