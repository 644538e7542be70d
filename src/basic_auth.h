// HTTP Basic authentication's pieces that need no thread: reading the
// Authorization header, and the cache of password check results.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace uwsgi_prometheus {

// "Basic <base64 of user:password>" (RFC 7617) as Go's Request.BasicAuth
// reads it: the scheme in any case, standard base64 with padding, split at
// the first ':'. False when the header is absent or not that.
bool ParseBasicAuth(std::string_view header, std::string* user, std::string* password);

// Results of password checks, as exporter-toolkit keeps them, so that a
// scraper's password is checked once: at most kEntries, keyed by user,
// hash and password. The key is an HMAC-SHA256 of the three under a random
// key made per process, so the cache never holds a password or anything a
// password could be guessed from offline faster than from its bcrypt hash.
//
// Eviction, least recently used first, never lets a failed check push out
// a successful one: a client sending wrong passwords fills the cache with
// failures only, and the scraper with the right password stays a hit.
class AuthCache {
 public:
  static constexpr size_t kEntries = 100;
  using Key = std::array<uint8_t, 32>;

  AuthCache();

  Key KeyFor(std::string_view user, std::string_view hash, std::string_view password) const;
  // The cached result, if any (and marks it used).
  std::optional<bool> Find(const Key& key);
  void Insert(const Key& key, bool allowed);
  size_t size() const { return size_; }

 private:
  struct Entry {
    Key key{};
    bool allowed = false;
    uint64_t used = 0;  // last use, in lookups; smaller = longer ago
  };
  size_t Victim(bool allowed) const;

  std::array<uint8_t, 32> secret_{};
  std::array<Entry, kEntries> entries_{};
  size_t size_ = 0;
  uint64_t clock_ = 0;
};

}  // namespace uwsgi_prometheus
