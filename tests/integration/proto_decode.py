"""Decodes a protobuf exposition (delimited io.prometheus.client.MetricFamily
messages) read from stdin with Debian's python3-protobuf, through a
descriptor of client_model's metrics.proto built here (no protoc, nothing
shared with the plugin's encoder), and prints JSON:

  families: [name, type, help] in stream order
  samples: [sample name, {label: value}, value] as Prometheus derives them
           (`le` and `quantile` as numbers: the text spells them, protobuf
           does not)
  canonical: whether every message re-serializes to the bytes received,
             i.e. no unknown field, each field once, in field-number order

Run with the system Python: python3 proto_decode.py < body
"""
import json
import math
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

F = descriptor_pb2.FieldDescriptorProto
OPTIONAL, REPEATED = F.LABEL_OPTIONAL, F.LABEL_REPEATED
TYPE_NAMES = {0: 'counter', 1: 'gauge', 2: 'summary', 3: 'untyped', 4: 'histogram',
              5: 'gaugehistogram'}

# (message, [(field, number, type, label, message type or None, packed)])
SCHEMA = [
    ('LabelPair', [('name', 1, F.TYPE_STRING, OPTIONAL, None, False),
                   ('value', 2, F.TYPE_STRING, OPTIONAL, None, False)]),
    ('Gauge', [('value', 1, F.TYPE_DOUBLE, OPTIONAL, None, False)]),
    ('Counter', [('value', 1, F.TYPE_DOUBLE, OPTIONAL, None, False)]),
    ('Quantile', [('quantile', 1, F.TYPE_DOUBLE, OPTIONAL, None, False),
                  ('value', 2, F.TYPE_DOUBLE, OPTIONAL, None, False)]),
    ('Summary', [('sample_count', 1, F.TYPE_UINT64, OPTIONAL, None, False),
                 ('sample_sum', 2, F.TYPE_DOUBLE, OPTIONAL, None, False),
                 ('quantile', 3, F.TYPE_MESSAGE, REPEATED, 'Quantile', False)]),
    ('Untyped', [('value', 1, F.TYPE_DOUBLE, OPTIONAL, None, False)]),
    ('Bucket', [('cumulative_count', 1, F.TYPE_UINT64, OPTIONAL, None, False),
                ('upper_bound', 2, F.TYPE_DOUBLE, OPTIONAL, None, False),
                ('cumulative_count_float', 4, F.TYPE_DOUBLE, OPTIONAL, None, False)]),
    ('BucketSpan', [('offset', 1, F.TYPE_SINT32, OPTIONAL, None, False),
                    ('length', 2, F.TYPE_UINT32, OPTIONAL, None, False)]),
    ('Histogram', [('sample_count', 1, F.TYPE_UINT64, OPTIONAL, None, False),
                   ('sample_sum', 2, F.TYPE_DOUBLE, OPTIONAL, None, False),
                   ('bucket', 3, F.TYPE_MESSAGE, REPEATED, 'Bucket', False),
                   ('sample_count_float', 4, F.TYPE_DOUBLE, OPTIONAL, None, False),
                   ('schema', 5, F.TYPE_SINT32, OPTIONAL, None, False),
                   ('zero_threshold', 6, F.TYPE_DOUBLE, OPTIONAL, None, False),
                   ('zero_count', 7, F.TYPE_UINT64, OPTIONAL, None, False),
                   ('zero_count_float', 8, F.TYPE_DOUBLE, OPTIONAL, None, False),
                   ('negative_span', 9, F.TYPE_MESSAGE, REPEATED, 'BucketSpan', False),
                   ('negative_delta', 10, F.TYPE_SINT64, REPEATED, None, True),
                   ('negative_count', 11, F.TYPE_DOUBLE, REPEATED, None, True),
                   ('positive_span', 12, F.TYPE_MESSAGE, REPEATED, 'BucketSpan', False),
                   ('positive_delta', 13, F.TYPE_SINT64, REPEATED, None, True),
                   ('positive_count', 14, F.TYPE_DOUBLE, REPEATED, None, True)]),
    ('Metric', [('label', 1, F.TYPE_MESSAGE, REPEATED, 'LabelPair', False),
                ('gauge', 2, F.TYPE_MESSAGE, OPTIONAL, 'Gauge', False),
                ('counter', 3, F.TYPE_MESSAGE, OPTIONAL, 'Counter', False),
                ('summary', 4, F.TYPE_MESSAGE, OPTIONAL, 'Summary', False),
                ('untyped', 5, F.TYPE_MESSAGE, OPTIONAL, 'Untyped', False),
                ('timestamp_ms', 6, F.TYPE_INT64, OPTIONAL, None, False),
                ('histogram', 7, F.TYPE_MESSAGE, OPTIONAL, 'Histogram', False)]),
    ('MetricFamily', [('name', 1, F.TYPE_STRING, OPTIONAL, None, False),
                      ('help', 2, F.TYPE_STRING, OPTIONAL, None, False),
                      ('type', 3, F.TYPE_ENUM, OPTIONAL, 'MetricType', False),
                      ('metric', 4, F.TYPE_MESSAGE, REPEATED, 'Metric', False)]),
]


