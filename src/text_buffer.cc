#include "text_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

namespace uwsgi_prometheus {
namespace {

size_t RoundToPages(size_t bytes) {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

}  // namespace

void* MapPages(size_t bytes) noexcept {
  void* p = mmap(nullptr, RoundToPages(bytes), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void UnmapPages(void* p, size_t bytes) noexcept {
  if (p) munmap(p, RoundToPages(bytes));
}

}  // namespace uwsgi_prometheus
