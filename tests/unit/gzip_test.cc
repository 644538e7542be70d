#include <zlib.h>

#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "fake_source.h"
#include "gzip.h"
#include "model.h"

using namespace uwsgi_prometheus;

namespace {

// Inflates one gzip member with zlib, independently of the encoder.
std::string Gunzip(std::string_view in) {
  z_stream z{};
  REQUIRE(inflateInit2(&z, 15 + 16) == Z_OK);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[65536];
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    REQUIRE((rc == Z_OK || rc == Z_STREAM_END));
    out.append(buf, sizeof buf - z.avail_out);
  } while (rc != Z_STREAM_END);
  CHECK(z.avail_in == 0);  // nothing after the member
  inflateEnd(&z);
  return out;
}

std::string Scrape(int workers) {
  ModelOptions o;
  o.stats_uri = "unix:///run/stats.sock";
  TextBuffer buf;
  RenderScrape(MakeSnapshot(workers), o, SelfStats{}, {}, &buf);
  return std::string(buf.data(), buf.size());
}

std::string_view View(const TextBuffer& b) { return {b.data(), b.size()}; }

}  // namespace

TEST_CASE("gzip bodies decode to the same bytes", "[gzip]") {
  GzipEncoder encoder;
  std::string error;
  TextBuffer buffer;
  SECTION("a scrape, and the encoder reused for a larger one") {
    for (int workers : {4, 256, 16}) {
      const std::string text = Scrape(workers);
      REQUIRE(encoder.Encode(text, &buffer, &error));
      CHECK(buffer.size() * 5 < text.size());
      CHECK(Gunzip(View(buffer)) == text);
    }
  }
  SECTION("empty body") {
    REQUIRE(encoder.Encode("", &buffer, &error));
    CHECK(Gunzip(View(buffer)).empty());
  }
  SECTION("incompressible bytes grow the buffer to the bound") {
    std::mt19937 rng(42);
    std::string noise(200000, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    REQUIRE(encoder.Encode(noise, &buffer, &error));
    CHECK(Gunzip(View(buffer)) == noise);
  }
  SECTION("every level round-trips") {
    const std::string text = Scrape(8);
    for (int level = GzipEncoder::kMinLevel; level <= GzipEncoder::kMaxLevel; ++level) {
      GzipEncoder e(level);
      REQUIRE(e.Encode(text, &buffer, &error));
      CHECK(Gunzip(View(buffer)) == text);
    }
  }
}
