#!/usr/bin/env python3
"""No function longer than 60 lines in src/ and plugin/.

    check_function_size.py --build BUILD_DIR [--root ROOT] [--allow FILE]
                           [--threshold 60] [--jobs 2] [--clang-tidy PATH]

Runs clang-tidy's readability-function-size check (LineThreshold) on every
file of src/ and plugin/ in BUILD_DIR/compile_commands.json, and on the
headers of those folders. Fails on any function over the threshold that the
allow-list does not name; exits 77 (skipped) when clang-tidy is not
installed.

The allow-list names functions that may stay long for now, one
"path function" per line (path relative to ROOT), '#' for comments. An
entry that no longer fires is reported so that it can be removed.
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys

WARNING = re.compile(r"^(.*?):(\d+):\d+: warning: function '([^']*)' exceeds recommended "
                     r"size/complexity thresholds \[readability-function-size\]")
NOTE = re.compile(r": note: (\d+) lines including whitespace and comments")
SKIPPED = 77


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--build', required=True)
    p.add_argument('--root', default=os.path.join(os.path.dirname(__file__), '..', '..'))
    p.add_argument('--allow', help='allow-list file')
    p.add_argument('--threshold', type=int, default=60)
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--clang-tidy', default='clang-tidy')
    return p.parse_args(argv)


def files_to_check(build, root):
    with open(os.path.join(build, 'compile_commands.json')) as f:
        entries = json.load(f)
    folders = tuple(os.path.join(root, d) + os.sep for d in ('src', 'plugin'))
    return sorted({os.path.realpath(e['file']) for e in entries
                   if os.path.realpath(e['file']).startswith(folders)})


def run_clang_tidy(tidy, build, root, threshold, path):
    config = '{CheckOptions: [{key: readability-function-size.LineThreshold, value: %d}]}' % threshold
    headers = '^%s/(src|plugin)/[^/]*\\.h$' % re.escape(root)
    cmd = [tidy, '-p', build, '--quiet', '--checks=-*,readability-function-size',
           '--config=' + config, '--header-filter=' + headers, path]
    res = subprocess.run(cmd, capture_output=True, text=True)
    return path, res.returncode, res.stdout + res.stderr


def findings(output, root):
    """{(relative path, function): (line, length)} from clang-tidy's output."""
    found, last = {}, None
    for line in output.splitlines():
        m = WARNING.match(line)
        if m:
            rel = os.path.relpath(os.path.realpath(m.group(1)), root)
            last = (rel, m.group(3))
            found[last] = (int(m.group(2)), None)
            continue
        n = NOTE.search(line)
        if n and last and found[last][1] is None:
            found[last] = (found[last][0], int(n.group(1)))
    return found


def read_allow_list(path):
    allowed = set()
    if not path:
        return allowed
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                rel, name = line.split(None, 1)
                allowed.add((rel, name.strip()))
    return allowed


def main(argv):
    args = parse_args(argv)
    tidy = shutil.which(args.clang_tidy)
    if not tidy:
        print('clang-tidy not found; function length not checked')
        return SKIPPED
    root, build = os.path.realpath(args.root), os.path.realpath(args.build)
    paths = files_to_check(build, root)
    found, failed = {}, []
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        jobs = [pool.submit(run_clang_tidy, tidy, build, root, args.threshold, p) for p in paths]
        for job in jobs:
            path, rc, output = job.result()
            if rc != 0 and 'error:' in output:
                failed.append('%s: clang-tidy failed:\n%s' % (path, output))
            found.update(findings(output, root))
    return report(found, read_allow_list(args.allow), failed, len(paths), args.threshold)


def report(found, allowed, failed, checked, threshold):
    long_ones = []
    for (rel, name), (line, length) in sorted(found.items()):
        where = '%s:%d %s (%s lines)' % (rel, line, name, length or '?')
        if (rel, name) in allowed:
            print('allowed for now: ' + where)
        else:
            long_ones.append(where)
    for rel, name in sorted(allowed - set(found)):
        print('allow-list entry no longer needed, remove it: %s %s' % (rel, name))
    for line in failed:
        print(line)
    for where in long_ones:
        print('longer than %d lines: %s' % (threshold, where))
    if not long_ones and not failed:
        print('%d files checked: no function longer than %d lines' % (checked, threshold))
    return 1 if long_ones or failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
