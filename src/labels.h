// Strings as the text exposition format needs them, in one place: label
// values made valid (UTF-8, no NUL, bounded length) and escaped, help text
// escaped, metric and label names checked. Everything in src/ that writes a
// label value or a name goes through here. Depends only on text_buffer.h.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "text_buffer.h"

namespace uwsgi_prometheus {

// The cap on label values taken from uWSGI's configuration (mount points,
// directories, socket and cache names).
inline constexpr size_t kMaxLabelValueBytes = 512;

// Makes `value` safe as a label value: invalid UTF-8 and NUL become U+FFFD,
// and the result is cut to at most `max_bytes` on a character boundary.
std::string SanitizeLabelValue(std::string_view value, size_t max_bytes);

// Whether `value` is valid UTF-8 without NUL (SanitizeLabelValue would keep
// it as it is, given room).
bool IsValidLabelValue(std::string_view value);

// Appends `value` with '\', '"' and newline escaped, as inside label="...".
void AppendEscapedLabelValue(TextBuffer* out, std::string_view value);

// Appends `help` with '\' and newline escaped, as after "# HELP name ".
void AppendEscapedHelp(TextBuffer* out, std::string_view help);

// [a-zA-Z_:][a-zA-Z0-9_:]*, checked byte by byte (no locale).
bool IsValidMetricName(std::string_view name);

// A metric name without ':' that does not start with "__" (reserved).
bool IsValidLabelName(std::string_view name);

}  // namespace uwsgi_prometheus
