#include "http_parser.h"

#include <algorithm>
#include <cstring>

namespace uwsgi_prometheus {
namespace {

constexpr size_t kMaxMethodBytes = 32;  // longer first words are not methods

bool IsTokenChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
}

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
           return lower(x) == lower(y);
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(token) for each comma-separated, trimmed element of a list header.
template <typename Fn>
void ForEachToken(std::string_view list, Fn fn) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    fn(Trim(list.substr(0, comma)));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
}

// Length of the request head (through its empty line) at the start of `in`,
// or 0 when incomplete. Accepts CRLF and bare LF. *scanned lets repeated
// calls on a growing buffer resume instead of rescanning.
size_t FindHeadEnd(std::string_view in, size_t* scanned) {
  for (size_t i = *scanned; i < in.size(); ++i) {
    if (in[i] != '\n') continue;
    if (i + 1 < in.size() && in[i + 1] == '\n') return i + 2;
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return i + 3;
  }
  *scanned = in.size() > 2 ? in.size() - 2 : 0;
  return 0;
}

// The line of `head` from `from` to `to` (a '\n' or npos), without its CR.
std::string_view LineAt(std::string_view head, size_t from, size_t to) {
  std::string_view line = head.substr(from, to == std::string_view::npos ? to : to - from);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// "METHOD target HTTP/1.x" into *req. Returns 200, or the status to answer.
int ParseRequestLine(std::string_view line, HttpRequest* req, bool* http11) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return 400;
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!IsHttpToken(method) || target.empty() ||
      std::any_of(target.begin(), target.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; })) {
    return 400;
  }
  *http11 = version == "HTTP/1.1";
  if (!*http11 && version != "HTTP/1.0") return 400;
  if (method != "GET" && method != "HEAD") return 405;
  req->method.assign(method);
  const size_t q = target.find('?');
  req->path.assign(target.substr(0, q));
  req->query.assign(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  return 200;
}

// What the header fields say about the connection and the body.
struct FieldFacts {
  bool saw_close = false;
  bool saw_keep_alive = false;
  bool has_body = false;
  bool saw_authorization = false;
};

// One "Name: value" field. Returns 200, or the status to answer.
int ParseField(std::string_view field, HttpRequest* req, FieldFacts* facts) {
  const size_t colon = field.find(':');
  // No whitespace before ':' and no obsolete line folding (RFC 9112 5.1).
  if (colon == std::string_view::npos || !IsHttpToken(field.substr(0, colon))) return 400;
  const std::string_view name = field.substr(0, colon);
  const std::string_view value = Trim(field.substr(colon + 1));
  if (!IsHttpFieldValue(value)) return 400;
  std::string* list = IEquals(name, "Accept")            ? &req->accept
                      : IEquals(name, "Accept-Encoding") ? &req->accept_encoding
                                                         : nullptr;
  if (list) {
    if (!list->empty()) *list += ", ";
    list->append(value);
  } else if (IEquals(name, "Authorization")) {
    if (!facts->saw_authorization) req->authorization.assign(value);
    facts->saw_authorization = true;
  } else if (IEquals(name, "Connection")) {
    ForEachToken(value, [facts](std::string_view token) {
      facts->saw_close |= IEquals(token, "close");
      facts->saw_keep_alive |= IEquals(token, "keep-alive");
    });
  } else if (IEquals(name, "Content-Length")) {
    if (value.empty() || value.find_first_not_of("0123456789") != std::string_view::npos) {
      return 400;
    }
    facts->has_body |= value.find_first_not_of('0') != std::string_view::npos;
  } else if (IEquals(name, "Transfer-Encoding")) {
    facts->has_body = true;
  }
  return 200;
}

// Parses a complete head. Returns 200 and fills *req and *keep_alive, or the
// status to answer.
int ParseHead(std::string_view head, HttpRequest* req, bool* keep_alive) {
  size_t eol = head.find('\n');
  bool http11 = false;
  const int status = ParseRequestLine(LineAt(head, 0, eol), req, &http11);
  if (status != 200) return status;
  req->accept.clear();
  req->accept_encoding.clear();
  req->authorization.clear();
  FieldFacts facts;
  while (eol != std::string_view::npos && eol + 1 < head.size()) {
    const size_t start = eol + 1;
    eol = head.find('\n', start);
    const std::string_view field = LineAt(head, start, eol);
    if (field.empty()) break;  // the head's final empty line
    const int field_status = ParseField(field, req, &facts);
    if (field_status != 200) return field_status;
  }
  if (facts.has_body) return 413;
  *keep_alive = http11 ? !facts.saw_close : facts.saw_keep_alive;
  return 200;
}

}  // namespace

bool IsHttpToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

bool IsHttpFieldValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

HttpParseResult ParseHttpRequest(std::string_view in, size_t max_head_bytes, size_t* scanned,
                                 HttpRequest* req) {
  HttpParseResult result;
  const size_t skip = std::min(in.find_first_not_of("\r\n"), in.size());
  const std::string_view rest = in.substr(skip);
  result.consumed = skip;
  if (rest.empty()) return result;
  const size_t end = FindHeadEnd(rest, scanned);
  // A client that does not speak HTTP (say, a TLS handshake) gets its 400
  // now rather than at the deadline: a method is a short token.
  const size_t method_len = std::min({rest.find(' '), rest.size(), kMaxMethodBytes});
  const bool bad_start = method_len == kMaxMethodBytes ||
                         !std::all_of(rest.begin(), rest.begin() + method_len, IsTokenChar);
  if (end == 0 && !bad_start && rest.size() <= max_head_bytes) return result;
  bool keep_alive = false;
  const int status = bad_start                                ? 400
                     : end == 0 || end > max_head_bytes       ? 431
                     : ParseHead(rest.substr(0, end), req, &keep_alive);
  if (status != 200) {
    result.kind = HttpParseResult::Kind::kBad;
    result.status = status;
    result.consumed = in.size();
    return result;
  }
  result.kind = HttpParseResult::Kind::kComplete;
  result.consumed = skip + end;
  result.keep_alive = keep_alive;
  return result;
}

}  // namespace uwsgi_prometheus
