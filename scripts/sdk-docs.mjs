#!/usr/bin/env node
// Generates the API reference of @berth/client (docs/sdk/README.md) from its source and TSDoc,
// with the TypeScript compiler the repository already uses.
//   node scripts/sdk-docs.mjs          write docs/sdk/README.md
//   node scripts/sdk-docs.mjs --check  exit 1 when the file is not what the source gives
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PKG = join(ROOT, 'packages', 'client');
const OUT = join(ROOT, 'docs', 'sdk', 'README.md');

const config = ts.getParsedCommandLineOfConfigFile(
  join(PKG, 'tsconfig.json'),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  },
);
const program = ts.createProgram({ rootNames: config.fileNames, options: config.options });
const checker = program.getTypeChecker();
const entry = program.getSourceFile(join(PKG, 'src', 'index.ts'));
const moduleSymbol = checker.getSymbolAtLocation(entry);

const fmt = ts.TypeFormatFlags.NoTruncation | ts.TypeFormatFlags.UseAliasDefinedOutsideCurrentScope;
const oneLine = (s) => s.replace(/\s+/g, ' ').trim();

/** The TSDoc text of a symbol (summary and @-tags other than internal), as markdown. */
function docOf(sym) {
  const text = ts.displayPartsToString(sym.getDocumentationComment(checker)).trim();
  return text.replace(/\{@link ([^}]+)\}/g, '`$1`');
}
const isInternal = (sym) => sym.getJsDocTags().some((t) => t.name === 'internal');

/** Where a declaration lives, relative to the repository (packages from npm by name). */
function origin(decl) {
  const f = decl.getSourceFile().fileName;
  const m = /node_modules\/(@[^/]+\/[^/]+|[^/@]+)\//.exec(f);
  if (m) return m[1];
  const rel = relative(ROOT, f);
  return rel.replace(/^packages\/(api|kit)\/(?:src|dist)\/(.*?)(?:\.d)?\.ts$/, '@berth/$1 ($2)');
}

/** A signature as its source writes it (the types keep their names: `Promise<Container>`). */
function declaredSignature(name, decl) {
  if (!decl?.parameters) return undefined;
  const params = decl.parameters.map((p) => oneLine(p.getText())).join(', ');
  const ret = decl.type ? oneLine(decl.type.getText()) : undefined;
  const prefix = decl.asteriskToken ? '*' : '';
  return ret ? `${prefix}${name}(${params}): ${ret}` : undefined;
}

function signatureText(name, sig) {
  const d = sig.getDeclaration();
  const written = d?.getSourceFile().fileName.startsWith(join(PKG, 'src'))
    ? declaredSignature(name, d)
    : undefined;
  if (written) return written;
  const params = sig.parameters.map((p) => {
    const d = p.valueDeclaration;
    const t = checker.typeToString(checker.getTypeOfSymbolAtLocation(p, d), d, fmt);
    const opt = d && (d.questionToken || d.initializer) ? '?' : '';
    const rest = d?.dotDotDotToken ? '...' : '';
    return `${rest}${p.name}${opt}: ${t}`;
  });
  const ret = checker.typeToString(sig.getReturnType(), undefined, fmt);
  return `${name}(${params.join(', ')}): ${ret}`;
}

