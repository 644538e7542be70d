// The buffer a scrape is written into. Text the size of a scrape body
// (hundreds of kilobytes to megabytes) is given its own pages, taken from
// the kernel and handed back to it when the buffer is freed, instead of
// from malloc's heap: the endpoint's thread allocates a body per scrape and
// frees it once sent, and malloc would keep such blocks (its mmap threshold
// rises after the first free) so that the master's memory grew with the
// largest burst ever seen and never came back. Small buffers (label
// scratch space) still come from malloc.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

#include <fmt/format.h>

namespace uwsgi_prometheus {

// Blocks of at least this many bytes are mapped pages.
inline constexpr size_t kPageAllocationBytes = 64 * 1024;

// Maps `bytes` (rounded up to whole pages) of zero pages, or nullptr.
void* MapPages(size_t bytes) noexcept;
void UnmapPages(void* p, size_t bytes) noexcept;

template <typename T>
struct PageAllocator {
  using value_type = T;

  PageAllocator() = default;
  template <typename U>
  PageAllocator(const PageAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes < kPageAllocationBytes) return std::allocator<T>().allocate(n);
    void* p = MapPages(bytes);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    const size_t bytes = n * sizeof(T);
    if (bytes < kPageAllocationBytes) return std::allocator<T>().deallocate(p, n);
    UnmapPages(p, bytes);
  }
  template <typename U>
  bool operator==(const PageAllocator<U>&) const noexcept { return true; }
  template <typename U>
  bool operator!=(const PageAllocator<U>&) const noexcept { return false; }
};

// fmt's growable buffer (500 bytes inline, then PageAllocator).
using TextBuffer = fmt::basic_memory_buffer<char, fmt::inline_buffer_size, PageAllocator<char>>;

}  // namespace uwsgi_prometheus
