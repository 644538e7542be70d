#include "basic_auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <random>
#include <stdexcept>

namespace uwsgi_prometheus {
namespace {

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Standard base64 with padding; false on anything else.
bool DecodeBase64(std::string_view in, std::string* out) {
  out->clear();
  if (in.size() % 4 != 0) return false;
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    const int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=' && in[i + 3] == '=') : 0;
    int v[4];
    for (int k = 0; k < 4; ++k) {
      v[k] = k >= 4 - pad ? 0 : Base64Value(in[i + k]);
      if (v[k] < 0) return false;
    }
    const uint32_t n = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | uint32_t(v[2]) << 6 | v[3];
    out->push_back(static_cast<char>(n >> 16));
    if (pad < 2) out->push_back(static_cast<char>(n >> 8 & 0xff));
    if (pad < 1) out->push_back(static_cast<char>(n & 0xff));
  }
  return true;
}

}  // namespace

bool ParseBasicAuth(std::string_view header, std::string* user, std::string* password) {
  constexpr std::string_view kScheme = "basic ";
  if (header.size() < kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), header.begin(),
                  [](char a, char b) { return a == (b >= 'A' && b <= 'Z' ? b + 32 : b); })) {
    return false;
  }
  std::string decoded;
  if (!DecodeBase64(header.substr(kScheme.size()), &decoded)) return false;
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos) return false;
  user->assign(decoded, 0, colon);
  password->assign(decoded, colon + 1, std::string::npos);
  std::fill(decoded.begin(), decoded.end(), '\0');
  return true;
}

AuthCache::AuthCache() {
  if (RAND_bytes(secret_.data(), static_cast<int>(secret_.size())) != 1) {
    std::random_device device;  // OpenSSL's generator failed: the kernel's
    for (auto& byte : secret_) byte = static_cast<uint8_t>(device());
  }
}

AuthCache::Key AuthCache::KeyFor(std::string_view user, std::string_view hash,
                                 std::string_view password) const {
  // Lengths first, so that no two triples give the same input.
  std::string input;
  for (std::string_view part : {user, hash, password}) {
    const uint64_t n = part.size();
    input.append(reinterpret_cast<const char*>(&n), sizeof n);
    input.append(part);
  }
  Key key{};
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
            reinterpret_cast<const unsigned char*>(input.data()), input.size(), key.data(), &len)) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  std::fill(input.begin(), input.end(), '\0');
  return key;
}

std::optional<bool> AuthCache::Find(const Key& key) {
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].key == key) {
      entries_[i].used = ++clock_;
      return entries_[i].allowed;
    }
  }
  return std::nullopt;
}

// The entry to replace for a new result: the least recently used failure;
// for a success, when there is no failure, the least recently used success.
size_t AuthCache::Victim(bool allowed) const {
  size_t victim = kEntries;
  for (size_t i = 0; i < size_; ++i) {
    const Entry& e = entries_[i];
    if (e.allowed && !allowed) continue;
    if (victim == kEntries || (e.allowed < entries_[victim].allowed) ||
        (e.allowed == entries_[victim].allowed && e.used < entries_[victim].used)) {
      victim = i;
    }
  }
  return victim;
}

void AuthCache::Insert(const Key& key, bool allowed) {
  for (size_t i = 0; i < size_; ++i) {
    if (entries_[i].key == key) {
      entries_[i] = {key, allowed, ++clock_};
      return;
    }
  }
  const size_t i = size_ < kEntries ? size_++ : Victim(allowed);
  if (i == kEntries) return;  // full of successes: a failure is not kept
  entries_[i] = {key, allowed, ++clock_};
}

}  // namespace uwsgi_prometheus
