// The request parser alone: complete, partial and bad results on buffers the
// test owns, as the connection feeds them.
#include "http_parser.h"

#include <catch2/catch.hpp>
#include <string>

namespace uwsgi_prometheus {
namespace {

using Kind = HttpParseResult::Kind;

HttpParseResult Parse(const std::string& in, size_t max = 8192) {
  size_t scanned = 0;
  HttpRequest req;
  return ParseHttpRequest(in, max, &scanned, &req);
}

TEST_CASE("a complete request reports the bytes it took, pipelined bytes stay", "[http_parser]") {
  const std::string first = "\r\n\r\nGET /metrics?x=1 HTTP/1.1\r\nAccept: a\r\naccept: b\r\n\r\n";
  const std::string in = first + "HEAD / HTTP/1.0\r\n\r\n";
  size_t scanned = 0;
  HttpRequest req;
  const HttpParseResult r = ParseHttpRequest(in, 8192, &scanned, &req);
  REQUIRE(r.kind == Kind::kComplete);
  CHECK(r.consumed == first.size());  // leading empty lines included
  CHECK(r.keep_alive);
  CHECK(req.method == "GET");
  CHECK(req.path == "/metrics");
  CHECK(req.query == "x=1");
  CHECK(req.accept == "a, b");
  scanned = 0;
  const HttpParseResult second = ParseHttpRequest(std::string_view(in).substr(r.consumed), 8192,
                                                  &scanned, &req);
  REQUIRE(second.kind == Kind::kComplete);
  CHECK(req.method == "HEAD");
  CHECK_FALSE(second.keep_alive);  // HTTP/1.0 without keep-alive
}

TEST_CASE("a request arriving byte by byte is partial until its empty line", "[http_parser]") {
  const std::string full = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t scanned = 0;
  HttpRequest req;
  for (size_t n = 1; n < full.size(); ++n) {
    const HttpParseResult r = ParseHttpRequest(full.substr(0, n), 8192, &scanned, &req);
    INFO("bytes: " << n);
    REQUIRE(r.kind == Kind::kPartial);
    CHECK(r.consumed == 0);
    CHECK(scanned <= n);
  }
  CHECK(ParseHttpRequest(full, 8192, &scanned, &req).kind == Kind::kComplete);
}

TEST_CASE("only empty lines are partial and may be dropped", "[http_parser]") {
  const HttpParseResult r = Parse("\r\n\n\r\n");
  CHECK(r.kind == Kind::kPartial);
  CHECK(r.consumed == 5);
  CHECK(Parse("").consumed == 0);
}

TEST_CASE("bad requests carry the status to answer and consume everything", "[http_parser]") {
  auto status = [](const std::string& in, size_t max = 8192) {
    const HttpParseResult r = Parse(in, max);
    INFO(in);
    REQUIRE(r.kind == Kind::kBad);
    CHECK(r.consumed == in.size());
    return r.status;
  };
  CHECK(status("GET / HTTP/2.0\r\n\r\n") == 400);
  CHECK(status("GET /\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nA : b\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n") == 400);
  CHECK(status(std::string("\x16\x03\x01\x02\x00", 5)) == 400);  // no head needed
  CHECK(status(std::string(40, 'G')) == 400);                     // no method is that long
  CHECK(status("DELETE / HTTP/1.1\r\n\r\n") == 405);
  CHECK(status("GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n") == 413);
  CHECK(status("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 413);
  CHECK(status("GET / HTTP/1.1\r\nX: " + std::string(100, 'a') + "\r\n\r\n", 64) == 431);
  CHECK(status("GET / HTTP/1.1\r\nX: " + std::string(100, 'a'), 64) == 431);  // no end in sight
}

TEST_CASE("Connection tokens decide keep-alive", "[http_parser]") {
  CHECK_FALSE(Parse("GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
  CHECK(Parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
  CHECK(Parse("GET / HTTP/1.1\nHost: x\n\n").keep_alive);  // bare LF
}

}  // namespace
}  // namespace uwsgi_prometheus
