#!/usr/bin/env python3
"""Strict checks of a Prometheus text exposition (format 0.0.4) that
`promtool check metrics` does not make: encoding, one HELP/TYPE per family
ahead of its samples, families not interleaved, no duplicate series, label
escapes, value syntax, counter and histogram consistency.

    expo_lint.py FILE|-        exit 0 when clean, 1 with problems listed
"""
import math
import re
import sys

NAME = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
LABEL_NAME = re.compile(r'[a-zA-Z_][a-zA-Z0-9_]*')
VALUE = re.compile(r'^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]?Inf|NaN)$')
SUFFIXES = {'histogram': ('_bucket', '_sum', '_count'), 'summary': ('_sum', '_count', '')}
MAX_LABEL_VALUE = 1024


def parse_labels(text, pos, problems, where):
    """Parses '{a="b",...}' starting at text[pos] == '{'; returns (labels, next pos)."""
    labels = []
    pos += 1
    while pos < len(text) and text[pos] != '}':
        m = LABEL_NAME.match(text, pos)
        if not m:
            problems.append('%s: bad label name at column %d' % (where, pos + 1))
            return None, len(text)
        name = m.group(0)
        pos = m.end()
        if text[pos:pos + 2] != '="':
            problems.append('%s: expected =" after label %s' % (where, name))
            return None, len(text)
        pos += 2
        value = []
        while pos < len(text) and text[pos] != '"':
            if text[pos] == '\\':
                nxt = text[pos + 1:pos + 2]
                if nxt not in ('\\', '"', 'n'):
                    problems.append('%s: invalid escape \\%s in label %s' % (where, nxt, name))
                value.append({'n': '\n'}.get(nxt, nxt))
                pos += 2
            else:
                value.append(text[pos])
                pos += 1
        if pos >= len(text):
            problems.append('%s: unterminated label value' % where)
            return None, len(text)
        pos += 1
        value = ''.join(value)
        if len(value.encode()) > MAX_LABEL_VALUE:
            problems.append('%s: label %s value longer than %d bytes' % (where, name, MAX_LABEL_VALUE))
        if any(n == name for n, _ in labels):
            problems.append('%s: label %s repeated' % (where, name))
        labels.append((name, value))
        if text[pos:pos + 1] == ',':
            pos += 1
    return labels, pos + 1


def lint(data):
    problems = []
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        return ['not valid UTF-8: %s' % e]
    if '\0' in text or '\r' in text:
        problems.append('NUL or CR in the body')
    if text and not text.endswith('\n'):
        problems.append('body does not end with a newline')
    types, helps, done, series = {}, set(), set(), set()
    current = None
    histos = {}  # (family, labels without le) -> {'buckets': [(le, v)], 'count': v, 'sum': v}

    def family_of(name):
        for fam, kind in types.items():
            for suffix in SUFFIXES.get(kind, ('',)):
                if name == fam + suffix:
                    return fam
        return name

    for n, line in enumerate(text.split('\n')[:-1], 1):
        where = 'line %d' % n
        if line.startswith('#'):
            parts = line.split(' ', 3)
            if len(parts) >= 3 and parts[1] in ('HELP', 'TYPE'):
                fam = parts[2]
                if not NAME.fullmatch(fam):
                    problems.append('%s: bad metric name %r' % (where, fam))
                if fam in done or (current and fam != current and fam in (types.keys() | helps)):
                    problems.append('%s: %s of %s after its samples or another family' % (where, parts[1], fam))
                if fam != current:
                    if current:
                        done.add(current)
                    current = fam
                if parts[1] == 'HELP':
                    if fam in helps:
                        problems.append('%s: second HELP for %s' % (where, fam))
                    helps.add(fam)
                    help_text = parts[3] if len(parts) > 3 else ''
                    if re.search(r'\\[^\\n]', help_text.replace('\\\\', '')):
                        problems.append('%s: invalid escape in HELP of %s' % (where, fam))
                else:
                    if fam in types:
                        problems.append('%s: second TYPE for %s' % (where, fam))
                    kind = parts[3] if len(parts) > 3 else ''
                    if kind not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'):
                        problems.append('%s: unknown type %r' % (where, kind))
                    types[fam] = kind
            continue
        if not line.strip():
            problems.append('%s: empty line' % where)
            continue
        m = NAME.match(line)
        if not m:
            problems.append('%s: bad metric name' % where)
            continue
        name = m.group(0)
        pos = m.end()
        labels = []
        if line[pos:pos + 1] == '{':
            labels, pos = parse_labels(line, pos, problems, where)
            if labels is None:
                continue
        rest = line[pos:].split(' ')
        if len(rest) < 2 or rest[0] != '' or len(rest) > 3:
            problems.append('%s: expected one space then a value' % where)
            continue
        if not VALUE.match(rest[1]):
            problems.append('%s: bad value %r' % (where, rest[1]))
            continue
        value = float(rest[1])
        fam = family_of(name)
        if fam != current:
            if fam in done or fam in types and fam != current:
                problems.append('%s: samples of %s are not contiguous' % (where, fam))
            if current:
                done.add(current)
            current = fam
        key = (name, tuple(sorted(labels)))
        if key in series:
            problems.append('%s: duplicate series %s%s' % (where, name, dict(labels)))
        series.add(key)
        kind = types.get(fam, 'untyped')
        if kind == 'counter' and (value < 0 or math.isnan(value)):
            problems.append('%s: counter %s is %s' % (where, name, rest[1]))
        if kind == 'histogram':
            base = tuple(sorted(l for l in labels if l[0] != 'le'))
            h = histos.setdefault((fam, base), {'buckets': []})
            if name.endswith('_bucket'):
                le = dict(labels).get('le')
                if le is None:
                    problems.append('%s: bucket without le' % where)
                else:
                    h['buckets'].append((float(le), value))
            elif name.endswith('_count'):
                h['count'] = value
            elif name.endswith('_sum'):
                h['sum'] = value
    for (fam, base), h in histos.items():
        b = h['buckets']
        if not b or b[-1][0] != math.inf:
            problems.append('%s%s: no +Inf bucket' % (fam, dict(base)))
            continue
        if any(b[i][0] >= b[i + 1][0] or b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            problems.append('%s%s: buckets not increasing and cumulative' % (fam, dict(base)))
        if 'count' not in h or 'sum' not in h:
            problems.append('%s%s: _sum or _count missing' % (fam, dict(base)))
        elif h['count'] != b[-1][1]:
            problems.append('%s%s: +Inf bucket %s != _count %s' % (fam, dict(base), b[-1][1], h['count']))
    return problems


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    data = sys.stdin.buffer.read() if sys.argv[1] == '-' else open(sys.argv[1], 'rb').read()
    problems = lint(data)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == '__main__':
    main()
