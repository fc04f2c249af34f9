#!/usr/bin/env python3
"""Fails if files under src/engine or src/db import each other in a circle, or if an engine
file imports a layer above its own (the layers are listed in src/engine/mod.rs).

An edge A -> B means file A names an item of file B: through a `use` (groups expanded), or a
path in code (`crate::..`, `super::..`, `self::..`, or `m::..` for a module `m` declared or
imported in A). A path is resolved to the deepest module that is a file; when that module is
an index (a mod.rs or lib.rs with only `mod` and `pub use` lines), the item is followed through
its `pub use` to the file that defines it. Comments and string literals are ignored; a file's
own inline test modules count (an import in a test module is still an import).

    python3 .ci/import-cycles.py          # exit 1 and print the cycles, if any
    python3 .ci/import-cycles.py --graph  # also print every edge among the checked files
"""
import os, re, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
SRC = os.path.join(ROOT, 'src')
CHECKED = ('engine', 'db')


def module_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel == ['lib']:
        return ()
    if rel[-1] == 'mod':
        rel = rel[:-1]
    return tuple(rel)


def strip(code):
    code = re.sub(r'//[^\n]*', '', code)
    code = re.sub(r'/\*.*?\*/', '', code, flags=re.S)
    code = re.sub(r'r#*"(?:.|\n)*?"#*', '""', code)
    code = re.sub(r'"(?:\\.|[^"\\])*"', '""', code)
    code = re.sub(r"'(?:\\.|[^'\\])'", "' '", code)
    return code


def expand(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r'\s+', '', tree)
    i = tree.find('{')
    if i < 0:
        return [tree]
    head, body = tree[:i], tree[i + 1:tree.rfind('}')]
    parts, depth, cur = [], 0, ''
    for ch in body:
        if ch == ',' and depth == 0:
            parts.append(cur)
            cur = ''
            continue
        depth += ch == '{'
        depth -= ch == '}'
        cur += ch
    if cur:
        parts.append(cur)
    return [p for part in parts for p in expand(head + part)]


files = {}
for dirpath, _, names in os.walk(SRC):
    for n in names:
        if n.endswith('.rs'):
            p = os.path.join(dirpath, n)
            files[module_of(p)] = strip(open(p).read())

children = {m: set(re.findall(r'^\s*(?:pub(?:\([\w:]+\))?\s+)?mod\s+(\w+)\s*;', code, re.M))
            for m, code in files.items()}


def is_index(code):
    lines = [l.strip() for l in code.splitlines() if l.strip()]
    return all(re.match(r'(#\[|(pub(\([\w:]+\))?\s+)?mod\s|pub(\([\w:]+\))?\s+use\s|\}|\]|[\w:,\s]*\)?\]?$)', l)
               for l in lines)


def uses(code):
    return [p for tree in re.findall(r'\buse\s+([^;]+);', code) for p in expand(tree)]


def absolute(mod, path):
    segs = [s for s in path.split('::') if s]
    if not segs:
        return None
    if segs[0] == 'crate':
        return segs[1:]
    if segs[0] == 'self':
        return list(mod) + segs[1:]
    if segs[0] == 'super':
        base = list(mod)
        while segs and segs[0] == 'super':
            base = base[:-1]
            segs = segs[1:]
        return base + segs
    if segs[0] in children.get(tuple(mod), ()):
        return list(mod) + segs
    return None


def resolve(segs, depth=0):
    """The file (module) that defines the item `segs` names."""
    segs = [s for s in segs if s != '<inline>']
    best = ()
    for k in range(len(segs), -1, -1):
        if tuple(segs[:k]) in files:
            best = tuple(segs[:k])
            break
    rest = segs[len(best):]
    if rest and depth < 8 and is_index(files[best]):
        for p in uses(files[best]):
            alias = p.split('::')[-1].split(' as ')[-1]
            if alias == rest[0] or alias == '*':
                target = absolute(best, p.split(' as ')[0])
                if target:
                    return resolve(target + rest[1:] if alias != '*' else target + rest, depth + 1)
    return best


