#!/usr/bin/env node
// Fails when any TypeScript module of packages/*/src takes part in an import cycle.
//   node scripts/check-cycles.mjs            check every workspace package
//   node scripts/check-cycles.mjs <dir>...   check these source trees instead (each like packages/<pkg>)
// The graph holds every `import`, `import type`, `export ... from`, `import()` and `import('x')` type
// of each packages/*/src/**/*.ts: relative `.js` specifiers resolve to the `.ts` beside them and
// `@berth/<pkg>[/sub]` through that package's `exports` (dist/x.js read as src/x.ts). Type-only
// edges count: a cycle of types still ties two modules to each other's changes.
// Before checking, it runs on scripts/testdata/cycles (which holds a known cycle) and fails unless
// that cycle is found, so a broken parser cannot pass by finding nothing.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Every .ts file under dir (recursively), skipping declaration files and node_modules. */
function tsFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out.push(...tsFiles(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every module specifier a file names: static imports and re-exports, dynamic imports, import types. */
export function specifiers(file, text) {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out = [];
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteral(node.moduleSpecifier)) out.push(node.moduleSpecifier.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const e = node.moduleReference.expression;
      if (ts.isStringLiteral(e)) out.push(e.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      out.push(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const lit = node.argument.literal;
      if (ts.isStringLiteral(lit)) out.push(lit.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Maps "@berth/x" and "@berth/x/sub" to the source file their `exports` entry is built from. */
function workspaceEntries(pkgDirs) {
  const map = new Map();
  for (const dir of pkgDirs) {
    const pj = join(dir, 'package.json');
    if (!existsSync(pj)) continue;
    const pkg = JSON.parse(readFileSync(pj, 'utf8'));
    for (const [sub, target] of Object.entries(pkg.exports ?? {})) {
      const js = typeof target === 'string' ? target : (target.default ?? target.import);
      if (typeof js !== 'string' || !js.startsWith('./dist/')) continue;
      const src = join(dir, 'src', js.slice('./dist/'.length).replace(/\.js$/, '.ts'));
      map.set(sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`, src);
    }
  }
  return map;
}

/** The source file a specifier names, or undefined when it leaves the checked trees. */
function resolveSpecifier(from, spec, entries) {
  if (entries.has(spec)) return entries.get(spec);
  if (!spec.startsWith('.')) return undefined;
  const base = resolve(dirname(from), spec);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts'), base];
  return candidates.find((c) => c.endsWith('.ts') && existsSync(c) && statSync(c).isFile());
}

/** The import graph (file -> files it imports) of every packages-like dir given. */
export function importGraph(pkgDirs) {
  const entries = workspaceEntries(pkgDirs);
  const graph = new Map();
  for (const dir of pkgDirs) {
    for (const file of tsFiles(join(dir, 'src'))) {
      const deps = new Set();
      for (const spec of specifiers(file, readFileSync(file, 'utf8'))) {
        const to = resolveSpecifier(file, spec, entries);
        if (to) deps.add(to);
      }
      graph.set(file, deps);
    }
  }
  return graph;
}

/** Strongly connected components (Tarjan, iterative) that contain a cycle. */
function cyclicComponents(graph) {
  let next = 0;
  const index = new Map();
  const low = new Map();
  const onStack = new Set();
  const stack = [];
  const out = [];
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work = [[start, [...(graph.get(start) ?? [])], 0]];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length) {
      const frame = work[work.length - 1];
      const [v, deps] = frame;
      if (frame[2] < deps.length) {
        const w = deps[frame[2]++];
        if (!graph.has(w)) continue;
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push([w, [...(graph.get(w) ?? [])], 0]);
        } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent), low.get(v)));
      }
      if (low.get(v) !== index.get(v)) continue;
      const comp = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || graph.get(v)?.has(v)) out.push(comp);
    }
  }
  return out;
}

/** One shortest cycle through `start` inside its component (breadth-first), as a file list. */
function cycleThrough(graph, comp, start) {
  const inComp = new Set(comp);
  const prev = new Map([[start, undefined]]);
  const queue = [start];
  while (queue.length) {
    const v = queue.shift();
    for (const w of graph.get(v) ?? []) {
      if (w === start) {
        const path = [v];
        for (let p = prev.get(v); p !== undefined; p = prev.get(p)) path.unshift(p);
        return [...path, start];
      }
      if (inComp.has(w) && !prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

/**
 * Every cycle group in the graph: its members (sorted) and the shortest cycle through each member,
 * each listed once (a cycle found from two of its members is the same cycle).
 */
export function findCycles(graph) {
  return cyclicComponents(graph).map((comp) => {
    const members = [...comp].sort();
    const seen = new Set();
    const cycles = [];
    for (const m of members) {
      const cycle = cycleThrough(graph, comp, m);
      const ring = cycle.slice(0, -1);
      const first = ring.indexOf([...ring].sort()[0]);
      const key = [...ring.slice(first), ...ring.slice(0, first)].join('\n');
      if (seen.has(key)) continue;
      seen.add(key);
      cycles.push(cycle);
    }
    return { members, cycles };
  });
}

function report(cycles) {
  for (const { members, cycles: rings } of cycles) {
    console.error(`modules tied by import cycles: ${members.map((f) => relative(ROOT, f)).join(', ')}`);
    for (const ring of rings) console.error(`  ${ring.map((f) => relative(ROOT, f)).join(' -> ')}`);
  }
}

function main() {
  const control = findCycles(importGraph([join(ROOT, 'scripts', 'testdata', 'cycles')]));
  const controlFiles = control.flatMap((c) => c.members.map((f) => relative(ROOT, f)));
  const expected = ['a.ts', 'b.ts', 'c.ts', 'self.ts'].map((f) => `scripts/testdata/cycles/src/${f}`);
  // Exactly the four: root.ts imports into the cycle and leaf.ts is imported, neither is in one.
  if (control.length !== 2 || controlFiles.length !== 4 || expected.some((f) => !controlFiles.includes(f))) {
    console.error(
      `check-cycles: the control fixture's cycles were not found (got ${controlFiles.join(', ')})`,
    );
    process.exit(2);
  }
  const args = process.argv.slice(2);
  const pkgDirs = args.length
    ? args.map((a) => resolve(a))
    : readdirSync(join(ROOT, 'packages')).map((d) => join(ROOT, 'packages', d));
  const graph = importGraph(pkgDirs);
  const cycles = findCycles(graph);
  if (cycles.length) {
    report(cycles);
    console.error(
      `check-cycles: ${cycles.length} group(s) of modules in import cycles (${graph.size} modules)`,
    );
    process.exit(1);
  }
  console.log(`check-cycles: no import cycles in ${graph.size} modules of ${pkgDirs.length} package(s)`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