def metric_family_class():
    fdp = descriptor_pb2.FileDescriptorProto(name='uwsgi_prometheus_test/metrics.proto',
                                             package='io.prometheus.client', syntax='proto2')
    enum = fdp.enum_type.add(name='MetricType')
    for number, name in TYPE_NAMES.items():
        enum.value.add(name=name.upper(), number=number)
    for message, fields in SCHEMA:
        m = fdp.message_type.add(name=message)
        for name, number, ftype, label, type_name, packed in fields:
            f = m.field.add(name=name, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = '.io.prometheus.client.' + type_name
            if packed:
                f.options.packed = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    descriptor = pool.FindMessageTypeByName('io.prometheus.client.MetricFamily')
    if hasattr(message_factory, 'GetMessageClass'):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def read_varint(data, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError('bad varint at %d' % pos)
        b = data[pos]
        pos += 1
        value |= (b & 0x7f) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def samples_of(fam):
    kind = TYPE_NAMES[fam.type]
    for m in fam.metric:
        labels = {l.name: l.value for l in m.label}
        if kind in ('counter', 'gauge', 'untyped'):
            yield fam.name, labels, getattr(m, kind).value
        elif kind == 'summary':
            for q in m.summary.quantile:
                yield fam.name, dict(labels, quantile=q.quantile), q.value
            yield fam.name + '_sum', labels, m.summary.sample_sum
            yield fam.name + '_count', labels, float(m.summary.sample_count)
        else:
            h = m.histogram
            for b in h.bucket:
                yield fam.name + '_bucket', dict(labels, le=b.upper_bound), float(b.cumulative_count)
            if not h.bucket or not math.isinf(h.bucket[-1].upper_bound):
                yield fam.name + '_bucket', dict(labels, le=math.inf), float(h.sample_count)
            yield fam.name + '_sum', labels, h.sample_sum
            yield fam.name + '_count', labels, float(h.sample_count)


def main():
    data = sys.stdin.buffer.read()
    cls = metric_family_class()
    families, samples, canonical, pos = [], [], True, 0
    while pos < len(data):
        n, pos = read_varint(data, pos)
        raw = data[pos:pos + n]
        if len(raw) != n:
            raise ValueError('message truncated at %d' % pos)
        pos += n
        fam = cls()
        fam.ParseFromString(raw)
        canonical = canonical and fam.SerializeToString(deterministic=True) == raw
        families.append([fam.name, TYPE_NAMES[fam.type], fam.help])
        samples.extend(samples_of(fam))
    json.dump({'families': families, 'samples': samples, 'canonical': canonical}, sys.stdout)


if __name__ == '__main__':
    main()
