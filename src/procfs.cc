#include "procfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace uwsgi_prometheus {

namespace {

// Reads a small /proc file into buf (NUL-terminated); returns its length or -1.
ssize_t ReadSmallFile(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t used = 0;
  while (used + 1 < size) {
    ssize_t n = read(fd, buf + used, size - 1 - used);
    if (n < 0) {
      close(fd);
      return -1;
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
  }
  close(fd);
  buf[used] = '\0';
  return static_cast<ssize_t>(used);
}

// Seconds since the epoch at which the machine booted ("btime" in /proc/stat).
double BootTime() {
  static double boot_time = [] {
    char buf[16384];
    if (ReadSmallFile("/proc/stat", buf, sizeof buf) < 0) return 0.0;
    const char* p = strstr(buf, "\nbtime ");
    return p ? strtod(p + 7, nullptr) : 0.0;
  }();
  return boot_time;
}

// Listing /proc/self/fd costs about a microsecond per descriptor in the
// kernel, and a master with hundreds of workers holds thousands; the count is
// refreshed at most once a second (callers are one thread).
double OpenFds() {
  static double cached = 0;
  static struct timespec taken = {0, 0};
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const double age = static_cast<double>(now.tv_sec - taken.tv_sec) +
                     static_cast<double>(now.tv_nsec - taken.tv_nsec) / 1e9;
  if (taken.tv_sec != 0 && age < 1.0) return cached;
  if (DIR* dir = opendir("/proc/self/fd")) {
    int count = 0;
    while (struct dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    cached = count - 1;  // the directory stream's own fd
    taken = now;
  }
  return cached;
}

}  // namespace

void ReadSelfProcess(ProcessSnapshot* out) noexcept {
  *out = ProcessSnapshot{};
  char buf[1024];
  if (ReadSmallFile("/proc/self/stat", buf, sizeof buf) <= 0) return;
  // The command name is in parentheses and may contain spaces: start after
  // the last ')'. Fields from there: 3=state ... 14=utime 15=stime
  // 22=starttime 23=vsize 24=rss (pages).
  const char* p = strrchr(buf, ')');
  if (!p) return;
  p += 2;
  double fields[25] = {};
  for (int field = 3; field <= 24 && *p; ++field) {
    fields[field] = strtod(p, nullptr);
    p = strchr(p, ' ');
    if (!p) break;
    ++p;
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  out->cpu_seconds = (fields[14] + fields[15]) / ticks;
  out->start_time_seconds = BootTime() + fields[22] / ticks;
  out->virtual_memory_bytes = fields[23];
  out->resident_memory_bytes = fields[24] * page;

  out->open_fds = OpenFds();
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out->max_fds = limit.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(limit.rlim_cur);
  }
  out->valid = true;
}

}  // namespace uwsgi_prometheus
