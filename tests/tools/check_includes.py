#!/usr/bin/env python3
"""Checks the include graph of src/ and plugin/.

    check_includes.py [ROOT]

A module is a file name without its extension (src/model.h and src/model.cc
are the module src/model). Fails when:
  - modules include each other in a circle (model -> labels -> model), or
  - a file of src/ includes uWSGI's header, the plugin's glue or anything
    from plugin/ (src/ must build and test without uWSGI).
Prints the module graph with -v.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
UWSGI_HEADERS = {'uwsgi.h', 'uwsgi_glue.h', 'uwsgi_prometheus_build.h'}


def sources(root):
    for folder in ('src', 'plugin'):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.endswith(('.h', '.cc')):
                yield os.path.join(folder, name)


def resolve(root, including, header):
    """The project file a quoted include names, or None (system, generated)."""
    for folder in (os.path.dirname(including), 'src'):
        candidate = os.path.normpath(os.path.join(folder, header))
        if os.path.exists(os.path.join(root, candidate)):
            return candidate
    return None


def module(path):
    return os.path.splitext(path)[0]


def graph(root, problems):
    edges = {}
    for path in sources(root):
        with open(os.path.join(root, path)) as f:
            included = INCLUDE.findall(f.read())
        targets = edges.setdefault(module(path), set())
        for header in included:
            target = resolve(root, path, header)
            if path.startswith('src/') and (os.path.basename(header) in UWSGI_HEADERS or
                                            (target or '').startswith('plugin/')):
                problems.append('%s includes "%s": src/ must not depend on uWSGI or plugin/'
                                % (path, header))
            if target and module(target) != module(path):
                targets.add(module(target))
    return edges


def find_cycle(edges):
    """A list of modules forming a circle, or None (depth-first search)."""
    state = {}  # module -> 1 while on the stack, 2 when done
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main(argv):
    verbose = '-v' in argv
    args = [a for a in argv if a != '-v']
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), '..', '..'))
    problems = []
    edges = graph(root, problems)
    cycle = find_cycle(edges)
    if cycle:
        problems.append('include circle: ' + ' -> '.join(cycle))
    if verbose:
        for node in sorted(edges):
            print('%s -> %s' % (node, ', '.join(sorted(edges[node])) or '-'))
    for p in problems:
        print(p)
    if not problems:
        print('include graph of src/ and plugin/: %d modules, no circle' % len(edges))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
