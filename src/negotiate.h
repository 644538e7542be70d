// Content negotiation for the metrics route: which exposition format and
// which content coding to answer with, from the request's Accept and
// Accept-Encoding headers. Pure functions, no allocation.
//
// The rules are those a client of uwsgi_exporter (client_golang's promhttp)
// sees: the text format 0.0.4 unless the client prefers a format this
// endpoint can serve (OpenMetrics is never chosen: it would rename the
// exporter's counters), never a 406; gzip whenever Accept-Encoding allows it
// (RFC 9110 section 12.5.3: q-values, "*", "identity;q=0").
#pragma once

#include <string_view>

namespace uwsgi_prometheus {

enum class ExpositionFormat {
  kText,      // text/plain; version=0.0.4
  kProtobuf,  // delimited io.prometheus.client.MetricFamily messages
};

enum class ContentCoding { kIdentity, kGzip };

// The exact Content-Type of each format.
std::string_view ContentTypeOf(ExpositionFormat format);

// The format to answer `accept` with. Media ranges are taken in order of
// decreasing q (ties in header order); the first that names a format in
// `offered` wins; text when none does (also for an empty or broken header).
// `protobuf_offered` says whether the protobuf format can be served.
ExpositionFormat ChooseFormat(std::string_view accept, bool protobuf_offered);

// The coding to answer `accept_encoding` with: gzip when the header gives
// gzip (or x-gzip, or "*" without a gzip entry) a q > 0 at least as high as
// identity's; identity otherwise, including when the client refuses
// identity and gzip alike (answering beats a 406 for a monitoring probe).
ContentCoding ChooseCoding(std::string_view accept_encoding);

}  // namespace uwsgi_prometheus
