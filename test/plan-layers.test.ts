import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const LIB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../lib');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    return e.isDirectory() ? sources(full) : e.name.endsWith('.ts') ? [full] : [];
  });
}

/** A file's layer: its folder under lib/ (`backfill`), or the file itself at lib/'s top (`runner.ts`). */
const unitOf = (file: string): string => path.relative(LIB, file).split(path.sep)[0]!;

/** Every relative import of a file, static, `import type`, re-export or dynamic `import()`, as a resolved .ts path. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s+'(\.[^']+)'/g), ...text.matchAll(/\bimport\(\s*'(\.[^']+)'\s*\)/g)].map((m) => m[1]!);
  return specs.map((s) => path.resolve(path.dirname(file), s).replace(/\.js$/, '.ts'));
}

describe('plan tier: the layers of lib/ point one way', () => {
  const files = sources(LIB);
  const edges = new Map<string, Set<string>>();
  for (const f of files) {
    const from = unitOf(f);
    for (const target of importsOf(f)) {
      const to = unitOf(target);
      if (to === from) continue;
      if (!edges.has(from)) edges.set(from, new Set());
      edges.get(from)!.add(to);
    }
  }

  it('reads the imports it checks (a sample of known arrows is there)', () => {
    expect(edges.get('runner.ts')).to.include('backfill');
    expect(edges.get('cli')).to.include('zero-downtime.ts');
    expect(edges.get('index.ts')).to.include('cli'); // the root export registers the command line's loader
  });

  it('no two folders (or top-level files) import each other, directly or round a longer circle', () => {
    // Tarjan's strongly connected components over the layer graph: any component of two or more is a circle.
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const on = new Set<string>();
    const circles: string[][] = [];
    let next = 0;
    const visit = (v: string): void => {
      index.set(v, next);
      low.set(v, next++);
      stack.push(v);
      on.add(v);
      for (const w of edges.get(v) ?? []) {
        if (!index.has(w)) {
          visit(w);
          low.set(v, Math.min(low.get(v)!, low.get(w)!));
        } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
      if (low.get(v) === index.get(v)) {
        const c: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          on.delete(w);
          c.push(w);
        } while (w !== v);
        if (c.length > 1) circles.push(c.sort());
      }
    };
    for (const v of new Set([...edges.keys(), ...[...edges.values()].flatMap((s) => [...s])])) if (!index.has(v)) visit(v);
    const why = circles.map((c) => `${c.join(' ⇄ ')}: ${c.flatMap((a) => [...(edges.get(a) ?? [])].filter((b) => c.includes(b)).map((b) => `${a} → ${b}`)).join(', ')}`);
    expect(why, 'layers importing each other').to.deep.equal([]);
  });

  it('the ground floor imports nothing of lib/ above it', () => {
    expect([...(edges.get('db') ?? [])]).to.deep.equal([]);
  });
});