def inline_depth(code):
    """For each offset of `code`, how many inline `mod m { .. }` blocks enclose it."""
    depth = [0] * (len(code) + 1)
    for m in re.finditer(r'\bmod\s+\w+\s*\{', code):
        level, i = 1, m.end()
        while i < len(code) and level:
            level += (code[i] == '{') - (code[i] == '}')
            i += 1
        for k in range(m.end(), i):
            depth[k] += 1
    return depth


edges = {}
for mod, code in files.items():
    found = set()
    aliases = {}
    depth = inline_depth(code)
    # Inside an inline module (`mod tests { use super::*; }`), `super` is the file itself.
    base = lambda at: tuple(mod) + ('<inline>',) * depth[at]
    for u in re.finditer(r'\buse\s+([^;]+);', code):
        for p in expand(u.group(1)):
            path = p.split(' as ')[0]
            path = path[:-3] if path.endswith('::*') else path
            target = absolute(base(u.start()), path)
            if target:
                found.add(resolve(target))
                aliases[p.split('::')[-1].split(' as ')[-1]] = target
    for m in re.finditer(r'\b((?:crate|super|self|[a-z_]\w*)(?:::\w+)+)', code):
        path = m.group(1)
        first = path.split('::')[0]
        if first in aliases and first not in ('crate', 'super', 'self'):
            target = aliases[first] + path.split('::')[1:]
        else:
            target = absolute(base(m.start()), path)
        if target:
            found.add(resolve(target))
    found.discard(mod)
    edges[mod] = {t for t in found if t in files}

checked = {m for m in files if m and m[0] in CHECKED}
name = lambda m: 'src/' + '/'.join(m) + ('/mod.rs' if any(c[:len(m)] == m and len(c) > len(m) for c in files) else '.rs')

cycles, state, stack = [], {}, []


def visit(m):
    state[m] = 1
    stack.append(m)
    for t in sorted(edges[m] & checked):
        if state.get(t) == 1:
            cycles.append(stack[stack.index(t):] + [t])
        elif t not in state:
            visit(t)
    stack.pop()
    state[m] = 2


for m in sorted(checked):
    if m not in state:
        visit(m)

if '--graph' in sys.argv:
    for m in sorted(checked):
        print(name(m), '->', ', '.join(sorted(name(t) for t in edges[m] & checked)) or '-')
# The engine's layers, top to bottom: a file may import its own layer or the ones below.
LAYERS = [
    ('facade', lambda m: m in [('engine',), ('engine', 'builder'), ('engine', 'storage'), ('engine', 'iter')]),
    ('ops', lambda m: m[:2] == ('engine', 'ops')),
    ('waiter', lambda m: m == ('engine', 'waiter')),
    ('core', lambda m: m == ('engine', 'core')),
    ('state', lambda m: m[:2] == ('engine', 'state')),
    ('leaf', lambda m: m[:1] == ('engine',)),
]
rank = lambda m: next(i for i, (_, test) in enumerate(LAYERS) if test(m))
upward = [(m, t) for m in sorted(checked) if m[0] == 'engine'
          for t in sorted(edges[m]) if t[:1] == ('engine',) and rank(t) < rank(m)]
for m, t in upward:
    print(f'layer: {name(m)} ({LAYERS[rank(m)][0]}) imports {name(t)} ({LAYERS[rank(t)][0]})')
for c in cycles:
    print('import cycle: ' + ' -> '.join(name(m) for m in c))
print(f'{len(checked)} files under src/engine and src/db, '
      f'{sum(len(edges[m] & checked) for m in checked)} imports among them, {len(cycles)} cycles, '
      f'{len(upward)} engine imports against the layers')
sys.exit(1 if cycles or upward else 0)