function members(sym, out) {
  const decl = sym.declarations?.[0];
  const type = checker.getDeclaredTypeOfSymbol(sym);
  for (const m of checker.getPropertiesOfType(type)) {
    const md = m.valueDeclaration ?? m.declarations?.[0];
    if (!md || isInternal(m) || m.name.startsWith('#') || m.name.startsWith('__@')) continue;
    const file = md.getSourceFile().fileName;
    // The iterator protocol and other lib members are not this package's API.
    if (/node_modules\/typescript\/lib\//.test(file)) continue;
    const ours = file.startsWith(join(PKG, 'src'));
    const mods = ts.getCombinedModifierFlags(md);
    if (mods & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) continue;
    if (md.getSourceFile() !== decl.getSourceFile() && !ts.isInterfaceDeclaration(decl)) continue;
    const mt = checker.getTypeOfSymbolAtLocation(m, md);
    const sigs = mt.getCallSignatures();
    if ((ts.isMethodDeclaration(md) || ts.isMethodSignature(md)) && sigs.length) {
      for (const s of sigs) out.push(`- \`${oneLine(signatureText(m.name, s))}\``);
    } else {
      const opt = m.flags & ts.SymbolFlags.Optional ? '?' : '';
      const written = ours && md.type ? md.type.getText() : checker.typeToString(mt, md, fmt);
      out.push(`- \`${m.name}${opt}: ${oneLine(written)}\``);
    }
    const d = docOf(m);
    if (d) out.push(`  ${d.replace(/\n/g, '\n  ')}`);
  }
}

const sections = [];
const reexports = [];
const exportsList = checker.getExportsOfModule(moduleSymbol).sort((a, b) => a.name.localeCompare(b.name));
for (const exp of exportsList) {
  const sym = exp.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exp) : exp;
  const decl = sym.declarations?.[0];
  if (!decl) continue;
  const from = origin(decl);
  if (!from.startsWith('packages/client/')) {
    reexports.push(`- \`${exp.name}\`: ${docOf(sym).split('\n')[0] || 'see its definition'} (${from})`);
    continue;
  }
  const out = [];
  const where = relative(ROOT, decl.getSourceFile().fileName);
  if (ts.isClassDeclaration(decl)) {
    out.push(`### class ${exp.name}`, '', docOf(sym), '', `Source: [${where}](../../${where})`, '');
    members(sym, out);
  } else if (ts.isInterfaceDeclaration(decl)) {
    out.push(`### interface ${exp.name}`, '', docOf(sym), '', `Source: [${where}](../../${where})`, '');
    members(sym, out);
  } else if (ts.isTypeAliasDeclaration(decl)) {
    out.push(`### type ${exp.name}`, '', docOf(sym), '', '```ts', oneLine(decl.getText()), '```');
  } else if (ts.isFunctionDeclaration(decl)) {
    const sig = checker.getSignatureFromDeclaration(decl);
    out.push(
      `### function ${exp.name}`,
      '',
      docOf(sym),
      '',
      '```ts',
      `${oneLine(signatureText(exp.name, sig))};`,
      '```',
    );
  } else {
    const t = checker.typeToString(checker.getTypeOfSymbolAtLocation(sym, decl), decl, fmt);
    out.push(`### const ${exp.name}`, '', docOf(sym), '', '```ts', `${exp.name}: ${oneLine(t)};`, '```');
  }
  sections.push(out.join('\n').replace(/\n{3,}/g, '\n\n'));
}

const pkgDoc = /\/\*\*([\s\S]*?)\*\//.exec(readFileSync(join(PKG, 'src', 'index.ts'), 'utf8'))?.[1] ?? '';
const intro = pkgDoc
  .split('\n')
  .map((l) => l.replace(/^\s*\* ?/, ''))
  .filter((l) => !l.startsWith('@packageDocumentation'))
  .join('\n')
  .trim();
const text = `# @berth/client API reference

<!-- Generated by scripts/sdk-docs.mjs from packages/client/src; do not edit by hand. -->

${intro}

## Exports of @berth/client

${sections.join('\n\n')}

## Re-exported from the contracts

${reexports.join('\n')}
`;

if (process.argv.includes('--check')) {
  let now = '';
  try {
    now = readFileSync(OUT, 'utf8');
  } catch {}
  if (now !== text) {
    console.error(`${relative(ROOT, OUT)} is out of date: run node scripts/sdk-docs.mjs`);
    process.exit(1);
  }
  console.log(`${relative(ROOT, OUT)} is up to date`);
} else {
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.tmp`, text);
  renameSync(`${OUT}.tmp`, OUT);
  console.log(`wrote ${relative(ROOT, OUT)}`);
}
