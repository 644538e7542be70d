#include "http_session.h"

#include <openssl/crypto.h>

#include <charconv>
#include <utility>

namespace uwsgi_prometheus {
namespace {

constexpr const char* kTextPlain = "text/plain; charset=utf-8";

const char* Reason(int status) {
  static constexpr std::pair<int, const char*> kReasons[] = {
      {200, "OK"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {413, "Content Too Large"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"},
      {503, "Service Unavailable"}};
  for (const auto& [code, text] : kReasons) {
    if (code == status) return text;
  }
  return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

void AppendInt(OutputQueue* out, uint64_t value) {
  char buf[24];
  out->Append(std::string_view(buf, std::to_chars(buf, buf + sizeof buf, value).ptr - buf));
}

}  // namespace

SessionStep HttpSession::OnInput(std::string_view input, bool eof, OutputQueue* out) {
  const HttpParseResult r =
      ParseHttpRequest(input, ctx_->max_request_bytes, &scanned_, &ctx_->request);
  switch (r.kind) {
    case HttpParseResult::Kind::kPartial:
      if (!eof) return {SessionStep::Next::kRead, r.consumed, CloseReason::kDone};
      // Nothing but empty lines, or a truncated request: nothing to answer.
      return {SessionStep::Next::kClose, r.consumed,
              r.consumed == input.size() ? CloseReason::kClientClosed : CloseReason::kIncomplete};
    case HttpParseResult::Kind::kBad:
      return Refuse(r.status, r.consumed, out);
    case HttpParseResult::Kind::kComplete:
      break;
  }
  // A request already sent before the client's EOF is still answered.
  return Answer(r.consumed, !r.keep_alive || eof, out);
}

void HttpSession::Reset() {
  scanned_ = 0;
  paused_ = false;
}

SessionStep HttpSession::Answer(size_t consumed, bool close, OutputQueue* out) {
  scanned_ = 0;
  ctx_->stats->requests.fetch_add(1, std::memory_order_relaxed);
  if (!ctx_->guard) return Serve(ctx_->request, close, consumed, out);
  HttpResponse& r = ctx_->response;
  uint64_t ticket = 0;
  const HttpGuard::Verdict verdict = ctx_->guard->Check(ctx_->request, slot_, &ticket, &r);
  // Checked (or handed to the pool): the password is not kept, in this
  // process or in the workers it forks.
  std::string& authorization = ctx_->request.authorization;
  OPENSSL_cleanse(authorization.data(), authorization.size());
  authorization.clear();
  switch (verdict) {
    case HttpGuard::Verdict::kAllow:
      return Serve(ctx_->request, close, consumed, out);
    case HttpGuard::Verdict::kRefuse:
      break;
    case HttpGuard::Verdict::kWait:
      // The context's request serves other connections meanwhile: keep ours.
      std::swap(paused_request_, ctx_->request);
      paused_ = true;
      paused_close_ = close;
      ticket_ = ticket;
      return {SessionStep::Next::kPause, consumed, CloseReason::kDone};
  }
  Queue(close, ctx_->request.method == "HEAD", out);
  return {close ? SessionStep::Next::kFinish : SessionStep::Next::kWrite, consumed,
          CloseReason::kDone};
}

SessionStep HttpSession::OnResume(uint64_t outcome, OutputQueue* out) {
  if (!paused_ || !ctx_->guard) return {SessionStep::Next::kPause, 0, CloseReason::kDone};
  HttpResponse& r = ctx_->response;
  const HttpGuard::Verdict verdict = ctx_->guard->Resumed(outcome, ticket_, &r);
  if (verdict == HttpGuard::Verdict::kWait)
    return {SessionStep::Next::kPause, 0, CloseReason::kDone};
  paused_ = false;
  if (verdict == HttpGuard::Verdict::kAllow) return Serve(paused_request_, paused_close_, 0, out);
  Queue(paused_close_, paused_request_.method == "HEAD", out);
  return {paused_close_ ? SessionStep::Next::kFinish : SessionStep::Next::kWrite, 0,
          CloseReason::kDone};
}

// Runs the handler for an allowed request and queues its response.
SessionStep HttpSession::Serve(const HttpRequest& request, bool close, size_t consumed,
                               OutputQueue* out) {
  HttpResponse& r = ctx_->response;
  r.status = 200;
  r.content_type = kTextPlain;
  r.body.clear();
  r.shared_body = SharedBytes();
  r.extra_headers.clear();
  try {
    ctx_->handler(request, &r);
  } catch (...) {
    SetError(500);
  }
  Queue(close, request.method == "HEAD", out);
  return {close ? SessionStep::Next::kFinish : SessionStep::Next::kWrite, consumed,
          CloseReason::kDone};
}

SessionStep HttpSession::Refuse(int status, size_t consumed, OutputQueue* out) {
  scanned_ = 0;
  ctx_->stats->bad_requests.fetch_add(1, std::memory_order_relaxed);
  SetError(status);
  Queue(/*close=*/true, /*head_only=*/false, out);
  return {SessionStep::Next::kFinish, consumed,
          status == 431 ? CloseReason::kTooLarge : CloseReason::kBadRequest};
}

void HttpSession::SetError(int status) {
  HttpResponse& r = ctx_->response;
  r.status = status;
  r.content_type = kTextPlain;
  r.body = Reason(status);
  r.body += '\n';
  r.shared_body = SharedBytes();
  r.extra_headers.clear();
  if (status == 405) r.extra_headers.emplace_back("Allow", "GET, HEAD");
}

// Queues the response: head, then the body without a copy (an owned body
// gets the queue's previous buffer to reuse in exchange; a shared one is
// held by the queue until sent).
void HttpSession::Queue(bool close, bool head_only, OutputQueue* out) {
  HttpResponse& r = ctx_->response;
  if (r.status < 200 || r.status > 599) r.status = 500;
  if (ctx_->guard) ctx_->guard->AddHeaders(&r);
  out->Append("HTTP/1.1 ");
  AppendInt(out, static_cast<uint64_t>(r.status));
  out->Append(" ");
  out->Append(Reason(r.status));
  out->Append("\r\nContent-Type: ");
  out->Append(IsHttpFieldValue(r.content_type) ? std::string_view(r.content_type) : kTextPlain);
  out->Append("\r\nContent-Length: ");
  AppendInt(out, r.Body().size());  // HEAD: the length GET would send
  out->Append(close ? "\r\nConnection: close\r\n" : "\r\nConnection: keep-alive\r\n");
  for (const auto& [name, value] : r.extra_headers) {
    if (!IsHttpToken(name) || !IsHttpFieldValue(value)) continue;  // no header injection
    out->Append(name);
    out->Append(": ");
    out->Append(value);
    out->Append("\r\n");
  }
  out->Append("\r\n");
  if (head_only) {
    r.shared_body = SharedBytes();
  } else if (r.shared_body.owner) {
    out->Share(std::move(r.shared_body));
  } else {
    out->Adopt(&r.body);
  }
}

}  // namespace uwsgi_prometheus
